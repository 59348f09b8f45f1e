package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/wire"
)

// BenchmarkControllerIngest is the controller's ingest at fleet scale (DESIGN §11: with 10,000 devices
// connected, a violation on any device visible in the controller p99 ≤ 2 s): Mosquitto, one controller on
// SQLite (on disk, synchronous=FULL), and N simulated devices, each its own MQTT connection as a terminal
// has, publishing violation events at QoS 1. A message counts as stored when the controller's store
// has committed it (the store is the real one; the benchmark only notes the moment its AddEvent returns).
//
//   - burst: every device publishes one event at the same moment (a policy change, a broker coming
//     back): msgs/s is the controller's ingest rate, and the latencies are those of a full queue;
//   - steady: every device publishes one event, spread evenly over 10 s, a heavy but sustainable load:
//     the latencies are those of an operator waiting for a violation to show.
//
// One iteration is one round of N events; run it with -benchtime=Nx. Setup (connecting N clients) is
// not timed.
func BenchmarkControllerIngest(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		b.Run(fmt.Sprintf("devices_%d", n), func(b *testing.B) {
			r := newIngestRig(b, n)
			b.Run("burst", func(b *testing.B) { r.rounds(b, 0) })
			b.Run("steady", func(b *testing.B) { r.rounds(b, 10*time.Second) })
		})
	}
}

// ingestRig is a broker, a controller and n connected device clients.
type ingestRig struct {
	st      *timedStore
	devices []paho.Client
	ids     []string
	seq     uint64 // the round's seq: every device's events are one session, seq rising
}

func newIngestRig(b *testing.B, n int) *ingestRig {
	b.Helper()
	mq := testbroker.StartMosquitto(b, testbroker.MosquittoOptions{})
	ctx := context.Background()
	sq, err := sqlstore.Open(ctx, filepath.Join(b.TempDir(), "fleet.db"), sqlstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st := &timedStore{Store: sq, pubAt: make([]atomic.Int64, n)}
	k := newKeys(b)
	ctl, err := fleet.NewController(fleet.Options{Store: st, BrokerURL: mq.URL(), ClientID: "controller",
		CommandKey: k.cmdPriv, SubjectKey: k.subject})
	if err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ctl.Start(sctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ctl.Close(); sq.Close() })

	r := &ingestRig{st: st, devices: make([]paho.Client, n), ids: make([]string, n)}
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	sem := make(chan struct{}, 32)
	for i := range n {
		r.ids[i] = fmt.Sprintf("ingest-%05d", i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			o := paho.NewClientOptions().AddBroker(mq.URL()).SetClientID(r.ids[i]).SetCleanSession(true).
				SetKeepAlive(5 * time.Minute).SetAutoReconnect(false).SetOrderMatters(false)
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				err := fmt.Errorf("connect %s: %v", r.ids[i], tok.Error())
				failed.CompareAndSwap(nil, &err)
				return
			}
			r.devices[i] = c
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		for _, c := range r.devices {
			if c != nil {
				c.Disconnect(0)
			}
		}
	})
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	st.index = make(map[string]int, n)
	for i, id := range r.ids {
		st.index[id] = i
	}
	return r
}

// rounds runs b.N rounds; in each every device publishes one event, all at once (spread 0) or evenly
// over spread.
func (r *ingestRig) rounds(b *testing.B, spread time.Duration) {
	n := len(r.devices)
	var lat []time.Duration
	var elapsed time.Duration
	for b.Loop() {
		r.seq++
		payloads := r.payloads(b)
		r.st.startRound(r.seq, n)
		start := time.Now()
		tokens := make([]paho.Token, n)
		for i, c := range r.devices {
			if spread > 0 {
				if d := time.Until(start.Add(spread * time.Duration(i) / time.Duration(n))); d > 0 {
					time.Sleep(d)
				}
			}
			r.st.pubAt[i].Store(time.Now().UnixNano())
			tokens[i] = c.Publish(wire.EventTopic(r.ids[i]), 1, false, payloads[i])
		}
		select {
		case <-r.st.done:
		case <-time.After(spread + 5*time.Minute):
			b.Fatalf("round %d: %d of %d events stored after %s", r.seq, r.st.stored.Load(), n, time.Since(start))
		}
		elapsed += time.Since(start)
		for i, tok := range tokens {
			if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
				b.Fatalf("publish of %s: %v", r.ids[i], tok.Error())
			}
		}
		lat = append(lat, r.st.latencies()...)
	}
	if spread == 0 {
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "msgs/s")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// payloads are this round's events: a violation opened on odd rounds and closed on even ones, as an
// agent reports a coercive prompt put up and taken down.
func (r *ingestRig) payloads(b *testing.B) [][]byte {
	kind := wire.EventViolationOpened
	if r.seq%2 == 0 {
		kind = wire.EventViolationClosed
	}
	now := time.Now().UTC()
	out := make([][]byte, len(r.ids))
	for i, id := range r.ids {
		e := wire.Event{Envelope: wire.Envelope{V: wire.Version, Type: wire.TypeEvent, Dev: id, Session: 1, Seq: r.seq, TS: now},
			EventID: fmt.Sprintf("%s-1-%d", id, r.seq), Kind: kind, At: now, Control: "FRM-12-NO-COERCION",
			Severity: "medium", Articles: []string{"FRM Art. 12"},
			Message: &wire.Text{ZH: "终端提示语把刷脸作为唯一方式（“只能刷脸”）：请删除此类表述，并提示可以使用其他方式",
				EN: `a prompt makes face recognition the only way ("只能刷脸"): remove such wording and tell people other ways are available`}}
		p, err := json.Marshal(e)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// timedStore is the controller's real store; it notes when each event of the current round has been
// committed, to measure publish → stored.
type timedStore struct {
	fleet.Store
	index map[string]int // device id → its index (written before the first round)
	pubAt []atomic.Int64 // when each device published this round's event (unix ns)

	mu     sync.Mutex
	seq    uint64
	want   int64
	stored atomic.Int64
	lat    []time.Duration
	done   chan struct{}
}

func (s *timedStore) startRound(seq uint64, want int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq, s.want, s.lat, s.done = seq, int64(want), make([]time.Duration, 0, want), make(chan struct{})
	s.stored.Store(0)
}

func (s *timedStore) latencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lat
}

func (s *timedStore) AddEvent(ctx context.Context, e wire.Event, receivedAt time.Time) (bool, error) {
	added, err := s.Store.AddEvent(ctx, e, receivedAt)
	if err != nil || !added {
		return added, err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[e.Dev]
	if !ok || e.Seq != s.seq {
		return added, err
	}
	s.lat = append(s.lat, now.Sub(time.Unix(0, s.pubAt[i].Load())))
	if s.stored.Add(1) == s.want {
		close(s.done)
	}
	return added, err
}
