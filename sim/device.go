package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
	"github.com/faceguard/faceguard/internal/netfault"
)

// DefaultMaxEvaluations is how many evaluations a simulated agent's store keeps (the agent's own
// default, a thousand, is for a real device's history).
const DefaultMaxEvaluations = 100

// DefaultInboxSize is the inbox of a simulated agent: commands come one at a time, and one left
// unacknowledged when it is full is delivered again by the broker.
const DefaultInboxSize = 16

// DeviceOptions build one simulated device.
type DeviceOptions struct {
	// Dir is the device's own directory, created if needed: the terminal root is Dir/root and the
	// agent's store Dir/agent.db.
	Dir string
	// StateDir, when set, is where the agent's store lives instead (StateDir/agent.db, created if
	// needed): a directory of its own, on a small file system to fill, say.
	StateDir string
	Profile  Profile
	// Engine is the compiled policy, shared by every simulated device (a prepared query is safe for
	// concurrent use); required.
	Engine *engine.Engine
	// BrokerURL is the MQTT broker; "" runs the agent without a fleet (it still enforces and records).
	BrokerURL     string
	ControllerKey ed25519.PublicKey // verifies commands; nil refuses every command
	// SubjectKey is the fleet's subject hash key, at least 32 bytes: purges write their receipts under it.
	SubjectKey []byte

	EvaluateEvery   time.Duration // default agent.DefaultEvaluate
	HeartbeatEvery  time.Duration // default agent.DefaultHeartbeat
	ReconnectJitter time.Duration // before each reconnection; default the agent's (5 s), tests make it short
	StatusMaxAge    time.Duration // status.json older than this is unknown; default agent.DefaultStatusMaxAge
	MaxEvaluations  int           // default DefaultMaxEvaluations
	// InboxSize bounds the commands waiting for the agent; default DefaultInboxSize (a real agent's 1,024
	// slots, a channel allocated whole, would cost 64 KB a simulated device).
	InboxSize int
	// GalleryIdleTimeout closes the agent's read-write gallery connection after it has been unused this
	// long; 0 keeps it warm as on a terminal (fsterm.Options). faceguard sim sets it to fit thousands of
	// devices in one process's open files.
	GalleryIdleTimeout time.Duration
	// CountOnFreshConnection: the agent opens the gallery for each count of its facts (fsterm.Options).
	CountOnFreshConnection bool
	Clock                  clock.Clock  // nil: the system clock; a *JumpClock makes the device's wall clock jump
	Logger                 *slog.Logger // nil: discard
	// Killable routes the agent's MQTT connection through a relay of the simulator's (a netfault proxy),
	// so that Kill can cut it the way a crash or a power cut does: the broker sees the socket reset
	// without an MQTT DISCONNECT and publishes the agent's last will, which a cancelled agent.Run never
	// lets happen (it publishes its offline state). It costs a listening socket, two more connections and
	// two goroutines.
	Killable bool
}

// ErrNotKillable is returned by Device.Kill for a device started without DeviceOptions.Killable.
var ErrNotKillable = errors.New("sim: the device was not started killable")

// Device is one simulated device: a fake terminal, a real agent judging it through fsterm, the agent's
// store, and the agent's MQTT connection. The agent can crash and be restarted on its store (Crash,
// Restart) while the terminal goes on, as a terminal's software does when its agent dies.
type Device struct {
	opts DeviceOptions
	term *Terminal
	// ctx is StartDevice's: a restarted agent runs under it too.
	ctx context.Context

	// mu serialises starting and stopping the agent; run is the agent running now (nil while crashed
	// or stopped), read without the lock.
	mu  sync.Mutex
	run atomic.Pointer[agentRun]

	stopTerm   context.CancelFunc
	termExited chan struct{}
	termErr    error

	stopped bool
	stopErr error
	last    *agentRun // the run that stopped last (a crash or the stop)
}

// agentRun is one run of the agent: its terminal adapter, its store and MQTT connection (through the
// kill switch when the device is killable), until it stops.
type agentRun struct {
	fst    *fsterm.Terminal
	store  *store.Store
	agent  *agent.Agent
	relay  *netfault.Proxy
	stop   context.CancelFunc
	exited chan struct{}
	err    error
}

