// Package link is the agent's MQTT connection (paho, MQTT 3.1.1): connect with a last will, subscribe to
// the device's commands, drain the durable outbox, hand inbound messages to the agent.
//
// It must never block inside a paho callback (a blocked handler stalls keep-alives and deadlocks the
// client), never wait on a token without a bound, and never drop an outbox row before the broker has
// acknowledged it on the connection it was sent on: paho completes a token without error when it re-sends
// a message after a reconnect, so a completed token alone proves nothing.
package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/faceguard/faceguard/wire"
)

// Outbox is the durable queue the link drains: rows leave it only when the broker acknowledged them.
type Outbox interface {
	Pending(ctx context.Context, limit int, after int64) ([]Row, error)
	Ack(ctx context.Context, ids ...int64) error
}

// Row is one message waiting in the outbox.
type Row struct {
	ID       int64
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
}

// Inbound is a message for the agent. Ack tells the broker it was taken care of; the agent calls it once
// the message is journaled, so a crash before that gets it redelivered.
type Inbound struct {
	Topic   string
	Payload []byte
	Ack     func()
}

// Options configure a Link.
type Options struct {
	DeviceID  string
	BrokerURL string // tcp://host:1883, ssl:// or tls:// or mqtts://host:8883
	TLS       *tls.Config
	Username  string
	Password  string
	// Will is the retained offline state the broker publishes if the agent vanishes.
	Will []byte
	// OnConnect is called (in its own goroutine) after every successful connection, once subscriptions
	// are requested: the agent enqueues its birth and state there.
	OnConnect func()
	KeepAlive time.Duration // default 30 s
	// PingTimeout (default 30 s) is how long a PINGRESP may take before the connection is given up. A
	// terminal whose CPU is busy may read the answer late; 10 s (paho's default) cut 266 of 10,000
	// simulated devices off during a fleet-wide forget, and each reconnection cost far more than the
	// answer's wait. The broker's own limit is 1.5 × KeepAlive of silence.
	PingTimeout time.Duration
	// ReconnectJitter (default 5 s) bounds the random delay before the first reconnect attempt; the
	// window doubles with each attempt that fails, up to MaxReconnectDelay. paho's own backoff between
	// attempts (1 s doubling, also up to MaxReconnectDelay) comes on top.
	ReconnectJitter   time.Duration
	MaxReconnectDelay time.Duration // default 60 s
	DrainWindow       int           // outbox rows in flight at once; default 32
	AckTimeout        time.Duration // how long to wait for a PUBACK before re-sending; default 30 s
	InboxSize         int           // inbound messages buffered for the agent; default 1024
	Logger            *slog.Logger
}

// Link is one device's connection to the broker.
type Link struct {
	opts   Options
	log    *slog.Logger
	client mqtt.Client
	outbox Outbox
	inbox  chan Inbound
	kick   chan struct{}

	// epoch changes whenever the connection may have changed: on connect, on loss, before a reconnect.
	epoch     atomic.Uint64
	connected atomic.Bool
	dropped   atomic.Uint64 // inbound messages not taken because the inbox was full
	// attempts counts the connection attempts since the last success (or start); everConnected tells
	// the first connection's retries from reconnects.
	attempts      atomic.Int64
	everConnected atomic.Bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// New prepares a link; Start connects it.
func New(opts Options, outbox Outbox) (*Link, error) {
	if !wire.ValidDeviceID(opts.DeviceID) {
		return nil, fmt.Errorf("link: device id %q", opts.DeviceID)
	}
	if err := ValidateBrokerURL(opts.BrokerURL); err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 30 * time.Second
	}
	if opts.PingTimeout == 0 {
		opts.PingTimeout = 30 * time.Second
	}
	if opts.ReconnectJitter == 0 {
		opts.ReconnectJitter = 5 * time.Second
	}
	if opts.MaxReconnectDelay == 0 {
		opts.MaxReconnectDelay = 60 * time.Second
	}
	if opts.DrainWindow == 0 {
		opts.DrainWindow = 32
	}
	if opts.AckTimeout == 0 {
		opts.AckTimeout = 30 * time.Second
	}
	if opts.InboxSize == 0 {
		opts.InboxSize = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Link{
		opts:   opts,
		log:    opts.Logger.With("component", "link"),
		outbox: outbox,
		inbox:  make(chan Inbound, opts.InboxSize),
		kick:   make(chan struct{}, 1),
	}
	l.client = mqtt.NewClient(l.clientOptions())
	return l, nil
}

// ValidateBrokerURL accepts the schemes paho dials.
func ValidateBrokerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("broker url: %w", err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return fmt.Errorf("broker url %q: scheme must be tcp, mqtt, ssl, tls or mqtts", s)
	}
	if u.Host == "" || u.Port() == "" {
		return fmt.Errorf("broker url %q: give host:port", s)
	}
	return nil
}

