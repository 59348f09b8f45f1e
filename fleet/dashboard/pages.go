package dashboard

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// overviewData is the fleet at a glance: totals, and one row per site (paged: a fleet may have
// thousands of sites).
type overviewData struct {
	Total fleet.SiteSummary
	Sites []fleet.SiteSummary
	Pager pager
}

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	p := newParams(r, lang)
	page := p.page()
	ov, err := s.o.Store.Overview(r.Context())
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	d := overviewData{Total: ov.Total, Pager: newPager(r.URL, page, sitePageSize, len(ov.Sites))}
	if from := (page - 1) * sitePageSize; from < len(ov.Sites) {
		d.Sites = ov.Sites[from:min(from+sitePageSize, len(ov.Sites))]
	}
	s.render(w, r, lang, http.StatusOK, "overview", "overview", d)
}

// siteOption is a site in a filter's list.
type siteOption struct{ ID, Name string }

func siteOptions(ov fleet.Overview) []siteOption {
	out := make([]siteOption, 0, len(ov.Sites))
	for _, st := range ov.Sites {
		name := st.SiteName
		if name == "" {
			name = st.Site
		}
		out = append(out, siteOption{st.Site, name})
	}
	return out
}

// siteSummary finds a site's row of the overview, or the fleet's totals for site "".
func siteSummary(ov fleet.Overview, site string) (fleet.SiteSummary, bool) {
	if site == "" {
		return ov.Total, true
	}
	for _, st := range ov.Sites {
		if st.Site == site {
			return st, true
		}
	}
	return fleet.SiteSummary{Site: site}, false
}

// devicesData is one page of the device list.
type devicesData struct {
	Site, Q, Status string
	SiteName        string
	Sites           []siteOption
	Statuses        []string
	Counts          fleet.SiteSummary // the site's (or fleet's) counts, from the overview
	Devices         []fleet.Device
	Pager           pager
}

func (s *server) devices(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	p := newParams(r, lang)
	d := devicesData{Site: p.text("site"), Q: p.text("q"), Status: p.oneOf("status", deviceStatuses), Statuses: deviceStatuses}
	page := p.page()
	if p.err != nil {
		s.fail(w, r, lang, http.StatusBadRequest, p.err.msg)
		return
	}
	ctx := r.Context()
	ov, err := s.o.Store.Overview(ctx)
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	d.Sites = siteOptions(ov)
	d.Counts, _ = siteSummary(ov, d.Site)
	d.SiteName = d.Counts.SiteName
	devs, total, err := s.o.Store.Devices(ctx, fleet.DeviceQuery{Site: d.Site, Search: d.Q, Status: d.Status,
		Offset: (page - 1) * pageSize, Limit: pageSize})
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	d.Devices, d.Pager = devs, newPager(r.URL, page, pageSize, total)
	s.render(w, r, lang, http.StatusOK, "devices", "devices", d)
}

// violationsData is one page of the open violations.
type violationsData struct {
	Site, Q, Control, Severity string
	Sites                      []siteOption
	SiteNames                  map[string]string
	Controls                   []string
	Severities                 []string
	Violations                 []fleet.Violation
	Pager                      pager
}

func (s *server) violations(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	p := newParams(r, lang)
	d := violationsData{Site: p.text("site"), Q: p.text("q"), Control: p.text("control"),
		Severity: p.oneOf("severity", severities), Controls: controlIDs, Severities: severities}
	page := p.page()
	if p.err != nil {
		s.fail(w, r, lang, http.StatusBadRequest, p.err.msg)
		return
	}
	ctx := r.Context()
	ov, err := s.o.Store.Overview(ctx)
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	d.Sites = siteOptions(ov)
	d.SiteNames = make(map[string]string, len(d.Sites))
	for _, o := range d.Sites {
		d.SiteNames[o.ID] = o.Name
	}
	if d.Control != "" && !slices.Contains(d.Controls, d.Control) {
		// A control a newer policy bundle added: offer it in the list too, so the filter shows.
		d.Controls = append(slices.Clip(d.Controls), d.Control)
	}
	vs, total, err := s.o.Store.OpenViolations(ctx, fleet.ViolationQuery{Site: d.Site, Search: d.Q, Control: d.Control,
		Severity: d.Severity, Offset: (page - 1) * pageSize, Limit: pageSize})
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	d.Violations, d.Pager = vs, newPager(r.URL, page, pageSize, total)
	s.render(w, r, lang, http.StatusOK, "violations", "violations", d)
}

// deviceData is a device's page.
type deviceData struct {
	Device     fleet.Device
	Evaluated  bool // a compliance summary arrived: the orders below are the agent's
	Violations []fleet.Violation
	// ViolationsCut is set when the device has more open violations than the page fetched.
	ViolationsCut bool
	History       []fleet.ComplianceRecord
	Actions       []fleet.Event
	Receipts      []fleet.Event
	Faults        []fleet.Event
	Timeline      []fleet.Event // violations opened and closed, bundles
	Orders        []order
}

// order is one thing the agent orders its terminal, as the device page lists them.
type order struct {
	ID      string // the element id, order-…
	Label   string // dictionary key
	Allowed bool
	On, Off string // dictionary keys of the two values
}

// Bounds of a device page: the most recent, enough for an operator; the auditors' report has more.
const (
	deviceViolations = 100
	deviceHistory    = 50
	deviceEvents     = 200
)

