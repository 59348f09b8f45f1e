package reliability

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

// ---------------------------------------------------------------- scale: make test or soak

// scale is the size of the suite: small enough for CI by default, long and large with FACEGUARD_SOAK=1.
type scale struct {
	soak bool
	// faultFor is how long a fault test goes on faulting (in the soak: cycles of the fault).
	faultFor time.Duration
	// outage is how long one cut, outage or full disk lasts.
	outage time.Duration
	// fleet and reconnect size the fleet test and the mass reconnection.
	fleet, reconnect int
}

func scaleOf(t testing.TB) scale {
	t.Helper()
	s := scale{faultFor: 0, outage: 3 * time.Second, fleet: 1000, reconnect: 200}
	if os.Getenv("FACEGUARD_SOAK") == "" {
		return s
	}
	s = scale{soak: true, faultFor: 10 * time.Minute, outage: 60 * time.Second, fleet: 10000, reconnect: 1000}
	if v := os.Getenv("FACEGUARD_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("FACEGUARD_SOAK_DURATION=%q: want a duration such as 30m", v)
		}
		s.faultFor = d
	}
	for env, p := range map[string]*int{"FACEGUARD_SOAK_DEVICES": &s.fleet, "FACEGUARD_SOAK_RECONNECT": &s.reconnect} {
		if v := os.Getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				t.Fatalf("%s=%q: want a number of devices", env, v)
			}
			*p = n
		}
	}
	return s
}

// cycles runs one fault cycle at least once, and again until the soak's time is up.
func (s scale) cycles(t *testing.T, fn func(cycle int)) {
	t.Helper()
	end := time.Now().Add(s.faultFor)
	for i := 0; ; i++ {
		fn(i)
		if !s.soak || time.Now().After(end) {
			t.Logf("%d fault cycles", i+1)
			return
		}
	}
}

// ---------------------------------------------------------------- shared parts

var (
	engineOnce sync.Once
	sharedEng  *engine.Engine
	engineErr  error
)

// sharedEngine compiles the built-in pack once for the test binary: simulated devices share one.
func sharedEngine(t testing.TB) *engine.Engine {
	t.Helper()
	engineOnce.Do(func() { sharedEng, engineErr = engine.New(context.Background(), engine.Options{}) })
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return sharedEng
}

// tmpfsDir is a directory for device files, on tmpfs when there is one (thousands of SQLite files with
// synchronous=FULL are slow on a disk), removed at the end.
func tmpfsDir(t testing.TB) string {
	t.Helper()
	base := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "faceguard-reliability-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type fleetKeys struct {
	cmdPub  ed25519.PublicKey
	cmdPriv ed25519.PrivateKey
	subject []byte
}

func newKeys(t testing.TB) fleetKeys {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return fleetKeys{cmdPub: pub, cmdPriv: priv, subject: []byte("reliability-suite-subject-key-0123456789")}
}

// patience bounds every wait: a bound on the test's patience, never a claim about speed.
const patience = 3 * time.Minute

// eventually waits until cond holds, for at most patience.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := waitFor(patience, cond); err != nil {
		t.Fatalf("waited %s for %s", patience, what)
	}
}

func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// ---------------------------------------------------------------- the rig: broker, controller, devices

