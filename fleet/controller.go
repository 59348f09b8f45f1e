package fleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/faceguard/faceguard/internal/clock"
	"github.com/faceguard/faceguard/wire"
)

// Options configure a Controller.
type Options struct {
	Store     Store
	BrokerURL string
	TLS       *tls.Config
	Username  string
	Password  string
	// ClientID is the controller's MQTT client id; each controller of a shared fleet needs its own.
	ClientID string
	// ShareGroup names the shared subscription group of the controllers of one fleet ("$share/{group}/…").
	// Empty: no shared subscriptions (one controller, or a broker without them).
	ShareGroup string
	// CommandKey signs commands; KeyID names it in signatures.
	CommandKey ed25519.PrivateKey
	KeyID      string
	// SubjectKey turns a subject reference into the keyed hash a forget-subject carries.
	SubjectKey []byte
	// CommandTTL is how long a command stays valid; default 24 h.
	CommandTTL time.Duration
	// Workers apply messages to the store in parallel; default 64. On SQLite the writes of the workers
	// waiting at the same moment share one commit (sqlstore group commit), so more workers, bigger batches.
	Workers int
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Controller ingests what devices report into the Store and sends them signed commands.
type Controller struct {
	opts   Options
	log    *slog.Logger
	st     Store
	clock  clock.Clock
	client paho.Client
	work   chan paho.Message
	wg     sync.WaitGroup
	cancel context.CancelFunc
	m      *metrics

	connected atomic.Bool
}

// NewController prepares a controller; Start connects it.
func NewController(opts Options) (*Controller, error) {
	if opts.Store == nil {
		return nil, errors.New("controller: a store is required")
	}
	if opts.BrokerURL == "" {
		return nil, errors.New("controller: a broker URL is required")
	}
	if opts.ClientID == "" {
		opts.ClientID = "faceguard-controller"
	}
	if opts.CommandTTL == 0 {
		opts.CommandTTL = 24 * time.Hour
	}
	if opts.Workers == 0 {
		opts.Workers = 64
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeyID == "" {
		opts.KeyID = "controller"
	}
	c := &Controller{opts: opts, log: opts.Logger.With("component", "controller"), st: opts.Store, clock: opts.Clock,
		work: make(chan paho.Message, 4096), m: newMetrics(opts.Store)}
	return c, nil
}

// Store is the controller's store.
func (c *Controller) Store() Store { return c.st }

// Connected reports whether the controller's MQTT connection is open.
func (c *Controller) Connected() bool {
	return c.connected.Load() && c.client != nil && c.client.IsConnectionOpen()
}

// Start connects to the broker, subscribes, and starts the workers and the housekeeping loop, which run
// until Close. It returns once the first connection is made and its subscriptions are acknowledged (so a
// device event published after Start returns reaches this controller), or when ctx ends (ctx bounds the
// wait only).
func (c *Controller) Start(ctx context.Context) error {
	wait := ctx
	subscribed := make(chan struct{})
	var once sync.Once
	ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	online, _ := json.Marshal(map[string]any{"state": wire.StateOnline, "id": c.opts.ClientID, "ts": c.clock.Now().UTC()})
	offline, _ := json.Marshal(map[string]any{"state": wire.StateOffline, "id": c.opts.ClientID, "reason": "lwt"})
	o := paho.NewClientOptions().AddBroker(c.opts.BrokerURL).SetClientID(c.opts.ClientID).
		SetCleanSession(false). // messages arriving while the controller restarts wait for it at the broker
		SetOrderMatters(false).SetAutoAckDisabled(true).
		SetKeepAlive(30*time.Second).SetConnectRetry(true).SetConnectRetryInterval(2*time.Second).
		SetAutoReconnect(true).SetMaxReconnectInterval(30*time.Second).
		SetBinaryWill(wire.ControllerStateTopic, offline, 1, true).
		SetDefaultPublishHandler(c.onMessage).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			c.connected.Store(false)
			c.log.Warn("broker connection lost", "err", err)
		}).
		SetOnConnectHandler(func(cl paho.Client) {
			c.connected.Store(true)
			c.log.Info("connected to the broker", "broker", c.opts.BrokerURL)
			go func() {
				if c.subscribe(cl, online) {
					once.Do(func() { close(subscribed) })
				}
			}()
		})
	if c.opts.TLS != nil {
		o.SetTLSConfig(c.opts.TLS)
	}
	if c.opts.Username != "" {
		o.SetUsername(c.opts.Username).SetPassword(c.opts.Password)
	}
	c.client = paho.NewClient(o)
	tok := c.client.Connect()
	for i := 0; i < c.opts.Workers; i++ {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.worker(ctx) }()
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.housekeeping(ctx) }()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return err
		}
	case <-wait.Done():
		return wait.Err()
	}
	select {
	case <-subscribed:
		return nil
	case <-wait.Done():
		return wait.Err()
	}
}

