package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/benchdoc"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

// The fleet test's fixed points: the person forgotten fleet-wide, and the violation injected.
const (
	fleetResident   = "resident-0001"
	coerciveControl = "FRM-12-NO-COERCION" // what Terminal.SetCoercivePrompt breaks
)

// fdsPerSimDevice is what one simulated device holds open (its MQTT socket, its agent's store and the
// gallery the agent keeps warm; cmd/faceguard's fdsPerDevice), with a margin for what opens and closes.
const fdsPerSimDevice = 10

// TestFleetScale runs a fleet of a thousand simulated devices (ten thousand in the soak, sized by
// FACEGUARD_SOAK_DEVICES) against a real Mosquitto and one real controller: `faceguard fleet serve`,
// built from this tree and run as a process of its own, so that its CPU time and memory are its own. The
// fleet goes through what a fleet's day asks of it: every device connects and reports its compliance;
// violations appear on one device in eight and must reach the controller; a fleet-wide forget-subject
// must be answered by every device, with a receipt from each one that held the person; and the broker
// restarts under the whole fleet, with violations recorded while it is down.
//
// The simulated devices run in shard processes (this test binary again, TestFleetScaleShard), a couple
// of thousand each: a process may hold only so many open files (20,000 on the development machine, where
// not even root may raise it) and a device holds about eight. Each shard checks its own devices against
// their audit chains and the controller's store (checkDelivered); this process runs the broker and the
// controller, injects, and times.
//
// It asserts behaviour only: every device online and reporting what its agent judges, every violation
// at the controller, every answer in, nothing lost, nothing twice. The figures — connect time,
// violation-to-controller latency, forget fan-out time, reconnection after the restart, the controller's
// CPU time and memory — are logged, and with FACEGUARD_FIGURES=FILE written into FILE's "fleet-scale"
// section (BENCHMARKS.md under `make soak`). It runs alone, not in parallel with the fault tests, so that
// the figures are the fleet's.
func TestFleetScale(t *testing.T) {
	s := scaleOf(t)
	n := s.fleet
	ctx := context.Background()
	limit := raiseOpenFiles(t)
	perShard := int(limit-2048) / fdsPerSimDevice
	if perShard < 100 {
		t.Fatalf("a process may open %d files: too few for a shard of a hundred simulated devices (about %d); raise ulimit -n",
			limit, 100*fdsPerSimDevice+2048)
	}
	// Two shards at least, so that `go test` runs the same sharded fleet as the soak.
	shards := max(2, (n+perShard-1)/perShard)
	if n+2048 > int(limit) {
		t.Fatalf("Mosquitto holds a connection a device and may open %d files: too few for %d devices", limit, n)
	}

	bin := buildFaceguard(t)
	keysDir := filepath.Join(t.TempDir(), "keys")
	if out, err := exec.Command(bin, "keys", "gen", "--dir", keysDir).CombinedOutput(); err != nil {
		t.Fatalf("faceguard keys gen: %v\n%s", err, out)
	}
	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	dbPath := filepath.Join(t.TempDir(), "fleet.db") // on disk, as a controller's store is
	ctl := startControllerProcess(t, bin, mq.URL(), keysDir, dbPath)
	waitControllerSubscribed(t, mq.URL())
	// The test reads the controller's store from its file (WAL: readers do not stop the writer), so that
	// its looks cost the controller nothing.
	st, err := sqlstore.Open(ctx, dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	profiles := fleetProfiles(n)
	ids := make([]string, n)
	for i, p := range profiles {
		ids[i] = p.ID
	}
	devDir := tmpfsDir(t)
	sh := make([]*fleetShard, shards)
	shardOf := map[string]*fleetShard{}
	size := (n + shards - 1) / shards
	for k := range sh {
		first, last := k*size, min((k+1)*size, n)
		sh[k] = startShard(t, k, shardConfig{Total: n, First: first, Count: last - first, Broker: mq.URL(), Keys: keysDir,
			DB: dbPath, Metrics: ctl.url + "/metrics", Dir: devDir, Concurrency: max(8, sim.DefaultConnectConcurrency/shards)})
		for _, id := range ids[first:last] {
			shardOf[id] = sh[k]
		}
	}
	fig := fleetFigures{devices: n, shards: shards, fdLimit: limit, mosquitto: mosquittoVersion()}
	meter := startMeter(t, ctl, mq, sh)

	// ---- connect: every device online at the controller, with its first compliance summary.
	start := time.Now()
	for _, r := range broadcast(t, sh, shardRequest{Op: "start"}) {
		fig.fleetUp = max(fig.fleetUp, time.Unix(0, r.Time).Sub(start))
	}
	waitAtController(t, st, ids, "every device online with a compliance summary", func(d fleet.Device) bool {
		return d.State == wire.StateOnline && d.Status != ""
	})
	fig.connect = time.Since(start)
	t.Logf("connect: %d devices in %d shard processes, ready at their end after %s, all online at the controller after %s", n, shards,
		fig.fleetUp.Round(time.Millisecond), fig.connect.Round(time.Millisecond))

	// ---- report: the controller shows what every agent judges (each shard compares its own).
	broadcast(t, sh, shardRequest{Op: "compliance"})
	fig.phases = append(fig.phases, meter.phase("connect and report"))
	time.Sleep(5 * time.Second) // idle: the fleet connected, nothing happening
	fig.phases = append(fig.phases, meter.phase("idle, 5 s"))
	fig.ctlSteadyRSS, _ = procMemory(ctl.pid())
	for _, s := range sh {
		rss, _ := procMemory(s.pid())
		fig.simSteadyRSS += rss
	}

	// ---- violations: one device in eight shows the coercive prompt, fifty a second; each must be
	// open at the controller, and closed again once the prompt is gone.
	var victims []string
	for i, id := range ids {
		if i%8 == 0 {
			victims = append(victims, id)
		}
	}
	fig.violations = len(victims)
	fig.viol = measureViolations(t, st, victims, shardOf)
	t.Logf("violations: %d injected at %.0f/s, each visible in the controller's store after %s; judged by the agent after %s; "+
		"from the agent's judgement to the controller's receipt %s", len(victims), fig.viol.rate, dist(fig.viol.visible), dist(fig.viol.judged),
		dist(fig.viol.received))
	prompts(t, shardOf, victims, false)
	eventually(t, "every injected violation closed at the controller", func() bool {
		_, total, err := st.OpenViolations(ctx, fleet.ViolationQuery{Control: coerciveControl, Limit: 1})
		return err == nil && total == 0
	})
	fig.phases = append(fig.phases, meter.phase(fmt.Sprintf("%s violations opened and closed", thousands(len(victims)))))

	// ---- forget: a fleet-wide forget-subject through the API, as `faceguard fleet forget` sends it.
	fig.forget = forgetFleetWide(t, ctl, st, profiles)
	t.Logf("forget-subject: issued in %s; %d devices answered, %d with a receipt; first answer after %s, half after %s, the last after %s; "+
		"the agents purged after %s, their receipts reached the controller %s later", fig.forget.issued.Round(time.Millisecond),
		fig.forget.answered, fig.forget.deleted, fig.forget.first.Round(time.Millisecond), fig.forget.p50.Round(time.Millisecond),
		fig.forget.last.Round(time.Millisecond), dist(fig.forget.purged), dist(fig.forget.received))
	fig.phases = append(fig.phases, meter.phase("fleet-wide forget-subject"))

	// ---- the broker restarts under the whole fleet; some devices record violations while it is down.
	fig.restart = restartUnderFleet(t, mq, ctl, st, sh, shardOf, ids)
	t.Logf("broker restart: down %s; every device reconnected %s after it came back, and reported online at the controller after %s",
		fig.restart.down.Round(time.Millisecond), fig.restart.reconnected.Round(time.Millisecond), fig.restart.atController.Round(time.Millisecond))
	fig.phases = append(fig.phases, meter.phase("broker restart"))

	// ---- nothing lost, nothing twice, and every device's open violations as its agent judges them.
	for _, r := range broadcast(t, sh, shardRequest{Op: "check"}) {
		fig.delivered.devices += r.Delivery.Devices
		fig.delivered.recorded += r.Delivery.Recorded
		fig.delivered.receipts += r.Delivery.Receipts
		fig.delivered.brokerDuplicates += r.Delivery.BrokerDuplicates
		fig.delivered.open += r.Delivery.Open
	}
	if fig.delivered.devices != n {
		t.Fatalf("the shards checked %d devices, the fleet has %d", fig.delivered.devices, n)
	}
	t.Logf("delivered as recorded: %d devices, %d violation/action/fault events and %d deletion receipts, each once at the controller; "+
		"%d duplicate deliveries seen at the broker (dropped by deduplication); %d violations open", n, fig.delivered.recorded,
		fig.delivered.receipts, fig.delivered.brokerDuplicates, fig.delivered.open)
	fig.phases = append(fig.phases, meter.phase("settled"))
	fig.ctlPeakRSS = procPeakMemory(ctl.pid())
	for _, s := range sh {
		fig.simPeakRSS += procPeakMemory(s.pid())
	}
	fig.machine = meter.machine()
	fig.brokerPeakRSS = meter.brokerPeakBytes

	for _, line := range fig.logLines() {
		t.Log(line)
	}
	if path := os.Getenv("FACEGUARD_FIGURES"); path != "" && !t.Failed() {
		if err := benchdoc.Replace(path, "fleet-scale", "make soak", fig.markdown(s)); err != nil {
			t.Fatal(err)
		}
		t.Logf("figures written to %s", path)
	}
}

// fleetProfiles are n terminals at sites of a hundred: one in eight has a standing fault (a hotel room,
// a face-only door, a minor without a guardian, a template upload, an incomplete notice), the person
// forgotten fleet-wide is enrolled on nine in ten, and every device whose index is a multiple of four
// is compliant, for the test to break. Nobody comes to them unless the test says so.
func fleetProfiles(n int) []sim.Profile {
	out := make([]sim.Profile, n)
	for i := range out {
		p := sim.Profile{ID: fmt.Sprintf("fleet-%05d", i), Site: fmt.Sprintf("fleet-site-%03d", i/100), RecognitionEvery: -1,
			Adults: 2, StatusEvery: 10 * time.Second, ControlPollEvery: 2 * time.Second}
		if i%10 != 9 {
			p.Residents = []string{fleetResident}
		}
		switch i % 40 {
		case 3:
			p.HotelRoom, p.PublicPlace, p.Kind = true, true, device.KindCamera
		case 11:
			p.FaceOnly = true
		case 19:
			p.MinorWithoutGuardian = true
		case 27:
			p.TemplateUpload, p.PublicPlace, p.Category = true, true, "hotel_lobby"
		case 35:
			p.NoticeIncomplete = true
		}
		out[i] = p
	}
	return out
}

// waitAtController waits until the controller's store shows every device as ok says.
func waitAtController(t *testing.T, st *sqlstore.Store, ids []string, what string, ok func(fleet.Device) bool) {
	t.Helper()
	var waiting []string
	err := waitFor(patience, func() bool {
		known, err := controllerDevices(st)
		if err != nil {
			t.Logf("read the controller's devices: %v", err)
			return false
		}
		waiting = waiting[:0]
		for _, id := range ids {
			if d, found := known[id]; !found {
				waiting = append(waiting, id+": unknown")
			} else if !ok(d) {
				waiting = append(waiting, fmt.Sprintf("%s: %s, %s", id, d.State, d.Status))
			}
		}
		return len(waiting) == 0
	})
	if err != nil {
		t.Fatalf("waited %s for %s: %d devices are not there yet, first %v", patience, what, len(waiting), waiting[:min(5, len(waiting))])
	}
}

// controllerDevices reads every device the controller knows, page by page.
func controllerDevices(st *sqlstore.Store) (map[string]fleet.Device, error) {
	out := map[string]fleet.Device{}
	for off := 0; ; off += sqlstore.MaxLimit {
		page, total, err := st.Devices(context.Background(), fleet.DeviceQuery{Offset: off, Limit: sqlstore.MaxLimit})
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			out[d.ID] = d
		}
		if off+sqlstore.MaxLimit >= total {
			return out, nil
		}
	}
}

