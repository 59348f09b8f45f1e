// Package dashboard is the operator's web dashboard of the fleet controller: server-rendered pages, in
// Chinese and English, of the fleet at a glance, its devices, open violations, commands and the filing
// tracker. Property managers, hotel chains and banks run their fleets from it; auditors read it.
//
// It only reads: every page is a GET over fleet.Store, and commands are issued through the JSON API.
// It must stay fast on a fleet of 10,000 devices, so it never loads every device: lists are paged in the
// store and the counts come from Store.Overview. It carries no script and loads nothing from elsewhere
// (the controller often runs on a closed network): styles are inline, templates embedded.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// Options configure the dashboard.
type Options struct {
	// Store is the fleet's state (required).
	Store fleet.Store
	// Filing returns the filing tracker's status for the /filing page; nil: the page says the tracker is
	// not configured.
	Filing func(ctx context.Context) (FilingView, error)
	// Connected reports whether the controller's broker connection is open, for the header; nil: not shown.
	Connected func() bool
	// Title names the dashboard in the header; default "faceguard".
	Title string
	// Now is the clock (the "generated at" time and how long ago a device was seen); nil: time.Now.
	Now func() time.Time
}

// FilingView is the filing tracker (Art. 15 of the Measures) as the /filing page shows it. The caller
// fills it from the tracker; dates are YYYY-MM-DD dates in China, "" when there is none.
type FilingView struct {
	Today string
	// Persons is the merged estimate of distinct enrolled persons across the fleet, ± ErrorBound persons
	// (about 95 %); LowerBound: some devices' sketches were missing, the true count may be higher.
	Persons       int
	ErrorBound    int
	RelativeError float64
	LowerBound    bool
	Devices       int // devices whose sketches were merged (0: not said)
	// Band is below | warning | over, against Threshold (100,000) and WarningFrom (80,000).
	Band        string
	BandExplain wire.Text
	Threshold   int
	WarningFrom int
	// State is not_required | due | filed | change_due | cancel_due | cancelled ("" not said).
	State string
	// Crossed is the day the threshold was reached; Due the last day to file (30 working days later),
	// WorkingDaysLeft the working days after today up to Due (negative once past), Overdue when past.
	Crossed         string
	Due             string
	WorkingDaysLeft int
	Overdue         bool
	Filed           string // the latest filing or update
	FiledRef        string // its reference number
	// MaterialChangeDue is when the update for a material change is due; CancellationDue when the
	// filing must be cancelled after face recognition stopped.
	MaterialChangeDue string
	CancellationDue   string
	// Warnings are the calendar's warnings (a date computed without the official holiday notice).
	Warnings    []wire.Text
	Explanation wire.Text
	// Problems are records the tracker ignored, and why (English, from the tracker).
	Problems []string
}

// pageSize is the rows of every list page.
const pageSize = 50

// sitePageSize is the sites per page of the overview.
const sitePageSize = 100

// maxQueryLen bounds a search or filter value: longer is a bad request.
const maxQueryLen = 100

// Register adds the dashboard's pages to mux: /, /devices, /devices/{id}, /violations, /commands,
// /commands/{id} and /filing. The JSON API (/api/…) and /metrics are registered by their owners.
func Register(mux *http.ServeMux, o Options) {
	if o.Store == nil {
		panic("dashboard: Options.Store is required")
	}
	s := newServer(o)
	mux.HandleFunc("GET /{$}", s.overview)
	mux.HandleFunc("GET /devices", s.devices)
	mux.HandleFunc("GET /devices/{id}", s.device)
	mux.HandleFunc("GET /violations", s.violations)
	mux.HandleFunc("GET /commands", s.commands)
	mux.HandleFunc("GET /commands/{id}", s.command)
	mux.HandleFunc("GET /filing", s.filing)
}

type server struct {
	o     Options
	pages map[string]map[string]*template.Template // lang → page → template
}

//go:embed templates
var templateFS embed.FS

// pageNames are the templates, each parsed with layout.html.
var pageNames = []string{"overview", "devices", "device", "violations", "commands", "command", "filing", "error"}