// rig is one test's fleet: a Mosquitto process, a controller on SQLite, a persistent recorder of every
// event at the broker, and devices. The controller is alone, so it does not use shared subscriptions:
// Mosquitto forgets a persistent session's shared subscriptions when it restarts, and drops what devices
// publish until the controller subscribes again (productbugs_test.go shows it; `faceguard fleet serve`
// shares by default).
type rig struct {
	t  *testing.T
	mq *testbroker.Mosquitto
	st *sqlstore.Store
	// ctl is the controller in this process; nil when it runs as a process of its own (TestFleetScale),
	// whose metrics are at metricsURL and whose store st reads from the same file.
	ctl        *fleet.Controller
	metricsURL string
	rec        *testbroker.Recorder
	keys       fleetKeys
	dir        string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, keys: newKeys(t), dir: tmpfsDir(t)}
	r.mq = testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "fleet.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.st = st
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("FACEGUARD_RELIABILITY_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	r.ctl, err = fleet.NewController(fleet.Options{Store: st, BrokerURL: r.mq.URL(), ClientID: "controller",
		ShareGroup: "", CommandKey: r.keys.cmdPriv, SubjectKey: r.keys.subject, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.ctl.Start(sctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ctl.Close(); st.Close() })
	waitControllerSubscribed(t, r.mq.URL())
	r.rec = testbroker.RecordPersistent(t, r.mq.URL(), wire.Root+"/dev/+/"+wire.KindEvent)
	return r
}

// waitControllerSubscribed waits for the controller's retained online state, which it publishes once the
// broker has acknowledged its subscriptions. Start returns when it is connected, before that: an event
// a device published in between would not be queued for the controller's new session, and would be lost
// to it (a busy machine made TestClockJump fail so).
func waitControllerSubscribed(t testing.TB, brokerURL string) {
	t.Helper()
	testbroker.Record(t, brokerURL, wire.ControllerStateTopic).WaitFor(t, patience, "the controller's online state",
		func(m testbroker.Message) bool {
			var st struct {
				State string `json:"state"`
			}
			return json.Unmarshal(m.Payload, &st) == nil && st.State == wire.StateOnline
		})
}

// fleetOptions are the suite's defaults for a fleet on the rig.
func (r *rig) fleetOptions(profiles []sim.Profile) sim.FleetOptions {
	return sim.FleetOptions{Dir: r.dir, Profiles: profiles, BrokerURL: r.mq.URL(), ControllerKey: r.keys.cmdPub,
		SubjectKey: r.keys.subject, Engine: sharedEngine(r.t), EvaluateEvery: time.Hour, ReconnectJitter: 200 * time.Millisecond,
		InboxSize: 8, Logger: slog.New(slog.DiscardHandler), ReadyTimeout: patience}
}

// startFleet starts the fleet; the test stops it at the end (before the rig).
func (r *rig) startFleet(opts sim.FleetOptions) *sim.Fleet {
	r.t.Helper()
	start := time.Now()
	f, err := sim.StartFleet(context.Background(), opts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Logf("%d devices online in %s", len(f.Devices()), time.Since(start).Round(time.Millisecond))
	r.t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			r.t.Errorf("stop the fleet: %v", err)
		}
	})
	return f
}

// mixedProfiles are n terminals of the suite: most compliant, some with a standing fault (a hotel room,
// a face-only door, a minor, a template upload, an incomplete notice), one whose subject withdraws
// during the test; nobody comes to them unless the test says so, so every event is the test's doing or
// the agent's.
func mixedProfiles(prefix string, n int) []sim.Profile {
	out := make([]sim.Profile, n)
	for i := range out {
		p := sim.Profile{ID: fmt.Sprintf("%s-%03d", prefix, i), Site: prefix + "-site", RecognitionEvery: -1,
			ControlPollEvery: 100 * time.Millisecond, StatusEvery: time.Second, Adults: 4, Residents: []string{"resident-0001"}}
		switch i % 8 {
		case 1:
			p.HotelRoom, p.PublicPlace, p.Kind = true, true, device.KindCamera
		case 2:
			p.FaceOnly = true
		case 3:
			p.MinorWithoutGuardian = true
		case 4:
			p.TemplateUpload, p.PublicPlace, p.Category = true, true, "hotel_lobby"
		case 5:
			p.WithdrawnSubject, p.WithdrawAfter = true, 2*time.Second
		case 7:
			p.NoticeIncomplete = true
		}
		out[i] = p
	}
	return out
}

// ---------------------------------------------------------------- traffic