// measureViolations puts the coercive prompt on every victim, one every 20 ms, and reads the
// controller's store every 20 ms until each one's violation is open there. The times start at each
// prompt as its shard stamped it.
func measureViolations(t *testing.T, st *sqlstore.Store, victims []string, shardOf map[string]*fleetShard) violationTimes {
	t.Helper()
	ctx := context.Background()
	type injection struct {
		id string
		at time.Time
	}
	injectedCh := make(chan injection, len(victims))
	errc := make(chan error, 1)
	go func() { // the only one to talk to the shards meanwhile
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for _, id := range victims {
			<-tick.C
			r, err := shardOf[id].call(shardRequest{Op: "prompt", Devs: []string{id}, On: true})
			if err != nil {
				errc <- err
				return
			}
			injectedCh <- injection{id, time.Unix(0, r.At[0])}
		}
		errc <- nil
	}()
	injected := make(map[string]time.Time, len(victims))
	seen := make(map[string]time.Time, len(victims))
	deadline := time.Now().Add(patience)
	for len(seen) < len(victims) {
		if time.Now().After(deadline) {
			var missing []string
			for _, id := range victims {
				if _, ok := seen[id]; !ok {
					missing = append(missing, id)
				}
			}
			t.Fatalf("waited %s: %d of %d violations never reached the controller, first %v", patience, len(missing), len(victims), missing[:min(5, len(missing))])
		}
		for drained := false; !drained; {
			select {
			case in := <-injectedCh:
				injected[in.id] = in.at
			case err := <-errc:
				if err != nil {
					t.Fatal(err)
				}
				errc = nil
			default:
				drained = true
			}
		}
		now := time.Now()
		for off := 0; ; off += sqlstore.MaxLimit {
			vs, total, err := st.OpenViolations(ctx, fleet.ViolationQuery{Control: coerciveControl, Offset: off, Limit: sqlstore.MaxLimit})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				if _, ok := seen[v.Dev]; !ok {
					if _, ours := injected[v.Dev]; ours {
						seen[v.Dev] = now
					}
				}
			}
			if off+sqlstore.MaxLimit >= total {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if errc != nil {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// Where the time went: the agent's violation_opened event carries when it judged (its "at"), and the
	// controller stamps when it received it.
	var v violationTimes
	var first, last time.Time
	for _, at := range injected {
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if len(injected) > 1 {
		v.rate = float64(len(injected)-1) / last.Sub(first).Seconds()
	}
	for id, at := range seen {
		v.visible = append(v.visible, at.Sub(injected[id]))
		evs, err := st.Events(ctx, id, []string{wire.EventViolationOpened}, time.Time{}, 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Control == coerciveControl && !e.At.Before(injected[id].Add(-time.Second)) {
				v.judged = append(v.judged, e.At.Sub(injected[id]))
				v.received = append(v.received, e.ReceivedAt.Sub(e.At))
				break
			}
		}
	}
	if len(v.judged) != len(victims) {
		t.Errorf("%d of %d injected violations have their violation_opened event at the controller", len(v.judged), len(victims))
	}
	for _, d := range [][]time.Duration{v.visible, v.judged, v.received} {
		slices.Sort(d)
	}
	return v
}

// violationTimes are, for each injected violation, the times from the prompt to the violation open in
// the controller's store (visible), to the agent's judgement (judged: the event's "at"), and from that
// to the controller's receipt (received), each sorted.
type violationTimes struct {
	visible, judged, received []time.Duration
	// rate is how many prompts a second the test managed (it aims at fifty; busy shards answer late).
	rate float64
}

// prompts puts the coercive prompt on the devices' screens, or takes it off, each shard its own at once.
func prompts(t *testing.T, shardOf map[string]*fleetShard, ids []string, on bool) {
	t.Helper()
	per := map[*fleetShard][]string{}
	for _, id := range ids {
		per[shardOf[id]] = append(per[shardOf[id]], id)
	}
	var order []*fleetShard
	for s, devs := range per {
		s.send(t, shardRequest{Op: "prompt", Devs: devs, On: on})
		order = append(order, s)
	}
	for _, s := range order {
		s.reply(t)
	}
}

// forgetResult is what a fleet-wide forget-subject came to.
type forgetResult struct {
	answered, deleted int
	// issued is the API request's time: the controller recorded the command with a pending answer for
	// every device and published it.
	issued, first, p50, last, done time.Duration
	// purged are the times from the request to each agent's deletion receipt (its receipt event's "at"),
	// received from that to the controller's receipt of the event, each sorted.
	purged, received []time.Duration
}

// forgetFleetWide asks the controller's API for a fleet-wide forget-subject, as `faceguard fleet
// forget` does, and waits for every device's answer: succeeded everywhere, with one deletion and its
// receipt where the person was enrolled and none elsewhere. The times are from the request to each answer
// as the controller stamped it when it stored it.
func forgetFleetWide(t *testing.T, ctl *controllerProc, st *sqlstore.Store, profiles []sim.Profile) forgetResult {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var cmd fleet.Command
	ctl.post(t, "/api/forget", map[string]string{"subject_ref": fleetResident}, &cmd)
	issued := time.Since(start)
	var results []fleet.CommandResult
	eventually(t, "every device's answer to the forget-subject", func() bool {
		var err error
		_, results, err = st.Command(ctx, cmd.ID)
		if err != nil || len(results) < len(profiles) {
			return false
		}
		for i := range results {
			if !results[i].Final() {
				return false
			}
		}
		return true
	})
	out := forgetResult{issued: issued, done: time.Since(start), answered: len(results)}
	enrolled := map[string]bool{}
	for _, p := range profiles {
		enrolled[p.ID] = slices.Contains(p.Residents, fleetResident)
	}
	var times []time.Duration
	for _, res := range results {
		var fr wire.ForgetResult
		if res.Status != wire.ResultSucceeded || json.Unmarshal(res.Result, &fr) != nil {
			t.Errorf("%s answered the forget-subject %s %s %s", res.Dev, res.Status, res.Reason, res.Result)
			continue
		}
		want := 0
		if enrolled[res.Dev] {
			want = 1
		}
		if fr.Deleted != want || len(fr.Receipts) != want {
			t.Errorf("%s deleted %d with %d receipts; the person was enrolled there: %v", res.Dev, fr.Deleted, len(fr.Receipts), enrolled[res.Dev])
		}
		out.deleted += fr.Deleted
		times = append(times, res.UpdatedAt.Sub(start))
		if len(fr.Receipts) == 0 {
			continue
		}
		evs, err := st.Events(ctx, res.Dev, []string{wire.EventReceipt}, time.Time{}, 20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if slices.Contains(e.Receipts, fr.Receipts[0]) {
				out.purged = append(out.purged, e.At.Sub(start))
				out.received = append(out.received, e.ReceivedAt.Sub(e.At))
				break
			}
		}
	}
	slices.Sort(out.purged)
	slices.Sort(out.received)
	if len(out.purged) != out.deleted {
		t.Errorf("%d deletion receipts at the controller for %d deletions", len(out.purged), out.deleted)
	}
	if len(results) != len(profiles) {
		t.Errorf("the forget-subject went to %d devices, the fleet has %d", len(results), len(profiles))
	}
	slices.Sort(times)
	if len(times) > 0 {
		out.first, out.p50, out.last = times[0], percentile(times, 0.5), times[len(times)-1]
	}
	return out
}

// restartResult is what a broker restart under the fleet came to: down from the stop to the start,
// the other times from the start on (Mosquitto loading its saved sessions is part of them).
type restartResult struct {
	down, reconnected, atController time.Duration
	// reconnects are the times from the broker's start to each device connected again, sorted.
	reconnects        []time.Duration
	recordedWhileDown int
}

// restartUnderFleet stops Mosquitto (SIGTERM: it saves its sessions), puts the coercive prompt on one
// device in thirty-two while it is down (the agents record the violations with nowhere to send them),
// starts it again, and waits until every device is connected, the controller is, and every device's
// online state reached the controller after the broker came back. The prompts are taken off again, so
// that events flow after the restart too.
func restartUnderFleet(t *testing.T, mq *testbroker.Mosquitto, ctl *controllerProc, st *sqlstore.Store, sh []*fleetShard,
	shardOf map[string]*fleetShard, ids []string) restartResult {
	t.Helper()
	var out restartResult
	stopped := time.Now()
	mq.Stop()
	broadcast(t, sh, shardRequest{Op: "disconnected"})
	var flipped []string
	for i, id := range ids {
		if i%32 == 4 {
			flipped = append(flipped, id)
		}
	}
	prompts(t, shardOf, flipped, true)
	out.recordedWhileDown = len(flipped)
	// From the moment the broker is started: a device (and the controller) may be back before Start
	// returns, and its online state must count as after the restart.
	up := time.Now()
	out.down = up.Sub(stopped)
	mq.Start()
	for _, r := range broadcast(t, sh, shardRequest{Op: "connected"}) {
		for _, at := range r.At {
			out.reconnects = append(out.reconnects, max(time.Unix(0, at).Sub(up), 0))
		}
	}
	slices.Sort(out.reconnects)
	out.reconnected = out.reconnects[len(out.reconnects)-1]
	eventually(t, "the controller connected again", func() bool { return ctl.health(t) })
	waitAtController(t, st, ids, "every device online at the controller after the restart", func(d fleet.Device) bool {
		return d.State == wire.StateOnline && d.LastSeen.After(up)
	})
	out.atController = time.Since(up)
	prompts(t, shardOf, flipped, false)
	return out
}

// ---------------------------------------------------------------- shards: the simulated fleet's processes

// shardConfig tells a shard process which devices of the fleet are its own and where everything is
// (FACEGUARD_FLEET_SHARD, as JSON).
type shardConfig struct {
	Total, First, Count int
	Broker, Keys        string
	DB, Metrics         string
	Dir                 string
	Concurrency         int
}

// shardRequest is one line on a shard's stdin.
type shardRequest struct {
	Op   string   `json:"op"` // start | compliance | prompt | disconnected | connected | check | stop
	Devs []string `json:"devs,omitempty"`
	On   bool     `json:"on,omitempty"`
}

// shardReply is one line from a shard, on its descriptor 3.
type shardReply struct {
	Op       string        `json:"op"`
	Time     int64         `json:"time,omitempty"` // start: when it was done (Unix ns)
	At       []int64       `json:"at,omitempty"`   // prompt: when each prompt changed; connected: when each device was (Unix ns)
	Delivery shardDelivery `json:"delivery"`
}

// shardDelivery is a shard's checkDelivered.
type shardDelivery struct {
	Devices, Recorded, Receipts, BrokerDuplicates, Open int
}

// fleetShard is a shard process seen from TestFleetScale.
type fleetShard struct {
	k       int
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies *bufio.Scanner
	log     string
	exited  chan struct{}
	mu      sync.Mutex
}

// startShard starts this test binary as shard k.
func startShard(t *testing.T, k int, cfg shardConfig) *fleetShard {
	t.Helper()
	b, _ := json.Marshal(cfg)
	logDir := os.Getenv("FACEGUARD_SHARD_LOGDIR") // a diagnostic: keep the shards' logs, with their agents' warnings
	if logDir == "" {
		logDir = t.TempDir()
	}
	s := &fleetShard{k: k, log: filepath.Join(logDir, fmt.Sprintf("shard-%d.log", k)), exited: make(chan struct{})}
	args := []string{"-test.run=^TestFleetScaleShard$", "-test.v", "-test.count=1"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	if dir := os.Getenv("FACEGUARD_SHARD_CPUPROFILE"); dir != "" { // a diagnostic: where the fleet's CPU goes
		args = append(args, fmt.Sprintf("-test.cpuprofile=%s/shard-%d.prof", dir, k))
	}
	// At nice 10: on site every terminal has a CPU of its own; here the fleet's agents share two cores
	// with the controller and the broker being measured, and without it their thousands of threads
	// would take the CPU from under them (a niced process's threads all inherit its priority).
	s.cmd = exec.Command("nice", append([]string{"-n", "10", os.Args[0]}, args...)...)
	s.cmd.Env = append(os.Environ(), "FACEGUARD_FLEET_SHARD="+string(b))
	logFile, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.ExtraFiles = []*os.File{wr}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	s.replies = bufio.NewScanner(rd)
	s.replies.Buffer(make([]byte, 64<<10), 16<<20)
	go func() { _ = s.cmd.Wait(); rd.Close(); close(s.exited) }()
	t.Cleanup(func() {
		s.in.Close() // a shard stops its devices when its stdin closes
		select {
		case <-s.exited:
		case <-time.After(2 * time.Minute):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if !s.cmd.ProcessState.Success() {
			t.Errorf("shard %d: %v", k, s.cmd.ProcessState)
			s.dumpLog(t)
		}
	})
	return s
}

func (s *fleetShard) pid() int { return s.cmd.Process.Pid }

func (s *fleetShard) send(t testing.TB, req shardRequest) {
	t.Helper()
	if err := s.write(req); err != nil {
		s.dumpLog(t)
		t.Fatalf("shard %d: %v", s.k, err)
	}
}

func (s *fleetShard) write(req shardRequest) error {
	b, _ := json.Marshal(req)
	_, err := s.in.Write(append(b, '\n'))
	return err
}

func (s *fleetShard) reply(t testing.TB) shardReply {
	t.Helper()
	r, err := s.read()
	if err != nil {
		s.dumpLog(t)
		t.Fatalf("shard %d: %v", s.k, err)
	}
	return r
}

// read is the shard's next reply; a shard that failed has closed its descriptor 3 and exits.
func (s *fleetShard) read() (shardReply, error) {
	var r shardReply
	if !s.replies.Scan() {
		<-s.exited
		return r, fmt.Errorf("the shard ended (%v): %v; its log is above", s.cmd.ProcessState, errors.Join(s.replies.Err(), io.ErrUnexpectedEOF))
	}
	if err := json.Unmarshal(s.replies.Bytes(), &r); err != nil {
		return r, fmt.Errorf("reply %q: %w", s.replies.Bytes(), err)
	}
	return r, nil
}

// call sends a request and waits for its reply (not from the test's goroutine: no t).
func (s *fleetShard) call(req shardRequest) (shardReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(req); err != nil {
		return shardReply{}, fmt.Errorf("shard %d: %w", s.k, err)
	}
	r, err := s.read()
	if err != nil {
		return r, fmt.Errorf("shard %d: %w (log %s)", s.k, err, s.log)
	}
	return r, nil
}

func (s *fleetShard) dumpLog(t testing.TB) {
	b, _ := os.ReadFile(s.log)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	t.Logf("shard %d log (end):\n%s", s.k, b)
}

// broadcast sends a request to every shard at once and returns their replies once all are in.
func broadcast(t *testing.T, sh []*fleetShard, req shardRequest) []shardReply {
	t.Helper()
	for _, s := range sh {
		s.send(t, req)
	}
	out := make([]shardReply, len(sh))
	for i, s := range sh {
		out[i] = s.reply(t)
	}
	return out
}

// TestFleetScaleShard is a shard of TestFleetScale's simulated fleet, run only as a process started by
// it (FACEGUARD_FLEET_SHARD says which devices): it starts its devices on request, answers what the
// test asks of them, and checks them against their audit chains and the controller's store.
func TestFleetScaleShard(t *testing.T) {
	raw := os.Getenv("FACEGUARD_FLEET_SHARD")
	if raw == "" {
		return // a helper process: TestFleetScale starts it
	}
	var cfg shardConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	replies := os.NewFile(3, "replies")
	defer replies.Close()
	out := json.NewEncoder(replies)
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, cfg.DB, sqlstore.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := &rig{t: t, st: st, metricsURL: cfg.Metrics, keys: readFleetKeys(t, cfg.Keys), dir: cfg.Dir}
	r.rec = testbroker.RecordPersistent(t, cfg.Broker, wire.Root+"/dev/+/"+wire.KindEvent)
	profiles := fleetProfiles(cfg.Total)[cfg.First : cfg.First+cfg.Count]
	byID := map[string]*sim.Device{}
	var devs []*sim.Device

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	for in.Scan() {
		var req shardRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			t.Fatal(err)
		}
		rep := shardReply{Op: req.Op}
		switch req.Op {
		case "start":
			// As the suite's other fleets (rig.fleetOptions), but with the agent's default reconnection
			// jitter (5 s, doubling after each failed attempt), which spreads a fleet's reconnections as in
			// the field.
			logger := slog.New(slog.DiscardHandler)
			if os.Getenv("FACEGUARD_SHARD_LOGDIR") != "" {
				logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			opts := sim.FleetOptions{Dir: cfg.Dir, Profiles: profiles, BrokerURL: cfg.Broker, ControllerKey: r.keys.cmdPub,
				SubjectKey: r.keys.subject, Engine: sharedEngine(t), EvaluateEvery: time.Hour, InboxSize: 8,
				Logger: logger, ReadyTimeout: patience, ConnectConcurrency: cfg.Concurrency}
			f, err := sim.StartFleet(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := f.Stop(); err != nil {
					t.Errorf("stop the fleet: %v", err)
				}
			}()
			devs = f.Devices()
			for _, d := range devs {
				byID[d.ID()] = d
			}
			rep.Time = time.Now().UnixNano()
		case "compliance": // the controller shows what every agent judges
			ids := make([]string, len(devs))
			for i, d := range devs {
				ids[i] = d.ID()
			}
			waitAtController(t, st, ids, "every device's compliance as its agent judges it", func(cd fleet.Device) bool {
				dec, _, ok := byID[cd.ID].Agent().Snapshot()
				return ok && cd.Status == dec.Status
			})
		case "prompt":
			for _, id := range req.Devs {
				d := byID[id]
				if d == nil {
					t.Fatalf("no device %s in this shard", id)
				}
				rep.At = append(rep.At, time.Now().UnixNano())
				if err := d.Terminal().SetCoercivePrompt(req.On); err != nil {
					t.Fatal(err)
				}
			}
		case "disconnected":
			eventually(t, "every device to see the broker gone", func() bool {
				for _, d := range devs {
					if d.Connected() {
						return false
					}
				}
				return true
			})
		case "connected": // when each device was connected again, looking every 50 ms
			back := make([]int64, len(devs))
			left := len(devs)
			err := waitFor(patience, func() bool {
				now := time.Now().UnixNano()
				for i, d := range devs {
					if back[i] == 0 && d.Connected() {
						back[i] = now
						left--
					}
				}
				return left == 0
			})
			if err != nil {
				t.Fatalf("%d devices not connected again after %s", left, patience)
			}
			rep.At = back
		case "check":
			d := r.checkDelivered(t, devs)
			if t.Failed() {
				t.FailNow()
			}
			rep.Delivery = shardDelivery{Devices: d.devices, Recorded: d.recorded, Receipts: d.receipts,
				BrokerDuplicates: d.brokerDuplicates, Open: d.open}
		default:
			t.Fatalf("unknown request %q", req.Op)
		}
		if err := out.Encode(rep); err != nil {
			t.Fatal(err)
		}
	}
}

// ---------------------------------------------------------------- the controller, a process of its own

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildFaceguard builds bin/faceguard from this tree as `make build` does, once for the test binary.
func buildFaceguard(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "faceguard-fleetscale-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "faceguard")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", builtBin, "github.com/faceguard/faceguard/cmd/faceguard")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build cmd/faceguard: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(builtBin)) })
	return builtBin
}

// readFleetKeys reads what the devices need of `faceguard keys gen`'s keys.
func readFleetKeys(t *testing.T, dir string) fleetKeys {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "controller.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wire.ParseEd25519PublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := agent.ReadSubjectKey(filepath.Join(dir, "subject.key"))
	if err != nil {
		t.Fatal(err)
	}
	return fleetKeys{cmdPub: pub, subject: subject}
}

// controllerProc is `faceguard fleet serve` running as a process of its own.
type controllerProc struct {
	cmd    *exec.Cmd
	url    string
	token  string
	log    string
	exited chan struct{}
}

// startControllerProcess starts the controller on brokerURL with a SQLite store at dbPath and waits until
// it is connected. It is alone, so it does not share its subscriptions (see rig).
func startControllerProcess(t *testing.T, bin, brokerURL, keysDir, dbPath string) *controllerProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t))
	c := &controllerProc{url: "http://" + addr, log: filepath.Join(t.TempDir(), "controller.log"), exited: make(chan struct{})}
	token, err := os.ReadFile(filepath.Join(keysDir, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(token))
	logFile, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	c.cmd = exec.Command(bin, "fleet", "serve", "--broker", brokerURL, "--db", dbPath, "--http", addr, "--keys", keysDir,
		"--client-id", "fleetscale-controller", "--share-group", "")
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			c.dumpLog(t)
		}
	})
	if err := waitFor(time.Minute, func() bool {
		select {
		case <-c.exited:
			return true
		default:
		}
		return c.health(t)
	}); err != nil {
		c.dumpLog(t)
		t.Fatalf("the controller did not connect to %s within a minute", brokerURL)
	}
	select {
	case <-c.exited:
		c.dumpLog(t)
		t.Fatalf("the controller exited: %v", c.cmd.ProcessState)
	default:
	}
	return c
}