func newServer(o Options) *server {
	if o.Title == "" {
		o.Title = "faceguard"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &server{o: o, pages: map[string]map[string]*template.Template{}}
	for _, lang := range []string{langZH, langEN} {
		s.pages[lang] = map[string]*template.Template{}
		for _, p := range pageNames {
			s.pages[lang][p] = template.Must(template.New("layout.html").Funcs(funcs(lang)).
				ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html"))
		}
	}
	return s
}

// view is what every page's template gets: the layout's fields and the page's own data in D.
type view struct {
	Title  string
	Lang   string
	Nav    string // the menu entry of this page
	Broker string // connected | disconnected | "" (not shown)
	LangZH string // this page in Chinese
	LangEN string // this page in English
	Now    time.Time
	D      any
}

// render executes a page into a buffer first, so a template failure is a clean 500, never half a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, lang string, status int, page, nav string, d any) {
	v := view{Title: s.o.Title, Lang: lang, Nav: nav, Now: s.o.Now(), D: d,
		LangZH: switchLang(r.URL, langZH), LangEN: switchLang(r.URL, langEN)}
	if s.o.Connected != nil {
		v.Broker = "disconnected"
		if s.o.Connected() {
			v.Broker = "connected"
		}
	}
	var buf bytes.Buffer
	if err := s.pages[lang][page].Execute(&buf, v); err != nil {
		http.Error(w, "render "+page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", htmlLang(lang))
	// No script runs and nothing loads from elsewhere: the policy says so to the browser too.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Cookie, Accept-Language")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page.
type errorData struct {
	Status  int
	Heading string // a dictionary key
	Message string // already in the page's language
}

// fail answers with the error page in the chosen language.
func (s *server) fail(w http.ResponseWriter, r *http.Request, lang string, status int, message string) {
	heading := "err_bad_request"
	switch status {
	case http.StatusNotFound:
		heading = "err_not_found"
	case http.StatusInternalServerError:
		heading = "err_internal"
	}
	s.render(w, r, lang, status, "error", "", errorData{Status: status, Heading: heading, Message: message})
}

// storeFailed answers a store error: not found is a 404, anything else a 500 that says what failed.
func (s *server) storeFailed(w http.ResponseWriter, r *http.Request, lang string, err error, notFound string) {
	if errors.Is(err, fleet.ErrNotFound) && notFound != "" {
		s.fail(w, r, lang, http.StatusNotFound, notFound)
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the browser went away
	}
	s.fail(w, r, lang, http.StatusInternalServerError, tr(lang, "err_store")+": "+err.Error())
}

// badParam is a query parameter the page refuses, with the message to show.
type badParam struct{ msg string }

func (e *badParam) Error() string { return e.msg }

// params reads a page's query parameters; the first bad one is kept in err.
type params struct {
	q    url.Values
	lang string
	err  *badParam
}

func newParams(r *http.Request, lang string) *params {
	return &params{q: r.URL.Query(), lang: lang}
}

// text is a free-text or id parameter, at most maxQueryLen characters.
func (p *params) text(name string) string {
	v := strings.TrimSpace(p.q.Get(name))
	if len([]rune(v)) > maxQueryLen && p.err == nil {
		p.err = &badParam{tr(p.lang, "err_param_long", name, maxQueryLen)}
		return ""
	}
	return v
}

// oneOf is a parameter that must be empty or one of allowed.
func (p *params) oneOf(name string, allowed []string) string {
	v := strings.TrimSpace(p.q.Get(name))
	if v == "" {
		return ""
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	if p.err == nil {
		p.err = &badParam{tr(p.lang, "err_param_value", name, v, strings.Join(allowed, ", "))}
	}
	return ""
}

// page is the 1-based page number; anything that is not a positive number is page 1.
func (p *params) page() int {
	n, err := strconv.Atoi(p.q.Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return min(n, 1_000_000) // far past any fleet, and offset arithmetic stays small
}

// pager is the navigation under a paged table.
type pager struct {
	Page, Pages, Total int
	From, To           int // the rows shown, 1-based; From > To when the page is empty
	Prev, Next         string
	First, Last        string
}

// newPager describes page (1-based) of total rows, linking to u with page= replaced.
func newPager(u *url.URL, page, size, total int) pager {
	p := pager{Page: page, Total: total, Pages: max(1, (total+size-1)/size)}
	p.From = (page-1)*size + 1
	p.To = min(page*size, total)
	link := func(n int) string {
		q := u.Query()
		q.Del("lang")
		if n <= 1 {
			q.Del("page")
		} else {
			q.Set("page", strconv.Itoa(n))
		}
		return (&url.URL{Path: u.Path, RawQuery: q.Encode()}).String()
	}
	if page > 1 {
		p.Prev, p.First = link(min(page-1, p.Pages)), link(1)
	}
	if page < p.Pages {
		p.Next, p.Last = link(page+1), link(p.Pages)
	}
	return p
}

// switchLang is the current page with ?lang= set, for the language switch.
func switchLang(u *url.URL, lang string) string {
	q := u.Query()
	q.Set("lang", lang)
	return (&url.URL{Path: u.Path, RawQuery: q.Encode()}).String()
}