// subscribe asks for every device-side topic: the retained ones for every controller (each keeps the
// device state, idempotently), the per-message ones shared so that controllers split the work.
// It reports whether the broker acknowledged the subscriptions.
func (c *Controller) subscribe(cl paho.Client, online []byte) bool {
	filters := map[string]byte{}
	for _, kind := range []string{wire.KindState, wire.KindBirth, wire.KindCompliance, wire.KindSubjects} {
		filters[wire.Root+"/dev/+/"+kind] = 1
	}
	for _, leaf := range []string{wire.KindEvent, "res/+", wire.KindBundleGet} {
		f := wire.Root + "/dev/+/" + leaf
		if c.opts.ShareGroup != "" {
			f = "$share/" + c.opts.ShareGroup + "/" + f
		}
		filters[f] = 1
	}
	if tok := cl.SubscribeMultiple(filters, nil); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		c.log.Error("subscribe failed; reconnecting will try again", "err", tok.Error())
		return false
	}
	cl.Publish(wire.ControllerStateTopic, 1, true, online)
	return true
}

// onMessage runs on paho's goroutine for the message (OrderMatters is off): waiting here for room in the
// work queue is back-pressure, and the message is acknowledged only once it is in the store.
func (c *Controller) onMessage(_ paho.Client, m paho.Message) {
	c.work <- m
}

func (c *Controller) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.work:
			c.handle(ctx, m)
		}
	}
}

// handle applies one message to the store, then acknowledges it. A message that cannot be applied
// because the store failed is not acknowledged: the broker delivers it again.
func (c *Controller) handle(ctx context.Context, m paho.Message) {
	start := time.Now()
	dev, kind, _, err := wire.ParseDeviceTopic(m.Topic())
	if err != nil {
		c.m.rejected.WithLabelValues("topic").Inc()
		m.Ack()
		return
	}
	if len(m.Payload()) == 0 {
		m.Ack() // a cleared retained message
		return
	}
	applied, err := c.apply(ctx, dev, kind, m.Payload())
	switch {
	case errors.Is(err, wire.ErrMessage):
		c.m.rejected.WithLabelValues(kind).Inc()
		c.log.Warn("malformed message dropped", "topic", m.Topic(), "err", err)
		m.Ack()
	case err != nil:
		c.m.storeErrors.Inc()
		c.log.Error("store", "topic", m.Topic(), "err", err)
		return // not acknowledged
	default:
		if applied {
			c.m.ingested.WithLabelValues(kind).Inc()
		} else {
			c.m.duplicates.WithLabelValues(kind).Inc()
		}
		m.Ack()
	}
	c.m.applySeconds.Observe(time.Since(start).Seconds())
}

func (c *Controller) apply(ctx context.Context, dev, kind string, payload []byte) (bool, error) {
	now := c.clock.Now().UTC()
	switch kind {
	case wire.KindState:
		var s wire.State
		if err := wire.Decode(payload, dev, wire.TypeState, &s); err != nil {
			return false, err
		}
		return c.st.ApplyState(ctx, s, now)
	case wire.KindBirth:
		var b wire.Birth
		if err := wire.Decode(payload, dev, wire.TypeBirth, &b); err != nil {
			return false, err
		}
		applied, err := c.st.ApplyBirth(ctx, b, now)
		if err == nil && applied {
			c.resendPending(ctx, dev)
		}
		return applied, err
	case wire.KindCompliance:
		var cm wire.Compliance
		if err := wire.Decode(payload, dev, wire.TypeCompliance, &cm); err != nil {
			return false, err
		}
		return c.st.ApplyCompliance(ctx, cm, now)
	case wire.KindSubjects:
		var s wire.Subjects
		if err := wire.Decode(payload, dev, wire.TypeSubjects, &s); err != nil {
			return false, err
		}
		return c.st.ApplySubjects(ctx, s, now)
	case wire.KindEvent:
		var e wire.Event
		if err := wire.Decode(payload, dev, wire.TypeEvent, &e); err != nil {
			return false, err
		}
		return c.st.AddEvent(ctx, e, now)
	case wire.KindResult:
		var r wire.Result
		if err := wire.Decode(payload, dev, wire.TypeResult, &r); err != nil {
			return false, err
		}
		return c.st.AddResult(ctx, r, now)
	case wire.KindBundleGet:
		var g wire.BundleGet
		if err := wire.Decode(payload, dev, wire.TypeBundleGet, &g); err != nil {
			return false, err
		}
		return true, c.serveChunks(ctx, dev, g)
	}
	return false, fmt.Errorf("%w: kind %q", wire.ErrMessage, kind)
}