func (c *controllerProc) pid() int { return c.cmd.Process.Pid }

// health reports whether the controller answers and is connected to the broker.
func (c *controllerProc) health(t testing.TB) bool {
	var h struct {
		Connected bool `json:"broker_connected"`
	}
	resp, err := http.Get(c.url + "/api/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Connected
}

// post sends an operator's request to the API with the token, as the fleet commands do.
func (c *controllerProc) post(t *testing.T, path string, in, out any) {
	t.Helper()
	body, _ := json.Marshal(in)
	req, _ := http.NewRequest(http.MethodPost, c.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("POST %s: %v: %s", path, err, b)
	}
}

// dumpLog logs the end of the controller's log.
func (c *controllerProc) dumpLog(t testing.TB) {
	b, _ := os.ReadFile(c.log)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	t.Logf("controller log (end):\n%s", b)
}

// raiseOpenFiles raises this process's soft limit of open files to the hard one, and returns it. The
// shards and Mosquitto, started from here, inherit it: a Setrlimit stops Go from giving children back
// the soft limit it found at start.
func raiseOpenFiles(t *testing.T) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return lim.Cur
}

// mosquittoVersion is the broker's version line, for the figures.
func mosquittoVersion() string {
	out, _ := exec.Command(testbroker.MosquittoBinary, "-h").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "mosquitto version "))
}

