package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faceguard/faceguard/internal/netfault"
)

// Timeline runs a scenario's events against a running fleet. It is made before the fleet starts
// (Scenario.Timeline), because some events need the devices set up for them: a network cut or an agent
// kill routes its devices through a proxy of its own (internal/netfault) that it can cut, and a clock jump
// gives every device a clock that can jump (Customize does both).
type Timeline struct {
	sc      *Scenario
	n       int
	targets [][]int           // per event: the indexes of its devices
	proxies []*netfault.Proxy // per event: its proxy (network cuts and kills), or nil
	urls    []string          // per event: the broker URL through its proxy
	proxyOf []int             // per device: the event whose proxy it goes through, or -1
	clocks  []*JumpClock      // per device, when the scenario jumps clocks

	done, total atomic.Int64
	nextMu      sync.Mutex
	next        map[int]time.Time // per event: when it happens next
}

// Injection is one thing the timeline did, for the log: an event starting or ending on a device (or on a
// group of devices, for network cuts and kills).
type Injection struct {
	At      time.Time `json:"at"`
	Elapsed float64   `json:"t"` // seconds since the timeline started
	Event   string    `json:"event"`
	Index   int       `json:"index"` // events[index] of the scenario
	Device  string    `json:"device,omitempty"`
	Devices int       `json:"devices,omitempty"`
	Phase   string    `json:"phase"` // start, end (of a fault that lasts), or once
	Detail  string    `json:"detail,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// Timeline prepares the scenario's events for a fleet of n devices against brokerURL. Close it when the
// fleet has stopped.
func (sc *Scenario) Timeline(n int, brokerURL string) (*Timeline, error) {
	tl := &Timeline{sc: sc, n: n, targets: make([][]int, len(sc.Events)), proxies: make([]*netfault.Proxy, len(sc.Events)),
		urls: make([]string, len(sc.Events)), proxyOf: make([]int, n), next: map[int]time.Time{}}
	for i := range tl.proxyOf {
		tl.proxyOf[i] = -1
	}
	for i, e := range sc.Events {
		k := e.Devices.Of(n)
		order := sc.permutation(n, 100+uint64(i))
		switch e.Do {
		case EventNetworkCut, EventKillAgent:
			// Each device goes through one proxy: these events take devices no other one has.
			for _, d := range order {
				if len(tl.targets[i]) == k {
					break
				}
				if tl.proxyOf[d] < 0 {
					tl.proxyOf[d] = i
					tl.targets[i] = append(tl.targets[i], d)
				}
			}
			if len(tl.targets[i]) < k {
				tl.Close()
				return nil, fmt.Errorf("scenario: events[%d]: %d devices wanted, %d left that no other cut or kill takes", i, k, len(tl.targets[i]))
			}
			if brokerURL != "" && k > 0 {
				p, url, err := netfault.ForURL(brokerURL)
				if err != nil {
					tl.Close()
					return nil, fmt.Errorf("scenario: events[%d]: %w", i, err)
				}
				tl.proxies[i], tl.urls[i] = p, url
			}
		default:
			tl.targets[i] = order[:k]
		}
		if e.Do == EventClockJump && tl.clocks == nil {
			tl.clocks = make([]*JumpClock, n)
			for d := range tl.clocks {
				tl.clocks[d] = NewJumpClock()
			}
		}
	}
	return tl, nil
}

// Customize sets up the i-th device for the events that need it (FleetOptions.Customize).
func (tl *Timeline) Customize(i int, o *DeviceOptions) {
	if i < 0 || i >= tl.n {
		return
	}
	if e := tl.proxyOf[i]; e >= 0 && tl.urls[e] != "" {
		o.BrokerURL = tl.urls[e]
	}
	if tl.clocks != nil {
		o.Clock = tl.clocks[i]
	}
}

// Targets are the indexes of the devices events[i] happens to.
func (tl *Timeline) Targets(i int) []int { return tl.targets[i] }

// Proxy is the proxy of events[i] (a network cut or a kill), or nil.
func (tl *Timeline) Proxy(i int) *netfault.Proxy { return tl.proxies[i] }

// Progress says how many event occurrences ran, how many there are in all (-1 when some repeat until
// stopped), and what comes next.
func (tl *Timeline) Progress() (done, total int64, next string) {
	tl.nextMu.Lock()
	defer tl.nextMu.Unlock()
	var at time.Time
	for i, t := range tl.next {
		if at.IsZero() || t.Before(at) {
			at, next = t, tl.sc.Events[i].Do
		}
	}
	switch {
	case next == "":
	case time.Until(at) <= 0:
		next += " now"
	default:
		next = fmt.Sprintf("%s in %s", next, time.Until(at).Round(time.Second))
	}
	return tl.done.Load(), tl.total.Load(), next
}

// Close stops the proxies (after the fleet has stopped).
func (tl *Timeline) Close() error {
	var errs []error
	for _, p := range tl.proxies {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// Run plays the timeline against f (started with Customize) until every event is done, the scenario's
// duration is over, or ctx ends. A fault still on when it returns is cleared first: cuts restored,
// killed agents restarted, clocks set right, prompts off. record, when set, is told of every injection.
func (tl *Timeline) Run(ctx context.Context, f *Fleet, record func(Injection)) error {
	if len(f.Devices()) != tl.n {
		return fmt.Errorf("sim: the timeline is for %d devices, the fleet has %d", tl.n, len(f.Devices()))
	}
	if d := tl.sc.Duration.D(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	start := time.Now()
	var recMu sync.Mutex
	log := func(in Injection) {
		if record == nil {
			return
		}
		in.At = time.Now()
		in.Elapsed = in.At.Sub(start).Seconds()
		recMu.Lock()
		defer recMu.Unlock()
		record(in)
	}
	var total int64
	for _, e := range tl.sc.Events {
		n := occurrences(e, tl.sc.Duration.D())
		if n < 0 {
			total = -1
			break
		}
		total += int64(n)
	}
	tl.total.Store(total)

	var wg sync.WaitGroup
	errs := make([]error, len(tl.sc.Events))
	for i := range tl.sc.Events {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = tl.play(ctx, f, i, start, log)
		}()
	}
	wg.Wait()
	tl.nextMu.Lock()
	clear(tl.next)
	tl.nextMu.Unlock()
	return errors.Join(errs...)
}

// occurrences counts how often an event happens in a scenario of the given duration (-1: until stopped).
func occurrences(e EventSpec, total time.Duration) int {
	if e.Every == 0 {
		return 1
	}
	end := e.Until.D()
	if end == 0 || (total > 0 && end > total) {
		end = total
	}
	if end == 0 {
		return -1
	}
	return int((end-e.At.D())/e.Every.D()) + 1
}

// play runs one event of the timeline, every time it happens.
func (tl *Timeline) play(ctx context.Context, f *Fleet, i int, start time.Time, log func(Injection)) error {
	e := tl.sc.Events[i]
	end := e.Until.D()
	if total := tl.sc.Duration.D(); end == 0 || (total > 0 && end > total) {
		end = total
	}
	var errs []error
	for at := e.At.D(); ; at += e.Every.D() {
		if end > 0 && at > end {
			break
		}
		tl.nextMu.Lock()
		tl.next[i] = start.Add(at)
		tl.nextMu.Unlock()
		if !sleepUntil(ctx, start.Add(at)) {
			break
		}
		if err := tl.apply(ctx, f, i, log); err != nil {
			errs = append(errs, err)
		}
		tl.done.Add(1)
		if e.Every == 0 {
			break
		}
	}
	tl.nextMu.Lock()
	delete(tl.next, i)
	tl.nextMu.Unlock()
	return errors.Join(errs...)
}

// sleepUntil waits for t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// sleepFor waits d, or until ctx ends (false).
func sleepFor(ctx context.Context, d time.Duration) bool { return sleepUntil(ctx, time.Now().Add(d)) }

// apply makes one occurrence of events[i] happen.
func (tl *Timeline) apply(ctx context.Context, f *Fleet, i int, log func(Injection)) error {
	e := tl.sc.Events[i]
	devs := f.Devices()
	targets := tl.targets[i]
	count := max(e.Count, 1)
	switch e.Do {
	case EventWithdrawConsent, EventRawCaptures, EventEnrol:
		return tl.each(ctx, targets, e.Spread.D(), func(k int) error {
			d := devs[k]
			var (
				n   int
				err error
			)
			switch e.Do {
			case EventWithdrawConsent:
				n, err = d.Terminal().WithdrawConsents(context.WithoutCancel(ctx), count)
			case EventRawCaptures:
				err = d.Terminal().Capture(count)
				n = count
			case EventEnrol:
				n, err = d.Terminal().Enrol(context.WithoutCancel(ctx), count)
			}
			log(Injection{Event: e.Do, Index: i, Device: d.ID(), Phase: "once", Detail: fmt.Sprintf("%d", n), Error: errText(err)})
			return err
		})
	case EventCoercivePrompt, EventClockJump:
		var offs sync.WaitGroup
		defer offs.Wait()
		return tl.each(ctx, targets, e.Spread.D(), func(k int) error {
			d := devs[k]
			var err error
			if e.Do == EventCoercivePrompt {
				err = d.Terminal().SetCoercivePrompt(true)
			} else {
				tl.clocks[k].Jump(e.By.D())
			}
			phase, detail := "start", ""
			if e.For == 0 {
				phase = "once"
			}
			if e.Do == EventClockJump {
				detail = e.By.String()
			}
			log(Injection{Event: e.Do, Index: i, Device: d.ID(), Phase: phase, Detail: detail, Error: errText(err)})
			if e.For == 0 || err != nil {
				return err
			}
			offs.Add(1)
			go func() {
				defer offs.Done()
				sleepFor(ctx, e.For.D()) // cleared early when the run ends
				var err error
				if e.Do == EventCoercivePrompt {
					err = d.Terminal().SetCoercivePrompt(false)
				} else {
					tl.clocks[k].Jump(-e.By.D())
				}
				log(Injection{Event: e.Do, Index: i, Device: d.ID(), Phase: "end", Error: errText(err)})
			}()
			return nil
		})
	case EventNetworkCut:
		p := tl.proxies[i]
		if p == nil {
			return nil
		}
		mode := netfault.Blackhole
		if e.Mode == "drop" {
			mode = netfault.Drop
		}
		p.Set(mode)
		log(Injection{Event: e.Do, Index: i, Devices: len(targets), Phase: "start", Detail: mode.String()})
		sleepFor(ctx, e.For.D())
		p.Restore()
		log(Injection{Event: e.Do, Index: i, Devices: len(targets), Phase: "end"})
		return nil
	case EventKillAgent:
		if p := tl.proxies[i]; p != nil {
			p.Drop() // the connections die with a reset first, as when the process dies
		}
		errs := make([]error, len(targets))
		parallel(targets, func(j, k int) { errs[j] = devs[k].Crash() })
		log(Injection{Event: e.Do, Index: i, Devices: len(targets), Phase: "start", Error: errText(errors.Join(errs...))})
		sleepFor(ctx, e.For.D())
		if p := tl.proxies[i]; p != nil {
			p.Restore()
		}
		parallel(targets, func(j, k int) {
			if !devs[k].Running() {
				errs[j] = devs[k].Restart()
			}
		})
		err := errors.Join(errs...)
		log(Injection{Event: e.Do, Index: i, Devices: len(targets), Phase: "end", Error: errText(err)})
		return err
	}
	return fmt.Errorf("sim: unknown event %q", e.Do)
}

// each calls fn for every target, spread evenly over spread; it stops early (without error) when ctx
// ends.
func (tl *Timeline) each(ctx context.Context, targets []int, spread time.Duration, fn func(k int) error) error {
	var errs []error
	start := time.Now()
	for j, k := range targets {
		if spread > 0 && j > 0 {
			if !sleepUntil(ctx, start.Add(spread*time.Duration(j)/time.Duration(len(targets)))) {
				break
			}
		}
		if err := fn(k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parallel runs fn for every target at once (at most 64 at a time).
func parallel(targets []int, fn func(j, k int)) {
	slots := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for j, k := range targets {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			fn(j, k)
		}()
	}
	wg.Wait()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
