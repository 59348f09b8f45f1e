package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// The PostgreSQL benchmarks run on testpg's server, which has fsync off: they measure the store's
// statements and round trips, not a disk. The SQLite ones commit with synchronous=FULL to a real file.

var benchT0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

func benchCompliance(dev string, seq uint64) wire.Compliance {
	c := wire.Compliance{Envelope: wire.Envelope{V: 1, Type: wire.TypeCompliance, Dev: dev, Session: 1, Seq: seq,
		TS: benchT0.Add(time.Duration(seq) * time.Second)}, Status: "compliant", EvaluatedAt: benchT0.Add(time.Duration(seq) * time.Second),
		Policy: wire.BundleInfo{Revision: "builtin-1"}, Actions: []string{},
		Audit: wire.AuditHead{Seq: seq, Hash: strings.Repeat("ab", 32)}}
	// Two of four controls failing, changing with seq: every summary opens one violation and closes one.
	controls := []string{"c.sign", "c.raw", "c.egress", "c.minor"}
	for i := 0; i < 2; i++ {
		c.Failing = append(c.Failing, wire.Failing{Control: controls[(int(seq)+i)%4], Severity: "high"})
	}
	c.Status, c.Counts.High = "non_compliant", 2
	return c
}

// BenchmarkApplyCompliance is one summary per operation, across 1,000 devices: the device row, a row of
// history, and violations opened and closed, in one transaction.
func BenchmarkApplyCompliance(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := open(b, d.dsn(b))
			ctx := context.Background()
			seq := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				seq++
				dev := fmt.Sprintf("dev-%04d", seq%1000)
				if _, err := s.ApplyCompliance(ctx, benchCompliance(dev, seq), benchT0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyComplianceParallel is the same from several goroutines: a controller's message handlers.
func BenchmarkApplyComplianceParallel(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := open(b, d.dsn(b))
			ctx := context.Background()
			var seq atomic.Uint64
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := seq.Add(1)
					dev := fmt.Sprintf("dev-%04d", n%1000)
					if _, err := s.ApplyCompliance(ctx, benchCompliance(dev, n), benchT0); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAddEvent is one event per operation, across 1,000 devices: violations opened and closed, and
// actions.
func BenchmarkAddEvent(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := open(b, d.dsn(b))
			ctx := context.Background()
			seq := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				seq++
				e := wire.Event{Envelope: wire.Envelope{V: 1, Type: wire.TypeEvent, Dev: fmt.Sprintf("dev-%04d", seq%1000),
					Session: 1, Seq: seq, TS: benchT0}, EventID: fmt.Sprint(seq), At: benchT0.Add(time.Duration(seq) * time.Millisecond)}
				switch seq % 3 {
				case 0:
					e.Kind, e.Control, e.Severity = wire.EventViolationOpened, "c.sign", "high"
					e.Articles, e.Message = []string{"art. 6"}, &wire.Text{ZH: "标识缺失", EN: "sign missing"}
				case 1:
					e.Kind, e.Control, e.Severity = wire.EventViolationClosed, "c.sign", "high"
				default:
					e.Kind, e.Action, e.Count = wire.EventAction, "delete_raw_captures", 3
				}
				if _, err := s.AddEvent(ctx, e, benchT0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fleetOf10k fills a store with 10,000 devices over 50 sites through the store's own methods (births,
// states, summaries), several writers at once.
func fleetOf10k(b *testing.B, s *Store) {
	b.Helper()
	ctx := context.Background()
	began := time.Now()
	const n = 10000
	var next atomic.Int64
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					errs <- nil
					return
				}
				dev := fmt.Sprintf("dev-%05d", i)
				env := func(typ string, seq uint64) wire.Envelope {
					return wire.Envelope{V: 1, Type: typ, Dev: dev, Session: 1, Seq: seq, TS: benchT0}
				}
				site := fmt.Sprintf("site-%02d", i%50)
				if _, err := s.ApplyBirth(ctx, wire.Birth{Envelope: env(wire.TypeBirth, 1), Site: site, SiteName: "Site " + site}, benchT0); err != nil {
					errs <- err
					return
				}
				st := wire.State{Envelope: env(wire.TypeState, 2), State: wire.StateOnline}
				if i%17 == 0 {
					st.State, st.Reason = wire.StateOffline, "lwt"
				}
				if _, err := s.ApplyState(ctx, st, benchT0); err != nil {
					errs <- err
					return
				}
				c := benchCompliance(dev, 3)
				if i%3 == 0 {
					c.Failing, c.Status, c.Counts = nil, "compliant", wire.Counts{}
				}
				if i%29 == 0 {
					c.Counts.Critical = 1
				}
				if _, err := s.ApplyCompliance(ctx, c, benchT0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%s: 10,000 devices (30,000 messages) applied in %s", s.Dialect(), time.Since(began).Round(time.Millisecond))
}

// BenchmarkFleet10k reads a fleet of 10,000 devices as the dashboard does.
func BenchmarkFleet10k(b *testing.B) {
	for _, d := range dialects {
		b.Run(d.name, func(b *testing.B) {
			s := open(b, d.dsn(b))
			fleetOf10k(b, s)
			ctx := context.Background()
			for _, c := range []struct {
				name string
				run  func() error
			}{
				{"Overview", func() error {
					o, err := s.Overview(ctx)
					if err == nil && o.Total.Devices != 10000 {
						err = fmt.Errorf("%d devices", o.Total.Devices)
					}
					return err
				}},
				{"DevicesFirstPage", func() error { _, _, err := s.Devices(ctx, fleet.DeviceQuery{}); return err }},
				{"DevicesLastPage", func() error { _, _, err := s.Devices(ctx, fleet.DeviceQuery{Offset: 9950}); return err }},
				{"DevicesSite", func() error { _, _, err := s.Devices(ctx, fleet.DeviceQuery{Site: "site-07"}); return err }},
				{"DevicesCritical", func() error { _, _, err := s.Devices(ctx, fleet.DeviceQuery{Status: "critical"}); return err }},
				{"DevicesSearch", func() error { _, _, err := s.Devices(ctx, fleet.DeviceQuery{Search: "DEV-012"}); return err }},
				{"OpenViolationsFirstPage", func() error { _, _, err := s.OpenViolations(ctx, fleet.ViolationQuery{}); return err }},
				{"Device", func() error { _, err := s.Device(ctx, "dev-04321"); return err }},
			} {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := c.run(); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
