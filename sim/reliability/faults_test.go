package reliability

import (
	"context"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/faceguard/faceguard/internal/netfault"
	"github.com/faceguard/faceguard/sim"
)

// TestBrokerRestart restarts the broker (a real Mosquitto process, SIGTERM, persistence on) while the
// devices keep producing events, once quickly and once after an outage during which the agents record
// events with nowhere to send them. Nothing may be lost, nothing recorded twice.
func TestBrokerRestart(t *testing.T) {
	t.Parallel()
	s := scaleOf(t)
	r := newRig(t)
	n := 10
	if s.soak {
		n = 100
	}
	f := r.startFleet(r.fleetOptions(mixedProfiles("restart", n)))
	devs := f.Devices()
	way := watchWayThrough(devs)
	tr := startTraffic(devs, 50*time.Millisecond)
	s.cycles(t, func(int) {
		time.Sleep(time.Second)
		r.mq.Restart() // a restart: down for as long as Mosquitto takes to save, stop and load
		time.Sleep(time.Second)
		r.mq.Stop() // an outage: the agents go on recording
		time.Sleep(s.outage)
		r.mq.Start()
		waitConnected(t, devs)
	})
	tr.Stop(t)
	r.checkDelivered(t, devs)
	checkOrdersSettled(t, devs)
	way.Check(t)
	t.Logf("sessions: %v (the agents never restarted: the broker did)", sessions(devs))
}