func (l *Link) clientOptions() *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().
		AddBroker(l.opts.BrokerURL).
		SetClientID(l.opts.DeviceID).
		SetCleanSession(false). // commands queued while the device was away are delivered
		SetOrderMatters(false). // handlers run concurrently; order lives in the envelope's seq
		SetAutoAckDisabled(true).
		SetKeepAlive(l.opts.KeepAlive).
		SetPingTimeout(l.opts.PingTimeout).
		SetConnectTimeout(10*time.Second).
		SetWriteTimeout(10*time.Second).
		SetConnectRetry(true).
		SetConnectRetryInterval(5*time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(l.opts.MaxReconnectDelay).
		SetMaxResumePubInFlight(l.opts.DrainWindow).
		SetBinaryWill(wire.StateTopic(l.opts.DeviceID), l.opts.Will, 1, true).
		SetDefaultPublishHandler(l.onMessage).
		SetOnConnectHandler(l.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			l.epoch.Add(1)
			l.connected.Store(false)
			l.log.Warn("connection lost", "err", err)
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			// Runs synchronously before each attempt, so it is also the place for the jitter paho lacks:
			// a fleet that lost its broker must not come back in lock-step.
			l.epoch.Add(1)
			l.connected.Store(false)
			time.Sleep(l.backoff())
		}).
		SetConnectionAttemptHandler(func(_ *url.URL, cfg *tls.Config) *tls.Config {
			l.epoch.Add(1)
			if !l.everConnected.Load() && l.attempts.Load() > 0 {
				// The first connection's retries (a building powered up at once) spread the same way.
				time.Sleep(l.backoff())
			} else if !l.everConnected.Load() {
				l.attempts.Add(1)
			}
			return cfg
		})
	if l.opts.TLS != nil {
		o.SetTLSConfig(l.opts.TLS)
	}
	if l.opts.Username != "" {
		o.SetUsername(l.opts.Username).SetPassword(l.opts.Password)
	}
	return o
}

// backoff is the random wait before the next connection attempt: "full jitter" over a window that
// doubles with every failed attempt. The first reconnect after a loss waits up to ReconnectJitter; when
// the broker is overloaded (ten thousand devices back at once after a restart, its listen queue
// overflowing) the attempts that fail spread over ever wider windows instead of retrying together.
func (l *Link) backoff() time.Duration {
	n := l.attempts.Add(1)
	return jitter(backoffWindow(l.opts.ReconnectJitter, l.opts.MaxReconnectDelay, n))
}

// backoffWindow is base doubled for every attempt after the first, at most max.
func backoffWindow(base, max time.Duration, attempt int64) time.Duration {
	w := base
	for i := int64(1); i < attempt && w < max; i++ {
		w *= 2
	}
	return min(w, max)
}

func jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max)
}

// Start connects in the background (the first connection is retried until it succeeds) and starts
// draining the outbox. It returns at once: the agent works offline.
func (l *Link) Start(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(ctx)
	l.client.Connect() // with ConnectRetry the token completes only on success or Disconnect
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.drain(ctx)
	}()
}

// Inbox delivers inbound messages to the agent.
func (l *Link) Inbox() <-chan Inbound { return l.inbox }

// Kick tells the drain loop there is something new in the outbox.
func (l *Link) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Connected reports whether the connection is open now.
func (l *Link) Connected() bool { return l.connected.Load() && l.client.IsConnectionOpen() }

// Dropped counts inbound messages not taken because the agent was behind; they were not acknowledged,
// so the broker delivers them again.
func (l *Link) Dropped() uint64 { return l.dropped.Load() }

// PublishNow publishes one message outside the outbox and waits for its acknowledgement, at most
// timeout. Only for what must not be queued: the offline state of a clean stop.
func (l *Link) PublishNow(topic string, payload []byte, retained bool, timeout time.Duration) error {
	if !l.Connected() {
		return errors.New("link: not connected")
	}
	tok := l.client.Publish(topic, 1, retained, payload)
	if !tok.WaitTimeout(timeout) {
		return fmt.Errorf("link: publish %s: no acknowledgement within %s", topic, timeout)
	}
	return tok.Error()
}

