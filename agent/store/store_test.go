package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/faceguard/faceguard/internal/clock"
)

func TestOpenSettings(t *testing.T) {
	s, path, _ := openTest(t, Options{})
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": "5000"} {
		var got string
		if err := s.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	var v string
	if err := s.db.QueryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); err != nil || v != "1" {
		t.Errorf("schema_version = %q, %v", v, err)
	}
}

func TestOpenAwkwardPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?#%20x", "agent.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, nil, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if res, err := r.Verify(context.Background()); err != nil || res.Rows != 1 {
		t.Errorf("verify: %+v %v", res, err)
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, nil, 2)
	s.Close()

	// Reopening the current version keeps the data.
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if seq, _, _ := s.Head(context.Background()); seq != 2 {
		t.Errorf("head after reopen = %d", seq)
	}
	s.Close()

	db := rawDB(t, path)
	if _, err := db.Exec(`UPDATE meta SET value = '2' WHERE key = 'schema_version'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for name, open := range map[string]func() (*Store, error){
		"Open":         func() (*Store, error) { return Open(path, Options{}) },
		"OpenReadOnly": func() (*Store, error) { return OpenReadOnly(path) },
	} {
		s, err := open()
		if err == nil {
			s.Close()
			t.Fatalf("%s: a newer schema was accepted", name)
		}
		if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "schema version 2") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	w, path, fake := openTest(t, Options{})
	appendN(t, w, fake, 5)

	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Verify(ctx)
	if err != nil || !res.OK || res.Rows != 5 {
		t.Fatalf("read-only verify while the writer is open: %+v %v", res, err)
	}
	appendN(t, w, fake, 5) // the writer goes on, not blocked by the reader
	res, err = r.Verify(ctx)
	if err != nil || !res.OK || res.Rows != 10 {
		t.Fatalf("read-only verify after more writes: %+v %v", res, err)
	}
	if err := r.Tx(ctx, func(tx *Tx) error { return nil }); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Tx on a read-only store: %v", err)
	}
	if _, err := r.NextSession(ctx); !errors.Is(err, ErrReadOnly) {
		t.Errorf("NextSession on a read-only store: %v", err)
	}
	if _, err := r.db.Exec(`INSERT INTO kv VALUES ('x', 'y')`); err == nil {
		t.Error("a raw write through the read-only store succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// And once the agent stopped (WAL checkpointed and removed).
	r, err = OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if res, err := r.Verify(ctx); err != nil || !res.OK || res.Rows != 10 {
		t.Errorf("read-only verify after the writer closed: %+v %v", res, err)
	}

	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Error("OpenReadOnly created a missing file")
	}
	other := filepath.Join(t.TempDir(), "other.db")
	db := rawDB(t, other)
	if _, err := db.Exec(`CREATE TABLE x (y)`); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(other); err == nil || !strings.Contains(err.Error(), "not a faceguard store") {
		t.Errorf("OpenReadOnly of another database: %v", err)
	}
}

func TestTxAtomic(t *testing.T) {
	ctx := context.Background()
	writeEverything := func(tx *Tx) {
		if _, err := tx.Append("decision", map[string]int{"x": 1}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Enqueue(OutMsg{Topic: "t/event", Payload: []byte("e"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.RecordEvaluation(Evaluation{Status: "compliant"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Put("k", "v"); err != nil {
			t.Fatal(err)
		}
		if err := tx.PutCommand(JournalEntry{ID: "c1", Status: "accepted"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.SetOpenViolations(map[string]OpenViolation{"c": {Severity: "high"}}); err != nil {
			t.Fatal(err)
		}
	}
	assertEmpty := func(t *testing.T, s *Store) {
		t.Helper()
		var n int
		for _, table := range []string{"audit", "outbox", "evaluations", "kv", "commands", "open_violations"} {
			if err := s.db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s has %d rows after a failed transaction", table, n)
			}
		}
	}
	errBoom := errors.New("boom")

	t.Run("error", func(t *testing.T) {
		s, _, _ := openTest(t, Options{})
		err := s.Tx(ctx, func(tx *Tx) error {
			writeEverything(tx)
			return errBoom
		})
		if err != errBoom {
			t.Errorf("Tx returned %v, want fn's error unchanged", err)
		}
		assertEmpty(t, s)
		// The connection is usable, and the chain starts at 1.
		if e := appendN(t, s, nil, 1); e[0].Seq != 1 {
			t.Errorf("next seq %d", e[0].Seq)
		}
	})

	t.Run("panic", func(t *testing.T) {
		s, _, _ := openTest(t, Options{})
		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Errorf("recovered %v, want the panic to go on", p)
				}
			}()
			_ = s.Tx(ctx, func(tx *Tx) error {
				writeEverything(tx)
				panic("boom")
			})
		}()
		assertEmpty(t, s)
		if e := appendN(t, s, nil, 1); e[0].Seq != 1 {
			t.Errorf("next seq %d", e[0].Seq)
		}
	})

	t.Run("invalid_write", func(t *testing.T) {
		s, _, _ := openTest(t, Options{})
		err := s.Tx(ctx, func(tx *Tx) error {
			writeEverything(tx)
			return tx.Enqueue(OutMsg{Topic: "t", QoS: 3})
		})
		if err == nil {
			t.Fatal("qos 3 accepted")
		}
		assertEmpty(t, s)
	})

	t.Run("cancelled_context", func(t *testing.T) {
		s, _, _ := openTest(t, Options{})
		cctx, cancel := context.WithCancel(ctx)
		err := s.Tx(cctx, func(tx *Tx) error {
			writeEverything(tx)
			cancel()
			return nil
		})
		if err == nil {
			t.Fatal("commit after cancel succeeded")
		}
		assertEmpty(t, s)
	})
}

func TestSessions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	var last uint64
	for start := 0; start < 3; start++ {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			n, err := s.NextSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n != last+1 {
				t.Errorf("session %d after %d", n, last)
			}
			last = n
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if last != 6 {
		t.Errorf("last session %d", last)
	}
}

func TestOutbox(t *testing.T) {
	ctx := context.Background()
	s, _, fake := openTest(t, Options{})
	compliance := func(v string) OutMsg {
		return OutMsg{Topic: "faceguard/v1/dev/d1/compliance", Payload: []byte(v), QoS: 1, Retained: true, CoalesceKey: "compliance"}
	}
	event := func(v string) OutMsg {
		return OutMsg{Topic: "faceguard/v1/dev/d1/event", Payload: []byte(v), QoS: 1}
	}
	mustTx(t, s, func(tx *Tx) error { return tx.Enqueue(compliance("c1"), event("e1")) })
	fake.Advance(time.Second)
	mustTx(t, s, func(tx *Tx) error {
		return tx.Enqueue(compliance("c2"), event("e2"), event("e2"), // an identical event is still another event
			OutMsg{Topic: "faceguard/v1/dev/d1/state", Payload: []byte("online"), QoS: 1, Retained: true, CoalesceKey: "state"})
	})
	fake.Advance(time.Second)
	mustTx(t, s, func(tx *Tx) error {
		return tx.Enqueue(compliance("c3"), compliance("c4"), event("e3"), OutMsg{Topic: "t/empty", QoS: 0})
	})

	rows, err := s.Pending(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, string(r.Payload))
	}
	if want := []string{"e1", "e2", "e2", "online", "c4", "e3", ""}; !reflect.DeepEqual(got, want) {
		t.Fatalf("pending = %q, want %q", got, want)
	}
	c4 := rows[4]
	if c4.Topic != "faceguard/v1/dev/d1/compliance" || c4.QoS != 1 || !c4.Retained || c4.CoalesceKey != "compliance" ||
		!c4.CreatedAt.Equal(t0.Add(2*time.Second)) {
		t.Errorf("row = %+v", c4)
	}
	if e := rows[0]; e.Retained || e.CoalesceKey != "" || !e.CreatedAt.Equal(t0) {
		t.Errorf("row = %+v", e)
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].ID <= rows[i-1].ID {
			t.Errorf("ids out of order: %d after %d", rows[i].ID, rows[i-1].ID)
		}
	}

	// Paging.
	var paged []int64
	for after := int64(0); ; {
		page, err := s.Pending(ctx, 3, after)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 3 {
			t.Fatalf("page of %d", len(page))
		}
		for _, r := range page {
			paged = append(paged, r.ID)
		}
		after = page[len(page)-1].ID
	}
	if len(paged) != len(rows) {
		t.Errorf("paged %d of %d rows", len(paged), len(rows))
	}

	// Ack removes; unknown ids are fine.
	if err := s.Ack(ctx, rows[0].ID, rows[4].ID, 99999); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := s.OutboxLen(ctx); err != nil || n != len(rows)-2 {
		t.Errorf("outbox length %d %v, want %d", n, err, len(rows)-2)
	}
	rest, _ := s.Pending(ctx, 0, 0)
	if rest[0].ID != rows[1].ID || rest[3].ID != rows[5].ID {
		t.Errorf("after ack: %+v", rest)
	}

	// A newer retained message replaces one that is in flight; its late ack is harmless.
	mustTx(t, s, func(tx *Tx) error { return tx.Enqueue(compliance("c5")) })
	if err := s.Ack(ctx, rows[4].ID); err != nil {
		t.Fatal(err)
	}
	rest, _ = s.Pending(ctx, 0, 0)
	if last := rest[len(rest)-1]; string(last.Payload) != "c5" {
		t.Errorf("last = %s", last.Payload)
	}
}

func TestEvaluations(t *testing.T) {
	ctx := context.Background()
	s, _, fake := openTest(t, Options{MaxEvaluations: 5})
	var ids []int64
	for i := 1; i <= 12; i++ {
		fake.Advance(time.Minute)
		mustTx(t, s, func(tx *Tx) error {
			id, err := tx.RecordEvaluation(Evaluation{
				FactsSHA256: fmt.Sprintf("%064d", i), PolicyRevision: "builtin-1", Status: "compliant",
				Decision: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
			})
			ids = append(ids, id)
			return err
		})
	}
	got, err := s.Evaluations(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d evaluations kept, want 5", len(got))
	}
	for i, e := range got {
		n := 12 - i
		if e.ID != ids[n-1] || string(e.Decision) != fmt.Sprintf(`{"n":%d}`, n) || !e.At.Equal(t0.Add(time.Duration(n)*time.Minute)) ||
			e.FactsSHA256 != fmt.Sprintf("%064d", n) || e.PolicyRevision != "builtin-1" || e.Status != "compliant" {
			t.Errorf("evaluation %d = %+v", i, e)
		}
	}
	if got, _ := s.Evaluations(ctx, 2); len(got) != 2 || got[0].ID != ids[11] {
		t.Errorf("latest 2 = %+v", got)
	}
	// An explicit time is kept; an empty decision is null; a broken one refused.
	at := t0.Add(-time.Hour)
	mustTx(t, s, func(tx *Tx) error {
		_, err := tx.RecordEvaluation(Evaluation{At: at, Status: "error"})
		return err
	})
	if got, _ := s.Evaluations(ctx, 1); !got[0].At.Equal(at) || string(got[0].Decision) != "null" {
		t.Errorf("latest = %+v", got[0])
	}
	if err := s.Tx(ctx, func(tx *Tx) error {
		_, err := tx.RecordEvaluation(Evaluation{Decision: json.RawMessage(`{`)})
		return err
	}); err == nil {
		t.Error("invalid decision JSON accepted")
	}
}

func TestOpenViolations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	read := func(s *Store) map[string]OpenViolation {
		var got map[string]OpenViolation
		mustTx(t, s, func(tx *Tx) error {
			var err error
			got, err = tx.OpenViolations()
			return err
		})
		return got
	}
	if got := read(s); got == nil || len(got) != 0 {
		t.Errorf("initially %v", got)
	}
	first := map[string]OpenViolation{
		"consent.separate": {Severity: "high", OpenedAt: t0, EventID: "ev-1"},
		"raw.retention":    {Severity: "critical", OpenedAt: t0.Add(time.Second / 3), EventID: "ev-2"},
	}
	mustTx(t, s, func(tx *Tx) error { return tx.SetOpenViolations(first) })
	if got := read(s); !equalViolations(got, first) {
		t.Errorf("got %+v", got)
	}
	second := map[string]OpenViolation{
		"raw.retention": first["raw.retention"],
		"signage":       {Severity: "medium", OpenedAt: t0.Add(time.Hour), EventID: "ev-3"},
	}
	mustTx(t, s, func(tx *Tx) error { return tx.SetOpenViolations(second) })
	s.Close()

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := read(s); !equalViolations(got, second) {
		t.Errorf("after reopen %+v", got)
	}
	mustTx(t, s, func(tx *Tx) error { return tx.SetOpenViolations(nil) })
	if got := read(s); len(got) != 0 {
		t.Errorf("after clearing %+v", got)
	}
}

func equalViolations(a, b map[string]OpenViolation) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || v.Severity != w.Severity || v.EventID != w.EventID || !v.OpenedAt.Equal(w.OpenedAt) {
			return false
		}
	}
	return true
}

func TestCommandJournal(t *testing.T) {
	ctx := context.Background()
	s, _, fake := openTest(t, Options{})
	get := func(id string) (JournalEntry, bool) {
		var e JournalEntry
		var ok bool
		mustTx(t, s, func(tx *Tx) error {
			var err error
			e, ok, err = tx.Command(id)
			return err
		})
		return e, ok
	}
	if _, ok := get("nope"); ok {
		t.Error("found a command that was never put")
	}

	received := t0.Add(-time.Second)
	entry := JournalEntry{ID: "cmd-1", Type: "forget-subject", PayloadSHA256: strings.Repeat("ab", 32),
		ReceivedAt: received, ExpiresAt: t0.Add(30 * 24 * time.Hour), Status: "accepted"}
	mustTx(t, s, func(tx *Tx) error { return tx.PutCommand(entry) })
	got, ok := get("cmd-1")
	if !ok || got.Type != entry.Type || got.PayloadSHA256 != entry.PayloadSHA256 || !got.ReceivedAt.Equal(received) ||
		!got.ExpiresAt.Equal(entry.ExpiresAt) || got.Status != "accepted" || got.Result != nil || !got.UpdatedAt.Equal(t0) {
		t.Errorf("got %+v", got)
	}

	fake.Advance(time.Minute)
	got.Status, got.Result = "succeeded", json.RawMessage(`{"deleted":3,"receipts":["r1"]}`)
	got.ReceivedAt = fake.Now() // ignored: the first receipt time is a fact
	mustTx(t, s, func(tx *Tx) error { return tx.PutCommand(got) })
	again, _ := get("cmd-1")
	if again.Status != "succeeded" || string(again.Result) != `{"deleted":3,"receipts":["r1"]}` ||
		!again.ReceivedAt.Equal(received) || !again.UpdatedAt.Equal(fake.Now()) {
		t.Errorf("updated %+v", again)
	}

	// Prune by expiry. Sub-second expiries around the cut check that stored times order as strings.
	cut := t0.Add(time.Hour)
	for id, exp := range map[string]time.Time{
		"old":          t0,
		"just-before":  cut.Add(-time.Nanosecond),
		"at-cut":       cut,
		"half-after":   cut.Add(500 * time.Millisecond),
		"well-after":   cut.Add(24 * time.Hour),
		"other-offset": cut.Add(time.Second).In(time.FixedZone("CST", 8*3600)),
	} {
		mustTx(t, s, func(tx *Tx) error {
			return tx.PutCommand(JournalEntry{ID: id, Type: "reevaluate", ExpiresAt: exp, Status: "succeeded"})
		})
	}
	n, err := s.PruneCommands(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("pruned %d, want 2 (old, just-before)", n)
	}
	for id, want := range map[string]bool{"old": false, "just-before": false, "at-cut": true, "half-after": true,
		"well-after": true, "other-offset": true, "cmd-1": true} {
		if _, ok := get(id); ok != want {
			t.Errorf("%s present = %v, want %v", id, ok, want)
		}
	}
}

func TestKV(t *testing.T) {
	s, _, _ := openTest(t, Options{})
	mustTx(t, s, func(tx *Tx) error {
		if _, ok, err := tx.Get("config_version"); ok || err != nil {
			t.Errorf("missing key: %v %v", ok, err)
		}
		if err := tx.Put("config_version", "3"); err != nil {
			return err
		}
		if err := tx.Put("config_version", "4"); err != nil {
			return err
		}
		if v, ok, err := tx.Get("config_version"); v != "4" || !ok || err != nil {
			t.Errorf("get = %q %v %v", v, ok, err)
		}
		return tx.Put("empty", "")
	})
	mustTx(t, s, func(tx *Tx) error {
		if v, ok, _ := tx.Get("empty"); !ok || v != "" {
			t.Errorf("empty value: %q %v", v, ok)
		}
		return nil
	})
}

// TestConcurrentUse is the agent's shape: one goroutine records, another drains the outbox.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s, _, _ := openTest(t, Options{Clock: clock.Real{}})
	const n = 200
	var wg sync.WaitGroup
	var writerDone atomic.Bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer writerDone.Store(true)
		for i := 0; i < n; i++ {
			if err := s.Tx(ctx, func(tx *Tx) error {
				if _, err := tx.Append("action", i); err != nil {
					return err
				}
				return tx.Enqueue(OutMsg{Topic: "t", Payload: []byte(fmt.Sprint(i)), QoS: 1})
			}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	acked := 0
	go func() {
		defer wg.Done()
		for acked < n {
			done := writerDone.Load() // before Pending: rows committed after it are seen next time
			rows, err := s.Pending(ctx, 16, 0)
			if err != nil {
				t.Error(err)
				return
			}
			if len(rows) == 0 && done {
				t.Errorf("the writer stopped after %d messages", acked)
				return
			}
			var ids []int64
			for _, r := range rows {
				if string(r.Payload) != fmt.Sprint(acked) {
					t.Errorf("got %s, want %d", r.Payload, acked)
					return
				}
				ids = append(ids, r.ID)
				acked++
			}
			if err := s.Ack(ctx, ids...); err != nil {
				t.Error(err)
				return
			}
			if _, _, err := s.Head(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	if res, err := s.Verify(ctx); err != nil || !res.OK || res.Rows != n {
		t.Errorf("verify: %+v %v", res, err)
	}
}

// TestDiskFull caps the database with max_page_count, which SQLite reports exactly as a full disk.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	s, _, fake := openTest(t, Options{})
	appendN(t, s, fake, 3)
	var pages int
	if err := s.db.QueryRow(`PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages+8)); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3000)
	var err error
	var committed int
	for i := 0; i < 1000 && err == nil; i++ {
		err = s.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.Append("receipt", map[string]string{"pad": big}); err != nil {
				return err
			}
			return tx.Enqueue(OutMsg{Topic: "t", Payload: []byte(big), QoS: 1})
		})
		if err == nil {
			committed++
		}
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("err = %v, want ErrDiskFull", err)
	}
	t.Logf("after %d transactions: %v", committed, err)
	res, verr := s.Verify(ctx)
	if verr != nil || !res.OK || res.Rows != 3+committed {
		t.Errorf("verify after disk full: %+v %v", res, verr)
	}
	if n, _ := s.OutboxLen(ctx); n != committed {
		t.Errorf("outbox has %d rows, want %d: a failed transaction left some", n, committed)
	}
	// Space comes back: the store goes on.
	if _, err := s.db.Exec(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, fake, 1)
	if res, _ := s.Verify(ctx); !res.OK || res.Rows != 4+committed {
		t.Errorf("verify after recovery: %+v", res)
	}
}

func TestWrapErrDiskFull(t *testing.T) {
	for _, tt := range []struct {
		err  error
		full bool
	}{
		{sqlite3.Error{Code: sqlite3.ErrFull}, true},
		{fmt.Errorf("commit: %w", sqlite3.Error{Code: sqlite3.ErrIoErr, SystemErrno: syscall.ENOSPC}), true},
		{sqlite3.Error{Code: sqlite3.ErrIoErr, SystemErrno: syscall.EIO}, false},
		{sqlite3.Error{Code: sqlite3.ErrConstraint}, false},
		{errors.New("other"), false},
	} {
		err := wrapErr("append audit", tt.err)
		if errors.Is(err, ErrDiskFull) != tt.full || !errors.Is(err, tt.err) || !strings.HasPrefix(err.Error(), "store: append audit: ") {
			t.Errorf("wrapErr(%v) = %v", tt.err, err)
		}
	}
}
