package main

// End-to-end tests of the real faceguard-agent binary, against a real broker (embedded mochi-mqtt and a
// Mosquitto process from Debian), on real SQLite files and fixture terminals.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/internal/atomicfile"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/wire"
)

var (
	agentBin   string
	buildOnce  sync.Once
	buildError error
)

// binary builds faceguard-agent once for all tests of this package.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "faceguard-agent-e2e")
		if err != nil {
			buildError = err
			return
		}
		agentBin = filepath.Join(dir, "faceguard-agent")
		out, err := exec.Command("go", "build", "-o", agentBin, ".").CombinedOutput()
		if err != nil {
			buildError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildError != nil {
		t.Fatal(buildError)
	}
	return agentBin
}

const e2ePatience = 60 * time.Second

// node is one terminal with its agent process.
type node struct {
	t        testing.TB
	dev      string
	root     string
	state    string
	config   string
	ctrlPriv ed25519.PrivateKey
	cmd      *exec.Cmd
	log      *bytes.Buffer
	exited   chan struct{}
}

func newNode(t testing.TB, fixture, brokerURL, dev string) *node {
	t.Helper()
	n := &node{t: t, dev: dev, root: copyFixture(t, fixture), state: t.TempDir()}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	n.ctrlPriv = priv
	der, _ := x509.MarshalPKIXPublicKey(pub)
	keys := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(keys, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctrlKey := write("controller.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	subjectKey := write("subject.key", []byte("e2e-subject-key-0123456789abcdef0123"))
	n.config = write("agent.yaml", []byte(fmt.Sprintf(`device_id: %s
root: %s
state_dir: %s
broker:
  url: %s
keys:
  controller_public_key: %s
  subject_key: %s
intervals:
  evaluate: 1h
  debounce: 20ms
api:
  socket: %s
log:
  level: debug
  format: text
`, dev, n.root, n.state, brokerURL, ctrlKey, subjectKey, filepath.Join(n.state, "agent.sock"))))
	return n
}

func copyFixture(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join("..", "..", "testdata", "terminals", name)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A live terminal keeps status.json fresh; the fixture's date is long past the daemon's staleness limit.
	status := filepath.Join(dst, "var/lib/terminal/status.json")
	if b, err := os.ReadFile(status); err == nil {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			m["updated_at"] = time.Now().Format(time.RFC3339)
			b, _ = json.Marshal(m)
			_ = os.WriteFile(status, b, 0o644)
		}
	}
	old := time.Now().Add(-time.Hour)
	entries, _ := os.ReadDir(filepath.Join(dst, "var/spool/terminal/raw"))
	for _, e := range entries {
		_ = os.Chtimes(filepath.Join(dst, "var/spool/terminal/raw", e.Name()), old, old)
	}
	return dst
}

func (n *node) start() {
	n.t.Helper()
	n.log = &bytes.Buffer{}
	n.cmd = exec.Command(binary(n.t), "run", "--config", n.config)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(n.cmd, n.exited)
	n.t.Cleanup(func() {
		n.kill()
		if n.t.Failed() {
			n.t.Logf("agent log:\n%s", n.log.String())
		}
	})
}

// kill ends the agent with SIGKILL: no clean shutdown, no flush.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// stop ends the agent with SIGTERM and requires a clean exit.
func (n *node) stop() {
	n.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(e2ePatience):
		n.t.Fatal("agent did not stop on SIGTERM")
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Fatalf("agent exited %d after SIGTERM", code)
	}
	n.cmd = nil
}

