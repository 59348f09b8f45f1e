package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// TestFleetScale runs a fleet of a thousand simulated devices (ten thousand in the soak, sized by
// FACEGUARD_SOAK_DEVICES) against a real Mosquitto and one real controller: `faceguard fleet serve`,
// built from this tree and run as a process of its own, so that its CPU time and memory are its own and
// not the simulated fleet's. The fleet goes through what a fleet's day asks of it: every device connects
// and reports its compliance; violations appear on a device in eight and must reach the controller; a
// fleet-wide forget-subject must be answered by every device, with a receipt from each one that held the
// person; and the broker restarts under the whole fleet, with events recorded while it is down.
//
// It asserts behaviour only: every device online and reporting what its agent judges, every violation
// at the controller, every answer in, nothing lost, nothing twice (checkDelivered). The figures —
// connect time, violation-to-controller latency, forget fan-out time, reconnection after the restart,
// the controller's CPU time and memory — are logged, and with FACEGUARD_FIGURES=FILE written into FILE's
// "fleet-scale" section (BENCHMARKS.md under `make soak`). It runs alone (not in parallel with the
// fault tests), so that the figures are the fleet's.
func TestFleetScale(t *testing.T) {
	s := scaleOf(t)
	n := s.fleet
	ctx := context.Background()
	// Each simulated device holds about eight descriptors and Mosquitto one a device; both processes
	// started from here inherit the limit (a Setrlimit stops Go restoring the original one in children).
	raiseOpenFiles(t, uint64(n)*12+4096)

	bin := buildFaceguard(t)
	keysDir := filepath.Join(t.TempDir(), "keys")
	if out, err := exec.Command(bin, "keys", "gen", "--dir", keysDir).CombinedOutput(); err != nil {
		t.Fatalf("faceguard keys gen: %v\n%s", err, out)
	}
	keys := readFleetKeys(t, keysDir)

	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	dbPath := filepath.Join(t.TempDir(), "fleet.db") // on disk, as a controller's store is
	ctl := startControllerProcess(t, bin, mq.URL(), keysDir, dbPath)
	// The test reads the controller's store from its own file (WAL: readers do not stop the writer), so
	// that its looks cost the controller nothing.
	st, err := sqlstore.Open(ctx, dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, mq: mq, st: st, metricsURL: ctl.url + "/metrics", keys: keys, dir: tmpfsDir(t)}
	r.rec = testbroker.RecordPersistent(t, mq.URL(), wire.Root+"/dev/+/"+wire.KindEvent)

	fig := fleetFigures{devices: n, mosquitto: mosquittoVersion()}
	meter := startMeter(t, ctl.pid(), mq)

	// ---- connect: every device online at the controller, with its first compliance summary.
	opts := r.fleetOptions(fleetProfiles(n))
	opts.ReconnectJitter = 0 // the agent's default (5 s) spreads the fleet's reconnections, as in the field
	opts.ConnectConcurrency = sim.DefaultConnectConcurrency
	start := time.Now()
	f := r.startFleet(opts)
	fig.fleetUp = time.Since(start)
	devs := f.Devices()
	waitAtController(t, st, devs, "every device online with a compliance summary", func(d fleet.Device, _ *sim.Device) bool {
		return d.State == wire.StateOnline && d.Status != ""
	})
	fig.connect = time.Since(start)
	t.Logf("connect: %d devices ready at their end in %s, all online at the controller in %s", n,
		fig.fleetUp.Round(time.Millisecond), fig.connect.Round(time.Millisecond))

	// ---- report: the controller shows what every agent judges (a fault the agent fixes is reported
	// non-compliant first, then compliant).
	waitAtController(t, st, devs, "every device's compliance as its agent judges it", func(d fleet.Device, sd *sim.Device) bool {
		dec, _, ok := sd.Agent().Snapshot()
		return ok && d.Status == dec.Status
	})
	fig.phases = append(fig.phases, meter.phase("connect and report"))
	time.Sleep(5 * time.Second) // idle: the fleet connected, nothing happening
	fig.phases = append(fig.phases, meter.phase("idle, 5 s"))
	fig.ctlSteadyRSS, _ = procMemory(ctl.pid())
	fig.simSteadyRSS, _ = procMemory(os.Getpid())

	// ---- violations: one device in eight shows the coercive prompt, fifty a second; each must be
	// open at the controller, and closed again once the prompt is gone.
	var victims []*sim.Device
	for i, d := range devs {
		if i%8 == 0 {
			victims = append(victims, d)
		}
	}
	fig.violations = len(victims)
	lat := measureViolations(t, st, victims, 20*time.Millisecond)
	fig.violP50, fig.violP99, fig.violMax = percentile(lat, 0.50), percentile(lat, 0.99), lat[len(lat)-1]
	t.Logf("violations: %d injected at 50/s, each visible in the controller's store after p50 %s, p99 %s, max %s", len(lat),
		fig.violP50.Round(time.Millisecond), fig.violP99.Round(time.Millisecond), fig.violMax.Round(time.Millisecond))
	for _, d := range victims {
		if err := d.Terminal().SetCoercivePrompt(false); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every injected violation closed at the controller", func() bool {
		_, total, err := st.OpenViolations(ctx, fleet.ViolationQuery{Control: coerciveControl, Limit: 1})
		return err == nil && total == 0
	})
	fig.phases = append(fig.phases, meter.phase(fmt.Sprintf("%d violations opened and closed", len(victims))))

	// ---- forget: a fleet-wide forget-subject through the API, as `faceguard fleet forget` sends it.
	fig.forget = forgetFleetWide(t, ctl, st, devs)
	t.Logf("forget-subject: %d devices answered, %d with a receipt; first answer after %s, half after %s, the last after %s",
		fig.forget.answered, fig.forget.deleted, fig.forget.first.Round(time.Millisecond), fig.forget.p50.Round(time.Millisecond),
		fig.forget.last.Round(time.Millisecond))
	fig.phases = append(fig.phases, meter.phase("fleet-wide forget-subject"))

	// ---- the broker restarts under the whole fleet; some devices record violations while it is down.
	fig.restart = restartUnderFleet(t, r, ctl, devs)
	t.Logf("broker restart: down %s; every device reconnected %s after it came back, and reported online at the controller after %s",
		fig.restart.down.Round(time.Millisecond), fig.restart.reconnected.Round(time.Millisecond), fig.restart.atController.Round(time.Millisecond))
	fig.phases = append(fig.phases, meter.phase("broker restart"))

	// ---- nothing lost, nothing twice, and every device's open violations as its agent judges them.
	fig.delivered = r.checkDelivered(t, devs)
	fig.phases = append(fig.phases, meter.phase("settled"))
	fig.ctlPeakRSS = procPeakMemory(ctl.pid())
	fig.simPeakRSS = procPeakMemory(os.Getpid())
	fig.machine = meter.machine()
	fig.brokerCPU, fig.brokerPeakRSS = meter.broker()

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
// forgotten fleet-wide is enrolled on nine in ten, and every device whose index is a multiple of eight is
// compliant, for the test to break. Nobody comes to them unless the test says so.
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
func waitAtController(t *testing.T, st *sqlstore.Store, devs []*sim.Device, what string, ok func(fleet.Device, *sim.Device) bool) {
	t.Helper()
	var waiting []string
	err := waitFor(patience, func() bool {
		known, err := controllerDevices(st)
		if err != nil {
			t.Logf("read the controller's devices: %v", err)
			return false
		}
		waiting = waiting[:0]
		for _, d := range devs {
			if cd, found := known[d.ID()]; !found {
				waiting = append(waiting, d.ID()+": unknown")
			} else if !ok(cd, d) {
				waiting = append(waiting, fmt.Sprintf("%s: %s, %s", d.ID(), cd.State, cd.Status))
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

// measureViolations puts the coercive prompt on every victim, one every 20 ms, and watches the
// controller's store every poll until each one's violation is open there. It returns the times from
// each prompt to its violation seen in the store, sorted.
func measureViolations(t *testing.T, st *sqlstore.Store, victims []*sim.Device, poll time.Duration) []time.Duration {
	t.Helper()
	ctx := context.Background()
	injected := make(map[string]time.Time, len(victims))
	injectedCh := make(chan struct {
		id string
		at time.Time
	}, len(victims))
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for _, d := range victims {
			<-tick.C
			at := time.Now()
			if err := d.Terminal().SetCoercivePrompt(true); err != nil {
				errc <- err
				return
			}
			injectedCh <- struct {
				id string
				at time.Time
			}{d.ID(), at}
		}
		errc <- nil
	}()
	seen := make(map[string]time.Time, len(victims))
	deadline := time.Now().Add(patience)
	for len(seen) < len(victims) {
		if time.Now().After(deadline) {
			var missing []string
			for _, d := range victims {
				if _, ok := seen[d.ID()]; !ok {
					missing = append(missing, d.ID())
				}
			}
			t.Fatalf("waited %s: %d of %d violations never reached the controller, first %v", patience, len(missing), len(victims), missing[:min(5, len(missing))])
		}
		for drained := false; !drained; {
			select {
			case in := <-injectedCh:
				injected[in.id] = in.at
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
		time.Sleep(poll)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	lat := make([]time.Duration, 0, len(seen))
	for id, at := range seen {
		lat = append(lat, at.Sub(injected[id]))
	}
	slices.Sort(lat)
	return lat
}

// forgetResult is what a fleet-wide forget-subject came to.
type forgetResult struct {
	answered, deleted      int
	first, p50, last, done time.Duration
}

// forgetFleetWide asks the controller's API for a fleet-wide forget-subject, as `faceguard fleet
// forget` does, and waits for every device's answer: succeeded everywhere, with one deletion and its
// receipt where the person was enrolled and none elsewhere. The times are from the request to each answer
// as the controller stamped it when it stored it.
func forgetFleetWide(t *testing.T, ctl *controllerProc, st *sqlstore.Store, devs []*sim.Device) forgetResult {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var cmd fleet.Command
	ctl.post(t, "/api/forget", map[string]string{"subject_ref": fleetResident}, &cmd)
	var results []fleet.CommandResult
	eventually(t, "every device's answer to the forget-subject", func() bool {
		var err error
		_, results, err = st.Command(ctx, cmd.ID)
		if err != nil || len(results) < len(devs) {
			return false
		}
		for i := range results {
			if !results[i].Final() {
				return false
			}
		}
		return true
	})
	out := forgetResult{done: time.Since(start), answered: len(results)}
	enrolled := map[string]bool{}
	for _, d := range devs {
		enrolled[d.ID()] = slices.Contains(d.Terminal().Profile().Residents, fleetResident)
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
	}
	if len(results) != len(devs) {
		t.Errorf("the forget-subject went to %d devices, the fleet has %d", len(results), len(devs))
	}
	slices.Sort(times)
	if len(times) > 0 {
		out.first, out.p50, out.last = times[0], percentile(times, 0.5), times[len(times)-1]
	}
	return out
}

// restartResult is what a broker restart under the fleet came to.
type restartResult struct {
	down, reconnected, atController time.Duration
	recordedWhileDown               int
}

// restartUnderFleet stops Mosquitto (SIGTERM: it saves its sessions), puts the coercive prompt on one
// device in thirty-two while it is down (the agents record the violations with nowhere to send them),
// starts it again, and waits until every device is connected, the controller is, and every device's
// online state reached the controller after the broker came back. The prompts are taken off again, so
// that events flow after the restart too.
func restartUnderFleet(t *testing.T, r *rig, ctl *controllerProc, devs []*sim.Device) restartResult {
	t.Helper()
	var out restartResult
	stopped := time.Now()
	r.mq.Stop()
	eventually(t, "every device to see the broker gone", func() bool {
		for _, d := range devs {
			if d.Connected() {
				return false
			}
		}
		return true
	})
	var flipped []*sim.Device
	for i, d := range devs {
		if i%32 == 4 {
			if err := d.Terminal().SetCoercivePrompt(true); err != nil {
				t.Fatal(err)
			}
			flipped = append(flipped, d)
		}
	}
	out.recordedWhileDown = len(flipped)
	r.mq.Start()
	up := time.Now()
	out.down = up.Sub(stopped)
	waitConnected(t, devs)
	out.reconnected = time.Since(up)
	eventually(t, "the controller connected again", func() bool { return ctl.health(t) })
	waitAtController(t, r.st, devs, "every device online at the controller after the restart", func(d fleet.Device, _ *sim.Device) bool {
		return d.State == wire.StateOnline && d.LastSeen.After(up)
	})
	out.atController = time.Since(up)
	for _, d := range flipped {
		if err := d.Terminal().SetCoercivePrompt(false); err != nil {
			t.Fatal(err)
		}
	}
	return out
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

// raiseOpenFiles raises this process's limit of open files to at least need, the hard limit too when it
// may (root), and fails the test with what to do when it cannot.
func raiseOpenFiles(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < need {
		lim.Max = need
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		if lim.Cur < need {
			t.Fatalf("the fleet needs about %d open files; the limit is %d and cannot be raised (%v): raise it with ulimit -n, or as root",
				need, lim.Cur, err)
		}
		lim.Cur = lim.Max // keep the soft limit at the hard one for the children too
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
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

// meter follows the controller's and the broker's CPU time through the test's phases, and what else
// the machine did meanwhile: its busy time less ours (this process and its children, the controller,
// Mosquitto) is other work that shared the two cores.
type meter struct {
	t     *testing.T
	ctl   int
	mq    *testbroker.Mosquitto
	mqPID int
	// mqDone is the CPU time of the broker processes that have exited (a restart).
	mqDone time.Duration
	mqLast time.Duration

	start, last     time.Time
	ctlStart        time.Duration
	ctlLast         time.Duration
	oursStart       time.Duration
	busyStart       time.Duration
	stealStart      time.Duration
	loadStart       string
	brokerPeakBytes int64
}

// phaseCPU is the controller's CPU time in one phase of the test.
type phaseCPU struct {
	name      string
	wall, cpu time.Duration
}

func startMeter(t *testing.T, ctlPID int, mq *testbroker.Mosquitto) *meter {
	m := &meter{t: t, ctl: ctlPID, mq: mq, start: time.Now()}
	m.last = m.start
	m.ctlStart, _ = procCPU(ctlPID, false)
	m.ctlLast = m.ctlStart
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

// ours is the CPU time of this process with its reaped children (the broker's earlier runs, builds) and
// of the running controller and broker.
func (m *meter) ours() time.Duration {
	self, _ := procCPU(os.Getpid(), true)
	ctl, _ := procCPU(m.ctl, false)
	var mq time.Duration
	if pid := m.mq.PID(); pid != 0 {
		mq, _ = procCPU(pid, false)
	}
	m.brokerCPU()
	return self + ctl + mq
}

// phase ends a phase: the controller's CPU time since the last one.
func (m *meter) phase(name string) phaseCPU {
	now := time.Now()
	c, err := procCPU(m.ctl, false)
	if err != nil {
		m.t.Fatalf("the controller's CPU time: %v", err)
	}
	m.brokerCPU()
	p := phaseCPU{name: name, wall: now.Sub(m.last), cpu: c - m.ctlLast}
	m.last, m.ctlLast = now, c
	m.t.Logf("phase %q: %s, controller CPU %s", name, p.wall.Round(time.Millisecond), p.cpu)
	return p
}

// machineFigures are the test's whole run on the machine.
type machineFigures struct {
	wall, ctlCPU, ours, others, steal time.Duration
	loadStart                         string
}

func (m *meter) machine() machineFigures {
	busy, steal := machineBusy()
	ctl, _ := procCPU(m.ctl, false)
	mf := machineFigures{wall: time.Since(m.start), ctlCPU: ctl - m.ctlStart, ours: m.ours() - m.oursStart,
		steal: steal - m.stealStart, loadStart: m.loadStart}
	mf.others = max(busy-m.busyStart-mf.ours, 0)
	return mf
}

func (m *meter) broker() (time.Duration, int64) { return m.brokerCPU(), m.brokerPeakBytes }

// ---------------------------------------------------------------- figures

type fleetFigures struct {
	devices, violations       int
	mosquitto                 string
	fleetUp, connect          time.Duration
	violP50, violP99, violMax time.Duration
	forget                    forgetResult
	restart                   restartResult
	phases                    []phaseCPU
	ctlSteadyRSS, ctlPeakRSS  int64
	simSteadyRSS, simPeakRSS  int64
	brokerCPU                 time.Duration
	brokerPeakRSS             int64
	machine                   machineFigures
	delivered                 delivery
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

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

// thousands writes n with comma separators, as BENCHMARKS.md does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (f fleetFigures) logLines() []string {
	lines := []string{
		fmt.Sprintf("figures: %d devices, connect %s (ready at the devices %s); violation → controller p50 %s p99 %s max %s (%d); "+
			"forget fan-out: last answer %s (half %s), %d receipts; restart: reconnected %s, online at the controller %s",
			f.devices, secs(f.connect), secs(f.fleetUp), secs(f.violP50), secs(f.violP99), secs(f.violMax), f.violations,
			secs(f.forget.last), secs(f.forget.p50), f.forget.deleted, secs(f.restart.reconnected), secs(f.restart.atController)),
		fmt.Sprintf("figures: controller CPU %s in %s; RSS steady %s, peak %s; Mosquitto CPU %s, peak RSS %s; the simulated fleet's process RSS %s (peak %s)",
			secs(f.machine.ctlCPU), secs(f.machine.wall), mb(f.ctlSteadyRSS), mb(f.ctlPeakRSS), secs(f.brokerCPU), mb(f.brokerPeakRSS),
			mb(f.simSteadyRSS), mb(f.simPeakRSS)),
		fmt.Sprintf("figures: the machine: %d CPUs, load %s at the start; CPU time of this test's processes %s, of other work %s, stolen by the hypervisor %s",
			runtime.NumCPU(), f.machine.loadStart, secs(f.machine.ours), secs(f.machine.others), secs(f.machine.steal)),
	}
	return lines
}

// markdown is the fleet-scale section of BENCHMARKS.md.
func (f fleetFigures) markdown(s scale) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Fleet at scale (`sim/reliability`, TestFleetScale)\n\n")
	w("`make soak SOAK_DEVICES=%d` — or alone: `FACEGUARD_SOAK=1 FACEGUARD_SOAK_DEVICES=%d FACEGUARD_FIGURES=$PWD/BENCHMARKS.md "+
		"go test -count=1 -timeout 2h -v -run TestFleetScale ./sim/reliability/`\n\n", f.devices, f.devices)
	w("%s simulated devices — each a real agent on its own SQLite store with its own MQTT connection, all in the test's "+
		"process — against Mosquitto %s and one controller, `faceguard fleet serve` built from the tree and run as a process of "+
		"its own (SQLite store on disk, no shared subscriptions), on this machine: %d CPUs, %s/%s, %s, measured %s. "+
		"CPU times are utime + stime from `/proc/PID/stat`, memory VmRSS and VmHWM from `/proc/PID/status`. "+
		"Times are wall-clock; no test asserts one.\n\n",
		thousands(f.devices), f.mosquitto, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	w("| what | measured | target (DESIGN §11) |\n|---|---:|---|\n")
	w("| devices connected and reporting | %s of %s | 10,000 |\n", thousands(f.devices), thousands(f.devices))
	w("| connect: fleet started → every device online at the controller with its compliance | %s | |\n", secs(f.connect))
	w("| violation on a device → open in the controller's store, p50 / p99 / max (%s violations, 50 a second) | %s / %s / %s | p99 ≤ 2 s |\n",
		thousands(f.violations), secs(f.violP50), secs(f.violP99), secs(f.violMax))
	w("| fleet-wide `forget-subject` → every device's answer stored, half / last (%s answers, %s receipts) | %s / %s | ≤ 30 s |\n",
		thousands(f.forget.answered), thousands(f.forget.deleted), secs(f.forget.p50), secs(f.forget.last))
	w("| broker restart: back up → every device reconnected / online again at the controller | %s / %s | |\n",
		secs(f.restart.reconnected), secs(f.restart.atController))
	w("| broker restart: events lost / duplicates after deduplication | 0 / 0 (%s events, %s receipts checked against the audit chains) | 0 / 0 |\n",
		thousands(f.delivered.recorded), thousands(f.delivered.receipts))
	w("| controller CPU, the whole run (%s) | %s | |\n", secs(f.machine.wall), secs(f.machine.ctlCPU))
	w("| controller RSS, steady (connected, idle) / peak | %s / %s | |\n", mb(f.ctlSteadyRSS), mb(f.ctlPeakRSS))
	w("| Mosquitto CPU, the whole run / peak RSS | %s / %s | |\n", secs(f.brokerCPU), mb(f.brokerPeakRSS))
	w("| the simulated fleet's process, RSS steady / peak | %s / %s (%.0f KB a device) | |\n\n",
		mb(f.simSteadyRSS), mb(f.simPeakRSS), float64(f.simSteadyRSS)/1024/float64(f.devices))
	w("The controller's CPU time by phase:\n\n| phase | wall | controller CPU |\n|---|---:|---:|\n")
	for _, p := range f.phases {
		w("| %s | %s | %s |\n", p.name, secs(p.wall), secs(p.cpu))
	}
	w("\nViolations are seen by a reader of the controller's store polling every 20 ms (so up to 20 ms late). A simulated "+
		"terminal tells its agent of a change at once; a real agent learns it through fsnotify and waits its %s debounce "+
		"first, which adds to these figures on a real device. Forget answers are timed by the controller's own stamp as "+
		"it stores each one. The broker was stopped (SIGTERM: it saves its sessions) for %s, while %s devices recorded a "+
		"violation with nowhere to send it; the agents reconnect after a random wait of up to 5 s (their default), which "+
		"the reconnection figures include.\n\n",
		agent.DefaultDebounce, secs(f.restart.down), thousands(f.restart.recordedWhileDown))
	others := "nothing else of note"
	if f.machine.others > f.machine.wall/20 {
		others = fmt.Sprintf("other work on the machine took %s of CPU time during the run (%.0f %% of one core)",
			secs(f.machine.others), 100*f.machine.others.Seconds()/f.machine.wall.Seconds())
	}
	w("The machine is shared: its load average was %s at the start; during the run %s; the hypervisor stole %s.\n",
		f.machine.loadStart, others, secs(f.machine.steal))
	if s.soak {
		w("\nThe soak's fault tests ran after this one, not beside it.\n")
	}
	return b.String()
}
