package fleet

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io"
	"sort"
	"time"

	"github.com/faceguard/faceguard/wire"
)

// Report is the evidence an auditor reads: per site and device, the controls as they stand, their
// history, the actions taken, the deletion receipts, and the state of each device's audit chain.
type Report struct {
	GeneratedAt time.Time    `json:"generated_at"`
	Since       time.Time    `json:"since"`
	Overview    Overview     `json:"overview"`
	Sites       []ReportSite `json:"sites"`
}

// ReportSite groups a site's devices.
type ReportSite struct {
	Site     string         `json:"site"`
	SiteName string         `json:"site_name"`
	Devices  []ReportDevice `json:"devices"`
}

// ReportDevice is one device's evidence.
type ReportDevice struct {
	Device     Device             `json:"device"`
	Violations []Violation        `json:"open_violations"`
	History    []ComplianceRecord `json:"history"`
	Actions    []Event            `json:"actions"`
	Receipts   []Event            `json:"receipts"`
	Faults     []Event            `json:"faults"`
	// AuditChain says whether the chain the device reports has only ever grown.
	AuditChain string `json:"audit_chain"`
}

// maxReportDevices bounds one report; a bigger fleet is reported per site (the API takes ?site=).
const maxReportDevices = 5000

// BuildReport gathers the evidence since a time, for one site or the whole fleet.
func BuildReport(ctx context.Context, st Store, since time.Time, site string, now time.Time) (Report, error) {
	r := Report{GeneratedAt: now, Since: since}
	var err error
	if r.Overview, err = st.Overview(ctx); err != nil {
		return r, err
	}
	bySite := map[string]*ReportSite{}
	for offset := 0; offset < maxReportDevices; offset += 500 {
		devs, total, err := st.Devices(ctx, DeviceQuery{Site: site, Offset: offset, Limit: 500})
		if err != nil {
			return r, err
		}
		for _, d := range devs {
			rd, err := reportDevice(ctx, st, d, since)
			if err != nil {
				return r, err
			}
			s := bySite[d.Site]
			if s == nil {
				s = &ReportSite{Site: d.Site, SiteName: d.SiteName}
				bySite[d.Site] = s
			}
			s.Devices = append(s.Devices, rd)
		}
		if offset+len(devs) >= total || len(devs) == 0 {
			break
		}
	}
	for _, s := range bySite {
		r.Sites = append(r.Sites, *s)
	}
	sort.Slice(r.Sites, func(i, j int) bool { return r.Sites[i].Site < r.Sites[j].Site })
	return r, nil
}

func reportDevice(ctx context.Context, st Store, d Device, since time.Time) (ReportDevice, error) {
	rd := ReportDevice{Device: d, AuditChain: "intact"}
	if d.AuditRegressed != nil {
		rd.AuditChain = "regressed on " + d.AuditRegressed.Format(time.RFC3339) + ": the device reported a shorter or rewritten chain"
	} else if d.Audit.Seq == 0 {
		rd.AuditChain = "not reported yet"
	}
	var err error
	if rd.Violations, _, err = st.OpenViolations(ctx, ViolationQuery{Dev: d.ID, Limit: 100}); err != nil {
		return rd, err
	}
	if rd.History, err = st.History(ctx, d.ID, since, 200); err != nil {
		return rd, err
	}
	evs, err := st.Events(ctx, d.ID, []string{wire.EventAction, wire.EventReceipt, wire.EventFault}, since, 500)
	if err != nil {
		return rd, err
	}
	for _, e := range evs {
		switch e.Kind {
		case wire.EventAction:
			rd.Actions = append(rd.Actions, e)
		case wire.EventReceipt:
			rd.Receipts = append(rd.Receipts, e)
		case wire.EventFault:
			rd.Faults = append(rd.Faults, e)
		}
	}
	return rd, nil
}

//go:embed templates/report.html
var reportFS embed.FS

var reportTmpl = template.Must(template.New("report.html").Funcs(template.FuncMap{
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.In(chinaTime).Format("2006-01-02 15:04:05")
	},
	"join": func(ss []string) string {
		out := ""
		for i, s := range ss {
			if i > 0 {
				out += ", "
			}
			out += s
		}
		return out
	},
}).ParseFS(reportFS, "templates/report.html"))

// WriteReportHTML renders the report as a printable page in both languages.
func WriteReportHTML(w io.Writer, r Report) error {
	if err := reportTmpl.Execute(w, r); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}