// StartDevice writes the device's terminal, opens its store, and starts the fake terminal software and
// the agent. They run until Stop or Kill, or until ctx is cancelled (then as Stop, without closing the
// store: call Stop for that).
func StartDevice(ctx context.Context, opts DeviceOptions) (*Device, error) {
	switch {
	case opts.Dir == "":
		return nil, errors.New("sim: DeviceOptions.Dir is required")
	case opts.Engine == nil:
		return nil, errors.New("sim: DeviceOptions.Engine is required")
	case len(opts.SubjectKey) < 32:
		return nil, fmt.Errorf("sim: the subject key has %d bytes, want at least 32: purges write their receipts under it", len(opts.SubjectKey))
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StatusMaxAge == 0 {
		opts.StatusMaxAge = agent.DefaultStatusMaxAge
	}
	if opts.MaxEvaluations == 0 {
		opts.MaxEvaluations = DefaultMaxEvaluations
	}
	if opts.InboxSize == 0 {
		opts.InboxSize = DefaultInboxSize
	}
	if opts.StateDir == "" {
		opts.StateDir = opts.Dir
	}
	for _, dir := range []string{opts.Dir, opts.StateDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	term, err := NewTerminal(filepath.Join(opts.Dir, "root"), opts.Profile, opts.Clock)
	if err != nil {
		return nil, err
	}
	d := &Device{opts: opts, term: term, ctx: ctx, termExited: make(chan struct{})}
	if err := d.startAgent(); err != nil {
		return nil, err
	}
	// The terminal tells whichever agent runs now; while none does, the change waits for the next start,
	// which evaluates first thing.
	term.OnChange = func() {
		if r := d.run.Load(); r != nil {
			r.agent.Notify()
		}
	}
	term.Logger = opts.Logger.With("component", "sim-terminal")
	termCtx, stopTerm := context.WithCancel(ctx)
	d.stopTerm = stopTerm
	go func() {
		defer close(d.termExited)
		d.termErr = term.Run(termCtx)
	}()
	return d, nil
}

// startAgent opens the agent's parts on the device's store and starts it. d.mu is held, or d is not
// shared yet.
func (d *Device) startAgent() error {
	opts := d.opts
	id := d.term.Profile().ID
	r := &agentRun{exited: make(chan struct{})}
	r.fst = fsterm.New(fsterm.Options{Root: d.term.Root(), Clock: opts.Clock, DeviceID: id,
		StatusMaxAge: opts.StatusMaxAge, SubjectKey: opts.SubjectKey, GalleryIdleTimeout: opts.GalleryIdleTimeout,
		CountOnFreshConnection: opts.CountOnFreshConnection})
	var err error
	r.store, err = store.Open(filepath.Join(opts.StateDir, "agent.db"), store.Options{Clock: opts.Clock, MaxEvaluations: opts.MaxEvaluations})
	if err != nil {
		r.fst.Close()
		return fmt.Errorf("sim: device %s: %w", id, err)
	}
	brokerURL := opts.BrokerURL
	if opts.Killable && brokerURL != "" {
		if r.relay, brokerURL, err = netfault.ForURL(brokerURL); err != nil {
			r.close()
			return fmt.Errorf("sim: device %s: kill switch: %w", id, err)
		}
	}
	r.agent, err = agent.New(agent.Options{
		DeviceID: id, Terminal: r.fst, Engine: opts.Engine, Store: r.store, Clock: opts.Clock, Logger: opts.Logger,
		BrokerURL: brokerURL, ReconnectJitter: opts.ReconnectJitter, InboxSize: opts.InboxSize,
		ControllerKey: opts.ControllerKey, SubjectKey: opts.SubjectKey,
		EvaluateEvery: opts.EvaluateEvery, HeartbeatEvery: opts.HeartbeatEvery,
		WatchRoot: "", // told by the terminal instead (Terminal.OnChange)
		APISocket: "",
	})
	if err != nil {
		if cerr := r.close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return fmt.Errorf("sim: device %s: %w", id, err)
	}
	agentCtx, stop := context.WithCancel(d.ctx)
	r.stop = stop
	go func() {
		defer close(r.exited)
		r.err = r.agent.Run(agentCtx)
	}()
	d.run.Store(r)
	return nil
}

// close closes the run's parts once its agent has stopped.
func (r *agentRun) close() error {
	var errs []error
	if r.relay != nil {
		errs = append(errs, r.relay.Close())
	}
	errs = append(errs, r.fst.Close(), r.store.Close())
	return errors.Join(errs...)
}

// halt stops the run's agent, severing its connection first when sever is set, and closes its parts.
func (r *agentRun) halt(sever bool) error {
	if sever && r.relay != nil {
		// A reset without an MQTT DISCONNECT, as when the process dies: the broker publishes the will.
		r.relay.Drop()
	}
	r.stop()
	<-r.exited
	return errors.Join(r.err, r.close())
}

// ID is the device id.
func (d *Device) ID() string { return d.term.p.ID }

// Agent is the device's agent: the one running now, or the last one while it is crashed.
func (d *Device) Agent() *agent.Agent { return d.current().agent }

// Connected reports whether the agent runs and its MQTT connection is open.
func (d *Device) Connected() bool {
	r := d.run.Load()
	return r != nil && r.agent.Connected()
}

// Running reports whether the agent runs (it is neither crashed nor stopped).
func (d *Device) Running() bool { return d.run.Load() != nil }

// Terminal is the device's simulated terminal.
func (d *Device) Terminal() *Terminal { return d.term }

// Store is the agent's store: open while the agent runs; closed while it is crashed or stopped (use
// StorePath then).
func (d *Device) Store() *store.Store { return d.current().store }

// StorePath is the agent's store file.
func (d *Device) StorePath() string { return filepath.Join(d.opts.StateDir, "agent.db") }

// current is the run for the accessors: the one running now, or the one that stopped last.
func (d *Device) current() *agentRun {
	if r := d.run.Load(); r != nil {
		return r
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// Dir is the device's directory.
func (d *Device) Dir() string { return d.opts.Dir }

// WaitReady waits until the agent has evaluated the terminal and, with a broker, the broker has
// acknowledged everything the agent queued: the agent is connected and its first compliance summary is
// published. It returns early with ctx's error, or if the agent stopped.
func (d *Device) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		r := d.run.Load()
		if r == nil {
			return fmt.Errorf("sim: device %s: the agent is not running", d.ID())
		}
		if ready, err := d.ready(ctx, r); err != nil || ready {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sim: device %s not ready: %w", d.ID(), ctx.Err())
		case <-r.exited:
			return fmt.Errorf("sim: device %s: the agent stopped: %v", d.ID(), r.err)
		case <-tick.C:
		}
	}
}

func (d *Device) ready(ctx context.Context, r *agentRun) (bool, error) {
	if _, _, ok := r.agent.Snapshot(); !ok {
		return false, nil
	}
	// The evaluation and its summary are recorded in one transaction, after the snapshot: once the
	// evaluation is in the store, so is the summary, and an empty outbox means the broker has it.
	evals, err := r.store.Evaluations(ctx, 1)
	if err != nil || len(evals) == 0 {
		return false, nil //nolint:nilerr // the store is busy: look again
	}
	if d.opts.BrokerURL == "" {
		return true, nil
	}
	n, err := r.store.OutboxLen(ctx)
	return err == nil && n == 0, nil
}

// Stop stops the agent cleanly (it drains its outbox for a few seconds and publishes its offline state),
// then the fake terminal, and closes the store. It is safe to call more than once.
func (d *Device) Stop() error { return d.stop(false) }

// Kill cuts the agent's MQTT connection abruptly, as a crash would (the broker publishes the last will),
// then stops everything as Stop does. Unlike kill -9, the agent still records its stop in its own store.
// It needs DeviceOptions.Killable (ErrNotKillable otherwise).
func (d *Device) Kill() error {
	if !d.opts.Killable {
		return ErrNotKillable
	}
	return d.stop(true)
}

// Crash kills the agent alone, as Kill does (its connection cut with a reset, then stopped without
// drain), and leaves the terminal running and the store closed on disk. Restart starts a new agent on
// the same store. Without DeviceOptions.Killable the connection is not cut first: the caller cuts it (a
// netfault proxy), or the agent's offline state goes out as on a clean stop.
func (d *Device) Crash() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("sim: the device is stopped")
	}
	r := d.run.Swap(nil)
	if r == nil {
		return errors.New("sim: the agent is not running")
	}
	d.last = r
	if err := r.halt(true); err != nil {
		return fmt.Errorf("sim: device %s: crash: %w", d.ID(), err)
	}
	return nil
}

// Restart starts a new agent on the store a Crash left (a new session of the same device). It returns
// once the agent is started, not once it is connected: WaitReady is for that.
func (d *Device) Restart() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.stopped:
		return errors.New("sim: the device is stopped")
	case d.run.Load() != nil:
		return errors.New("sim: the agent is running")
	}
	return d.startAgent()
}

func (d *Device) stop(kill bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return d.stopErr
	}
	d.stopped = true
	var errs []error
	if r := d.run.Swap(nil); r != nil {
		d.last = r
		errs = append(errs, r.halt(kill))
	}
	d.stopTerm()
	<-d.termExited
	errs = append(errs, d.termErr)
	if err := errors.Join(errs...); err != nil {
		d.stopErr = fmt.Errorf("sim: device %s: %w", d.ID(), err)
	}
	return d.stopErr
}