// TestNetworkCut cuts the network between the agents and the broker with a TCP proxy the test controls:
// first a partition (bytes held both ways, connections left open, new ones hanging), then a hard cut
// (every connection reset, new ones refused), each for a few seconds (a minute in the soak, past the
// MQTT keep-alive, so that both ends give the connection up), while the devices keep producing events.
// Some devices go straight to the broker, to show the cut is only theirs.
func TestNetworkCut(t *testing.T) {
	t.Parallel()
	s := scaleOf(t)
	r := newRig(t)
	proxy, proxied, err := netfault.ForURL(r.mq.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	n := 12
	if s.soak {
		n = 100
	}
	opts := r.fleetOptions(mixedProfiles("cut", n))
	opts.Customize = func(i int, o *sim.DeviceOptions) {
		if i%4 != 3 { // three devices in four behind the cut
			o.BrokerURL = proxied
		}
	}
	f := r.startFleet(opts)
	devs := f.Devices()
	way := watchWayThrough(devs)
	tr := startTraffic(devs, 50*time.Millisecond)
	s.cycles(t, func(int) {
		for _, mode := range []netfault.Mode{netfault.Blackhole, netfault.Drop} {
			time.Sleep(time.Second)
			proxy.Set(mode)
			time.Sleep(s.outage)
			proxy.Restore()
			waitConnected(t, devs)
		}
	})
	tr.Stop(t)
	r.checkDelivered(t, devs)
	checkOrdersSettled(t, devs)
	way.Check(t)
	st := proxy.Stats()
	t.Logf("proxy: %d connections accepted, %d forwarded, %d held by the partition, %d reset", st.Accepted, st.Forwarded, st.Held, st.Reset)
	if st.Reset == 0 {
		t.Error("the cut reset no connection: it cut nothing")
	}
}

// TestAgentKill kills agents (their connection reset, no clean stop: the broker publishes their last
// will) while their terminals go on changing, and restarts them on their store: every event recorded
// before the kill and every change made while the agent was dead reaches the controller once. (A real
// kill -9 of the agent process is in cmd/faceguard-agent's end-to-end tests.)
func TestAgentKill(t *testing.T) {
	t.Parallel()
	s := scaleOf(t)
	r := newRig(t)
	n := 8
	if s.soak {
		n = 50
	}
	opts := r.fleetOptions(mixedProfiles("kill", n))
	opts.Killable = true
	f := r.startFleet(opts)
	devs := f.Devices()
	way := watchWayThrough(devs)
	tr := startTraffic(devs, 50*time.Millisecond)
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	s.cycles(t, func(int) {
		for round := range 2 {
			victims := rng.Perm(n)[:max(n/3, 1)]
			var wg sync.WaitGroup
			for _, k := range victims {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := devs[k].Crash(); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			kills += len(victims)
			time.Sleep(time.Duration(500+round*1000) * time.Millisecond) // the terminals change meanwhile
			for _, k := range victims {
				if err := devs[k].Restart(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(500 * time.Millisecond) // killed again soon after a restart, sometimes mid-drain
		}
		waitConnected(t, devs)
	})
	tr.Stop(t)
	r.checkDelivered(t, devs)
	checkOrdersSettled(t, devs)
	way.Check(t)
	t.Logf("%d kills; sessions per device: %v", kills, sessions(devs))
}

// TestClockJump makes every device's wall clock jump — back an hour, forward a day, back again — as NTP
// steps or a flat RTC battery do, while the devices keep producing events. The agents order their
// messages by session and sequence, not by time: nothing may be lost, reordered or doubled, and when the
// clocks are right again the terminals' orders are what the policy demands.
func TestClockJump(t *testing.T) {
	t.Parallel()
	s := scaleOf(t)
	r := newRig(t)
	n := 8
	if s.soak {
		n = 50
	}
	clocks := make([]*sim.JumpClock, n)
	opts := r.fleetOptions(mixedProfiles("clock", n))
	opts.Customize = func(i int, o *sim.DeviceOptions) {
		clocks[i] = sim.NewJumpClock()
		o.Clock = clocks[i]
	}
	f := r.startFleet(opts)
	devs := f.Devices()
	way := watchWayThrough(devs)
	// No raw captures: one written while a clock is ahead outlives the jump back (productbugs_test.go).
	tr := startTrafficWith(devs, 50*time.Millisecond, false)
	jumps := []time.Duration{-time.Hour, 25 * time.Hour, -26 * time.Hour, -7 * 24 * time.Hour, 7 * 24 * time.Hour}
	rng := rand.New(rand.NewPCG(3, 4))
	s.cycles(t, func(cycle int) {
		for _, j := range jumps {
			if cycle > 0 { // the soak varies the jumps
				j = time.Duration(rng.Int64N(int64(48*time.Hour))) - 24*time.Hour
			}
			time.Sleep(1500 * time.Millisecond)
			for k, c := range clocks {
				if k%2 == 0 || j < 0 { // some devices jump, the others stay, forward jumps on half the fleet
					c.Jump(j)
				}
			}
		}
		time.Sleep(1500 * time.Millisecond)
		for _, c := range clocks {
			c.Reset()
		}
	})
	tr.Stop(t)
	// The terminals rewrite status.json every second; a stale or future one made its facts unknown for
	// a moment. Once the clocks are right, one more look settles every agent.
	time.Sleep(2 * time.Second)
	for _, d := range devs {
		d.Agent().Reevaluate("test: clocks set right")
	}
	r.checkDelivered(t, devs)
	checkOrdersSettled(t, devs)
	way.Check(t)
}

// TestMassReconnect restarts the broker under a fleet of a couple of hundred devices (a thousand in the
// soak), so that they all reconnect at once, with the product's default reconnection jitter, while some
// of them produce events. Every device must come back, lose nothing and duplicate nothing; the time each
// took to reconnect is reported.
func TestMassReconnect(t *testing.T) {
	t.Parallel()
	s := scaleOf(t)
	r := newRig(t)
	opts := r.fleetOptions(mixedProfiles("mass", s.reconnect))
	opts.ReconnectJitter = 0 // the agent's default, 5 s: the fleet spreads its reconnections itself
	f := r.startFleet(opts)
	devs := f.Devices()
	busy := devs[:min(len(devs), 24)]
	way := watchWayThrough(devs)
	tr := startTraffic(busy, 50*time.Millisecond)
	s.cycles(t, func(int) {
		time.Sleep(time.Second)
		r.mq.Stop()
		eventually(t, "every device to see the broker gone", func() bool {
			for _, d := range devs {
				if d.Connected() {
					return false
				}
			}
			return true
		})
		r.mq.Start()
		up := time.Now()
		back := make([]time.Duration, len(devs))
		eventually(t, "every device reconnected", func() bool {
			all := true
			for i, d := range devs {
				if back[i] == 0 {
					if d.Connected() {
						back[i] = time.Since(up)
					} else {
						all = false
					}
				}
			}
			return all
		})
		sort.Slice(back, func(i, j int) bool { return back[i] < back[j] })
		t.Logf("%d devices reconnected after the broker came back: p50 %s, p99 %s, last %s", len(devs),
			back[len(back)/2].Round(time.Millisecond), back[len(back)*99/100].Round(time.Millisecond), back[len(back)-1].Round(time.Millisecond))
	})
	tr.Stop(t)
	r.checkDelivered(t, devs)
	checkOrdersSettled(t, devs)
	way.Check(t)
	// The controller saw every device come back online.
	eventually(t, "every device online at the controller", func() bool {
		for _, d := range devs {
			dv, err := r.st.Device(context.Background(), d.ID())
			if err != nil || dv.State != "online" {
				return false
			}
		}
		return true
	})
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func sortDurations(d []time.Duration) []time.Duration {
	out := slices.Clone(d)
	slices.Sort(out)
	return out
}