// traffic keeps violations opening and closing: it flips the coercive prompt of one device after another,
// so that every device has events in flight whatever the fault does, and now and then leaves raw captures
// for the agent to delete.
type traffic struct {
	stop    chan struct{}
	done    chan struct{}
	flips   atomic.Int64
	capture atomic.Int64
	errs    atomic.Pointer[error]
}

func startTraffic(devs []*sim.Device, every time.Duration) *traffic {
	return startTrafficWith(devs, every, true)
}

// startTrafficWith is startTraffic, with raw captures or without.
func startTrafficWith(devs []*sim.Device, every time.Duration, captures bool) *traffic {
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			term := devs[i%len(devs)].Terminal()
			err := term.SetCoercivePrompt(!term.CoercivePrompt())
			tr.flips.Add(1)
			if captures && i%17 == 0 { // a capture now and then, deleted by the agent once it is raw_image_max_s old
				err = term.Capture(1)
				tr.capture.Add(1)
			}
			if err != nil {
				tr.errs.CompareAndSwap(nil, &err)
			}
		}
	}()
	return tr
}

// Stop stops the traffic; the prompts stay as they are.
func (tr *traffic) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
	if e := tr.errs.Load(); e != nil {
		t.Errorf("traffic: %v", *e)
	}
	t.Logf("traffic: %d prompt flips, %d raw captures", tr.flips.Load(), tr.capture.Load())
}

// ---------------------------------------------------------------- a way through

// wayWatch checks, all along a test, that no terminal is ever ordered face recognition off without the
// other ways through required on (DESIGN §6: never lock a person out).
type wayWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	bad        []string
	checks     int
}