// auditExport runs `faceguard-agent audit export` and verifies the chain with `audit verify`.
func (n *node) auditExport() []auditLine {
	n.t.Helper()
	db := filepath.Join(n.state, "agent.db")
	if out, err := exec.Command(binary(n.t), "audit", "verify", "--db", db).CombinedOutput(); err != nil {
		n.t.Fatalf("audit verify: %v\n%s", err, out)
	}
	out, err := exec.Command(binary(n.t), "audit", "export", "--db", db).Output()
	if err != nil {
		n.t.Fatalf("audit export: %v", err)
	}
	var lines []auditLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			n.t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

type auditLine struct {
	Seq     uint64          `json:"seq"`
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

func readControlFile(t *testing.T, root string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "run/faceguard/control.json"))
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func eventMatch(dev, kind, control string) func(testbroker.Message) bool {
	return func(m testbroker.Message) bool {
		var e wire.Event
		return m.Topic == wire.EventTopic(dev) && json.Unmarshal(m.Payload, &e) == nil &&
			e.Kind == kind && (control == "" || e.Control == control)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2ePatience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", e2ePatience, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type brokerCase struct {
	name  string
	start func(t *testing.T) string
}

var brokers = []brokerCase{
	{"mochi", func(t *testing.T) string { return testbroker.Mochi(t).URL() }},
	{"mosquitto", func(t *testing.T) string { return testbroker.StartMosquitto(t, testbroker.MosquittoOptions{}).URL() }},
}

// TestAgentBinary runs the agent binary on the example terminals of the issue, against both brokers.
func TestAgentBinary(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			url := b.start(t)
			rec := testbroker.Record(t, url, "faceguard/v1/#")

			t.Run("hotel_room_face_off", func(t *testing.T) {
				n := newNode(t, "hotel-guest-room", url, "hotel-"+b.name)
				n.start()
				rec.WaitFor(t, e2ePatience, "a critical private-space event", func(m testbroker.Message) bool {
					var e wire.Event
					return eventMatch(n.dev, wire.EventViolationOpened, "FRM-13-PRIVATE-SPACE")(m) &&
						json.Unmarshal(m.Payload, &e) == nil && e.Severity == "critical"
				})
				eventually(t, "control.json with face recognition off", func() bool {
					c := readControlFile(t, n.root)
					return c != nil && c["face_recognition"].(map[string]any)["allowed"] == false &&
						c["alternatives"].(map[string]any)["required_on"] == true
				})
				n.stop()
			})

			t.Run("stale_raw_capture_deleted", func(t *testing.T) {
				n := newNode(t, "stale-raw-captures", url, "raw-"+b.name)
				stale := filepath.Join(n.root, "var/spool/terminal/raw/20261124-063000-0001.jpg")
				n.start()
				eventually(t, "the stale capture deleted", func() bool {
					_, err := os.Stat(stale)
					return os.IsNotExist(err)
				})
				n.stop()
			})

			t.Run("withdrawn_subject_receipt", func(t *testing.T) {
				n := newNode(t, "withdrawn-and-minor", url, "withdrawn-"+b.name)
				n.start()
				m := rec.WaitFor(t, e2ePatience, "a deletion receipt", eventMatch(n.dev, wire.EventReceipt, ""))
				var e wire.Event
				_ = json.Unmarshal(m.Payload, &e)
				if len(e.Receipts) != 1 {
					t.Fatalf("receipt event %s", m.Payload)
				}
				n.stop()
				found := false
				for _, l := range n.auditExport() {
					if l.Kind == "receipt" && strings.Contains(string(l.Payload), e.Receipts[0]) {
						found = true
					}
				}
				if !found {
					t.Fatal("the receipt reported on MQTT is not in the audit chain")
				}
			})

			t.Run("forged_command_rejected", func(t *testing.T) {
				n := newNode(t, "residential-gate", url, "forged-"+b.name)
				n.start()
				rec.WaitFor(t, e2ePatience, "birth", func(m testbroker.Message) bool { return m.Topic == wire.BirthTopic(n.dev) })
				_, forger, _ := ed25519.GenerateKey(rand.Reader)
				now := time.Now()
				id := "forged-" + b.name
				payload, _ := wire.SignCommand(wire.Command{ID: id, Type: wire.CmdForgetSubject, Dev: n.dev,
					IssuedAt: now, ExpiresAt: now.Add(time.Hour), Args: json.RawMessage(`{"subject_hash":"` + strings.Repeat("0", 64) + `"}`)}, forger, "x")
				cl := testbroker.Client(t, url, "forger")
				cl.Publish(wire.CommandTopic(n.dev, wire.CmdForgetSubject), 1, false, payload).WaitTimeout(5 * time.Second)
				m := rec.WaitFor(t, e2ePatience, "a rejection", func(m testbroker.Message) bool {
					return strings.HasSuffix(m.Topic, "/res/"+id) && strings.Contains(string(m.Payload), `"rejected"`)
				})
				if !strings.Contains(string(m.Payload), "signature") {
					t.Fatalf("rejection %s", m.Payload)
				}
				n.stop()
			})

			t.Run("sigterm_publishes_offline", func(t *testing.T) {
				n := newNode(t, "residential-gate", url, "term-"+b.name)
				n.start()
				rec.WaitFor(t, e2ePatience, "online", stateIs(n.dev, "online", ""))
				n.stop()
				rec.WaitFor(t, e2ePatience, "offline (shutdown)", stateIs(n.dev, "offline", "shutdown"))
			})
		})
	}
}