// ---------------------------------------------------------------- CPU time and memory, from /proc

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU is a process's CPU time (user + system), with its waited-for children's when children is set.
func procCPU(pid int, children bool) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state); utime is field 14
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	fields := []int{11, 12} // utime, stime
	if children {
		fields = append(fields, 13, 14) // cutime, cstime
	}
	var ticks int64
	for _, k := range fields {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// procMemory is a process's resident memory now and its peak (VmRSS, VmHWM), in bytes.
func procMemory(pid int) (rss, peak int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak
}

func procPeakMemory(pid int) int64 { _, peak := procMemory(pid); return peak }

// machineBusy is the CPU time every processor of the machine spent on anything but idling (user, nice,
// system, irq, softirq) and the time the hypervisor stole, from /proc/stat.
func machineBusy() (busy, steal time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	tick := func(i int) time.Duration {
		if i >= len(f) {
			return 0
		}
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / clockTicks
	}
	return tick(1) + tick(2) + tick(3) + tick(6) + tick(7), tick(8)
}

// meter follows the CPU time of the controller, the broker and the simulated fleet through the test's
// phases, the controller's own count of what it applied, and what else the machine did meanwhile: its
// busy time less ours (this process and its children) is other work that shared the two cores.
type meter struct {
	t          *testing.T
	ctl        int
	metricsURL string
	mq         *testbroker.Mosquitto
	shards     []*fleetShard
	mqPID      int
	// mqDone is the CPU time of the broker processes that have exited (a restart).
	mqDone, mqLast time.Duration

	start, last           time.Time
	startCPU, lastCPU     cpuSample
	lastMetrics           ctlMetrics
	oursStart             time.Duration
	busyStart, stealStart time.Duration
	loadStart             string
	brokerPeakBytes       int64
}

// cpuSample is the CPU time so far of the controller, the broker and the shards together, and the
// kernel's count of connections it refused because a listening socket's queue was full (Mosquitto's is
// 100 long) and of the SYNs clients sent again for that.
type cpuSample struct {
	ctl, broker, fleet          time.Duration
	listenOverflows, synRetrans int
}

func (a cpuSample) sub(b cpuSample) cpuSample {
	return cpuSample{a.ctl - b.ctl, a.broker - b.broker, a.fleet - b.fleet, a.listenOverflows - b.listenOverflows,
		a.synRetrans - b.synRetrans}
}

// tcpCounters reads TcpExt ListenOverflows and TCPSynRetrans from /proc/net/netstat (this network
// namespace: the test's processes, and whatever else runs in it).
func tcpCounters() (overflows, synRetrans int) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return 0, 0
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			v, _ := strconv.Atoi(f[i])
			switch names[i] {
			case "ListenOverflows":
				overflows = v
			case "TCPSynRetrans":
				synRetrans = v
			}
		}
	}
	return overflows, synRetrans
}