// resendPending re-sends, with the same id, every command a device that just announced itself has not
// answered: broker queues are bounded and may not survive a broker restart. A fleet command goes to it
// as a copy signed for it alone (same id and arguments, so the device's journal sees a duplicate if it
// did get the broadcast).
func (c *Controller) resendPending(ctx context.Context, dev string) {
	cmds, err := c.st.PendingFor(ctx, dev, c.clock.Now())
	if err != nil {
		c.log.Error("pending commands", "dev", dev, "err", err)
		return
	}
	for _, cmd := range cmds {
		payload := cmd.Payload
		if cmd.Target == wire.Broadcast {
			payload, err = wire.SignCommand(wire.Command{ID: cmd.ID, Type: cmd.Type, Dev: dev, IssuedAt: cmd.IssuedAt,
				ExpiresAt: cmd.ExpiresAt, Args: cmd.Args}, c.opts.CommandKey, c.opts.KeyID)
			if err != nil {
				c.log.Error("sign re-sent command", "id", cmd.ID, "err", err)
				continue
			}
		}
		c.publish(wire.CommandTopic(dev, cmd.Type), payload, false)
		c.m.resent.Inc()
	}
}

// serveChunks answers a device's pull for bundle chunks (research/mqtt.md §2.6), raw bytes per chunk.
func (c *Controller) serveChunks(ctx context.Context, dev string, g wire.BundleGet) error {
	b, err := c.st.Bundle(ctx, g.Revision)
	if errors.Is(err, ErrNotFound) {
		c.log.Warn("a device asked for an unknown bundle", "dev", dev, "revision", g.Revision)
		return nil
	}
	if err != nil {
		return err
	}
	n := (len(b.Data) + wire.ChunkSize - 1) / wire.ChunkSize
	if g.From < 0 || g.Count < 1 || g.Count > 16 || g.From >= n {
		return nil
	}
	for i := g.From; i < min(g.From+g.Count, n); i++ {
		chunk := b.Data[i*wire.ChunkSize : min((i+1)*wire.ChunkSize, len(b.Data))]
		c.publish(wire.ChunkTopic(dev, g.Revision, i), chunk, false)
	}
	return nil
}

// publish sends without waiting for the acknowledgement longer than a bound.
func (c *Controller) publish(topic string, payload []byte, retained bool) {
	tok := c.client.Publish(topic, 1, retained, payload)
	go func() {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			c.log.Warn("publish not confirmed", "topic", topic, "err", tok.Error())
		}
	}()
}

// housekeeping expires commands and refreshes gauges.
func (c *Controller) housekeeping(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := c.st.ExpireCommands(ctx, c.clock.Now()); err != nil {
				c.log.Error("expire commands", "err", err)
			} else if n > 0 {
				c.log.Info("commands timed out", "results", n)
			}
		}
	}
}