func stateIs(dev, state, reason string) func(testbroker.Message) bool {
	return func(m testbroker.Message) bool {
		var s wire.State
		return m.Topic == wire.StateTopic(dev) && json.Unmarshal(m.Payload, &s) == nil && s.State == state &&
			(reason == "" || s.Reason == reason)
	}
}

// toggler flips a coercive prompt in status.json on and off, so the agent opens and closes
// FRM-12-NO-COERCION: a stream of events whose true history is in the agent's audit chain.
type toggler struct {
	t    *testing.T
	path string
	base map[string]any
	on   bool
}

func newToggler(t *testing.T, root string) *toggler {
	p := filepath.Join(root, "var/lib/terminal/status.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &toggler{t: t, path: p, base: m}
}

func (g *toggler) flip() {
	g.on = !g.on
	prompts := []any{"请刷脸或刷卡通行"}
	if g.on {
		prompts = []any{"必须刷脸通行 / face recognition required"}
	}
	g.base["prompts"] = prompts
	g.base["updated_at"] = time.Now().Format(time.RFC3339)
	b, _ := json.Marshal(g.base)
	if err := atomicfile.WriteFile(g.path, b, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

// expectedTransitions reads, from the audit chain, every time FRM-12-NO-COERCION appeared in or left
// the recorded decisions: exactly the events the agent must have published.
func expectedTransitions(t *testing.T, lines []auditLine, control string) []string {
	var out []string
	open := false
	for _, l := range lines {
		if l.Kind != "decision" {
			continue
		}
		var d struct {
			Fault    string `json:"fault"`
			Decision struct {
				Violations []struct {
					Control string `json:"control"`
				} `json:"violations"`
			} `json:"decision"`
		}
		if err := json.Unmarshal(l.Payload, &d); err != nil {
			t.Fatal(err)
		}
		if d.Fault != "" {
			continue // a fail-safe is not a judgement: violations neither open nor close
		}
		now := slices.ContainsFunc(d.Decision.Violations, func(v struct {
			Control string `json:"control"`
		}) bool {
			return v.Control == control
		})
		if now != open {
			if now {
				out = append(out, "opened")
			} else {
				out = append(out, "closed")
			}
			open = now
		}
	}
	return out
}

// receivedTransitions dedupes the recorded events by (dev, session, seq) and returns the control's
// transitions in the agent's order, and how many duplicates were dropped.
func receivedTransitions(t *testing.T, msgs []testbroker.Message, control string) ([]string, int) {
	type key struct{ session, seq uint64 }
	seen := map[key]wire.Event{}
	dups := 0
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/event") {
			continue
		}
		var e wire.Event
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			t.Fatal(err)
		}
		k := key{e.Session, e.Seq}
		if _, ok := seen[k]; ok {
			dups++
			continue
		}
		seen[k] = e
	}
	var evs []wire.Event
	for _, e := range seen {
		if e.Control == control && (e.Kind == wire.EventViolationOpened || e.Kind == wire.EventViolationClosed) {
			evs = append(evs, e)
		}
	}
	slices.SortFunc(evs, func(a, b wire.Event) int {
		if a.Session != b.Session {
			return int(a.Session) - int(b.Session)
		}
		return int(a.Seq) - int(b.Seq)
	})
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = strings.TrimPrefix(e.Kind, "violation_")
	}
	return out, dups
}