func (s *server) device(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	id := r.PathValue("id")
	ctx := r.Context()
	dev, err := s.o.Store.Device(ctx, id)
	if err != nil {
		s.storeFailed(w, r, lang, err, tr(lang, "err_no_device", id))
		return
	}
	d := deviceData{Device: dev, Evaluated: dev.Status != ""}
	vs, total, err := s.o.Store.OpenViolations(ctx, fleet.ViolationQuery{Dev: id, Limit: deviceViolations})
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	d.Violations = vs
	d.ViolationsCut = total > len(vs)
	if d.History, err = s.o.Store.History(ctx, id, time.Time{}, deviceHistory); err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	evs, err := s.o.Store.Events(ctx, id, nil, time.Time{}, deviceEvents)
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	for _, e := range evs {
		switch e.Kind {
		case wire.EventAction:
			d.Actions = append(d.Actions, e)
		case wire.EventReceipt:
			d.Receipts = append(d.Receipts, e)
		case wire.EventFault:
			d.Faults = append(d.Faults, e)
		default:
			d.Timeline = append(d.Timeline, e)
		}
	}
	c := dev.Control
	d.Orders = []order{
		{"order-fr", "order_fr", c.FaceRecognitionAllowed, "allowed", "fr_off"},
		{"order-enrolment", "order_enrolment", c.EnrolmentAllowed, "allowed", "blocked"},
		{"order-egress", "order_egress", c.FaceDataEgressAllowed, "allowed", "blocked"},
		// For alternatives the safe value is "on": Allowed here means "required on".
		{"order-alternatives", "order_alternatives", c.AlternativesRequiredOn, "required_on", "not_required"},
	}
	s.render(w, r, lang, http.StatusOK, "device", "devices", d)
}

// commandsData is one page of commands.
type commandsData struct {
	Commands []fleet.CommandSummary
	Statuses []string
	Pager    pager
}

func (s *server) commands(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	page := newParams(r, lang).page()
	cs, total, err := s.o.Store.Commands(r.Context(), (page-1)*pageSize, pageSize)
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	s.render(w, r, lang, http.StatusOK, "commands", "commands",
		commandsData{Commands: cs, Statuses: commandStatuses, Pager: newPager(r.URL, page, pageSize, total)})
}

// commandData is a command and one page of its results.
type commandData struct {
	Command  fleet.Command
	Args     string // indented JSON
	Counts   map[string]int
	Total    int
	Done     bool
	Status   string // the results shown: one status, or "" for all
	Statuses []string
	Results  []fleet.CommandResult
	Pager    pager
}

func (s *server) command(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	p := newParams(r, lang)
	status := p.oneOf("status", commandStatuses)
	page := p.page()
	if p.err != nil {
		s.fail(w, r, lang, http.StatusBadRequest, p.err.msg)
		return
	}
	id := r.PathValue("id")
	cmd, results, err := s.o.Store.Command(r.Context(), id)
	if err != nil {
		s.storeFailed(w, r, lang, err, tr(lang, "err_no_command", id))
		return
	}
	d := commandData{Command: cmd, Args: indentJSON(cmd.Args), Counts: map[string]int{}, Total: len(results),
		Done: true, Status: status, Statuses: commandStatuses}
	shown := results[:0:0]
	for i := range results {
		d.Counts[results[i].Status]++
		if !results[i].Final() {
			d.Done = false
		}
		if status == "" || results[i].Status == status {
			shown = append(shown, results[i])
		}
	}
	// What needs a look first: failures, then what is still open, then the successes.
	slices.SortStableFunc(shown, func(a, b fleet.CommandResult) int { return resultRank[a.Status] - resultRank[b.Status] })
	// A fleet command has a result per device: the store returns them all, the page shows 50.
	d.Pager = newPager(r.URL, page, pageSize, len(shown))
	if from := (page - 1) * pageSize; from < len(shown) {
		d.Results = shown[from:min(from+pageSize, len(shown))]
	}
	s.render(w, r, lang, http.StatusOK, "command", "commands", d)
}

// resultRank orders a command's results on its page.
var resultRank = map[string]int{wire.ResultFailed: 0, wire.ResultRejected: 1, fleet.CommandTimedOut: 2,
	fleet.CommandPending: 3, wire.ResultAccepted: 4, wire.ResultSucceeded: 5}

func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return string(raw)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(raw)
	}
	return string(b)
}

// filingData is the filing tracker's page.
type filingData struct {
	Configured bool
	View       FilingView
	Err        string
	Records    []fleet.FilingRecord
	Upper      int // Persons + ErrorBound
}

func (s *server) filing(w http.ResponseWriter, r *http.Request) {
	lang := chooseLang(w, r)
	ctx := r.Context()
	d := filingData{Configured: s.o.Filing != nil}
	if d.Configured {
		v, err := s.o.Filing(ctx)
		if err != nil {
			d.Err = err.Error()
		}
		d.View, d.Upper = v, v.Persons+v.ErrorBound
	}
	recs, err := s.o.Store.FilingRecords(ctx)
	if err != nil {
		s.storeFailed(w, r, lang, err, "")
		return
	}
	// Newest first: the latest filing is what an auditor asks for.
	slices.Reverse(recs)
	d.Records = recs
	s.render(w, r, lang, http.StatusOK, "filing", "filing", d)
}