// phaseFigures are one phase of the test.
type phaseFigures struct {
	name string
	wall time.Duration
	cpu  cpuSample
	msgs ctlMetrics
	// ctlRSS and ctlPeak are the controller's resident memory at the phase's end and its peak so far.
	ctlRSS, ctlPeak int64
}

func startMeter(t *testing.T, ctl *controllerProc, mq *testbroker.Mosquitto, shards []*fleetShard) *meter {
	m := &meter{t: t, ctl: ctl.pid(), metricsURL: ctl.url + "/metrics", mq: mq, shards: shards, start: time.Now()}
	m.last = m.start
	m.startCPU = m.sample()
	m.lastCPU = m.startCPU
	m.lastMetrics = scrapeMetrics(t, m.metricsURL)
	m.oursStart = m.ours()
	m.busyStart, m.stealStart = machineBusy()
	load, _ := os.ReadFile("/proc/loadavg")
	m.loadStart = strings.Join(strings.Fields(string(load))[:3], " ")
	return m
}

// brokerCPU is the CPU time of every broker process so far, following restarts (a stopped broker's time
// is the last one read while it ran: close enough, it only saves and exits after).
func (m *meter) brokerCPU() time.Duration {
	pid := m.mq.PID()
	if pid != m.mqPID {
		m.mqDone += m.mqLast
		m.mqPID, m.mqLast = pid, 0
	}
	if pid != 0 {
		if c, err := procCPU(pid, false); err == nil {
			m.mqLast = c
		}
		if _, peak := procMemory(pid); peak > m.brokerPeakBytes {
			m.brokerPeakBytes = peak
		}
	}
	return m.mqDone + m.mqLast
}

