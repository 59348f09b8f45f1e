package dashboard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// Size of the benchmark fleet: 10,000 devices at 200 sites, about 3,000 open violations.
const (
	benchDevices = 10_000
	benchSites   = 200
)

// seedBigFleet fills a store as 10,000 devices would: each announces itself and reports a summary;
// every seventh has two violations open (one in three of those a critical one), one in twenty is offline, one in a hundred failed safe.
func seedBigFleet(tb testing.TB, st fleet.Store) (violations int) {
	tb.Helper()
	s := newSeeder(tb, st)
	t0 := testNow.Add(-time.Hour)
	for i := range benchDevices {
		dev := fmt.Sprintf("dev-%05d", i)
		site := i % benchSites
		s.birth(dev, fmt.Sprintf("site-%03d", site), fmt.Sprintf("第%03d号物业", site), "residential_gate", t0)
		c := wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: uint64(i + 1), Hash: "ab"}}
		switch {
		case i%100 == 1:
			c = wire.Compliance{Status: wire.StatusError, FailSafe: true, Fault: "facts: collector timed out",
				Control: wire.ControlState{AlternativesRequiredOn: true}}
		case i%7 == 0:
			critical := i%21 == 0
			first := wire.Failing{Control: "FRM-13-SIGNAGE", Severity: "high"}
			if critical {
				first = wire.Failing{Control: knownControl, Severity: "critical"}
				s.open(dev, t0, knownControl, "critical", []string{"FRM Art. 13"}, knownMessageZH, knownMessageEN)
			} else {
				s.open(dev, t0, "FRM-13-SIGNAGE", "high", []string{"FRM Art. 13", "PIPL Art. 26"},
					"公共场所未设置显著提示标识，或标识超过 180 天未核验", "no conspicuous sign at a public place, or not verified for 180 days")
			}
			s.open(dev, t0, "FRM-09-PIA", "medium", []string{"FRM Art. 9", "PIPL Art. 55"},
				"未完成个人信息保护影响评估", "no personal-information impact assessment")
			violations += 2
			c = wire.Compliance{Status: "non_compliant", Failing: []wire.Failing{first, {Control: "FRM-09-PIA", Severity: "medium"}},
				Control: allowedFR, Audit: wire.AuditHead{Seq: uint64(i + 1), Hash: "ab"}}
		}
		s.compliance(dev, t0.Add(time.Minute), c)
		if i%20 == 3 {
			s.offline(dev, t0.Add(2*time.Minute))
		}
	}
	return violations
}

// BenchmarkPages renders the pages an operator opens most over a fleet of 10,000 devices, through the
// real store, and reports the median and the 99th percentile of each.
func BenchmarkPages(b *testing.B) {
	st := openStore(b)
	start := time.Now()
	n := seedBigFleet(b, st)
	b.Logf("seeded %d devices and %d open violations in %v", benchDevices, n, time.Since(start).Round(time.Millisecond))
	mux := http.NewServeMux()
	Register(mux, Options{Store: st, Now: func() time.Time { return testNow }})

	for _, tc := range []struct{ name, path string }{
		{"overview", "/"},
		{"devices", "/devices"},
		{"devices_search_page_10", "/devices?q=dev-0&page=10"},
		{"devices_critical", "/devices?status=critical"},
		{"violations", "/violations"},
		{"violations_high_page_20", "/violations?severity=high&page=20"},
		{"device", "/devices/dev-04500"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var lat []time.Duration
			size := 0
			for b.Loop() {
				t := time.Now()
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
				lat = append(lat, time.Since(t))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d\n%s", tc.path, rec.Code, rec.Body)
				}
				size = rec.Body.Len()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(size)/1024, "KiB")
		})
	}
}
