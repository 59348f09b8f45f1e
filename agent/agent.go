// Package agent is the loop that keeps one terminal lawful: gather facts → evaluate the policy → enforce
// the actions → record everything in the local store → report to the fleet.
//
// Where a fact is gathered: device/fsterm. Where it is judged: policies/ (evaluated by agent/engine).
// Where it is acted on: enforce.go here, through device.Terminal.
//
// The agent must never leave the terminal unchecked: if facts cannot be gathered, or the policy errors or
// panics, it fails safe — face recognition off, the other ways through on, the fault reported — and it
// never locks a person out. It never puts a face image, a template or a subject reference in clear into
// a message, a log line or the record.
package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/link"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/buildinfo"
	"github.com/faceguard/faceguard/internal/clock"
	"github.com/faceguard/faceguard/wire"
)

// Options wire an agent to its parts. The command builds them from the configuration file; tests and the
// simulator build them directly.
type Options struct {
	DeviceID string
	Terminal device.Terminal
	Engine   *engine.Engine
	Store    *store.Store
	Clock    clock.Clock
	Logger   *slog.Logger

	// Broker: empty URL runs without a fleet (everything is still enforced and recorded; the outbox waits).
	BrokerURL       string
	BrokerTLS       *tls.Config
	BrokerUsername  string
	BrokerPassword  string
	ReconnectJitter time.Duration
	// InboxSize bounds the inbound messages waiting for the agent (default 1024); the simulator, running
	// thousands of agents, makes it small.
	InboxSize int

	ControllerKey ed25519.PublicKey // verifies commands; nil refuses every command
	SubjectKey    []byte            // the fleet's subject hash key

	EvaluateEvery  time.Duration
	HeartbeatEvery time.Duration
	Debounce       time.Duration
	// GalleryEvery spaces the evaluations that changes of the gallery alone cause (watch.go); 0 evaluates
	// after every change.
	GalleryEvery time.Duration
	// WatchRoot is the terminal root to watch with fsnotify; "" turns watching off (the simulator tells the
	// agent about changes with Notify instead).
	WatchRoot string
	// APISocket is the Unix socket of the local decision API; "" turns it off.
	APISocket string
}

// Agent runs one terminal.
type Agent struct {
	opts  Options
	log   *slog.Logger
	clock clock.Clock
	term  device.Terminal
	eng   *engine.Engine
	st    *store.Store
	link  *link.Link

	session     uint64
	seq         atomic.Uint64
	quarantined atomic.Int64 // subjects kept out of matching, as of the last evaluation

	requests chan evalRequest
	rawTimer atomic.Pointer[timerBox]
	periodic atomic.Pointer[timerBox]

	// state the loop publishes for others (the API, births), replaced whole.
	current atomic.Pointer[snapshot]

	cmdMu   sync.Mutex
	fetches map[string]*bundleFetch // revision → fetch in progress
	runtime atomic.Pointer[runtimeConfig]
	// birthSaid is the identity the last birth announced (see birthIdentity).
	birthSaid atomic.Value
	lastPrune atomic.Pointer[time.Time]
	logLevel  *slog.LevelVar

	wg sync.WaitGroup
}

// snapshot is what the last evaluation established.
type snapshot struct {
	facts    device.Facts
	decision device.Decision
	control  device.Control
	failSafe bool
	fault    string
	at       time.Time
}

type runtimeConfig struct {
	evaluateEvery  time.Duration
	heartbeatEvery time.Duration
	version        int
}

type timerBox struct{ t clock.Timer }

