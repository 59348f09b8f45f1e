package agent_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/mattn/go-sqlite3"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/fleet/filing"
	"github.com/faceguard/faceguard/internal/broker"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/internal/testpki"
	"github.com/faceguard/faceguard/wire"
)

// copyTerminal copies a fixture terminal into a fresh root; raw captures get the given ages.
func copyTerminal(t testing.TB, name string, rawAge time.Duration) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "terminals", name)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dst, "var/spool/terminal/raw")
	entries, _ := os.ReadDir(raw)
	old := time.Now().Add(-rawAge)
	for _, e := range entries {
		_ = os.Chtimes(filepath.Join(raw, e.Name()), old, old)
	}
	// status.json dates are fixed in the fixture; keep it fresh for the daemon's staleness check.
	return dst
}

type harness struct {
	root       string
	agent      *agent.Agent
	store      *store.Store
	term       *fsterm.Terminal
	brokerURL  string
	rec        *testbroker.Recorder
	ctrlPriv   ed25519.PrivateKey
	subjectKey []byte
	cancel     context.CancelFunc
	done       chan error
}

type harnessOpts struct {
	terminal device.Terminal // overrides fsterm (to inject faults)
	socket   string          // serve the local decision API here
}

func start(t testing.TB, fixture string, o harnessOpts) *harness {
	t.Helper()
	h := &harness{root: copyTerminal(t, fixture, time.Hour), subjectKey: []byte("0123456789abcdef0123456789abcdef-test")}
	b := testbroker.Mochi(t)
	h.brokerURL = b.URL()
	h.rec = testbroker.Record(t, h.brokerURL, "faceguard/v1/#")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	h.ctrlPriv = priv
	ctx := context.Background()
	eng, err := engine.New(ctx, engine.Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h.store, err = store.Open(filepath.Join(t.TempDir(), "agent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.term = fsterm.New(fsterm.Options{Root: h.root, SubjectKey: h.subjectKey})
	var term device.Terminal = h.term
	if o.terminal != nil {
		term = o.terminal
	}
	h.agent, err = agent.New(agent.Options{
		DeviceID: "dev-1", Terminal: term, Engine: eng, Store: h.store, BrokerURL: h.brokerURL,
		ControllerKey: pub, SubjectKey: h.subjectKey, EvaluateEvery: time.Hour, ReconnectJitter: time.Millisecond,
		WatchRoot: h.root, Debounce: 20 * time.Millisecond, APISocket: o.socket,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.agent.Run(runCtx) }()
	t.Cleanup(func() {
		h.stop(t)
		h.term.Close()
		h.store.Close()
	})
	return h
}

func (h *harness) stop(t testing.TB) {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("agent run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop")
	}
}

const patience = 30 * time.Second

func event(t testing.TB, m testbroker.Message) wire.Event {
	var e wire.Event
	if err := json.Unmarshal(m.Payload, &e); err != nil {
		t.Fatalf("event %s: %v", m.Payload, err)
	}
	return e
}

func isEvent(kind, control string) func(testbroker.Message) bool {
	return func(m testbroker.Message) bool {
		if !strings.HasSuffix(m.Topic, "/event") {
			return false
		}
		var e wire.Event
		return json.Unmarshal(m.Payload, &e) == nil && e.Kind == kind && (control == "" || e.Control == control || e.Action == control)
	}
}

func readControl(t testing.TB, root string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "run/faceguard/control.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", patience, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHotelRoomTurnsFaceRecognitionOff(t *testing.T) {
	h := start(t, "hotel-guest-room", harnessOpts{})
	m := h.rec.WaitFor(t, patience, "a critical FRM-13-PRIVATE-SPACE event", isEvent(wire.EventViolationOpened, "FRM-13-PRIVATE-SPACE"))
	if e := event(t, m); e.Severity != device.SeverityCritical || e.Message == nil || e.Message.ZH == "" || e.Session == 0 {
		t.Fatalf("event %+v", e)
	}
	h.rec.WaitFor(t, patience, "the action event", isEvent(wire.EventAction, device.ActionDisableFaceRecognition))
	ctrl := readControl(t, h.root)
	fr := ctrl["face_recognition"].(map[string]any)
	if fr["allowed"] != false || fr["reason"].(map[string]any)["control"] != "FRM-13-PRIVATE-SPACE" {
		t.Fatalf("control.json face_recognition = %v", fr)
	}
	if ctrl["alternatives"].(map[string]any)["required_on"] != true {
		t.Fatalf("face off without the alternatives on: %v", ctrl)
	}
	c := h.rec.WaitFor(t, patience, "a retained non-compliant summary", func(m testbroker.Message) bool {
		return strings.HasSuffix(m.Topic, "/compliance")
	})
	var comp wire.Compliance
	if err := json.Unmarshal(c.Payload, &comp); err != nil || comp.Status != device.StatusNonCompliant || comp.Counts.Critical != 1 ||
		comp.Control.FaceRecognitionAllowed || !comp.Control.AlternativesRequiredOn || comp.Audit.Seq == 0 {
		t.Fatalf("compliance %s (%v)", c.Payload, err)
	}
	h.rec.WaitFor(t, patience, "a birth", func(m testbroker.Message) bool { return strings.HasSuffix(m.Topic, "/birth") })
	h.rec.WaitFor(t, patience, "online state", func(m testbroker.Message) bool {
		return strings.HasSuffix(m.Topic, "/state") && strings.Contains(string(m.Payload), `"online"`)
	})
}

func TestStaleRawCapturesAreDeleted(t *testing.T) {
	h := start(t, "stale-raw-captures", harnessOpts{})
	spool := filepath.Join(h.root, "var/spool/terminal/raw")
	waitUntil(t, "stale captures without consent deleted", func() bool {
		entries, _ := os.ReadDir(spool)
		for _, e := range entries {
			n := e.Name()
			if e.IsDir() || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".consent") {
				continue
			}
			if _, err := os.Stat(filepath.Join(spool, n+".consent")); err != nil {
				return false
			}
		}
		return true
	})
	h.rec.WaitFor(t, patience, "a delete_raw_images action", isEvent(wire.EventAction, device.ActionDeleteRawImages))
	// A new capture is deleted once it reaches the limit, without waiting for the hourly sweep.
	fresh := filepath.Join(spool, "capture-new.jpg")
	if err := os.WriteFile(fresh, []byte("JPEG placeholder"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the new capture deleted after raw_image_max_s", func() bool {
		_, err := os.Stat(fresh)
		return errors.Is(err, os.ErrNotExist)
	})
	// Captures under separate consent stay.
	entries, _ := os.ReadDir(spool)
	kept := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".consent") {
			if _, err := os.Stat(filepath.Join(spool, strings.TrimSuffix(e.Name(), ".consent"))); err != nil {
				t.Fatalf("a consented capture was deleted: %s", e.Name())
			}
			kept++
		}
	}
	if kept == 0 {
		t.Fatal("the fixture has no consented capture to keep")
	}
}

func TestWithdrawnSubjectPurgedWithReceipt(t *testing.T) {
	h := start(t, "withdrawn-and-minor", harnessOpts{})
	m := h.rec.WaitFor(t, patience, "a receipt event", isEvent(wire.EventReceipt, ""))
	e := event(t, m)
	if e.Count != 1 || len(e.Receipts) != 1 || len(e.Receipts[0]) != 64 {
		t.Fatalf("receipt event %+v", e)
	}
	// The gallery no longer holds a withdrawn subject, and the minor is quarantined.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.root, "var/lib/terminal/gallery.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// s-0004 withdrew; s-0007 withdrew once and consented again, so stays.
	var withdrawn, kept, quarantined int
	if err := db.QueryRow(`SELECT count(*) FROM subjects WHERE subject_ref = 's-0004'`).Scan(&withdrawn); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM subjects WHERE subject_ref = 's-0007'`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the minor quarantined", func() bool {
		_ = db.QueryRow(`SELECT count(*) FROM faceguard_quarantine`).Scan(&quarantined)
		return quarantined > 0
	})
	if withdrawn != 0 || kept != 1 {
		t.Fatalf("withdrawn subject left: %d; re-consented subject kept: %d", withdrawn, kept)
	}
	// The receipt is in the audit chain, with the keyed hash only.
	var found bool
	waitUntil(t, "the receipt in the audit chain", func() bool {
		entries, err := h.store.Entries(context.Background(), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if en.Kind == "receipt" && strings.Contains(string(en.Payload), e.Receipts[0]) {
				found = true
			}
		}
		return found
	})
	if res, err := h.store.Verify(context.Background()); err != nil || !res.OK {
		t.Fatalf("audit chain: %+v, %v", res, err)
	}
}

// sendCommand signs and publishes a command as the controller would.
func (h *harness) sendCommand(t *testing.T, c wire.Command, key ed25519.PrivateKey) {
	t.Helper()
	b, err := wire.SignCommand(c, key, "ctl-test")
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, wire.CommandTopic(c.Dev, c.Type), b)
}

func (h *harness) publish(t *testing.T, topic string, payload []byte) {
	t.Helper()
	cl := testbroker.Client(t, h.brokerURL, "controller-test")
	tok := cl.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func result(t testing.TB, m testbroker.Message) wire.Result {
	var r wire.Result
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func isResult(id, status string, duplicate bool) func(testbroker.Message) bool {
	return func(m testbroker.Message) bool {
		if !strings.Contains(m.Topic, "/res/"+id) {
			return false
		}
		var r wire.Result
		return json.Unmarshal(m.Payload, &r) == nil && r.Status == status && r.Duplicate == duplicate
	}
}

func TestCommands(t *testing.T) {
	h := start(t, "residential-gate", harnessOpts{})
	h.rec.WaitFor(t, patience, "birth", func(m testbroker.Message) bool { return strings.HasSuffix(m.Topic, "/birth") })
	now := time.Now()
	cmd := func(id, typ string, args any) wire.Command {
		raw, _ := json.Marshal(args)
		return wire.Command{ID: id, Type: typ, Dev: "dev-1", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Args: raw}
	}

	t.Run("forged", func(t *testing.T) {
		_, forger, _ := ed25519.GenerateKey(rand.Reader)
		h.sendCommand(t, cmd("forged-1", wire.CmdForgetSubject, wire.ForgetArgs{SubjectHash: strings.Repeat("a", 64)}), forger)
		r := result(t, h.rec.WaitFor(t, patience, "a rejection", isResult("forged-1", wire.ResultRejected, false)))
		if !strings.Contains(r.Reason, "signature") {
			t.Fatalf("reason %q", r.Reason)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c := cmd("expired-1", wire.CmdReevaluate, struct{}{})
		c.IssuedAt, c.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
		h.sendCommand(t, c, h.ctrlPriv)
		r := result(t, h.rec.WaitFor(t, patience, "a rejection", isResult("expired-1", wire.ResultRejected, false)))
		if !strings.Contains(r.Reason, "expired") {
			t.Fatalf("reason %q", r.Reason)
		}
	})
	t.Run("other_device", func(t *testing.T) {
		c := cmd("other-1", wire.CmdReevaluate, struct{}{})
		c.Dev = "dev-2"
		b, _ := wire.SignCommand(c, h.ctrlPriv, "ctl-test")
		h.publish(t, wire.CommandTopic("dev-1", wire.CmdReevaluate), b) // replayed onto dev-1's topic
		r := result(t, h.rec.WaitFor(t, patience, "a rejection", isResult("other-1", wire.ResultRejected, false)))
		if !strings.Contains(r.Reason, "another device") {
			t.Fatalf("reason %q", r.Reason)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		b, _ := json.Marshal(cmd("unsigned-1", wire.CmdRebirth, struct{}{}))
		h.publish(t, wire.CommandTopic("dev-1", wire.CmdRebirth), b)
		r := result(t, h.rec.WaitFor(t, patience, "a rejection", isResult("unsigned-1", wire.ResultRejected, false)))
		if !strings.Contains(r.Reason, "not signed") {
			t.Fatalf("reason %q", r.Reason)
		}
	})
	t.Run("reevaluate", func(t *testing.T) {
		h.sendCommand(t, cmd("re-1", wire.CmdReevaluate, struct{}{}), h.ctrlPriv)
		h.rec.WaitFor(t, patience, "accepted", isResult("re-1", wire.ResultAccepted, false))
		r := result(t, h.rec.WaitFor(t, patience, "succeeded", isResult("re-1", wire.ResultSucceeded, false)))
		if !strings.Contains(string(r.Result), `"compliant"`) {
			t.Fatalf("result %s", r.Result)
		}
	})
	t.Run("forget_subject_once", func(t *testing.T) {
		hash := wire.SubjectHash(h.subjectKey, "s-0001")
		c := cmd("forget-1", wire.CmdForgetSubject, wire.ForgetArgs{SubjectHash: hash})
		h.sendCommand(t, c, h.ctrlPriv)
		r := result(t, h.rec.WaitFor(t, patience, "succeeded", isResult("forget-1", wire.ResultSucceeded, false)))
		var fr wire.ForgetResult
		if err := json.Unmarshal(r.Result, &fr); err != nil || fr.Deleted != 1 || len(fr.Receipts) != 1 {
			t.Fatalf("result %s (%v)", r.Result, err)
		}
		// The same command again is answered from the journal and not executed twice.
		h.sendCommand(t, c, h.ctrlPriv)
		d := result(t, h.rec.WaitFor(t, patience, "a duplicate answer", isResult("forget-1", wire.ResultSucceeded, true)))
		if string(d.Result) != string(r.Result) {
			t.Fatalf("duplicate answered %s, first %s", d.Result, r.Result)
		}
		// Not executed again: the audit chain holds exactly one receipt for it.
		entries, _ := h.store.Entries(context.Background(), 1, 0)
		receipts := 0
		for _, e := range entries {
			if e.Kind == "receipt" && strings.Contains(string(e.Payload), "forget-1") {
				receipts++
			}
		}
		if receipts != 1 {
			t.Fatalf("%d receipts for forget-1", receipts)
		}
		// The same id with other content is a replay with altered content: rejected.
		c2 := cmd("forget-1", wire.CmdForgetSubject, wire.ForgetArgs{SubjectHash: wire.SubjectHash(h.subjectKey, "s-0002")})
		h.sendCommand(t, c2, h.ctrlPriv)
		rj := result(t, h.rec.WaitFor(t, patience, "a replay rejection", isResult("forget-1", wire.ResultRejected, true)))
		if !strings.Contains(rj.Reason, "different content") {
			t.Fatalf("reason %q", rj.Reason)
		}
	})
	t.Run("broadcast_then_resent_to_this_device", func(t *testing.T) {
		// A fleet-wide forget goes out once on the broadcast topic; a device that was away gets a copy
		// signed for it later, with the same id. Answered from the journal, not run twice.
		args := wire.ForgetArgs{SubjectHash: wire.SubjectHash(h.subjectKey, "s-0002")}
		bc := cmd("bcast-1", wire.CmdForgetSubject, args)
		bc.Dev = wire.Broadcast
		b, _ := wire.SignCommand(bc, h.ctrlPriv, "ctl-test")
		h.publish(t, wire.BroadcastTopic(wire.CmdForgetSubject), b)
		first := result(t, h.rec.WaitFor(t, patience, "succeeded", isResult("bcast-1", wire.ResultSucceeded, false)))
		h.sendCommand(t, cmd("bcast-1", wire.CmdForgetSubject, args), h.ctrlPriv)
		again := result(t, h.rec.WaitFor(t, patience, "a duplicate answer", isResult("bcast-1", wire.ResultSucceeded, true)))
		if string(again.Result) != string(first.Result) || !strings.Contains(string(first.Result), `"deleted":1`) {
			t.Fatalf("first %s, again %s", first.Result, again.Result)
		}
	})
	t.Run("forget_unknown_subject", func(t *testing.T) {
		h.sendCommand(t, cmd("forget-2", wire.CmdForgetSubject, wire.ForgetArgs{SubjectHash: strings.Repeat("b", 64)}), h.ctrlPriv)
		r := result(t, h.rec.WaitFor(t, patience, "succeeded", isResult("forget-2", wire.ResultSucceeded, false)))
		if !strings.Contains(string(r.Result), `"deleted":0`) {
			t.Fatalf("result %s", r.Result)
		}
	})
	t.Run("forget_with_a_reference_in_clear", func(t *testing.T) {
		h.sendCommand(t, cmd("forget-3", wire.CmdForgetSubject, map[string]string{"subject_hash": "s-0003"}), h.ctrlPriv)
		h.rec.WaitFor(t, patience, "a rejection", isResult("forget-3", wire.ResultRejected, false))
	})
	t.Run("config", func(t *testing.T) {
		five := 5
		h.sendCommand(t, cmd("cfg-1", wire.CmdConfig, wire.ConfigArgs{EvaluateIntervalS: &five}), h.ctrlPriv)
		h.rec.WaitFor(t, patience, "succeeded", isResult("cfg-1", wire.ResultSucceeded, false))
		h.rec.WaitFor(t, patience, "a birth with config version 1", func(m testbroker.Message) bool {
			return strings.HasSuffix(m.Topic, "/birth") && strings.Contains(string(m.Payload), `"config_version":1`)
		})
	})
	t.Run("rebirth", func(t *testing.T) {
		before := len(h.rec.Messages())
		h.sendCommand(t, cmd("rb-1", wire.CmdRebirth, struct{}{}), h.ctrlPriv)
		h.rec.WaitFor(t, patience, "succeeded", isResult("rb-1", wire.ResultSucceeded, false))
		h.rec.WaitFor(t, patience, "a new birth", func(m testbroker.Message) bool {
			return strings.HasSuffix(m.Topic, "/birth") && len(h.rec.Messages()) > before
		})
	})
}

// failingTerminal is a hand-written fake: a terminal whose facts cannot be read.
type failingTerminal struct {
	*fsterm.Terminal
	fail bool
}

func (f *failingTerminal) Facts(ctx context.Context) (device.Facts, error) {
	if f.fail {
		return device.Facts{}, errors.New("terminal storage unreadable")
	}
	return f.Terminal.Facts(ctx)
}

func TestFailSafeWhenFactsCannotBeGathered(t *testing.T) {
	root := copyTerminal(t, "residential-gate", 0)
	ft := &failingTerminal{Terminal: fsterm.New(fsterm.Options{Root: root}), fail: true}
	h := start(t, "residential-gate", harnessOpts{terminal: ft})
	h.root = root
	m := h.rec.WaitFor(t, patience, "a fault event", isEvent(wire.EventFault, ""))
	if !strings.Contains(event(t, m).Detail, "terminal storage unreadable") {
		t.Fatalf("fault %s", m.Payload)
	}
	ctrl := readControl(t, root)
	if ctrl["face_recognition"].(map[string]any)["allowed"] != false || ctrl["alternatives"].(map[string]any)["required_on"] != true {
		t.Fatalf("fail-safe control.json %v", ctrl)
	}
	c := h.rec.WaitFor(t, patience, "an error summary", func(m testbroker.Message) bool {
		return strings.HasSuffix(m.Topic, "/compliance") && strings.Contains(string(m.Payload), `"status":"error"`)
	})
	if !strings.Contains(string(c.Payload), `"fail_safe":true`) {
		t.Fatalf("summary %s", c.Payload)
	}
	// Once the facts can be read again, the terminal gets face recognition back.
	ft.fail = false
	h.agent.Reevaluate("test")
	waitUntil(t, "face recognition restored", func() bool {
		return readControl(t, root)["face_recognition"].(map[string]any)["allowed"] == true
	})
}

// TestMutualTLS: the agent connects over TLS with its own client certificate to a broker that requires
// one and binds the certificate's name to the client id and topics.
func TestMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t)
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0", TLS: ca.ServerTLS(t), ControllerIDs: []string{"observer"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	observer := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("observer").
		SetTLSConfig(ca.ClientTLS(t, "observer")))
	if tok := observer.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer: %v", tok.Error())
	}
	defer observer.Disconnect(100)
	got := make(chan string, 16)
	observer.Subscribe("faceguard/v1/dev/+/state", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)

	run := func(id string, tlsCfg *tls.Config) (stop func()) {
		eng, _ := engine.New(context.Background(), engine.Options{})
		st, err := store.Open(filepath.Join(t.TempDir(), "agent.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		term := fsterm.New(fsterm.Options{Root: copyTerminal(t, "residential-gate", 0)})
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		a, err := agent.New(agent.Options{DeviceID: id, Terminal: term, Engine: eng, Store: st, BrokerURL: b.URL(), BrokerTLS: tlsCfg,
			ControllerKey: pub, EvaluateEvery: time.Hour, ReconnectJitter: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = a.Run(ctx); close(done) }()
		return func() { cancel(); <-done; term.Close(); st.Close() }
	}
	stop := run("gate-tls", ca.ClientTLS(t, "gate-tls"))
	select {
	case topic := <-got:
		if topic != "faceguard/v1/dev/gate-tls/state" {
			t.Fatalf("state on %s", topic)
		}
	case <-time.After(patience):
		t.Fatal("the agent with its certificate never reported over TLS")
	}
	stop()
	for len(got) > 0 {
		<-got
	}
	// A device presenting another device's certificate is refused by the broker: nothing arrives.
	stop = run("gate-impostor", ca.ClientTLS(t, "gate-tls"))
	select {
	case topic := <-got:
		if strings.Contains(topic, "gate-impostor") {
			t.Fatalf("the broker let a device in with another device's certificate (%s)", topic)
		}
	case <-time.After(3 * time.Second):
	}
	stop()
}

// TestSubjectsSketch: the agent reports its gallery to the filing tracker as a sketch of keyed hashes:
// the merged estimate counts its subjects, and no subject reference is in the message.
func TestSubjectsSketch(t *testing.T) {
	h := start(t, "residential-gate", harnessOpts{})
	m := h.rec.WaitFor(t, patience, "a subjects sketch", func(m testbroker.Message) bool { return strings.HasSuffix(m.Topic, "/subjects") })
	if !m.Retained && len(h.rec.Messages()) == 0 {
		t.Fatal("no retained sketch")
	}
	var s wire.Subjects
	if err := json.Unmarshal(m.Payload, &s); err != nil {
		t.Fatal(err)
	}
	n, err := filing.Merge(s.Sketch)
	if err != nil || int(n) != s.Count || s.Count == 0 {
		t.Fatalf("sketch estimates %d (%v), the device counts %d", n, err, s.Count)
	}
	if strings.Contains(string(m.Payload), "s-000") {
		t.Fatal("a subject reference is in the subjects message")
	}
}

// A device announces itself once per connection, with what its first evaluation learned: one online
// state, one birth naming its kind and category, not an empty birth followed by a full one.
func TestOneBirthPerConnection(t *testing.T) {
	h := start(t, "residential-gate", harnessOpts{})
	isTopic := func(leaf string) func(testbroker.Message) bool {
		return func(m testbroker.Message) bool { return strings.HasSuffix(m.Topic, "/"+leaf) }
	}
	h.rec.WaitFor(t, patience, "compliance", isTopic(wire.KindCompliance))
	// A command answered after the connection's own messages: everything before it has been published.
	now := time.Now()
	h.sendCommand(t, wire.Command{ID: "re-1", Type: wire.CmdReevaluate, Dev: "dev-1", IssuedAt: now,
		ExpiresAt: now.Add(time.Hour), Args: json.RawMessage(`{}`)}, h.ctrlPriv)
	h.rec.WaitFor(t, patience, "the reevaluation's answer", isResult("re-1", wire.ResultSucceeded, false))

	var births, states []wire.Birth
	for _, m := range h.rec.Messages() {
		var b wire.Birth
		switch {
		case isTopic(wire.KindBirth)(m):
			if err := json.Unmarshal(m.Payload, &b); err != nil {
				t.Fatal(err)
			}
			births = append(births, b)
		case isTopic(wire.KindState)(m):
			states = append(states, b)
		}
	}
	if len(births) != 1 || len(states) != 1 {
		t.Fatalf("%d births and %d states for one connection, want 1 and 1", len(births), len(states))
	}
	if births[0].Kind == "" || births[0].Category == "" {
		t.Errorf("the birth does not say what and where the device is: %+v", births[0])
	}
}

// TestEvaluateNow: when EvaluateNow returns, the agent's snapshot is what it made of the terminal as it
// was when the call was made.
func TestEvaluateNow(t *testing.T) {
	h := start(t, "residential-gate", harnessOpts{})
	waitUntil(t, "a first decision", func() bool { _, _, ok := h.agent.Snapshot(); return ok })
	if d, _, _ := h.agent.Snapshot(); d.Status != device.StatusCompliant {
		t.Fatalf("the residential gate starts %s", d.Status)
	}
	site := filepath.Join(h.root, "etc/faceguard/site.yaml")
	b, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(b), "category: residential_gate", "category: hotel_guest_room", 1)
	if err := os.WriteFile(site, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.agent.EvaluateNow(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	d, c, _ := h.agent.Snapshot()
	if d.Status != device.StatusNonCompliant || c.FaceRecognition.Allowed {
		t.Fatalf("after EvaluateNow: %s, face recognition allowed %v", d.Status, c.FaceRecognition.Allowed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.agent.EvaluateNow(ctx, "test"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled wait: %v", err)
	}
}