// Close publishes the controller's offline state, stops the workers and disconnects.
func (c *Controller) Close() {
	if c.client != nil && c.client.IsConnectionOpen() {
		offline, _ := json.Marshal(map[string]any{"state": wire.StateOffline, "id": c.opts.ClientID, "reason": "shutdown"})
		c.client.Publish(wire.ControllerStateTopic, 1, true, offline).WaitTimeout(2 * time.Second)
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	if c.client != nil {
		c.client.Disconnect(250)
	}
}

// IssueRequest asks for a command.
type IssueRequest struct {
	Type      string          `json:"type"`
	Target    string          `json:"target"` // a device id, or "*" for every device
	Args      json.RawMessage `json:"args,omitempty"`
	TTL       time.Duration   `json:"-"`
	CreatedBy string          `json:"created_by,omitempty"`
}

// ErrNoSuchDevice is returned for a command to a device the fleet has never seen.
var ErrNoSuchDevice = errors.New("no such device")

// Issue signs a command, records it with one pending result per target, and publishes it: once on the
// broadcast topic for the fleet, on the device's topic otherwise.
func (c *Controller) Issue(ctx context.Context, req IssueRequest) (Command, error) {
	if len(c.opts.CommandKey) != ed25519.PrivateKeySize {
		return Command{}, errors.New("issue: the controller has no command signing key")
	}
	ttl := req.TTL
	if ttl == 0 {
		ttl = c.opts.CommandTTL
	}
	now := c.clock.Now().UTC()
	wc := wire.Command{ID: NewCommandID(), Type: req.Type, Dev: req.Target, IssuedAt: now, ExpiresAt: now.Add(ttl), Args: req.Args}
	payload, err := wire.SignCommand(wc, c.opts.CommandKey, c.opts.KeyID)
	if err != nil {
		return Command{}, fmt.Errorf("issue: %w", err)
	}
	var targets []string
	if req.Target == wire.Broadcast {
		if targets, err = c.st.DeviceIDs(ctx); err != nil {
			return Command{}, err
		}
	} else {
		if _, err := c.st.Device(ctx, req.Target); errors.Is(err, ErrNotFound) {
			return Command{}, fmt.Errorf("%w: %s", ErrNoSuchDevice, req.Target)
		} else if err != nil {
			return Command{}, err
		}
		targets = []string{req.Target}
	}
	cmd := Command{ID: wc.ID, Type: wc.Type, Target: req.Target, Args: wc.Args, IssuedAt: wc.IssuedAt, ExpiresAt: wc.ExpiresAt,
		CreatedBy: req.CreatedBy, Payload: payload}
	if err := c.st.CreateCommand(ctx, cmd, targets); err != nil {
		return Command{}, err
	}
	topic := wire.CommandTopic(req.Target, req.Type)
	if req.Target == wire.Broadcast {
		topic = wire.BroadcastTopic(req.Type)
	}
	c.publish(topic, payload, false)
	c.m.commands.WithLabelValues(req.Type).Inc()
	c.log.Info("command issued", "id", cmd.ID, "type", cmd.Type, "target", cmd.Target, "devices", len(targets))
	return cmd, nil
}

// Forget broadcasts a forget-subject for a subject reference: the reference becomes its keyed hash here,
// and only the hash is sent.
func (c *Controller) Forget(ctx context.Context, subjectRef, createdBy string) (Command, error) {
	if len(c.opts.SubjectKey) == 0 {
		return Command{}, errors.New("forget: the controller has no subject key")
	}
	if strings.TrimSpace(subjectRef) == "" {
		return Command{}, errors.New("forget: a subject reference is required")
	}
	args, _ := json.Marshal(wire.ForgetArgs{SubjectHash: wire.SubjectHash(c.opts.SubjectKey, subjectRef)})
	return c.Issue(ctx, IssueRequest{Type: wire.CmdForgetSubject, Target: wire.Broadcast, Args: args, CreatedBy: createdBy})
}

// OfferBundle keeps a signed bundle and offers it to the targets, who pull it in chunks.
func (c *Controller) OfferBundle(ctx context.Context, revision string, data []byte, target, createdBy string) (Command, error) {
	sum := sha256.Sum256(data)
	b := Bundle{Revision: revision, SHA256: hex.EncodeToString(sum[:]), Size: len(data), Data: data, CreatedAt: c.clock.Now().UTC()}
	for i := 0; i < len(data); i += wire.ChunkSize {
		cs := sha256.Sum256(data[i:min(i+wire.ChunkSize, len(data))])
		b.ChunkSHA256 = append(b.ChunkSHA256, hex.EncodeToString(cs[:]))
	}
	if err := c.st.PutBundle(ctx, b); err != nil {
		return Command{}, err
	}
	args, _ := json.Marshal(wire.BundleOfferArgs{Revision: b.Revision, Size: b.Size, SHA256: b.SHA256, ChunkSize: wire.ChunkSize,
		ChunkSHA256: b.ChunkSHA256})
	return c.Issue(ctx, IssueRequest{Type: wire.CmdBundleOffer, Target: target, Args: args, CreatedBy: createdBy})
}

// NewCommandID returns a random, URL- and topic-safe command id.
func NewCommandID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "c-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
