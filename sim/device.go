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
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
)

// DefaultMaxEvaluations is how many evaluations a simulated agent's store keeps (the agent's own
// default, a thousand, is for a real device's history).
const DefaultMaxEvaluations = 100

// DeviceOptions build one simulated device.
type DeviceOptions struct {
	// Dir is the device's own directory, created if needed: the terminal root is Dir/root and the
	// agent's store Dir/agent.db.
	Dir     string
	Profile Profile
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
	Clock           clock.Clock   // nil: the system clock
	Logger          *slog.Logger  // nil: discard
	// Killable routes the agent's MQTT connection through a relay of the simulator's, so that Kill can
	// cut it the way a crash does. It costs a listening socket, two more connections and two goroutines.
	Killable bool
}

// Device is one simulated device: a fake terminal, a real agent judging it through fsterm, the agent's
// store, and the agent's MQTT connection.
type Device struct {
	opts  DeviceOptions
	term  *Terminal
	fst   *fsterm.Terminal
	store *store.Store
	agent *agent.Agent
	relay *killSwitch

	stopAgent, stopTerm context.CancelFunc
	agentExited         chan struct{}
	termExited          chan struct{}
	agentErr, termErr   error

	stopOnce sync.Once
	stopErr  error
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
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	term, err := NewTerminal(filepath.Join(opts.Dir, "root"), opts.Profile, opts.Clock)
	if err != nil {
		return nil, err
	}
	id := term.Profile().ID
	d := &Device{opts: opts, term: term, agentExited: make(chan struct{}), termExited: make(chan struct{})}
	d.fst = fsterm.New(fsterm.Options{Root: term.Root(), Clock: opts.Clock, DeviceID: id,
		StatusMaxAge: opts.StatusMaxAge, SubjectKey: opts.SubjectKey})
	d.store, err = store.Open(filepath.Join(opts.Dir, "agent.db"), store.Options{Clock: opts.Clock, MaxEvaluations: opts.MaxEvaluations})
	if err != nil {
		return nil, fmt.Errorf("sim: device %s: %w", id, err)
	}
	brokerURL := opts.BrokerURL
	if opts.Killable && brokerURL != "" {
		if d.relay, brokerURL, err = newKillSwitch(brokerURL); err != nil {
			d.store.Close()
			return nil, err
		}
	}
	d.agent, err = agent.New(agent.Options{
		DeviceID: id, Terminal: d.fst, Engine: opts.Engine, Store: d.store, Clock: opts.Clock, Logger: opts.Logger,
		BrokerURL: brokerURL, ReconnectJitter: opts.ReconnectJitter,
		ControllerKey: opts.ControllerKey, SubjectKey: opts.SubjectKey,
		EvaluateEvery: opts.EvaluateEvery, HeartbeatEvery: opts.HeartbeatEvery,
		WatchRoot: "", // told by the terminal instead (Terminal.OnChange)
		APISocket: "",
	})
	if err != nil {
		d.closeParts()
		return nil, fmt.Errorf("sim: device %s: %w", id, err)
	}
	term.OnChange = d.agent.Notify
	term.Logger = opts.Logger.With("component", "sim-terminal")

	agentCtx, stopAgent := context.WithCancel(ctx)
	termCtx, stopTerm := context.WithCancel(ctx)
	d.stopAgent, d.stopTerm = stopAgent, stopTerm
	go func() {
		defer close(d.agentExited)
		d.agentErr = d.agent.Run(agentCtx)
	}()
	go func() {
		defer close(d.termExited)
		d.termErr = term.Run(termCtx)
	}()
	return d, nil
}

// ID is the device id.
func (d *Device) ID() string { return d.term.p.ID }

// Agent is the device's agent.
func (d *Device) Agent() *agent.Agent { return d.agent }

// Terminal is the device's simulated terminal.
func (d *Device) Terminal() *Terminal { return d.term }

// Store is the agent's store.
func (d *Device) Store() *store.Store { return d.store }

// Dir is the device's directory.
func (d *Device) Dir() string { return d.opts.Dir }

// WaitReady waits until the agent has evaluated the terminal and, with a broker, the broker has
// acknowledged everything the agent queued: the agent is connected and its first compliance summary is
// published. It returns early with ctx's error, or if the agent stopped.
func (d *Device) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready, err := d.ready(ctx); err != nil || ready {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sim: device %s not ready: %w", d.ID(), ctx.Err())
		case <-d.agentExited:
			return fmt.Errorf("sim: device %s: the agent stopped: %v", d.ID(), d.agentErr)
		case <-tick.C:
		}
	}
}

func (d *Device) ready(ctx context.Context) (bool, error) {
	if _, _, ok := d.agent.Snapshot(); !ok {
		return false, nil
	}
	// The evaluation and its summary are recorded in one transaction, after the snapshot: once the
	// evaluation is in the store, so is the summary, and an empty outbox means the broker has it.
	evals, err := d.store.Evaluations(ctx, 1)
	if err != nil || len(evals) == 0 {
		return false, nil //nolint:nilerr // the store is busy: look again
	}
	if d.opts.BrokerURL == "" {
		return true, nil
	}
	n, err := d.store.OutboxLen(ctx)
	return err == nil && n == 0, nil
}

// Stop stops the agent cleanly (it drains its outbox for a few seconds and publishes its offline state),
// then the fake terminal, and closes the store. It is safe to call more than once.
func (d *Device) Stop() error { return d.stop(false) }

// Kill cuts the agent's MQTT connection abruptly, as a crash would (the broker publishes the last will),
// then stops everything as Stop does. Unlike kill -9, the agent still records its stop in its own store.
// It needs DeviceOptions.Killable (ErrNotKillable otherwise).
func (d *Device) Kill() error {
	if d.relay == nil {
		return ErrNotKillable
	}
	return d.stop(true)
}

func (d *Device) stop(kill bool) error {
	d.stopOnce.Do(func() {
		if kill {
			d.relay.sever()
		}
		d.stopAgent()
		<-d.agentExited
		d.stopTerm()
		<-d.termExited
		d.stopErr = errors.Join(d.agentErr, d.termErr, d.closeParts())
	})
	return d.stopErr
}

func (d *Device) closeParts() error {
	var errs []error
	if d.relay != nil {
		errs = append(errs, d.relay.Close())
	}
	errs = append(errs, d.fst.Close(), d.store.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sim: device %s: %w", d.ID(), err)
	}
	return nil
}
