package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/wire"
)

// EventWatch subscribes to the events of every device at a broker, as a controller does, so that the
// simulator can check at the end that every event its devices recorded got through: a persistent session
// (a broker restart queues what it misses), QoS 1.
type EventWatch struct {
	client paho.Client
	match  func(dev string) bool

	mu       sync.Mutex
	events   map[string][]ReportedEvent
	received atomic.Int64
	last     atomic.Int64 // unix nanoseconds of the last message
}

// WatchEvents connects a watcher with its own client id and subscribes to faceguard/v1/dev/+/event,
// keeping the events of the devices match accepts (nil: all).
func WatchEvents(brokerURL, clientID string, match func(dev string) bool) (*EventWatch, error) {
	w := &EventWatch{match: match, events: map[string][]ReportedEvent{}}
	filter := wire.Root + "/dev/+/" + wire.KindEvent
	opts := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(clientID).SetCleanSession(false).
		SetOrderMatters(false).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).SetKeepAlive(30 * time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			// On every connection: a broker without persistence forgot the subscription.
			c.Subscribe(filter, 1, w.onMessage)
		})
	w.client = paho.NewClient(opts)
	tok := w.client.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		w.client.Disconnect(0)
		return nil, fmt.Errorf("sim: watch events at %s: %v", brokerURL, tok.Error())
	}
	return w, nil
}

func (w *EventWatch) onMessage(_ paho.Client, m paho.Message) {
	dev, _, _, err := wire.ParseDeviceTopic(m.Topic())
	if err != nil || (w.match != nil && !w.match(dev)) {
		return
	}
	var e wire.Event
	if json.Unmarshal(m.Payload(), &e) != nil {
		return
	}
	w.received.Add(1)
	w.last.Store(time.Now().UnixNano())
	w.mu.Lock()
	w.events[dev] = append(w.events[dev], FromWire(e))
	w.mu.Unlock()
}

// Received counts the messages received (duplicates included).
func (w *EventWatch) Received() int64 { return w.received.Load() }

// Events returns what was received of one device.
func (w *EventWatch) Events(dev string) []ReportedEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ReportedEvent(nil), w.events[dev]...)
}

// Settle waits until nothing has arrived for quiet, or ctx ends.
func (w *EventWatch) Settle(ctx context.Context, quiet time.Duration) {
	for {
		last := time.Unix(0, w.last.Load())
		if time.Since(last) >= quiet {
			return
		}
		if !sleepFor(ctx, quiet-time.Since(last)) {
			return
		}
	}
}

// Close disconnects, keeping the session at the broker.
func (w *EventWatch) Close() { w.client.Disconnect(250) }

// OutboxEvents reads the events still waiting in a stopped agent's outbox (read-only), and how many
// messages of any kind wait there.
func OutboxEvents(ctx context.Context, storePath string) ([]ReportedEvent, int, error) {
	st, err := store.OpenReadOnly(storePath)
	if err != nil {
		return nil, 0, err
	}
	defer st.Close()
	rows, err := st.Pending(ctx, 0, 0)
	if err != nil {
		return nil, 0, err
	}
	var out []ReportedEvent
	for _, r := range rows {
		if !strings.HasSuffix(r.Topic, "/"+wire.KindEvent) {
			continue
		}
		var e wire.Event
		if err := json.Unmarshal(r.Payload, &e); err != nil {
			return nil, 0, fmt.Errorf("outbox row %d: %w", r.ID, err)
		}
		out = append(out, FromWire(e))
	}
	return out, len(rows), nil
}

// Delivery is the check of a stopped fleet against what was received of it: every event each device's
// audit chain says it published is either received or still in its outbox (held, not lost).
type Delivery struct {
	Devices     int
	ChainBroken int // devices whose audit chain does not verify
	Recorded    int // violation, action and fault events the chains imply
	Receipts    int // deletion receipts recorded
	Received    int // of the recorded events, received (after deduplication)
	Pending     int // of the recorded events, still in the outboxes
	Duplicates  int // duplicate messages dropped by deduplication
	Lost        int // devices with an event neither received nor pending, or a mismatch
	// Problems describe the first devices at fault.
	Problems []string
}

// OK reports whether nothing was lost and every chain verifies.
func (d Delivery) OK() bool { return d.ChainBroken == 0 && d.Lost == 0 }

// CheckDelivery checks stopped devices (their stores closed) against received, the events received of
// each device.
func CheckDelivery(ctx context.Context, devices []*Device, received func(dev string) []ReportedEvent) (Delivery, error) {
	var (
		mu  sync.Mutex
		out = Delivery{Devices: len(devices)}
	)
	problem := func(format string, args ...any) {
		if len(out.Problems) < 10 {
			out.Problems = append(out.Problems, fmt.Sprintf(format, args...))
		}
	}
	errs := make([]error, len(devices))
	idx := make([]int, len(devices))
	for i := range idx {
		idx[i] = i
	}
	parallel(idx, func(i, _ int) {
		d := devices[i]
		truth, err := TruthOfFile(ctx, d.StorePath())
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", d.ID(), err)
			return
		}
		pending, _, err := OutboxEvents(ctx, d.StorePath())
		if err != nil {
			errs[i] = fmt.Errorf("%s: %w", d.ID(), err)
			return
		}
		got := received(d.ID())
		rep := ReportedOf(append(got, pending...))
		onlyReceived := ReportedOf(got)
		mu.Lock()
		defer mu.Unlock()
		out.Recorded += truth.Events()
		out.Receipts += len(truth.Receipts)
		out.Received += onlyReceived.Events()
		out.Pending += rep.Events() - onlyReceived.Events()
		out.Duplicates += onlyReceived.Duplicates
		if !truth.Chain.OK {
			out.ChainBroken++
			problem("%s: audit chain does not verify: %+v", d.ID(), truth.Chain.Problems)
		}
		if diff := truth.Missing(rep); diff != "" {
			out.Lost++
			problem("%s: %s", d.ID(), diff)
		}
	})
	return out, errors.Join(errs...)
}
