package agent

// Fuzz targets of what reaches an agent from outside the device: any message on its command topics (a
// forged, garbled or misdirected command, or a bundle chunk), and any request to its local decision API.
// Each answers or ignores, never panics, never hangs, and never executes what is not signed for it.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/link"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
	"github.com/faceguard/faceguard/wire"
)

// fuzzNow is the agent's (fake) time: the fixture's status.json was written a minute and a half before.
var fuzzNow = time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC)

const fuzzDev = "dev-1"

// testAgent is a running agent on a copy of an example terminal, without a broker: what it would publish
// stays in its outbox, where a test reads it.
type testAgent struct {
	a      *Agent
	st     *store.Store
	db     *sql.DB // a second, read-only view of the agent's store
	root   string
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	clock  *clock.Fake
	subKey []byte
}

func startTestAgent(tb testing.TB, fixture string) *testAgent {
	tb.Helper()
	return startTestAgentOn(tb, fixture, nil)
}

// startTestAgentOn is startTestAgent with prepare run on the terminal's root before the agent starts.
func startTestAgentOn(tb testing.TB, fixture string, prepare func(root string)) *testAgent {
	tb.Helper()
	ta := &testAgent{root: tb.TempDir(), clock: clock.NewFake(fuzzNow), subKey: []byte("0123456789abcdef0123456789abcdef-fuzz")}
	if err := os.CopyFS(ta.root, os.DirFS(filepath.Join("..", "testdata", "terminals", fixture))); err != nil {
		tb.Fatal(err)
	}
	if prepare != nil {
		prepare(ta.root)
	}
	ta.pub, ta.priv, _ = ed25519.GenerateKey(rand.Reader)
	ctx := context.Background()
	eng, err := engine.New(ctx, engine.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	dbPath := filepath.Join(tb.TempDir(), "agent.db")
	if ta.st, err = store.Open(dbPath, store.Options{Clock: ta.clock}); err != nil {
		tb.Fatal(err)
	}
	if ta.db, err = sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=5000"); err != nil {
		tb.Fatal(err)
	}
	term := fsterm.New(fsterm.Options{Root: ta.root, Clock: ta.clock, DeviceID: fuzzDev, SubjectKey: ta.subKey})
	ta.a, err = New(Options{DeviceID: fuzzDev, Terminal: term, Engine: eng, Store: ta.st, Clock: ta.clock,
		ControllerKey: ta.pub, SubjectKey: ta.subKey, EvaluateEvery: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ta.a.Run(runCtx) }()
	tb.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			tb.Errorf("agent: %v", err)
		}
		ta.db.Close()
		term.Close()
		ta.st.Close()
	})
	ta.settle(tb)
	return ta
}

// settle waits until the agent's loop has nothing left to do: an evaluation asked for now is served
// after every one asked for before.
func (ta *testAgent) settle(tb testing.TB) {
	tb.Helper()
	done := make(chan evalOutcome, 1)
	ta.a.request("test", done)
	select {
	case <-done:
	case <-time.After(time.Minute):
		tb.Fatal("the agent's loop did not answer in a minute")
	}
}

// sign signs a command for the agent's pinned key.
func (ta *testAgent) sign(tb testing.TB, c wire.Command) []byte {
	tb.Helper()
	b, err := wire.SignCommand(c, ta.priv, "ctl-test")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// deliver hands a message to the agent as its MQTT link would, and reports whether it was acknowledged.
// The agent must be done with it within a bound: a handler that blocks stalls every later command.
func (ta *testAgent) deliver(tb testing.TB, topic string, payload []byte) bool {
	tb.Helper()
	acked := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ta.a.handleInbound(context.Background(), link.Inbound{Topic: topic, Payload: payload, Ack: func() { acked <- struct{}{} }})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		tb.Fatalf("the agent took more than 30 s over a message on %q", topic)
	}
	select {
	case <-acked:
		return true
	default:
		return false
	}
}

// state is what a message could change in the agent and on the terminal.
type agentState struct {
	auditSeq uint64
	outbox   int64 // highest outbox id
	journal  int
	control  []byte
	gallery  []byte
	policy   string
}

