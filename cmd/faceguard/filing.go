package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/filing"
	"github.com/faceguard/faceguard/internal/clock"
)

// filingTracker computes the filing status from the devices' sketches and the filing records, and records
// the day the threshold is crossed.
type filingTracker struct {
	st    fleet.Store
	clock clock.Clock
	cal   *filing.Calendar

	mu     sync.Mutex
	cached filing.Status
	at     time.Time
}

// cacheFor keeps a status this long: merging ten thousand sketches costs tens of milliseconds, and the
// dashboard may be reloaded often.
const cacheFor = 10 * time.Second

func newFilingTracker(st fleet.Store, clk clock.Clock, calendarsDir string) (*filingTracker, error) {
	cal := filing.Official()
	if calendarsDir != "" {
		var err error
		if cal, _, err = cal.LoadDir(calendarsDir); err != nil {
			return nil, fmt.Errorf("--calendars: %w", err)
		}
	}
	return &filingTracker{st: st, clock: clk, cal: cal}, nil
}

// status merges every device's sketch and evaluates the records.
func (t *filingTracker) status(ctx context.Context) (filing.Status, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	if !t.at.IsZero() && now.Sub(t.at) < cacheFor && now.After(t.at) {
		return t.cached, nil
	}
	sketches, err := t.st.Sketches(ctx)
	if err != nil {
		return filing.Status{}, err
	}
	data := make([][]byte, len(sketches))
	for i, s := range sketches {
		data[i] = s.Data
	}
	estimate, err := filing.Merge(data...)
	missing := 0
	var me *filing.MergeError
	if errors.As(err, &me) {
		missing = len(me.Skipped)
	} else if err != nil {
		return filing.Status{}, err
	}
	recs, err := t.st.FilingRecords(ctx)
	if err != nil {
		return filing.Status{}, err
	}
	in := filing.Input{Estimate: int(estimate), RelativeError: filing.RelativeError(), MissingSketches: missing,
		Today: filing.Today(now)}
	for _, r := range recs {
		in.Records = append(in.Records, filing.Record{Kind: r.Kind, Date: r.Date, Reference: r.Reference, Note: r.Note})
	}
	t.cached, t.at = filing.Evaluate(t.cal, filing.DefaultConfig(), in), now
	return t.cached, nil
}

func (t *filingTracker) handler(r *http.Request) (any, error) { return t.status(r.Context()) }

// run records the crossing of the threshold on the first day the merged count reaches it: the 30
// working days run from that day.
func (t *filingTracker) run(ctx context.Context, log *slog.Logger) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		st, err := t.status(ctx)
		if err != nil {
			log.Error("filing tracker", "err", err)
		} else if st.NeedsThresholdRecord() {
			rec := st.ThresholdRecord()
			if err := t.st.AddFilingRecord(ctx, fleet.FilingRecord{Kind: rec.Kind, Date: rec.Date, Note: rec.Note,
				CreatedAt: t.clock.Now().UTC()}); err != nil {
				log.Error("record the threshold crossing", "err", err)
			} else {
				log.Warn("the fleet stores face data of 100,000 persons or more: file within 30 working days",
					"crossed", rec.Date)
				t.mu.Lock()
				t.at = time.Time{}
				t.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