// deliveredAsRecorded waits until the events received, after deduplication, are exactly those the
// agent's audit chain says it produced, reading the chain while the agent runs.
// deliveredAsRecorded: on failure it shows the broker's log (brokerDir, when Mosquitto) and the agent's
// outbox, which tell a message the agent still holds from one the broker lost.
func deliveredAsRecorded(t *testing.T, n *node, rec *testbroker.Recorder, brokerDir, control string) (want []string, dups int) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(e2ePatience)
	for {
		want = expectedTransitions(t, n.auditExport(), control)
		got, dups = receivedTransitions(t, rec.Messages(), control)
		if slices.Equal(got, want) {
			return want, dups
		}
		if time.Now().After(deadline) {
			if brokerDir != "" {
				log, _ := os.ReadFile(filepath.Join(brokerDir, "mosquitto.log"))
				t.Logf("broker log:\n%s", log)
			}
			if st, err := store.OpenReadOnly(filepath.Join(n.state, "agent.db")); err == nil {
				pending, _ := st.OutboxLen(context.Background())
				st.Close()
				t.Logf("messages still in the agent's outbox: %d", pending)
			}
			t.Fatalf("after dedup received %v\nthe audit chain says %v", got, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestKill9MidStreamLosesNothing kills the agent with SIGKILL while it is producing events, restarts it,
// and requires every event of its audit chain to arrive exactly once after deduplication.
func TestKill9MidStreamLosesNothing(t *testing.T) {
	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	rec := testbroker.Record(t, mq.URL(), "faceguard/v1/dev/+/event")
	n := newNode(t, "residential-gate", mq.URL(), "kill9")
	g := newToggler(t, n.root)
	n.start()
	for i := range 30 {
		g.flip()
		time.Sleep(40 * time.Millisecond)
		if i == 14 {
			n.kill() // mid-stream: events recorded, some not yet acknowledged by the broker
			g.flip()
			n.start()
		}
	}
	if g.on {
		g.flip()
	}
	want, dups := deliveredAsRecorded(t, n, rec, mq.Dir(), "FRM-12-NO-COERCION")
	if len(want) < 4 {
		t.Fatalf("the stream produced only %d transitions", len(want))
	}
	n.stop()
	t.Logf("%d transitions delivered exactly once after dropping %d duplicates", len(want), dups)
}

// TestBrokerOutageLosesNothing stops the broker while the agent keeps producing events, brings it back,
// and requires every event to arrive.
func TestBrokerOutageLosesNothing(t *testing.T) {
	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	rec := testbroker.RecordPersistent(t, mq.URL(), "faceguard/v1/dev/+/event")
	n := newNode(t, "residential-gate", mq.URL(), "outage")
	g := newToggler(t, n.root)
	n.start()
	for range 4 {
		g.flip()
		time.Sleep(100 * time.Millisecond)
	}
	mq.Stop()
	for range 10 { // the agent records these while the broker is gone
		g.flip()
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	mq.Start()
	for range 4 {
		g.flip()
		time.Sleep(100 * time.Millisecond)
	}
	want, dups := deliveredAsRecorded(t, n, rec, mq.Dir(), "FRM-12-NO-COERCION")
	if len(want) < 10 {
		t.Fatalf("the stream produced only %d transitions", len(want))
	}
	n.stop()
	t.Logf("%d transitions across a broker outage, %d duplicates dropped", len(want), dups)
}
