package fleet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/filing"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/wire"
)

// fuzzKinds are the device-side topics of one device; the fuzzer picks one by index.
var fuzzKinds = []string{wire.KindState, wire.KindBirth, wire.KindCompliance, wire.KindSubjects, wire.KindEvent, wire.KindResult, wire.KindBundleGet}

func fuzzTopic(kind byte, cmdID string) string {
	switch k := fuzzKinds[int(kind)%len(fuzzKinds)]; k {
	case wire.KindResult:
		return wire.ResultTopic("gate-1", cmdID)
	case wire.KindBundleGet:
		return wire.BundleGetTopic("gate-1")
	default:
		return wire.Root + "/dev/gate-1/" + k
	}
}

// FuzzControllerApply: any payload on each kind of device topic, applied to a real store on SQLite. The
// controller applies it, or refuses it as malformed (wire.ErrMessage: acknowledged and dropped) and the
// store is as it was. Any other error is a message the controller would leave unacknowledged, which the
// broker delivers again, and again.
func FuzzControllerApply(f *testing.F) {
	ctx := context.Background()
	k := newKeys(f)
	b := testbroker.Mochi(f)
	dbPath := filepath.Join(f.TempDir(), "fleet.db")
	st, err := sqlstore.Open(ctx, dbPath, sqlstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	c, err := fleet.NewController(fleet.Options{Store: st, BrokerURL: b.URL(), ClientID: "ctl-fuzz", CommandKey: k.cmdPriv, SubjectKey: k.subject})
	if err != nil {
		f.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(c.Close)
	// A device, a command waiting for its answer, and a bundle it may pull.
	t0 := time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)
	env := func(typ string, seq uint64) wire.Envelope {
		return wire.Envelope{V: wire.Version, Type: typ, Dev: "gate-1", Session: 1, Seq: seq, TS: t0}
	}
	birth := wire.Birth{Envelope: env(wire.TypeBirth, 1), Site: "s", Kind: "door_terminal", Category: "residential_gate", Agent: "test",
		Bundle: wire.BundleInfo{Revision: "builtin"}, Capabilities: wire.CommandTypes}
	if _, err := c.ApplyMessage(ctx, wire.BirthTopic("gate-1"), mustJSON(f, birth)); err != nil {
		f.Fatal(err)
	}
	cmd, err := c.Issue(ctx, fleet.IssueRequest{Type: wire.CmdReevaluate, Target: "gate-1", Args: json.RawMessage(`{}`)})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := c.OfferBundle(ctx, "2026.12.01-1", bytes.Repeat([]byte("bundle"), 30000), "gate-1", "fuzz"); err != nil {
		f.Fatal(err)
	}
	sk := filing.NewSketch()
	sk.Add(wire.SubjectHash(k.subject, "s-0001"))
	sketch, _ := sk.MarshalBinary()
	seeds := []any{
		wire.State{Envelope: env(wire.TypeState, 2), State: wire.StateOnline},
		wire.State{Envelope: env(wire.TypeState, 0), State: wire.StateOffline, Reason: "lwt"},
		birth,
		wire.Compliance{Envelope: env(wire.TypeCompliance, 3), Status: "non_compliant", EvaluatedAt: t0, Counts: wire.Counts{High: 1},
			Failing: []wire.Failing{{Control: "FRM-10-ALTERNATIVE", Severity: "high"}}, Actions: []string{"enable_alternatives"},
			Audit: wire.AuditHead{Seq: 9, Hash: strings.Repeat("ab", 32)}},
		wire.Subjects{Envelope: env(wire.TypeSubjects, 4), Count: 1, Sketch: sketch},
		wire.Event{Envelope: env(wire.TypeEvent, 5), EventID: "gate-1-1-5", Kind: wire.EventViolationOpened, At: t0, Control: "FRM-10-ALTERNATIVE",
			Severity: "high", Articles: []string{"FRM Art. 10"}, Message: &wire.Text{ZH: "无替代方式", EN: "no alternative"}},
		wire.Event{Envelope: env(wire.TypeEvent, 6), EventID: "gate-1-1-6", Kind: wire.EventReceipt, At: t0, Action: "forget_subject",
			Count: 1, Receipts: []string{strings.Repeat("cd", 32)}},
		wire.Result{Envelope: env(wire.TypeResult, 7), ID: cmd.ID, Command: wire.CmdReevaluate, Status: wire.ResultSucceeded, Result: json.RawMessage(`{"status":"compliant"}`)},
		wire.BundleGet{Envelope: env(wire.TypeBundleGet, 8), Command: "c-1", Revision: "2026.12.01-1", From: 0, Count: 2},
	}
	for _, s := range seeds {
		data := mustJSON(f, s)
		var e wire.Envelope
		_ = json.Unmarshal(data, &e)
		for i, kind := range fuzzKinds {
			if kindType(kind) == e.Type {
				f.Add(byte(i), data)
			}
		}
	}
	for i := range fuzzKinds {
		for _, junk := range []string{"", "{}", "null", "[]", `{"v":1,"type":"state","dev":"gate-1","ts":"2026-11-24T02:00:00Z","session":18446744073709551615}`,
			`{"v":1,"type":"event","dev":"gate-1","ts":"0001-01-01T00:00:01Z","event_id":"","seq":9223372036854775807}`,
			`{"v":1,"type":"res","dev":"gate-2","ts":"2026-11-24T02:00:00Z"}`} {
			f.Add(byte(i), []byte(junk))
		}
	}

	f.Fuzz(func(t *testing.T, kind byte, payload []byte) {
		before := storeDigest(t, dbPath)
		_, err := c.ApplyMessage(ctx, fuzzTopic(kind, cmd.ID), payload)
		switch {
		case err == nil:
		case errors.Is(err, wire.ErrMessage):
			if after := storeDigest(t, dbPath); after != before {
				t.Fatalf("a refused message (%v) changed the store", err)
			}
		default:
			t.Fatalf("neither applied nor refused as malformed (the broker would deliver it forever): %v", err)
		}
	})
}

// kindType is the envelope type of a kind of device topic.
func kindType(kind string) string {
	switch kind {
	case wire.KindResult:
		return wire.TypeResult
	case wire.KindBundleGet:
		return wire.TypeBundleGet
	}
	return kind
}

// storeDigest is a hash of every row of every table of the controller's SQLite store.
func storeDigest(t testing.TB, path string) [32]byte {
	t.Helper()
	dump := dumpSQLite(t, path)
	names := make([]string, 0, len(dump))
	for n := range dump {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write(dump[n])
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
