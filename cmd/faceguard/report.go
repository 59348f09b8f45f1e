package main

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/internal/clock"
)

// reportHandler serves GET /api/report?since=YYYY-MM-DD&format=html|json&site=ID.
func reportHandler(st fleet.Store, clk clock.Clock) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		now := clk.Now()
		since := now.AddDate(0, 0, -30)
		if s := q.Get("since"); s != "" {
			t, err := time.ParseInLocation("2006-01-02", s, chinaTime)
			if err != nil {
				http.Error(w, `{"error":"since must be YYYY-MM-DD"}`, http.StatusBadRequest)
				return
			}
			since = t
		}
		rep, err := fleet.BuildReport(r.Context(), st, since, q.Get("site"), now)
		if err != nil {
			http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusInternalServerError)
			return
		}
		switch q.Get("format") {
		case "json":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.SetEscapeHTML(false)
			_ = enc.Encode(rep)
		case "", "html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = fleet.WriteReportHTML(w, rep)
		default:
			http.Error(w, `{"error":"format must be html or json"}`, http.StatusBadRequest)
		}
	}
}

// chinaTime is UTC+8: dates an operator types are dates in China.
var chinaTime = time.FixedZone("CST", 8*3600)