func (m *meter) sample() cpuSample {
	var c cpuSample
	c.ctl, _ = procCPU(m.ctl, false)
	c.broker = m.brokerCPU()
	for _, s := range m.shards {
		f, _ := procCPU(s.pid(), false)
		c.fleet += f
	}
	c.listenOverflows, c.synRetrans = tcpCounters()
	return c
}

// ours is the CPU time of this process with its reaped children (the broker's earlier runs, builds) and
// of the running controller, broker and shards.
func (m *meter) ours() time.Duration {
	self, _ := procCPU(os.Getpid(), true)
	var live time.Duration
	if pid := m.mq.PID(); pid != 0 {
		live, _ = procCPU(pid, false)
	}
	c := m.sample()
	return self + live + c.ctl + c.fleet
}

// phase ends a phase.
func (m *meter) phase(name string) phaseFigures {
	now := time.Now()
	c := m.sample()
	mt := scrapeMetrics(m.t, m.metricsURL)
	p := phaseFigures{name: name, wall: now.Sub(m.last), cpu: c.sub(m.lastCPU), msgs: mt.sub(m.lastMetrics)}
	p.ctlRSS, p.ctlPeak = procMemory(m.ctl)
	m.last, m.lastCPU, m.lastMetrics = now, c, mt
	m.t.Logf("phase %q: %s; CPU: controller %s, Mosquitto %s, the simulated fleet %s; the controller applied %d messages "+
		"(%d duplicates; by kind %v), %.2f ms each; its RSS %s (peak %s); listen queue overflows %d, SYNs sent again %d", name,
		p.wall.Round(time.Millisecond), p.cpu.ctl, p.cpu.broker, p.cpu.fleet, p.msgs.applied, p.msgs.duplicates, p.msgs.byKind,
		p.msgs.meanApply()*1000, mb(p.ctlRSS), mb(p.ctlPeak), p.cpu.listenOverflows, p.cpu.synRetrans)
	return p
}

