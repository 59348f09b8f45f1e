package fleet

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/faceguard/faceguard/wire"
)

// API serves the JSON API: everything the dashboard shows, and the operator's commands. Reads are open;
// writes (commands, bundles, filing records) need the API token when one is configured.
type API struct {
	C     *Controller
	Token string
	// VerifyBundle checks a bundle's signature before it is offered (nil: devices alone verify).
	VerifyBundle func(data []byte) (revision string, err error)
	// Filing computes the filing tracker's status (nil: not served).
	Filing func(r *http.Request) (any, error)
	// Report builds the auditors' report (nil: not served).
	Report func(w http.ResponseWriter, r *http.Request)
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/overview", a.overview)
	mux.HandleFunc("GET /api/devices", a.devices)
	mux.HandleFunc("GET /api/devices/{id}", a.device)
	mux.HandleFunc("GET /api/violations", a.violations)
	mux.HandleFunc("GET /api/events", a.events)
	mux.HandleFunc("GET /api/commands", a.commands)
	mux.HandleFunc("GET /api/commands/{id}", a.command)
	mux.HandleFunc("POST /api/commands", a.write(a.issue))
	mux.HandleFunc("POST /api/forget", a.write(a.forget))
	mux.HandleFunc("POST /api/bundles", a.write(a.pushBundle))
	mux.HandleFunc("GET /api/filing", a.filing)
	mux.HandleFunc("POST /api/filing/records", a.write(a.addFilingRecord))
	mux.HandleFunc("GET /api/report", a.report)
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"broker_connected": a.C.Connected()})
	})
}

// write guards a handler that changes something with the API token.
func (a *API) write(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.Token != "" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(a.Token)) != 1 {
				apiError(w, http.StatusUnauthorized, "this request needs the API token: Authorization: Bearer <token>")
				return
			}
		}
		h(w, r)
	}
}

func (a *API) overview(w http.ResponseWriter, r *http.Request) {
	ov, err := a.C.st.Overview(r.Context())
	respond(w, ov, err)
}

func (a *API) devices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ds, total, err := a.C.st.Devices(r.Context(), DeviceQuery{Site: q.Get("site"), Search: q.Get("q"), Status: q.Get("status"),
		Offset: intParam(q.Get("offset")), Limit: intParam(q.Get("limit"))})
	respond(w, map[string]any{"devices": ds, "total": total}, err)
}

// DeviceDetail is a device with everything its page shows.
type DeviceDetail struct {
	Device     Device             `json:"device"`
	Violations []Violation        `json:"violations"`
	History    []ComplianceRecord `json:"history"`
	Events     []Event            `json:"events"`
}

func (a *API) device(w http.ResponseWriter, r *http.Request) {
	d, err := a.C.DeviceDetail(r, r.PathValue("id"))
	respond(w, d, err)
}

// DeviceDetail gathers a device's page.
func (c *Controller) DeviceDetail(r *http.Request, id string) (DeviceDetail, error) {
	ctx := r.Context()
	var d DeviceDetail
	var err error
	if d.Device, err = c.st.Device(ctx, id); err != nil {
		return d, err
	}
	if d.Violations, _, err = c.st.OpenViolations(ctx, ViolationQuery{Dev: id, Limit: 100}); err != nil {
		return d, err
	}
	if d.History, err = c.st.History(ctx, id, time.Time{}, 50); err != nil {
		return d, err
	}
	d.Events, err = c.st.Events(ctx, id, nil, time.Time{}, 100)
	return d, err
}

func (a *API) violations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	vs, total, err := a.C.st.OpenViolations(r.Context(), ViolationQuery{Site: q.Get("site"), Search: q.Get("q"),
		Control: q.Get("control"), Severity: q.Get("severity"), Offset: intParam(q.Get("offset")), Limit: intParam(q.Get("limit"))})
	respond(w, map[string]any{"violations": vs, "total": total}, err)
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var kinds []string
	if k := q.Get("kind"); k != "" {
		kinds = strings.Split(k, ",")
	}
	since, err := parseSince(q.Get("since"))
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	es, err := a.C.st.Events(r.Context(), q.Get("dev"), kinds, since, intParam(q.Get("limit")))
	respond(w, map[string]any{"events": es}, err)
}

func (a *API) commands(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cs, total, err := a.C.st.Commands(r.Context(), intParam(q.Get("offset")), intParam(q.Get("limit")))
	respond(w, map[string]any{"commands": cs, "total": total}, err)
}

// CommandDetail is a command and where it stands at every device.
type CommandDetail struct {
	Command Command         `json:"command"`
	Results []CommandResult `json:"results"`
	Done    bool            `json:"done"` // every device gave a final answer or timed out
}