func (ta *testAgent) state(tb testing.TB) agentState {
	tb.Helper()
	var s agentState
	var err error
	if s.auditSeq, _, err = ta.st.Head(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if err := ta.db.QueryRow(`SELECT coalesce(max(id), 0) FROM outbox`).Scan(&s.outbox); err != nil {
		tb.Fatal(err)
	}
	if err := ta.db.QueryRow(`SELECT count(*) FROM commands`).Scan(&s.journal); err != nil {
		tb.Fatal(err)
	}
	s.control, _ = os.ReadFile(filepath.Join(ta.root, filepath.FromSlash(fsterm.ControlPath)))
	s.gallery, _ = os.ReadFile(filepath.Join(ta.root, filepath.FromSlash(fsterm.GalleryPath)))
	s.policy = ta.a.eng.Info().Revision
	return s
}

// newOutbox returns what the agent queued since before.
func (ta *testAgent) newOutbox(tb testing.TB, before agentState) []store.OutRow {
	tb.Helper()
	rows, err := ta.st.Pending(context.Background(), 0, before.outbox)
	if err != nil {
		tb.Fatal(err)
	}
	return rows
}

// waitFinal waits until the journal has a final answer for a command id.
func (ta *testAgent) waitFinal(tb testing.TB, id string) string {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var status string
		err := ta.db.QueryRow(`SELECT status FROM commands WHERE id = ?`, id).Scan(&status)
		if err == nil && status != wire.ResultAccepted {
			return status
		}
		if time.Now().After(deadline) {
			tb.Fatalf("command %s: no final answer in a minute (%q, %v)", id, status, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fuzzCommand(id, typ, dev string, issued time.Time, args string) wire.Command {
	return wire.Command{ID: id, Type: typ, Dev: dev, IssuedAt: issued, ExpiresAt: issued.Add(time.Hour), Args: json.RawMessage(args)}
}

// FuzzInboundMessage: any message on any topic the agent could receive. Unless it is a command signed by
// the controller for this device and still valid, the agent rejects it (one audit row, at most one
// "rejected" answer) or, for a chunk, drops it — and nothing else changes: no journal entry, no action,
// no evaluation, no change to the terminal.
func FuzzInboundMessage(f *testing.F) {
	ta := startTestAgent(f, "residential-gate")
	cmdTopic := func(typ string) string { return wire.CommandTopic(fuzzDev, typ) }
	signed := func(c wire.Command) []byte { return ta.sign(f, c) }
	// Signed by the right key, and refused all the same.
	f.Add(cmdTopic(wire.CmdReevaluate), signed(fuzzCommand("other-dev", wire.CmdReevaluate, "dev-2", fuzzNow, `{}`)))
	f.Add(cmdTopic(wire.CmdRebirth), signed(fuzzCommand("expired", wire.CmdRebirth, fuzzDev, fuzzNow.Add(-2*time.Hour), `{}`)))
	f.Add(cmdTopic(wire.CmdConfig), signed(fuzzCommand("future", wire.CmdConfig, fuzzDev, fuzzNow.Add(time.Hour), `{"heartbeat_s":60}`)))
	f.Add(cmdTopic(wire.CmdReevaluate), signed(fuzzCommand("star-on-dev", wire.CmdReevaluate, wire.Broadcast, fuzzNow, `{}`)))
	f.Add(cmdTopic(wire.CmdReevaluate), signed(fuzzCommand("type-swap", wire.CmdRebirth, fuzzDev, fuzzNow, `{}`)))
	f.Add(wire.BroadcastTopic(wire.CmdRebirth), signed(fuzzCommand("dev-on-bcast", wire.CmdRebirth, fuzzDev, fuzzNow, `{}`)))
	f.Add(wire.CommandTopic("dev-2", wire.CmdForgetSubject), signed(fuzzCommand("forget-2", wire.CmdForgetSubject, "dev-2", fuzzNow,
		`{"subject_hash":"`+wire.SubjectHash(ta.subKey, "s-0001")+`"}`)))
	// And one that is valid: the agent runs it (the fuzzer may find others only by reformatting it).
	f.Add(cmdTopic(wire.CmdRebirth), signed(fuzzCommand("valid-1", wire.CmdRebirth, fuzzDev, fuzzNow, `{}`)))
	// Forged, unsigned, garbled, misdirected.
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	forged, _ := wire.SignCommand(fuzzCommand("forged", wire.CmdForgetSubject, fuzzDev, fuzzNow, `{"subject_hash":"`+strings.Repeat("a", 64)+`"}`), forger, "ctl-test")
	f.Add(cmdTopic(wire.CmdForgetSubject), forged)
	bare, _ := json.Marshal(fuzzCommand("bare", wire.CmdRebirth, fuzzDev, fuzzNow, `{}`))
	f.Add(cmdTopic(wire.CmdRebirth), bare)
	f.Add(cmdTopic(wire.CmdRebirth), []byte(`{"payload":"`+base64.RawURLEncoding.EncodeToString(bare)+`","kid":"x","sig":"`+strings.Repeat("A", 86)+`"}`))
	f.Add("faceguard/v1/cmd/dev-1/req/format-disk", []byte(`{"payload":"e30","sig":"AAAA"}`))
	f.Add(cmdTopic(wire.CmdConfig), []byte(`{"payload":"","sig":""}`))
	f.Add(cmdTopic(wire.CmdConfig), []byte("{"))
	f.Add(cmdTopic(wire.CmdConfig), []byte("null"))
	f.Add(cmdTopic(wire.CmdConfig), []byte(""))
	f.Add(wire.StateTopic(fuzzDev), []byte(`{"v":1}`))
	f.Add("faceguard/v1/cmd/dev-1/bundle/r1/0", []byte("chunk"))
	f.Add("faceguard/v1/cmd/dev-1/bundle/r1/-1", []byte("chunk"))
	f.Add("faceguard/v1/cmd/dev-2/bundle/r1/99999999999999999999", []byte{})

	// An oversized command (not a seed: the fuzzer would spend its time shrinking it) is refused as such.
	before := ta.state(f)
	if !ta.deliver(f, cmdTopic(wire.CmdConfig), bytes.Repeat([]byte("["), wire.MaxPayload+1)) {
		f.Fatal("an oversized command was not acknowledged")
	}
	if rows := ta.newOutbox(f, before); len(rows) != 0 {
		f.Fatalf("an oversized command with no id was answered: %s", rows[0].Payload)
	}
	if after := ta.state(f); after.auditSeq != before.auditSeq+1 || after.journal != before.journal {
		f.Fatal("an oversized command was not recorded as rejected, or entered the journal")
	}

	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		_, _, verr := wire.VerifyCommand(payload, topic, fuzzDev, ta.pub, ta.clock.Now())
		_, _, _, chunkErr := wire.ParseChunkTopic(topic)
		before := ta.state(t)
		acked := ta.deliver(t, topic, payload)
		if !acked {
			t.Fatal("the message was not acknowledged: the broker would deliver it again and again")
		}
		switch {
		case chunkErr == nil:
			// No bundle is being fetched: dropped, and nothing recorded.
			if after := ta.state(t); after.auditSeq != before.auditSeq || after.outbox != before.outbox || after.journal != before.journal {
				t.Fatalf("a chunk nobody asked for changed the agent: %+v → %+v", before, after)
			}
		case verr == nil:
			// Signed for this device and valid: it runs once. Wait for its answer so that it does not
			// overlap the next input.
			var c wire.Command
			var sc wire.SignedCommand
			_ = json.Unmarshal(payload, &sc)
			raw, _ := base64.RawURLEncoding.DecodeString(sc.Payload)
			_ = json.Unmarshal(raw, &c)
			ta.waitFinal(t, c.ID)
			ta.settle(t)
		default:
			after := ta.state(t)
			if after.journal != before.journal {
				t.Fatalf("a refused command (%v) entered the journal", verr)
			}
			if !bytes.Equal(after.control, before.control) || !bytes.Equal(after.gallery, before.gallery) || after.policy != before.policy {
				t.Fatalf("a refused command (%v) changed the terminal or the policy", verr)
			}
			entries, err := ta.st.Entries(context.Background(), before.auditSeq+1, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Kind != "command" || !bytes.Contains(entries[0].Payload, []byte(`"status":"rejected"`)) {
				t.Fatalf("a refused command (%v) left %d audit rows: %+v", verr, len(entries), entries)
			}
			rows := ta.newOutbox(t, before)
			if len(rows) > 1 {
				t.Fatalf("a refused command queued %d messages", len(rows))
			}
			for _, r := range rows {
				var res wire.Result
				if err := json.Unmarshal(r.Payload, &res); err != nil || res.Status != wire.ResultRejected || res.Reason == "" ||
					r.Topic != wire.ResultTopic(fuzzDev, res.ID) || len(r.Payload) > wire.MaxPayload {
					t.Fatalf("a refused command was answered %s on %s (%v)", r.Payload, r.Topic, err)
				}
			}
		}
	})
}

// fuzzBundle is a signed offer split into chunks, as the controller serves it.
type fuzzBundle struct {
	offer  wire.BundleOfferArgs
	chunks [][]byte
}

func newFuzzBundle(data []byte, rev string) fuzzBundle {
	sum := sha256.Sum256(data)
	b := fuzzBundle{offer: wire.BundleOfferArgs{Revision: rev, Size: len(data), SHA256: hex.EncodeToString(sum[:]), ChunkSize: wire.ChunkSize}}
	for i := 0; i < len(data); i += wire.ChunkSize {
		c := data[i:min(i+wire.ChunkSize, len(data))]
		cs := sha256.Sum256(c)
		b.offer.ChunkSHA256 = append(b.offer.ChunkSHA256, hex.EncodeToString(cs[:]))
		b.chunks = append(b.chunks, c)
	}
	return b
}

// FuzzBundleChunk: chunks of any content, number and revision arriving during a fetch. The fetch keeps a
// chunk only where the signed offer lists its hash, and keeps it as it came.
func FuzzBundleChunk(f *testing.F) {
	ta := startTestAgent(f, "residential-gate")
	data := make([]byte, 2*wire.ChunkSize+100)
	_, _ = rand.Read(data)
	b := newFuzzBundle(data, "2026.11.24-7")
	if err := validOffer(b.offer); err != nil {
		f.Fatal(err)
	}
	fetch := &bundleFetch{offer: b.offer, chunks: make([][]byte, len(b.chunks)), got: make(chan struct{}, 1)}
	ta.a.cmdMu.Lock()
	ta.a.fetches[b.offer.Revision] = fetch
	ta.a.cmdMu.Unlock()
	for i, c := range b.chunks {
		f.Add(wire.ChunkTopic(fuzzDev, b.offer.Revision, i), c)
		f.Add(wire.ChunkTopic(fuzzDev, b.offer.Revision, (i+1)%len(b.chunks)), c) // the right bytes at the wrong place
		f.Add(wire.ChunkTopic(fuzzDev, "2026.11.24-8", i), c)                     // of another revision
		f.Add(wire.ChunkTopic(fuzzDev, b.offer.Revision, i), c[:len(c)-1])
	}
	f.Add(wire.ChunkTopic(fuzzDev, b.offer.Revision, len(b.chunks)), []byte{})
	f.Add(wire.ChunkTopic(fuzzDev, b.offer.Revision, 0), make([]byte, wire.ChunkSize+1))
	f.Add("faceguard/v1/cmd/dev-1/bundle/2026.11.24-7/00", b.chunks[0])
	f.Add("faceguard/v1/cmd/dev-1/bundle/2026.11.24-7/+0", b.chunks[0])
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		_, rev, n, err := wire.ParseChunkTopic(topic)
		if err != nil {
			return // not a chunk: a command, FuzzInboundMessage's
		}
		fetch.mu.Lock()
		clear(fetch.chunks)
		fetch.mu.Unlock()
		select {
		case <-fetch.got:
		default:
		}
		ta.deliver(t, topic, payload)
		sum := sha256.Sum256(payload)
		want := rev == b.offer.Revision && n < len(b.chunks) && hex.EncodeToString(sum[:]) == b.offer.ChunkSHA256[n]
		fetch.mu.Lock()
		defer fetch.mu.Unlock()
		for i, c := range fetch.chunks {
			switch {
			case want && i == n:
				if !bytes.Equal(c, payload) || !bytes.Equal(c, b.chunks[i]) {
					t.Fatalf("chunk %d kept as %d bytes, not the %d that came", i, len(c), len(payload))
				}
			case c != nil:
				t.Fatalf("chunk %d kept from a message on %s (%d bytes) that does not match the offer", i, topic, len(payload))
			}
		}
	})
}

// FuzzLocalAPI: any body to the two endpoints of the local decision API. The answer is JSON, 2xx or 4xx
// (a facts document that validates is always decided), within a bound, and asking changes nothing.
func FuzzLocalAPI(f *testing.F) {
	ta := startTestAgent(f, "residential-gate")
	if _, _, ok := ta.a.Snapshot(); !ok {
		f.Fatal("no first evaluation")
	}
	h := ta.a.NewAPIHandler()
	facts, err := os.ReadFile(filepath.Join("..", "device", "testdata", "facts", "compliant_gate.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"", "{}", "null", "[]", `{"input":null}`, `{"input":{}}`, `{"input":` + string(facts) + `}`,
		`{"input":` + strings.Replace(string(facts), `"residential_gate"`, `"hotel_guest_room"`, 1) + `}`,
		`{"input":{"subject_ref":"s-0001"}}`, `{"input":{"subject_ref":"s-9999"}}`, `{"input":{"subject_ref":""}}`,
		`{"input":{"subject_ref":"s-0001","extra":1}}`, `{"input":{"subject_ref":"` + strings.Repeat("s", 300) + `"}}`,
		`{"input":{"subject_ref":"s-0001"}} trailing`, `{"input":"\ud800"}`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	walkFixtureFacts(f)
	// The seeds reach the decision: a facts document is decided, a known subject is matched. An oversized
	// body (not a seed: the fuzzer would spend its time shrinking a megabyte) is refused as such.
	for _, tc := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/v1/data/faceguard/decision", `{"input":` + string(facts) + `}`, http.StatusOK, `"result":{"status":"compliant"`},
		{"/v1/data/faceguard/match", `{"input":{"subject_ref":"s-0001"}}`, http.StatusOK, `"result":{"allow":true`},
		{"/v1/data/faceguard/decision", `{"input":` + strings.Repeat(" ", maxAPIBody) + `{}}`, http.StatusRequestEntityTooLarge, `"code":"invalid_parameter"`},
		{"/v1/data/faceguard/match", `{"input":{"subject_ref":"` + strings.Repeat("s", maxMatchBody) + `"}}`, http.StatusBadRequest, `"code":"invalid_parameter"`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(tc.body)))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			f.Fatalf("POST %s: %d %.200s", tc.path, rec.Code, rec.Body)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := ta.state(t)
		snap := ta.a.current.Load()
		for _, path := range []string{"/v1/data/faceguard/decision", "/v1/data/faceguard/match"} {
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				defer close(done)
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("POST %s did not answer in 30 s", path)
			}
			var out map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("POST %s: %d, not JSON: %q", path, rec.Code, rec.Body.Bytes())
			}
			switch {
			case rec.Code == http.StatusOK:
				if _, ok := out["result"]; !ok {
					t.Fatalf("POST %s: 200 without a result: %s", path, rec.Body)
				}
			case rec.Code >= 400 && rec.Code < 500:
				if _, ok := out["code"]; !ok || len(out["message"]) < 3 {
					t.Fatalf("POST %s: %d without a code and a message: %s", path, rec.Code, rec.Body)
				}
			default:
				t.Fatalf("POST %s: %d %s", path, rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("POST %s: Content-Type %q", path, ct)
			}
		}
		after := ta.state(t)
		if ta.a.current.Load() != snap || after.auditSeq != before.auditSeq || after.outbox != before.outbox ||
			!bytes.Equal(after.control, before.control) || !bytes.Equal(after.gallery, before.gallery) {
			t.Fatal("a question to the local API changed the agent or the terminal")
		}
	})
}

// walkFixtureFacts adds, as decision requests, the facts of every example terminal as fsterm reads them.
func walkFixtureFacts(f *testing.F) {
	dirs, _ := fs.Glob(os.DirFS(filepath.Join("..", "testdata", "terminals")), "*")
	for _, d := range dirs {
		root := f.TempDir()
		if err := os.CopyFS(root, os.DirFS(filepath.Join("..", "testdata", "terminals", d))); err != nil {
			f.Fatal(err)
		}
		term := fsterm.New(fsterm.Options{Root: root, Clock: clock.NewFake(fuzzNow)})
		facts, err := term.Facts(context.Background())
		term.Close()
		if err != nil {
			continue
		}
		b, _ := json.Marshal(map[string]any{"input": facts})
		f.Add(b)
	}
}