// ctlMetrics are the controller's counters from /metrics.
type ctlMetrics struct {
	applied, duplicates int
	byKind              map[string]int // applied, by message kind
	applySeconds        float64        // the sum of faceguard_message_apply_seconds
	applyCount          int
}

func (a ctlMetrics) sub(b ctlMetrics) ctlMetrics {
	d := ctlMetrics{a.applied - b.applied, a.duplicates - b.duplicates, map[string]int{}, a.applySeconds - b.applySeconds,
		a.applyCount - b.applyCount}
	for k, v := range a.byKind {
		if v != b.byKind[k] {
			d.byKind[k] = v - b.byKind[k]
		}
	}
	return d
}

func (a ctlMetrics) meanApply() float64 {
	if a.applyCount == 0 {
		return 0
	}
	return a.applySeconds / float64(a.applyCount)
}

func scrapeMetrics(t testing.TB, url string) ctlMetrics {
	m := ctlMetrics{byKind: map[string]int{}}
	resp, err := http.Get(url)
	if err != nil {
		t.Logf("the controller's metrics: %v", err)
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		name, labels, _ := strings.Cut(f[0], "{")
		switch name {
		case "faceguard_messages_ingested_total":
			m.applied += int(v)
			kind := strings.TrimSuffix(strings.TrimPrefix(labels, `kind="`), `"}`)
			m.byKind[kind] += int(v)
		case "faceguard_messages_duplicate_total":
			m.duplicates += int(v)
		case "faceguard_message_apply_seconds_sum":
			m.applySeconds = v
		case "faceguard_message_apply_seconds_count":
			m.applyCount = int(v)
		}
	}
	return m
}

// machineFigures are the test's whole run on the machine.
type machineFigures struct {
	wall, ours, others, steal time.Duration
	cpu                       cpuSample
	loadStart                 string
}

func (m *meter) machine() machineFigures {
	busy, steal := machineBusy()
	mf := machineFigures{wall: time.Since(m.start), cpu: m.sample().sub(m.startCPU), ours: m.ours() - m.oursStart,
		steal: steal - m.stealStart, loadStart: m.loadStart}
	mf.others = max(busy-m.busyStart-mf.ours, 0)
	return mf
}

// ---------------------------------------------------------------- figures

type fleetFigures struct {
	devices, shards, violations int
	fdLimit                     uint64
	mosquitto                   string
	fleetUp, connect            time.Duration
	viol                        violationTimes
	forget                      forgetResult
	restart                     restartResult
	phases                      []phaseFigures
	ctlSteadyRSS, ctlPeakRSS    int64
	simSteadyRSS, simPeakRSS    int64
	brokerPeakRSS               int64
	machine                     machineFigures
	delivered                   delivery
}

func mb(b int64) string { return fmt.Sprintf("%s MB", thousands(int((b+1<<19)>>20))) }

func secs(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
}

// dist is p50, p99 and the maximum of sorted durations.
func dist(d []time.Duration) string {
	if len(d) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s / %s / %s", secs(percentile(d, 0.5)), secs(percentile(d, 0.99)), secs(d[len(d)-1]))
}

// thousands writes n with comma separators, as BENCHMARKS.md does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (f fleetFigures) logLines() []string {
	return []string{
		fmt.Sprintf("figures: %d devices; connect %s (ready at the devices %s); violation → controller's store p50/p99/max %s (%d); "+
			"forget fan-out: issued %s, half the answers %s, the last %s (%d receipts); restart: reconnected p50/p99/max %s, online at the controller %s",
			f.devices, secs(f.connect), secs(f.fleetUp), dist(f.viol.visible), f.violations, secs(f.forget.issued), secs(f.forget.p50),
			secs(f.forget.last), f.forget.deleted, dist(f.restart.reconnects), secs(f.restart.atController)),
		fmt.Sprintf("figures: CPU in %s: controller %s, Mosquitto %s, the simulated fleet %s; controller RSS steady %s, peak %s; "+
			"Mosquitto peak RSS %s; the %d shard processes' RSS %s (peak %s)",
			secs(f.machine.wall), secs(f.machine.cpu.ctl), secs(f.machine.cpu.broker), secs(f.machine.cpu.fleet), mb(f.ctlSteadyRSS),
			mb(f.ctlPeakRSS), mb(f.brokerPeakRSS), f.shards, mb(f.simSteadyRSS), mb(f.simPeakRSS)),
		fmt.Sprintf("figures: the machine: %d CPUs, load %s at the start; CPU time of this test's processes %s, of other work %s, stolen by the hypervisor %s",
			runtime.NumCPU(), f.machine.loadStart, secs(f.machine.ours), secs(f.machine.others), secs(f.machine.steal)),
	}
}