func watchWayThrough(devs []*sim.Device) *wayWatch {
	w := &wayWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for _, d := range devs {
				o, err := d.Terminal().Orders()
				w.mu.Lock()
				w.checks++
				if err != nil {
					w.bad = append(w.bad, fmt.Sprintf("%s: %v", d.ID(), err))
				} else if !o.WayThrough() {
					w.bad = append(w.bad, fmt.Sprintf("%s: face recognition off, alternatives not required (generation %d)", d.ID(), o.Generation))
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// Check stops watching and fails the test for every time a terminal had no way through.
func (w *wayWatch) Check(t testing.TB) {
	t.Helper()
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Errorf("a terminal was left without a way through (%d of %d looks), first: %v", len(w.bad), w.checks, w.bad[:min(5, len(w.bad))])
	}
}

// checkOrdersSettled waits until every terminal applied its latest orders, and requires face
// recognition off exactly on the terminals where the policy demands it (the hotel rooms) and the other
// ways through on wherever it is off.
func checkOrdersSettled(t *testing.T, devs []*sim.Device) {
	t.Helper()
	var last []string
	err := waitFor(patience, func() bool {
		last = last[:0]
		for _, d := range devs {
			o, err := d.Terminal().Orders()
			switch {
			case err != nil:
				last = append(last, fmt.Sprintf("%s: %v", d.ID(), err))
			case !o.Applied:
				last = append(last, d.ID()+": latest orders not applied yet")
			case o.FaceRecognitionAllowed == d.Terminal().Profile().HotelRoom:
				last = append(last, fmt.Sprintf("%s: face recognition allowed=%v in a %s", d.ID(), o.FaceRecognitionAllowed, d.Terminal().Profile().Category))
			case !o.WayThrough():
				last = append(last, d.ID()+": no way through")
			}
		}
		return len(last) == 0
	})
	if err != nil {
		t.Fatalf("orders not settled as the policy demands: %v", last[:min(5, len(last))])
	}
}

// ---------------------------------------------------------------- delivered as recorded

// delivery is what the check of a test's fleet found.
type delivery struct {
	devices, recorded, receipts, stored int
	brokerDuplicates, storeDuplicates   int
	open                                int
}

// checkDelivered is the suite's central check. It waits until every device runs, is connected and has
// an empty outbox, then until the controller's store holds, for every device, exactly the events the
// device's audit chain says it published (each once, in order), and it requires every chain to verify,
// the controller's open violations to be each device's latest judged decision and the agent's own view,
// and the broker-level recorder to agree (it counts duplicates that the controller dropped).
func (r *rig) checkDelivered(t *testing.T, devs []*sim.Device) delivery {
	t.Helper()
	ctx := context.Background()
	var waiting []string
	// Captures left by the traffic go once they are raw_image_max_s old, with events of their own.
	if err := waitFor(patience, func() bool {
		waiting = waiting[:0]
		for _, d := range devs {
			if n, err := d.Terminal().Captures(); err != nil || n > 0 {
				waiting = append(waiting, fmt.Sprintf("%s: %d raw captures (%v)", d.ID(), n, err))
			}
		}
		return len(waiting) == 0
	}); err != nil {
		t.Fatalf("raw captures not deleted: %v", waiting[:min(5, len(waiting))])
	}
	if err := waitFor(patience, func() bool {
		waiting = waiting[:0]
		for _, d := range devs {
			if !d.Running() || !d.Connected() {
				waiting = append(waiting, d.ID()+" not connected")
				continue
			}
			if n, err := d.Store().OutboxLen(ctx); err != nil || n > 0 {
				waiting = append(waiting, fmt.Sprintf("%s: %d in the outbox (%v)", d.ID(), n, err))
			}
		}
		return len(waiting) == 0
	}); err != nil {
		t.Fatalf("devices not drained: %v", waiting[:min(5, len(waiting))])
	}

	var (
		truths  map[string]sim.Truth
		stored  map[string][]sim.ReportedEvent
		diffs   []string
		lastErr error
	)
	err := waitFor(patience, func() bool {
		truths, stored, diffs, lastErr = map[string]sim.Truth{}, map[string][]sim.ReportedEvent{}, nil, nil
		for _, d := range devs {
			tr, err := sim.TruthOf(ctx, d.Store())
			if err != nil {
				lastErr = err
				return false
			}
			truths[d.ID()] = tr
			evs, err := r.st.Events(ctx, d.ID(), nil, time.Time{}, sqlstore.MaxLimit)
			if err != nil {
				lastErr = err
				return false
			}
			if len(evs) == sqlstore.MaxLimit {
				lastErr = fmt.Errorf("%s has %d events or more: the check cannot read them all", d.ID(), sqlstore.MaxLimit)
				return false
			}
			for _, e := range evs {
				stored[d.ID()] = append(stored[d.ID()], sim.ReportedEvent{Session: e.Session, Seq: e.Seq, Kind: e.Kind,
					Control: e.Control, Action: e.Action, Receipts: e.Receipts})
			}
			if diff := tr.Missing(sim.ReportedOf(stored[d.ID()])); diff != "" {
				diffs = append(diffs, d.ID()+": "+diff)
			}
			// Open violations at the controller are the device's latest judged decision.
			vs, _, err := r.st.OpenViolations(ctx, fleet.ViolationQuery{Dev: d.ID(), Limit: sqlstore.MaxLimit})
			if err != nil {
				lastErr = err
				return false
			}
			var open []string
			for _, v := range vs {
				open = append(open, v.Control)
			}
			slices.Sort(open)
			if !slices.Equal(open, tr.Open) {
				diffs = append(diffs, fmt.Sprintf("%s: open at the controller %v, the device's latest decision %v", d.ID(), open, tr.Open))
			}
			// The agent's own view is its record's: an evaluation it could not record (a full disk) is
			// recorded at its next look.
			if now, ok := judged(d); ok && !slices.Equal(now, tr.Open) {
				diffs = append(diffs, fmt.Sprintf("%s: the agent judges %v now, its record says %v", d.ID(), now, tr.Open))
			}
		}
		return len(diffs) == 0
	})
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	if err != nil {
		t.Fatalf("the controller's store is not what the devices recorded (%d devices differ), first: %v", len(diffs), diffs[:min(5, len(diffs))])
	}

	// The recorder is a subscriber of its own: what the controller has stored may still be on its way
	// to it.
	atBroker := map[string][]sim.ReportedEvent{}
	var brokerDiffs []string
	_ = waitFor(patience, func() bool {
		clear(atBroker)
		brokerDiffs = brokerDiffs[:0]
		for _, m := range r.rec.Messages() {
			var e wire.Event
			if dev, _, _, err := wire.ParseDeviceTopic(m.Topic); err == nil && json.Unmarshal(m.Payload, &e) == nil {
				atBroker[dev] = append(atBroker[dev], sim.FromWire(e))
			}
		}
		for _, d := range devs {
			if diff := truths[d.ID()].Missing(sim.ReportedOf(atBroker[d.ID()])); diff != "" {
				brokerDiffs = append(brokerDiffs, d.ID()+": "+diff)
			}
		}
		return len(brokerDiffs) == 0
	})
	for _, diff := range brokerDiffs {
		t.Errorf("the broker-level recorder differs from the chain: %s", diff)
	}

	var out delivery
	out.devices = len(devs)
	for _, d := range devs {
		tr := truths[d.ID()]
		if !tr.Chain.OK {
			t.Errorf("%s: the audit chain does not verify: %+v", d.ID(), tr.Chain.Problems)
		}
		out.recorded += tr.Events()
		out.receipts += len(tr.Receipts)
		rep := sim.ReportedOf(stored[d.ID()])
		out.stored += rep.Events()
		out.storeDuplicates += rep.Duplicates
		// The recorder saw the same events through the broker (it may have seen more duplicates).
		out.brokerDuplicates += sim.ReportedOf(atBroker[d.ID()]).Duplicates
		out.open += len(tr.Open)
	}
	if out.storeDuplicates != 0 {
		t.Errorf("the controller's store holds %d duplicates", out.storeDuplicates)
	}
	t.Logf("delivered as recorded: %d devices, %d violation/action/fault events and %d deletion receipts, each once at the controller; "+
		"%d duplicate deliveries seen at the broker (dropped by deduplication), %d controller duplicates counted; %d violations open",
		out.devices, out.recorded, out.receipts, out.brokerDuplicates, r.duplicatesMetric(t), out.open)
	return out
}

// judged is what the agent's last evaluation found failing, sorted (false after a fail-safe or before
// the first evaluation).
func judged(d *sim.Device) ([]string, bool) {
	dec, _, ok := d.Agent().Snapshot()
	if !ok || dec.Status == "" {
		return nil, false
	}
	var now []string
	for _, v := range dec.Violations {
		now = append(now, v.Control)
	}
	slices.Sort(now)
	return now, true
}

// duplicatesMetric is the controller's count of duplicate messages it dropped (all kinds).
func (r *rig) duplicatesMetric(t testing.TB) int {
	url := r.metricsURL
	if r.ctl != nil {
		srv := httptest.NewServer(r.ctl.MetricsHandler())
		defer srv.Close()
		url = srv.URL
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "faceguard_messages_duplicate_total{") {
			if f := strings.Fields(line); len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				n += int(v)
			}
		}
	}
	return n
}

// waitConnected waits until every device is connected again.
func waitConnected(t *testing.T, devs []*sim.Device) {
	t.Helper()
	eventually(t, "every device connected", func() bool {
		for _, d := range devs {
			if !d.Connected() {
				return false
			}
		}
		return true
	})
}

// sessions counts the agents' sessions, for the log.
func sessions(devs []*sim.Device) map[uint64]int {
	m := map[uint64]int{}
	for _, d := range devs {
		m[d.Agent().Session()]++
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