func (a *API) command(w http.ResponseWriter, r *http.Request) {
	c, results, err := a.C.st.Command(r.Context(), r.PathValue("id"))
	done := true
	for i := range results {
		if !results[i].Final() {
			done = false
		}
	}
	respond(w, CommandDetail{Command: c, Results: results, Done: done}, err)
}

// issueBody is POST /api/commands.
type issueBody struct {
	Type   string          `json:"type"`
	Target string          `json:"target"`
	Args   json.RawMessage `json:"args"`
	TTLS   int             `json:"ttl_s"`
}

func (a *API) issue(w http.ResponseWriter, r *http.Request) {
	var b issueBody
	if !readBody(w, r, &b) {
		return
	}
	switch b.Type {
	case wire.CmdReevaluate, wire.CmdRebirth, wire.CmdConfig:
	case wire.CmdForgetSubject:
		apiError(w, http.StatusBadRequest, "use POST /api/forget with the subject reference: it is hashed here and never sent")
		return
	case wire.CmdBundleOffer:
		apiError(w, http.StatusBadRequest, "use POST /api/bundles with the signed bundle")
		return
	default:
		apiError(w, http.StatusBadRequest, fmt.Sprintf("unknown command type %q", b.Type))
		return
	}
	if b.Target == "" {
		b.Target = wire.Broadcast
	}
	if len(b.Args) == 0 {
		b.Args = json.RawMessage(`{}`)
	}
	cmd, err := a.C.Issue(r.Context(), IssueRequest{Type: b.Type, Target: b.Target, Args: b.Args,
		TTL: time.Duration(b.TTLS) * time.Second, CreatedBy: "api"})
	respondCreated(w, cmd, err)
}

func (a *API) forget(w http.ResponseWriter, r *http.Request) {
	var b struct {
		SubjectRef string `json:"subject_ref"`
	}
	if !readBody(w, r, &b) {
		return
	}
	cmd, err := a.C.Forget(r.Context(), b.SubjectRef, "api")
	respondCreated(w, cmd, err)
}

// pushBundle takes a signed bundle (the body) and offers it to ?target= (default every device).
func (a *API) pushBundle(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 16<<20+1))
	if err != nil || len(data) > 16<<20 {
		apiError(w, http.StatusBadRequest, "the body must be a signed bundle of at most 16 MiB")
		return
	}
	if a.VerifyBundle == nil {
		apiError(w, http.StatusServiceUnavailable, "the controller has no bundle verification key: start it with one")
		return
	}
	rev, err := a.VerifyBundle(data)
	if err != nil {
		apiError(w, http.StatusBadRequest, "bundle refused: "+err.Error())
		return
	}
	target := r.URL.Query().Get("target")
	if target == "" {
		target = wire.Broadcast
	}
	cmd, err := a.C.OfferBundle(r.Context(), rev, data, target, "api")
	respondCreated(w, cmd, err)
}

func (a *API) filing(w http.ResponseWriter, r *http.Request) {
	if a.Filing == nil {
		apiError(w, http.StatusNotFound, "the filing tracker is not configured")
		return
	}
	st, err := a.Filing(r)
	respond(w, st, err)
}

func (a *API) addFilingRecord(w http.ResponseWriter, r *http.Request) {
	var rec FilingRecord
	if !readBody(w, r, &rec) {
		return
	}
	switch rec.Kind {
	case "filed", "material_change", "fr_stopped", "cancelled", "threshold_crossed":
	default:
		apiError(w, http.StatusBadRequest, "kind must be filed, material_change, fr_stopped, cancelled or threshold_crossed")
		return
	}
	if _, err := time.Parse("2006-01-02", rec.Date); err != nil {
		apiError(w, http.StatusBadRequest, "date must be YYYY-MM-DD")
		return
	}
	rec.CreatedAt = a.C.clock.Now().UTC()
	respondCreated(w, rec, a.C.st.AddFilingRecord(r.Context(), rec))
}

func (a *API) report(w http.ResponseWriter, r *http.Request) {
	if a.Report == nil {
		apiError(w, http.StatusNotFound, "reports are not configured")
		return
	}
	a.Report(w, r)
}

func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, chinaTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("since must be YYYY-MM-DD or RFC 3339, not %q", s)
	}
	return t, nil
}

// chinaTime is UTC+8, the zone dates are given in (the tz database may be absent).
var chinaTime = time.FixedZone("CST", 8*3600)

func intParam(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		apiError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

func respond(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, err.Error())
	case err != nil:
		apiError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

func respondCreated(w http.ResponseWriter, v any, err error) {
	switch {
	case errors.Is(err, ErrNoSuchDevice):
		apiError(w, http.StatusNotFound, err.Error())
	case err != nil:
		apiError(w, http.StatusBadRequest, err.Error())
	default:
		writeJSON(w, http.StatusCreated, v)
	}
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