// Close stops draining and disconnects. It does not publish anything: the agent publishes its offline
// state first (PublishNow), since a clean disconnect does not fire the last will.
func (l *Link) Close() {
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	l.client.Disconnect(250)
}

func (l *Link) onConnect(c mqtt.Client) {
	l.epoch.Add(1)
	l.connected.Store(true)
	l.everConnected.Store(true)
	l.attempts.Store(0)
	l.log.Info("connected", "broker", l.opts.BrokerURL)
	// Subscribing here, on every connection, because a broker may have lost the session.
	filters := map[string]byte{}
	for _, f := range wire.DeviceSubscriptions(l.opts.DeviceID) {
		filters[f] = 1
	}
	tok := c.SubscribeMultiple(filters, nil) // nil: messages go to the default handler
	go func() {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			l.log.Error("subscribe failed; commands will not arrive until the next connection", "err", tok.Error())
		}
	}()
	if l.opts.OnConnect != nil {
		go l.opts.OnConnect()
	}
	l.Kick()
}

// onMessage runs on paho's goroutine: hand over and return at once.
func (l *Link) onMessage(_ mqtt.Client, m mqtt.Message) {
	in := Inbound{Topic: m.Topic(), Payload: m.Payload(), Ack: m.Ack}
	select {
	case l.inbox <- in:
	default:
		l.dropped.Add(1)
		l.log.Warn("inbox full: message left unacknowledged for redelivery", "topic", m.Topic())
	}
}

// How long the drain loop sleeps without a kick: retryPoll while something is waiting to be sent (not
// connected yet, or rows sent but not acknowledged), idlePoll once the outbox is empty. Every enqueue kicks
// the loop, so the idle poll is only a safety net; polling an empty outbox every second cost a fleet of
// idle simulated devices 43 % of its CPU.
const (
	retryPoll = time.Second
	idlePoll  = 30 * time.Second
)

// drain publishes outbox rows in windows and deletes each one only once its PUBACK came back on the
// connection it was sent on.
func (l *Link) drain(ctx context.Context) {
	wake := time.NewTimer(retryPoll)
	defer wake.Stop()
	for {
		sleep := retryPoll
		if l.Connected() {
			n, left, err := l.drainOnce(ctx)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return // stopping: what was not sent stays in the outbox for the next start
				}
				l.log.Error("drain outbox", "err", err)
			case n > 0:
				continue // more may be waiting
			case left == 0:
				sleep = idlePoll
			}
		}
		wake.Reset(sleep)
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-wake.C:
		}
	}
}

// drainOnce sends up to one window of rows and waits (bounded) for their acknowledgements. It returns
// how many rows were acknowledged and how many were sent without proof of delivery (they stay).
func (l *Link) drainOnce(ctx context.Context) (acked, left int, err error) {
	rows, err := l.outbox.Pending(ctx, l.opts.DrainWindow, 0)
	if err != nil || len(rows) == 0 {
		return 0, 0, err
	}
	epoch := l.epoch.Load()
	toks := make([]mqtt.Token, len(rows))
	for i, r := range rows {
		toks[i] = l.client.Publish(r.Topic, r.QoS, r.Retained, r.Payload)
	}
	deadline := time.NewTimer(l.opts.AckTimeout)
	defer deadline.Stop()
	var ids []int64
	done := func() (int, int, error) {
		n, err := l.ack(ctx, ids)
		return n, len(rows) - len(ids), err
	}
	for i, tok := range toks {
		select {
		case <-tok.Done():
		case <-deadline.C:
			return done() // the rest are sent again in the next window
		case <-ctx.Done():
			return done()
		}
		if tok.Error() != nil || l.epoch.Load() != epoch {
			// Not proven delivered: it stays in the outbox and goes again (the receiver drops the
			// duplicate by its session and seq).
			continue
		}
		ids = append(ids, rows[i].ID)
	}
	return done()
}

func (l *Link) ack(ctx context.Context, ids []int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	// A fresh context: a stop must not lose the record of what the broker already has. As long as a
	// PUBACK may take: rows whose acknowledgement is not recorded are sent again, and a busy terminal
	// (1,250 such rows in a fleet-wide forget of 10,000 simulated devices at 5 s) only adds to its load.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.AckTimeout)
	defer cancel()
	if err := l.outbox.Ack(actx, ids...); err != nil {
		return 0, fmt.Errorf("ack outbox rows: %w", err)
	}
	return len(ids), nil
}

// Redact hides the password in a broker URL for logs.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return strings.Replace(s, u.User.String()+"@", u.User.Username()+":***@", 1)
}
