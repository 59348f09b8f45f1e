package main

import (
	"context"
	"net/http"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/dashboard"
	"github.com/faceguard/faceguard/fleet/filing"
	"github.com/faceguard/faceguard/wire"
)

// registerDashboard serves the dashboard's pages, with the filing tracker adapted to its view.
func registerDashboard(mux *http.ServeMux, ctl *fleet.Controller, t *filingTracker) {
	dashboard.Register(mux, dashboard.Options{Store: ctl.Store(), Connected: ctl.Connected, Title: "faceguard",
		Now: t.clock.Now,
		Filing: func(ctx context.Context) (dashboard.FilingView, error) {
			st, err := t.status(ctx)
			if err != nil {
				return dashboard.FilingView{}, err
			}
			return filingView(st), nil
		}})
}

func filingView(st filing.Status) dashboard.FilingView {
	v := dashboard.FilingView{
		Today: st.Today.String(), Persons: st.Count, ErrorBound: st.ErrorBound, RelativeError: st.RelativeError,
		LowerBound: st.LowerBound, Band: string(st.Band), BandExplain: st.BandExplain, Threshold: st.Threshold,
		WarningFrom: st.WarningFrom, State: string(st.State), Explanation: st.Explain, Problems: st.Problems,
	}
	if !st.Crossed.IsZero() {
		v.Crossed = st.Crossed.String()
	}
	if st.Filing != nil {
		v.Due, v.WorkingDaysLeft, v.Overdue = st.Filing.Due.String(), st.Filing.Remaining, st.Filing.Overdue
	}
	if st.Filed != nil {
		v.Filed, v.FiledRef = st.Filed.Date.String(), st.Filed.Reference
	}
	if st.Change != nil {
		v.MaterialChangeDue = st.Change.Due.String()
	}
	if st.Cancel != nil {
		v.CancellationDue = st.Cancel.Due.String()
	}
	if st.Estimate.Warning != (wire.Text{}) {
		v.Warnings = append(v.Warnings, st.Estimate.Warning)
	}
	return v
}
