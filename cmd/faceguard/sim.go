package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

// fdsPerDevice is what one simulated device holds open: its MQTT socket, the agent's store (the database,
// its write-ahead log and shared-memory index) and the gallery's read connection for the facts (the same
// three, and one more database handle). A device behind a scenario's proxy holds two more.
const fdsPerDevice = 8

// On a terminal the agent keeps its gallery connections open: the read-only one the facts are counted on
// (with its last count) and the warm read-write one. Here that would be ten files a device, and 2,000
// devices would not fit in this machine's 20,000 open files: the simulated agents count on a connection
// opened for each count and close the read-write one after a minute unused (fsterm.Options), which keeps
// fdsPerDevice at eight, at the price of a whole count per evaluation and an open of the gallery at the
// first match or forget-subject after a quiet minute.
const simGalleryIdle = time.Minute

// runSim is `faceguard sim`: many simulated terminals, each a real agent with its own MQTT connection,
// against any broker, playing a scenario, until its end or Ctrl-C; then a summary, which checks every
// event the devices recorded against what the broker delivered.
func runSim(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	n := fs.Int("devices", 0, "how many simulated terminals (default: the scenario's)")
	brokerURL := fs.String("broker", "tcp://127.0.0.1:1883", "the MQTT broker `URL`")
	scenarioArg := fs.String("scenario", "default", "the scenario: a YAML `FILE`, or a built-in one ("+strings.Join(sim.BuiltinScenarios(), ", ")+")")
	keysDir := fs.String("keys", "", "the fleet's keys `DIR` (controller.pub, subject.key): without it the simulated terminals get keys of their own and refuse the controller's commands")
	dir := fs.String("dir", "", "where the terminal roots and agent stores live, kept at exit (default: a temporary directory on tmpfs when there is one, removed at exit)")
	prefix := fs.String("prefix", "", "device ids are `PREFIX`-00001… (default: the scenario's); give each of several sim processes its own")
	perSite := fs.Int("per-site", 0, "terminals per simulated site (default: the scenario's)")
	every := fs.Duration("evaluate", 0, "each agent evaluates at least this often (default: the scenario's)")
	// Unset, the scenario says how long; a flag.Duration would need a sentinel default, and the help
	// would show it ("default -1ns").
	var duration *time.Duration
	fs.Func("duration", "run for `duration` once the fleet is up; 0 runs until Ctrl-C (default: the scenario's)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err == nil && d < 0 {
			err = errors.New("a duration cannot be negative")
		}
		duration = &d
		return err
	})
	progressEvery := fs.Duration("progress", 2*time.Second, "print a progress line this often")
	eventsLog := fs.String("events-log", "", "append every event the scenario injects to `FILE`, as JSON lines")
	check := fs.Bool("check", true, "watch the devices' events at the broker and check at exit that every recorded event got through")
	settle := fs.Duration("settle", 30*time.Second, "at the end, wait up to this long for every device to be connected with an empty outbox before stopping")
	logLevel := fs.String("log-level", "error", "the agents' log `level`: debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	sc, err := sim.LoadScenario(*scenarioArg)
	if err != nil {
		return usageError{err}
	}
	if *prefix != "" {
		sc.Prefix = *prefix
	}
	if *perSite > 0 {
		sc.Sites = sim.SiteSpec{PerSite: *perSite, Names: sc.Sites.Names}
	}
	if *every > 0 {
		sc.Agent.EvaluateEvery = sim.Duration(*every)
	}
	if duration != nil {
		sc.Duration = sim.Duration(*duration)
	}
	devices := *n
	if devices == 0 {
		devices = cmp.Or(sc.Devices, 100)
	}
	if devices < 1 || devices > sim.MaxScenarioDevices {
		return usageError{fmt.Errorf("sim: --devices must be 1 to %d", sim.MaxScenarioDevices)}
	}
	if sc.Prefix != "" && !wire.ValidDeviceID(sc.Prefix+"-00001") {
		return usageError{fmt.Errorf("sim: prefix %q makes invalid device ids", sc.Prefix)}
	}
	ctrlPub, subjectKey, err := simKeys(*keysDir)
	if err != nil {
		return usageError{err}
	}
	workDir := *dir
	if workDir == "" {
		base := ""
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			base = "/dev/shm"
		}
		d, err := os.MkdirTemp(base, "faceguard-sim-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		workDir = d
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Errorf("sim: --log-level %q: want debug, info, warn or error", *logLevel)}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	if have, need := raiseFileLimit(), devices*fdsPerDevice+256; have < uint64(need) {
		fmt.Fprintf(e.stderr, "faceguard sim: %d devices need about %d open files and the limit is %d: devices will fail to start; "+
			"run several faceguard sim processes with distinct --prefix, or raise ulimit -n\n", devices, need, have)
	}
	eng, err := engine.New(ctx, engine.Options{})
	if err != nil {
		return err
	}
	profiles := sc.Profiles(devices)
	tl, err := sc.Timeline(devices, *brokerURL)
	if err != nil {
		return usageError{err}
	}
	defer tl.Close()

	var watch *sim.EventWatch
	if *check {
		pfx := sc.IDPrefix() + "-"
		id := fmt.Sprintf("faceguard-sim-check-%s%d", pfx, os.Getpid())
		if watch, err = sim.WatchEvents(*brokerURL, id, func(dev string) bool { return strings.HasPrefix(dev, pfx) }); err != nil {
			return err
		}
		defer watch.Close()
	}
	var logFile *os.File
	if *eventsLog != "" {
		if logFile, err = os.OpenFile(*eventsLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return usageError{err}
		}
		defer logFile.Close()
	}

	name := sc.Name
	if name == "" {
		name = *scenarioArg
	}
	fmt.Fprintf(e.stdout, "faceguard sim: scenario %s, %d terminals in %s, against %s\n", name, devices, workDir, *brokerURL)
	start := time.Now()
	var started atomic.Int64
	progress := newTicker(*progressEvery, func() {
		fmt.Fprintf(e.stdout, "sim %s: starting, %d/%d terminals started\n", time.Since(start).Round(time.Second), started.Load(), devices)
	})
	opts := sim.FleetOptions{Dir: workDir, Profiles: profiles, BrokerURL: *brokerURL, ControllerKey: ctrlPub, SubjectKey: subjectKey,
		Engine: eng, Logger: log, GalleryIdleTimeout: simGalleryIdle, CountOnFreshConnection: true, Customize: func(i int, o *sim.DeviceOptions) {
			tl.Customize(i, o)
			started.Add(1)
		}}
	sc.FleetOptions(&opts)
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = time.Duration(devices/20+60) * time.Second
	}
	fl, err := sim.StartFleet(ctx, opts)
	progress.stop()
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	connectTime := time.Since(start)
	fmt.Fprintf(e.stdout, "sim %s: %d terminals online in %s\n", connectTime.Round(time.Second), devices, connectTime.Round(time.Millisecond))

	runStart := time.Now()
	progress = newTicker(*progressEvery, func() { fmt.Fprintln(e.stdout, progressLine(ctx, fl, tl, time.Since(runStart))) })
	runCtx, stopRun := context.WithCancel(ctx)
	timelineDone := make(chan error, 1)
	var logMu sync.Mutex
	go func() {
		timelineDone <- tl.Run(runCtx, fl, func(in sim.Injection) {
			if logFile == nil {
				return
			}
			b, _ := json.Marshal(in)
			logMu.Lock()
			defer logMu.Unlock()
			_, _ = logFile.Write(append(b, '\n'))
		})
	}()
	// The timeline ends early when its last event is done; the scenario runs for its whole duration, or
	// until Ctrl-C when it has none.
	end := ctx
	if sc.Duration > 0 {
		var cancel context.CancelFunc
		end, cancel = context.WithDeadline(ctx, runStart.Add(sc.Duration.D()))
		defer cancel()
	}
	<-end.Done()
	stopRun()
	timelineErr := <-timelineDone
	ran := time.Since(runStart)
	if *settle > 0 {
		fmt.Fprintf(e.stdout, "sim %s: settling: waiting up to %s for every device to be connected with an empty outbox…\n",
			ran.Round(time.Second), *settle)
		waitSettled(fl, *settle)
	}
	progress.stop()
	fmt.Fprintln(e.stdout, progressLine(context.Background(), fl, tl, time.Since(runStart)))
	fmt.Fprintln(e.stdout, "stopping…")

	sum := summarize(fl)
	if err := fl.Stop(); err != nil {
		fmt.Fprintf(e.stderr, "faceguard sim: stop: %v\n", err)
	}
	fmt.Fprintf(e.stdout, "summary: scenario %s, %d terminals, online in %s, ran %s\n", name, devices,
		connectTime.Round(time.Millisecond), ran.Round(time.Second))
	fmt.Fprintf(e.stdout, "  at the end: %d compliant, %d not, %d failed safe; face recognition off on %d (all with another way through: %v)\n",
		sum.compliant, sum.nonCompliant, sum.failSafe, sum.frOff, len(sum.noWayThrough) == 0)
	if timelineErr != nil {
		fmt.Fprintf(e.stdout, "  timeline: %v\n", timelineErr)
	}
	var problems []string
	if len(sum.noWayThrough) > 0 {
		problems = append(problems, fmt.Sprintf("%d terminals with face recognition off and no other way through: %v",
			len(sum.noWayThrough), first(sum.noWayThrough, 10)))
	}
	if watch != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		watch.Settle(sctx, 2*time.Second)
		cancel()
		del, err := sim.CheckDelivery(context.Background(), fl.Devices(), watch.Events)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "  events: %d recorded by the devices (and %d deletion receipts); %d delivered through the broker, %d still in outboxes, "+
			"%d duplicate deliveries dropped; devices with an event lost: %d; audit chains broken: %d\n",
			del.Recorded, del.Receipts, del.Received, del.Pending, del.Duplicates, del.Lost, del.ChainBroken)
		if !del.OK() {
			problems = append(problems, del.Problems...)
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(e.stdout, "  PROBLEM %s\n", p)
		}
		return failed{fmt.Sprintf("sim: %d problems (above)", len(problems))}
	}
	return nil
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// waitSettled waits up to d until every device is connected with an empty outbox (a second Ctrl-C does
// not cut it short: d is short).
func waitSettled(fl *sim.Fleet, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		settled := true
		for _, dev := range fl.Devices() {
			if !dev.Connected() {
				settled = false
				break
			}
			if n, err := dev.Store().OutboxLen(ctx); err != nil || n > 0 {
				settled = false
				break
			}
		}
		if settled {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// progressLine is one line of progress: connections, agents down, outboxes, the timeline.
func progressLine(ctx context.Context, fl *sim.Fleet, tl *sim.Timeline, elapsed time.Duration) string {
	connected, down, outbox := 0, 0, 0
	for _, d := range fl.Devices() {
		switch {
		case !d.Running():
			down++
			continue
		case d.Connected():
			connected++
		}
		if n, err := d.Store().OutboxLen(ctx); err == nil {
			outbox += n
		}
	}
	done, total, next := tl.Progress()
	timeline := fmt.Sprintf("timeline %d/%d", done, total)
	if total < 0 {
		timeline = fmt.Sprintf("timeline %d done", done)
	}
	if next != "" {
		timeline += ", next " + next
	}
	return fmt.Sprintf("sim %s: %d/%d connected, %d agents down, %d messages in outboxes, %s",
		elapsed.Round(time.Second), connected, len(fl.Devices()), down, outbox, timeline)
}

type simSummary struct {
	compliant, nonCompliant, failSafe, frOff int
	noWayThrough                             []string
}

func summarize(fl *sim.Fleet) simSummary {
	var s simSummary
	for _, d := range fl.Devices() {
		dec, _, ok := d.Agent().Snapshot()
		switch {
		case !ok:
			s.nonCompliant++
		case dec.Status == device.StatusCompliant:
			s.compliant++
		case dec.Status == "":
			s.failSafe++
		default:
			s.nonCompliant++
		}
		o, err := d.Terminal().Orders()
		if err != nil {
			s.noWayThrough = append(s.noWayThrough, d.ID()+" ("+err.Error()+")")
			continue
		}
		if !o.FaceRecognitionAllowed {
			s.frOff++
		}
		if !o.WayThrough() {
			s.noWayThrough = append(s.noWayThrough, d.ID())
		}
	}
	return s
}

// ticker calls fn every d until stopped.
type ticker struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func newTicker(d time.Duration, fn func()) *ticker {
	t := &ticker{done: make(chan struct{})}
	if d <= 0 {
		return t
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-t.done:
				return
			case <-tick.C:
				fn()
			}
		}
	}()
	return t
}

func (t *ticker) stop() {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
	t.wg.Wait()
}

// raiseFileLimit raises the soft limit of open files to the hard limit and returns it: each simulated
// device holds several.
func raiseFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	return lim.Cur
}

// simKeys reads the fleet's keys, or makes throwaway ones.
func simKeys(dir string) (ed25519.PublicKey, []byte, error) {
	if dir == "" {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, nil, err
		}
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(i*7 + 1)
		}
		return pub, []byte(fmt.Sprintf("%x", key)), nil
	}
	b, err := os.ReadFile(filepath.Join(dir, controllerPubFile))
	if err != nil {
		return nil, nil, fmt.Errorf("--keys: %w", err)
	}
	pub, err := wire.ParseEd25519PublicKey(b)
	if err != nil {
		return nil, nil, err
	}
	subject, err := agent.ReadSubjectKey(filepath.Join(dir, subjectKeyFile))
	if err != nil {
		return nil, nil, err
	}
	return pub, subject, nil
}
