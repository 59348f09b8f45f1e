package fleet

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the controller's Prometheus metrics, on a registry of its own so that several controllers
// can live in one process (tests, the demo).
type metrics struct {
	reg          *prometheus.Registry
	ingested     *prometheus.CounterVec
	duplicates   *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	storeErrors  prometheus.Counter
	resent       prometheus.Counter
	commands     *prometheus.CounterVec
	applySeconds prometheus.Histogram
}

func newMetrics(st Store) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faceguard_messages_ingested_total",
			Help: "Device messages applied to the fleet store, by kind."}, []string{"kind"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faceguard_messages_duplicate_total",
			Help: "Device messages already applied (redelivery, or another controller was first), by kind."}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faceguard_messages_rejected_total",
			Help: "Device messages refused as malformed, by kind."}, []string{"kind"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "faceguard_store_errors_total",
			Help: "Messages left unacknowledged because the store failed (the broker delivers them again)."}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{Name: "faceguard_commands_resent_total",
			Help: "Pending commands re-sent to a device that announced its birth."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "faceguard_commands_issued_total",
			Help: "Commands issued, by type."}, []string{"type"}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "faceguard_message_apply_seconds",
			Help: "Time to apply one device message to the store.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
	m.reg.MustRegister(m.ingested, m.duplicates, m.rejected, m.storeErrors, m.resent, m.commands, m.applySeconds,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
		&fleetCollector{st: st, devices: prometheus.NewDesc("faceguard_devices",
			"Devices of the fleet by site and state.", []string{"site", "state"}, nil)})
	return m
}

// fleetCollector reports the fleet's state at scrape time, from the store.
type fleetCollector struct {
	st      Store
	devices *prometheus.Desc
}

func (f *fleetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.devices }

func (f *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ov, err := f.st.Overview(ctx)
	if err != nil {
		return
	}
	for _, s := range ov.Sites {
		for state, n := range map[string]int{"compliant": s.Compliant, "non_compliant": s.NonCompliant, "critical": s.Critical,
			"offline": s.Offline, "fail_safe": s.FailSafe, "all": s.Devices} {
			ch <- prometheus.MustNewConstMetric(f.devices, prometheus.GaugeValue, float64(n), s.Site, state)
		}
	}
}

// MetricsHandler serves /metrics.
func (c *Controller) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(c.m.reg, promhttp.HandlerOpts{})
}
