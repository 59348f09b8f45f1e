package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/wire"
)

// TestDemoFleet starts the demo fleet against one broker: every device comes online and publishes a
// summary, the agents fix what they can, and Stop leaves nothing running.
func TestDemoFleet(t *testing.T) {
	r := newRig(t)
	eng := sharedEngine(t)
	baseline := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(context.Background(), 2*patience)
	defer cancel()
	f, err := StartFleet(ctx, FleetOptions{Dir: t.TempDir(), Profiles: DemoProfiles(), BrokerURL: r.brokerURL,
		ControllerKey: r.ctrlKey, SubjectKey: testSubjectKey, Engine: eng, ConnectConcurrency: 4, ReconnectJitter: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			f.Stop()
		}
	}()
	if n := len(f.Devices()); n != len(DemoProfiles()) {
		t.Fatalf("%d devices", n)
	}
	for _, d := range f.Devices() {
		id := d.ID()
		r.rec.WaitFor(t, patience, id+" online", func(m testbroker.Message) bool {
			var s wire.State
			return m.Topic == wire.StateTopic(id) && json.Unmarshal(m.Payload, &s) == nil && s.State == wire.StateOnline
		})
		r.rec.WaitFor(t, patience, id+" birth", func(m testbroker.Message) bool {
			var b wire.Birth
			return m.Topic == wire.BirthTopic(id) && json.Unmarshal(m.Payload, &b) == nil && b.Site == d.Terminal().Profile().Site
		})
		r.rec.WaitFor(t, patience, id+" compliance", func(m testbroker.Message) bool { return m.Topic == wire.ComplianceTopic(id) })
	}

	// What the operator watches happen.
	for id, want := range map[string]func(d *Device) bool{
		"gc-garage": func(d *Device) bool { return len(captures(t, d.Terminal().Root())) < 6 },
		"gc-door-b2": func(d *Device) bool {
			return d.Terminal().Stats().AlternativesOn && !failingNow(d, "FRM-10-ALTERNATIVE")
		},
		"lh-lobby-kiosk-1": func(d *Device) bool {
			return d.Terminal().Stats().UploadStopped && !failingNow(d, "FRM-08-LOCAL-STORAGE")
		},
		"lh-room-1208": func(d *Device) bool {
			_, c, _ := d.Agent().Snapshot()
			return !c.FaceRecognition.Allowed && failingNow(d, "FRM-13-PRIVATE-SPACE") && !d.Terminal().Matchable(d.Terminal().subjectRef(1))
		},
		"gc-gate-east": func(d *Device) bool {
			return !d.Terminal().Matchable(d.Terminal().subjectRef(DefaultAdults+1)) && failingNow(d, "FRM-07-MINORS")
		},
	} {
		d := f.Device(id)
		if d == nil {
			t.Fatalf("no device %s", id)
		}
		eventually(t, id+" fixed as far as the agent can", func() bool { return want(d) })
	}

	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for _, d := range f.Devices() {
		id := d.ID()
		r.rec.WaitFor(t, patience, id+" offline", func(m testbroker.Message) bool {
			var s wire.State
			return m.Topic == wire.StateTopic(id) && json.Unmarshal(m.Payload, &s) == nil && s.State == wire.StateOffline
		})
	}
	// Best effort: paho and database/sql end their goroutines shortly after Close returns.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline+2 {
		t.Fatalf("%d goroutines after Stop, %d before the fleet:\n%s", n, baseline, simGoroutines())
	}
}

func failingNow(d *Device, control string) bool {
	dec, _, ok := d.Agent().Snapshot()
	return ok && slices.ContainsFunc(dec.Violations, func(v device.Violation) bool { return v.Control == control })
}

// simGoroutines lists the stacks of goroutines still running code of this module.
func simGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "faceguard/faceguard/") || strings.Contains(g, "paho") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func TestStartFleetRefusesDuplicates(t *testing.T) {
	_, err := StartFleet(context.Background(), FleetOptions{Dir: t.TempDir(), Engine: sharedEngine(t), SubjectKey: testSubjectKey,
		Profiles: []Profile{{ID: "a", Site: "s"}, {ID: "a", Site: "s"}}})
	if err == nil {
		t.Fatal("duplicate ids accepted")
	}
}

func TestStartFleetFailsWhenADeviceCannotStart(t *testing.T) {
	r := newRig(t)
	baseline := runtime.NumGoroutine()
	_, err := StartFleet(context.Background(), FleetOptions{Dir: t.TempDir(), Engine: sharedEngine(t), SubjectKey: testSubjectKey,
		BrokerURL: r.brokerURL, ReconnectJitter: 10 * time.Millisecond,
		Profiles: []Profile{{ID: "a", Site: "s"}, {ID: "b", Site: "s"}, {ID: "c", Site: "s", Kind: "robot"}}})
	if err == nil || !strings.Contains(err.Error(), "robot") {
		t.Fatalf("err %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline+2 {
		t.Fatalf("%d goroutines after a failed start, %d before:\n%s", n, baseline, simGoroutines())
	}
}

// BenchmarkDeviceMemory starts 100 devices (SIM_BENCH_DEVICES to change it) and reports what they add to the process, per device: the
// live Go heap and the resident set (which also counts SQLite's C allocations). Against Mosquitto, a
// separate process, that is the simulated devices alone; against the embedded mochi broker it includes
// the broker's memory for each connection. Run with -benchtime=1x.
func BenchmarkDeviceMemory(b *testing.B) {
	b.Run("mosquitto", func(b *testing.B) {
		if _, err := os.Stat(testbroker.MosquittoBinary); err != nil {
			b.Skip("mosquitto is not installed")
		}
		benchmarkDeviceMemory(b, testbroker.StartMosquitto(b, testbroker.MosquittoOptions{}).URL())
	})
	b.Run("mochi", func(b *testing.B) { benchmarkDeviceMemory(b, testbroker.Mochi(b).URL()) })
}

func benchmarkDeviceMemory(b *testing.B, brokerURL string) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("SIM_BENCH_DEVICES")); err == nil && v > 0 {
		n = v
	}
	eng := sharedEngine(b)
	profiles := make([]Profile, n)
	for i := range profiles {
		profiles[i] = Profile{ID: fmt.Sprintf("bench-%04d", i), Site: "bench"}
	}
	for b.Loop() {
		before, rssBefore, goroutines := liveHeap(), rss(b), runtime.NumGoroutine()
		f, err := StartFleet(context.Background(), FleetOptions{Dir: filepath.Join(b.TempDir(), "fleet"), Profiles: profiles,
			BrokerURL: brokerURL, SubjectKey: testSubjectKey, Engine: eng, ReconnectJitter: 10 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second) // let the first evaluations and status refreshes settle
		b.ReportMetric(float64(liveHeap()-before)/float64(n), "heap-B/device")
		b.ReportMetric(float64(rss(b)-rssBefore)/float64(n), "rss-B/device")
		b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/float64(n), "goroutines/device")
		if err := f.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

func liveHeap() uint64 {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rss is the process's resident set in bytes (Linux).
func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Skip("no /proc/self/statm")
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(data), &size, &resident); err != nil {
		b.Fatal(err)
	}
	return resident * int64(os.Getpagesize())
}