// New checks the parts and prepares an agent; Run starts it.
func New(opts Options) (*Agent, error) {
	switch {
	case !wire.ValidDeviceID(opts.DeviceID):
		return nil, fmt.Errorf("agent: device id %q", opts.DeviceID)
	case opts.Terminal == nil || opts.Engine == nil || opts.Store == nil:
		return nil, errors.New("agent: terminal, engine and store are required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EvaluateEvery == 0 {
		opts.EvaluateEvery = DefaultEvaluate
	}
	if opts.HeartbeatEvery == 0 {
		opts.HeartbeatEvery = DefaultHeartbeat
	}
	a := &Agent{
		opts:     opts,
		log:      opts.Logger.With("component", "agent", "device", opts.DeviceID),
		clock:    opts.Clock,
		term:     opts.Terminal,
		eng:      opts.Engine,
		st:       opts.Store,
		requests: make(chan evalRequest, 64),
		fetches:  map[string]*bundleFetch{},
	}
	a.runtime.Store(&runtimeConfig{evaluateEvery: opts.EvaluateEvery, heartbeatEvery: opts.HeartbeatEvery})
	return a, nil
}

// SetLogLevel lets the config command change the level of the logger the command built.
func (a *Agent) SetLogLevel(v *slog.LevelVar) { a.logLevel = v }

// Run starts the agent and blocks until ctx is cancelled, then stops cleanly: the last evaluation is
// recorded, the outbox gets a few seconds to drain, the offline state is published, the store is closed
// by the caller.
func (a *Agent) Run(ctx context.Context) error {
	session, err := a.st.NextSession(ctx)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.session = session
	if err := a.loadRuntime(ctx); err != nil {
		return err
	}
	if err := a.st.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.Append("start", map[string]any{"session": session, "agent": buildinfo.Version,
			"policy": a.eng.Info().Revision})
		return err
	}); err != nil {
		return fmt.Errorf("agent: record start: %w", err)
	}
	a.log.Info("agent starting", "session", session, "policy", a.eng.Info().Revision)

	if a.opts.BrokerURL != "" {
		will, _ := marshal(wire.State{Envelope: wire.Envelope{V: wire.Version, Type: wire.TypeState, Dev: a.opts.DeviceID,
			Session: session, TS: a.clock.Now().UTC()}, State: wire.StateOffline, Reason: "lwt"})
		a.link, err = link.New(link.Options{
			DeviceID: a.opts.DeviceID, BrokerURL: a.opts.BrokerURL, TLS: a.opts.BrokerTLS,
			Username: a.opts.BrokerUsername, Password: a.opts.BrokerPassword, Will: will,
			OnConnect: a.onConnect, ReconnectJitter: a.opts.ReconnectJitter, InboxSize: a.opts.InboxSize, Logger: a.opts.Logger,
		}, outboxAdapter{a.st})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		// The link outlives ctx: after a stop is asked for, it still drains the outbox and publishes the
		// offline state (shutdownLink), then Close ends it.
		a.link.Start(context.WithoutCancel(ctx))
	}

	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.loop(loopCtx) }()
	if a.link != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.commandWorker(loopCtx) }()
	}
	var stopWatch func()
	if a.opts.WatchRoot != "" {
		if stopWatch, err = a.watch(loopCtx); err != nil {
			a.log.Error("cannot watch the terminal's files; evaluating on the timer only", "err", err)
		}
	}
	var stopAPI func()
	if a.opts.APISocket != "" {
		if stopAPI, err = a.serveAPI(loopCtx, a.opts.APISocket); err != nil {
			a.log.Error("local decision API not started", "err", err)
		}
	}
	a.Reevaluate("start")

	<-ctx.Done()
	a.log.Info("agent stopping")
	if stopAPI != nil {
		stopAPI()
	}
	if stopWatch != nil {
		stopWatch()
	}
	stopLoop()
	a.wg.Wait()
	a.stopTimers()
	a.shutdownLink()
	if err := a.st.Tx(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Append("stop", map[string]any{"session": session})
		return err
	}); err != nil {
		a.log.Error("record stop", "err", err)
	}
	return nil
}

// shutdownLink gives the outbox a few seconds to drain, then publishes the offline state itself (a clean
// disconnect does not fire the last will) and disconnects.
func (a *Agent) shutdownLink() {
	if a.link == nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.link.Connected() && time.Now().Before(deadline) {
		n, err := a.st.OutboxLen(context.Background())
		if err != nil || n == 0 {
			break
		}
		a.link.Kick()
		time.Sleep(50 * time.Millisecond)
	}
	offline, _ := marshal(wire.State{Envelope: a.envelope(wire.TypeState), State: wire.StateOffline, Reason: "shutdown"})
	if err := a.link.PublishNow(wire.StateTopic(a.opts.DeviceID), offline, true, 2*time.Second); err != nil {
		a.log.Warn("offline state not published; the broker will publish the last will", "err", err)
	}
	a.link.Close()
}

// envelope stamps a new message with this session and the next sequence number.
func (a *Agent) envelope(typ string) wire.Envelope {
	return wire.Envelope{V: wire.Version, Type: typ, Dev: a.opts.DeviceID, Session: a.session,
		Seq: a.seq.Add(1), TS: a.clock.Now().UTC()}
}

// Notify tells the agent that the terminal's files changed (the simulator, which does not use fsnotify).
func (a *Agent) Notify() { a.request("change", nil) }

// Reevaluate asks for an evaluation soon.
func (a *Agent) Reevaluate(reason string) { a.request(reason, nil) }

// EvaluateNow asks for an evaluation and waits until it is done (with the evaluations asked before it):
// a caller that changed the terminal can then read what the agent made of it. The agent must be running.
func (a *Agent) EvaluateNow(ctx context.Context, reason string) error {
	if err := ctx.Err(); err != nil {
		return err // nothing asked of the loop
	}
	done := make(chan evalOutcome, 1)
	a.request(reason, done)
	select {
	case out := <-done:
		if out.Fault != "" {
			return errors.New(out.Fault)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Snapshot returns what the last evaluation established (zero before the first).
func (a *Agent) Snapshot() (device.Decision, device.Control, bool) {
	s := a.current.Load()
	if s == nil {
		return device.Decision{}, device.Control{}, false
	}
	return s.decision, s.control, true
}

// Connected reports whether the agent's MQTT connection is open now.
func (a *Agent) Connected() bool { return a.link != nil && a.link.Connected() }

// Session is this run's session number.
func (a *Agent) Session() uint64 { return a.session }

func (a *Agent) stopTimers() {
	for _, p := range []*atomic.Pointer[timerBox]{&a.rawTimer, &a.periodic} {
		if b := p.Swap(nil); b != nil {
			b.t.Stop()
		}
	}
}

// outboxAdapter lets the link drain the store's outbox.
type outboxAdapter struct{ st *store.Store }

func (o outboxAdapter) Pending(ctx context.Context, limit int, after int64) ([]link.Row, error) {
	rows, err := o.st.Pending(ctx, limit, after)
	if err != nil {
		return nil, err
	}
	out := make([]link.Row, len(rows))
	for i, r := range rows {
		out[i] = link.Row{ID: r.ID, Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retained: r.Retained}
	}
	return out, nil
}

func (o outboxAdapter) Ack(ctx context.Context, ids ...int64) error { return o.st.Ack(ctx, ids...) }