// markdown is the fleet-scale section of BENCHMARKS.md.
func (f fleetFigures) markdown(s scale) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Fleet at scale (`sim/reliability`, TestFleetScale)\n\n")
	w("`make soak SOAK_DEVICES=%d` — or this test alone: `FACEGUARD_SOAK=1 FACEGUARD_SOAK_DEVICES=%d FACEGUARD_FIGURES=$PWD/BENCHMARKS.md "+
		"go test -count=1 -timeout 2h -v -run TestFleetScale ./sim/reliability/`\n\n", f.devices, f.devices)
	w("%s simulated devices — each a real agent on its own SQLite store (tmpfs) with its own MQTT connection, in %d shard "+
		"processes of the test binary, since a process may open only %s files here and a device holds about eight — against "+
		"Mosquitto %s and one controller, `faceguard fleet serve` built from the tree and run as a process of its own (SQLite "+
		"store on disk, no shared subscriptions), all on this machine: %d CPUs, %s/%s, %s, measured %s. CPU times are utime "+
		"+ stime from `/proc/PID/stat`, memory VmRSS and VmHWM from `/proc/PID/status`, the controller's own work from its "+
		"`/metrics`. Times are wall-clock; no test asserts one.\n\n",
		thousands(f.devices), f.shards, thousands(int(f.fdLimit)), f.mosquitto, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	w("| what | measured | target (DESIGN §11) |\n|---|---:|---|\n")
	w("| devices connected and reporting | %s of %s | 10,000 |\n", thousands(f.devices), thousands(f.devices))
	w("| connect: fleet started → every device online at the controller with its compliance | %s | |\n", secs(f.connect))
	w("| violation on a device → open in the controller's store, p50 / p99 / max (%s violations, %.0f a second) | %s | p99 ≤ 2 s |\n",
		thousands(f.violations), f.viol.rate, dist(f.viol.visible))
	w("| … of which: prompt → judged by the agent | %s | |\n", dist(f.viol.judged))
	w("| … of which: judged → received by the controller | %s | |\n", dist(f.viol.received))
	w("| fleet-wide `forget-subject` → every device's answer stored: issued / half / last (%s answers, %s receipts) | %s / %s / %s | ≤ 30 s |\n",
		thousands(f.forget.answered), thousands(f.forget.deleted), secs(f.forget.issued), secs(f.forget.p50), secs(f.forget.last))
	w("| … of which: request → the agent's deletion receipt, p50 / p99 / last | %s | |\n", dist(f.forget.purged))
	w("| … of which: receipt → received by the controller, p50 / p99 / max | %s | |\n", dist(f.forget.received))
	w("| broker restart: started again → each device reconnected, p50 / p99 / last | %s | |\n", dist(f.restart.reconnects))
	w("| broker restart: started again → every device online again at the controller | %s | |\n", secs(f.restart.atController))
	w("| events lost / duplicates after deduplication, the whole run | 0 / 0 (%s events, %s receipts checked against the audit chains) | 0 / 0 |\n",
		thousands(f.delivered.recorded), thousands(f.delivered.receipts))
	w("| controller CPU, the whole run (%s) | %s | |\n", secs(f.machine.wall), secs(f.machine.cpu.ctl))
	w("| controller RSS, steady (connected, idle) / peak | %s / %s | |\n", mb(f.ctlSteadyRSS), mb(f.ctlPeakRSS))
	w("| Mosquitto CPU, the whole run / peak RSS | %s / %s | |\n", secs(f.machine.cpu.broker), mb(f.brokerPeakRSS))
	w("| the simulated fleet (%d processes together), CPU / RSS steady / peak | %s / %s / %s (%s KB a device) | |\n\n",
		f.shards, secs(f.machine.cpu.fleet), mb(f.simSteadyRSS), mb(f.simPeakRSS), thousands(int(f.simSteadyRSS/1024/int64(f.devices))))
	w("By phase: CPU time of each part, the messages the controller applied (and dropped as duplicates) and the mean time it " +
		"took to apply one to its store, and its memory at the end of the phase:\n\n")
	w("| phase | wall | CPU controller / Mosquitto / fleet | messages applied (duplicates) | apply, mean | controller RSS (peak so far) | connections refused by a full listen queue (SYNs sent again) |\n")
	w("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range f.phases {
		w("| %s | %s | %s / %s / %s | %s (%s) | %.2f ms | %s (%s) | %s (%s) |\n", p.name, secs(p.wall), secs(p.cpu.ctl), secs(p.cpu.broker),
			secs(p.cpu.fleet), thousands(p.msgs.applied), thousands(p.msgs.duplicates), p.msgs.meanApply()*1000, mb(p.ctlRSS), mb(p.ctlPeak),
			thousands(p.cpu.listenOverflows), thousands(p.cpu.synRetrans))
	}
	w("\nViolations are seen by a reader of the controller's store polling every 20 ms (so up to 20 ms late); \"judged\" is "+
		"the time the agent put on its violation_opened event. A simulated terminal tells its agent of a change at once; a real "+
		"agent learns it through fsnotify and waits its %s debounce first. Forget answers are timed by the controller's own "+
		"stamp as it stores each one. The broker was stopped (SIGTERM: it saves its sessions) for %s, while %s devices recorded "+
		"a violation with nowhere to send it; the agents reconnect after a random wait of up to 5 s, the window doubling after "+
		"each attempt that fails (their default).\n\n",
		agent.DefaultDebounce, secs(f.restart.down), thousands(f.restart.recordedWhileDown))
	others := "nothing else of note ran"
	if f.machine.others > f.machine.wall/20 {
		others = fmt.Sprintf("other work took %s of CPU time (%.0f %% of one core)",
			secs(f.machine.others), 100*f.machine.others.Seconds()/f.machine.wall.Seconds())
	}
	w("Everything shares the machine's two cores: the simulated fleet, which in the field runs on %s terminals, took %.0f %% "+
		"of the CPU time of this test's processes; it runs at nice 10 so that it does not starve the controller and the broker "+
		"being measured, which makes the fleet's own steps (a forget-subject's purge and answer) the slowest part. The machine is shared with other work too: its load average was %s at the "+
		"start; during the run %s; the hypervisor stole %s.\n",
		thousands(f.devices), 100*f.machine.cpu.fleet.Seconds()/max(f.machine.ours.Seconds(), 1e-9), f.machine.loadStart, others,
		secs(f.machine.steal))
	if s.soak {
		w("\nThe soak's fault tests ran after this one, not beside it.\n")
	}
	return b.String()
}
