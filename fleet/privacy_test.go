package fleet_test

// The privacy proof: no face image, no template and no subject identity in clear ever leaves a device.
// A simulated fleet does everything that touches people — enrolments, raw captures, a withdrawal purged
// with a receipt, quarantines, a fleet-wide forget-subject, a bundle push, commands, the local decision
// API — against a real broker, and everything that is off the device is searched for them: every byte
// both ways between the devices, the controller and the broker, what a subscriber to "#" receives, the
// broker's log and persistence file, the controller's database, the logs of agents and controller, and
// every page of the dashboard, the JSON API and the auditors' report.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/dashboard"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/netfault"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/policies"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

// templateMagic opens and closes every template the test gives a subject: 8 bytes no message, log or page
// has any reason to hold, around 16 random ones, so that each of the 32-byte templates is unique.
var templateMagic = []byte{0xF7, 'F', 'G', 'T', 'P', 'L', 0x00, 0xA5}

// jpegMagic and pngMagic begin every JPEG (SOI and the first marker of JFIF, EXIF, a quantisation table or
// Adobe) and every PNG.
var (
	jpegMagic = [][]byte{{0xFF, 0xD8, 0xFF, 0xE0}, {0xFF, 0xD8, 0xFF, 0xE1}, {0xFF, 0xD8, 0xFF, 0xDB}, {0xFF, 0xD8, 0xFF, 0xEE}}
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
)

func TestPrivacyNothingIdentifyingLeavesTheDevice(t *testing.T) {
	k := newKeys(t)
	ctx := context.Background()
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	mq := testbroker.StartMosquitto(t, testbroker.MosquittoOptions{})
	// Devices and controller talk through the recording proxy; the subscriber to "#" is the controller's
	// view of the broker.
	proxy, proxyURL, err := netfault.ForURL(mq.URL(), netfault.Record())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	everything := testbroker.Record(t, mq.URL(), "#")

	dbPath := filepath.Join(t.TempDir(), "fleet.db")
	st, err := sqlstore.Open(ctx, dbPath, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := fleet.NewController(fleet.Options{Store: st, BrokerURL: proxyURL, ClientID: "ctl-privacy",
		CommandKey: k.cmdPriv, SubjectKey: k.subject, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		t.Fatal(err)
	}
	controllerClosed := false
	closeController := func() {
		if !controllerClosed {
			controllerClosed = true
			c.Close()
		}
	}
	defer closeController()

	eng, err := engine.New(ctx, engine.Options{VerificationKey: k.bundlePub, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	residents := []string{"resident-0001", "resident-0002", "resident-0003"}
	profiles := []sim.Profile{
		{ID: "pv-gate-1", Site: "privacy-court", Residents: residents[:2], RawCaptures: true, RawBacklog: 2,
			RecognitionEvery: 300 * time.Millisecond, EnrolEvery: 400 * time.Millisecond,
			WithdrawnSubject: true, WithdrawAfter: 6 * time.Second},
		{ID: "pv-gate-2", Site: "privacy-court", Residents: []string{residents[0], residents[2]},
			MinorWithoutGuardian: true, UnconsentedSubject: true, EnrolEvery: 500 * time.Millisecond},
		{ID: "pv-room-1", Site: "privacy-hotel", HotelRoom: true, PublicPlace: true, TemplateUpload: true, RawBacklog: 3, Adults: 3},
	}
	fl, err := sim.StartFleet(ctx, sim.FleetOptions{Dir: t.TempDir(), Profiles: profiles, BrokerURL: proxyURL,
		ControllerKey: k.cmdPub, SubjectKey: k.subject, Engine: eng, EvaluateEvery: time.Hour,
		ReconnectJitter: 50 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	fleetStopped := false
	stopFleet := func() {
		if !fleetStopped {
			fleetStopped = true
			if err := fl.Stop(); err != nil {
				t.Errorf("stop fleet: %v", err)
			}
		}
	}
	defer stopFleet()

	// What is identifying on the devices: every template gets a distinctive value (the simulator writes
	// zeros), and the raw spools get captures that look like photographs.
	s := newSecrets()
	for _, d := range fl.Devices() {
		markTemplates(t, d.Terminal().Root())
		for i := range 3 {
			s.captures = append(s.captures, writeCapture(t, d.Terminal().Root(), fmt.Sprintf("%s-%d", d.ID(), i), i == 0))
		}
		d.Agent().Notify()
		s.devicePrefixes = append(s.devicePrefixes, d.ID()+"-s-")
	}
	s.refs = append(s.refs, residents...)
	s.snapshot(t, fl)

	eventually(t, "three devices reporting", func() bool {
		ov, err := c.Store().Overview(ctx)
		return err == nil && ov.Total.Devices == 3 && ov.Total.Compliant+ov.Total.NonCompliant == 3
	})
	eventually(t, "the withdrawal on pv-gate-1 purged with a receipt", func() bool {
		evs, err := c.Store().Events(ctx, "pv-gate-1", []string{wire.EventReceipt}, time.Time{}, 10)
		return err == nil && len(evs) > 0
	})
	eventually(t, "pv-gate-2's minor and unconsented subject quarantined", func() bool {
		evs, err := c.Store().Events(ctx, "pv-gate-2", []string{wire.EventAction}, time.Time{}, 100)
		quarantines := map[string]bool{}
		for _, e := range evs {
			quarantines[e.Action] = true
		}
		return err == nil && quarantines[device.ActionQuarantineMinorsWithoutGuardian] && quarantines[device.ActionQuarantineUnconsentedSubjects]
	})
	eventually(t, "the captures without consent deleted", func() bool {
		for _, cp := range s.captures {
			if _, err := os.Stat(cp.path); err == nil && !cp.consented {
				return false
			}
		}
		return true
	})
	eventually(t, "new enrolments", func() bool {
		return fl.Device("pv-gate-1").Terminal().Stats().Enrolments >= 2 && fl.Device("pv-gate-2").Terminal().Stats().Enrolments >= 2
	})
	s.snapshot(t, fl)

	// The operator: the JSON API forgets a resident fleet-wide, pushes a bundle, and sends commands.
	mux := http.NewServeMux()
	(&fleet.API{C: c, Report: func(w http.ResponseWriter, r *http.Request) {
		rep, err := fleet.BuildReport(r.Context(), c.Store(), time.Time{}, "", time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = fleet.WriteReportHTML(w, rep)
	}}).Register(mux)
	dashboard.Register(mux, dashboard.Options{Store: c.Store(), Connected: c.Connected})
	web := httptest.NewServer(mux)
	defer web.Close()

	forgetCmd := postJSON(t, web.URL+"/api/forget", `{"subject_ref": "resident-0001"}`)
	for _, r := range waitCommand(t, c, forgetCmd) {
		var fr wire.ForgetResult
		if r.Status != wire.ResultSucceeded || json.Unmarshal(r.Result, &fr) != nil {
			t.Fatalf("forget at %s: %+v", r.Dev, r)
		}
		if want := map[string]int{"pv-gate-1": 1, "pv-gate-2": 1, "pv-room-1": 0}[r.Dev]; fr.Deleted != want || len(fr.Receipts) != want {
			t.Fatalf("forget at %s deleted %d with %d receipts, want %d", r.Dev, fr.Deleted, len(fr.Receipts), want)
		}
	}
	raw, err := engine.BuildBundle(ctx, policies.Pack(), "2026.12.01-privacy")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := engine.SignBundle(raw, k.bundlePriv)
	if err != nil {
		t.Fatal(err)
	}
	bundleCmd, err := c.OfferBundle(ctx, "2026.12.01-privacy", signed, wire.Broadcast, "privacy-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range waitCommand(t, c, bundleCmd.ID) {
		if r.Status != wire.ResultSucceeded {
			t.Fatalf("bundle at %s: %+v", r.Dev, r)
		}
	}
	for _, typ := range []string{wire.CmdReevaluate, wire.CmdRebirth} {
		cmd, err := c.Issue(ctx, fleet.IssueRequest{Type: typ, Target: wire.Broadcast, Args: json.RawMessage(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		waitCommand(t, c, cmd.ID)
	}

	// Terminal software asks the local decision API about the people it matches, known and unknown.
	for _, d := range fl.Devices() {
		h := d.Agent().NewAPIHandler()
		for _, ref := range append(s.deviceRefs(d.ID()), d.ID()+"-s-999999", "resident-0003") {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/data/faceguard/match",
				strings.NewReader(`{"input":{"subject_ref":"`+ref+`"}}`)))
			if rec.Code != http.StatusOK {
				t.Fatalf("match %s on %s: %d %s", ref, d.ID(), rec.Code, rec.Body)
			}
		}
	}
	s.snapshot(t, fl)
	if len(s.templates) < 20 || len(s.refs) < 20 {
		t.Fatalf("only %d templates and %d references to look for", len(s.templates), len(s.refs))
	}
	// The positive control: the search finds what is on a device.
	gallery, err := os.ReadFile(filepath.Join(fl.Device("pv-gate-1").Terminal().Root(), filepath.FromSlash(fsterm.GalleryPath)))
	if err != nil {
		t.Fatal(err)
	}
	if hits := s.search(gallery); len(hits) == 0 {
		t.Fatal("the search finds nothing in a gallery: it would find nothing anywhere")
	}
	// … and what a careless encoding would make of it: a template as a JSON []byte (base64), after a
	// prefix of any length; a reference hashed without a key.
	for pad := range 3 {
		tpl := s.templates[len(s.templates)-1-pad]
		b, _ := json.Marshal(struct{ T []byte }{append(make([]byte, pad), tpl...)})
		if hits := s.search(b); len(hits) == 0 {
			t.Fatalf("the search misses a template in %s", b)
		}
	}
	if sum := sha256.Sum256([]byte(s.refs[len(s.refs)-1])); len(s.search([]byte(hex.EncodeToString(sum[:])))) == 0 {
		t.Fatal("the search misses a reference hashed without a key")
	}

	// Off the devices: the dashboard, the API and the report in both languages, the metrics.
	pages := map[string][]byte{}
	get := func(path string) {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		pages[path] = b
	}
	cmds, _, err := c.Store().Commands(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"zh", "en"} {
		paths := []string{"/", "/devices", "/violations", "/commands", "/filing"}
		for _, d := range fl.Devices() {
			paths = append(paths, "/devices/"+d.ID())
		}
		for _, cmd := range cmds {
			paths = append(paths, "/commands/"+cmd.ID)
		}
		for _, p := range paths {
			get(p + "?lang=" + lang)
		}
	}
	for _, p := range []string{"/api/overview", "/api/devices", "/api/violations", "/api/events?limit=1000", "/api/commands", "/api/report"} {
		get(p)
	}
	for _, d := range fl.Devices() {
		get("/api/devices/" + d.ID())
	}
	for _, cmd := range cmds {
		get("/api/commands/" + cmd.ID)
	}
	metrics := httptest.NewRecorder()
	c.MetricsHandler().ServeHTTP(metrics, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	pages["/metrics"] = metrics.Body.Bytes()

	// Everything stops: the last messages (offline states, wills) cross too, and the broker saves.
	stopFleet()
	closeController()
	proxy.Close()
	mq.Stop()

	places := map[string][]byte{}
	for i, s := range proxy.Streams() {
		dir := "client→broker"
		if !s.Upstream {
			dir = "broker→client"
		}
		places[fmt.Sprintf("TCP connection %d, %s", i/2, dir)] = s.Bytes()
	}
	for i, m := range everything.Messages() {
		places[fmt.Sprintf("message %d on %s", i, m.Topic)] = append([]byte(m.Topic+"\n"), m.Payload...)
	}
	for _, name := range []string{"mosquitto.log", "mosquitto.db"} {
		if b, err := os.ReadFile(filepath.Join(mq.Dir(), name)); err == nil {
			places["broker "+name] = b
		}
	}
	for table, b := range dumpSQLite(t, dbPath) {
		places["controller table "+table] = b
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if b, err := os.ReadFile(dbPath + suffix); err == nil {
			places["controller file fleet.db"+suffix] = b
		}
	}
	places["logs of agents, terminals, engine and controller"] = logs.Bytes()
	for p, b := range pages {
		places["page "+p] = b
	}

	// The proof is only as good as what was looked at: it must hold what the run did.
	all := bytes.Join(func() [][]byte {
		var out [][]byte
		for _, b := range places {
			out = append(out, b)
		}
		return out
	}(), nil)
	for _, want := range []string{"/bundle/2026.12.01-privacy/0", "/req/forget-subject", `"kind":"receipt"`, device.ActionQuarantineMinorsWithoutGuardian,
		"FRM-13-PRIVATE-SPACE", "command accepted", "pv-room-1", `"status":"succeeded"`, "delete_raw_images"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("nothing that was recorded shows %q: the recording missed part of the run", want)
		}
	}
	carried := 0
	for _, s := range proxy.Streams() {
		carried += s.Len()
	}
	if carried < 100<<10 {
		t.Errorf("the proxy carried only %d bytes", carried)
	}

	leaks := 0
	for place, b := range places {
		for _, hit := range s.search(b) {
			leaks++
			if leaks <= 20 {
				t.Errorf("%s holds %s", place, hit)
			}
		}
	}
	if leaks > 20 {
		t.Errorf("… %d leaks in all", leaks)
	}
	t.Logf("searched %d places, %d bytes, for %d subject references, %d device reference prefixes, %d templates and %d captures",
		len(places), len(all), len(s.refs), len(s.devicePrefixes), len(s.templates), len(s.captures))
}

// secrets is everything that must stay on the devices.
type secrets struct {
	refs           []string
	devicePrefixes []string // "<device>-s-": the simulator's references, whatever their number
	templates      [][]byte
	captures       []capture
	seenRef        map[string]bool
	seenTemplate   map[string]bool
}

type capture struct {
	path      string
	marker    string
	consented bool
}

func newSecrets() *secrets {
	return &secrets{seenRef: map[string]bool{}, seenTemplate: map[string]bool{}}
}

// snapshot adds every subject reference and template now in the devices' galleries, and the references
// their control files quarantine: purged subjects are gone from the gallery later, so it is taken more
// than once.
func (s *secrets) snapshot(t testing.TB, fl *sim.Fleet) {
	t.Helper()
	for _, d := range fl.Devices() {
		db := openGallery(t, d.Terminal().Root(), "ro")
		rows, err := db.Query(`SELECT subject_ref, template FROM subjects`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ref string
			var tpl []byte
			if err := rows.Scan(&ref, &tpl); err != nil {
				t.Fatal(err)
			}
			if !s.seenRef[ref] {
				s.seenRef[ref] = true
				s.refs = append(s.refs, ref)
			}
			if bytes.HasPrefix(tpl, templateMagic) && !s.seenTemplate[string(tpl)] {
				s.seenTemplate[string(tpl)] = true
				s.templates = append(s.templates, tpl)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		db.Close()
		var ctrl struct {
			Quarantined []string `json:"quarantined_subjects"`
		}
		if b, err := os.ReadFile(filepath.Join(d.Terminal().Root(), filepath.FromSlash(fsterm.ControlPath))); err == nil {
			_ = json.Unmarshal(b, &ctrl)
		}
		for _, ref := range ctrl.Quarantined {
			if !s.seenRef[ref] {
				s.seenRef[ref] = true
				s.refs = append(s.refs, ref)
			}
		}
	}
}

func (s *secrets) deviceRefs(dev string) []string {
	var out []string
	for _, r := range s.refs {
		if strings.HasPrefix(r, dev+"-") {
			out = append(out, r)
		}
	}
	return out
}

// search names every secret in b: as it is, and as hex, base64 or the unkeyed SHA-256 a careless encoding
// would carry it (a keyed hash, wire.SubjectHash, is what may leave).
func (s *secrets) search(b []byte) []string {
	var hits []string
	find := func(what string, secret []byte) {
		for _, form := range encodings(secret) {
			if bytes.Contains(b, form.b) {
				hits = append(hits, what+" ("+form.name+")")
				return
			}
		}
	}
	for _, r := range s.refs {
		find("subject reference "+r, []byte(r))
	}
	for _, p := range s.devicePrefixes {
		if bytes.Contains(b, []byte(p)) {
			hits = append(hits, "a simulated subject reference "+p+"…")
		}
	}
	if bytes.Contains(b, templateMagic) {
		hits = append(hits, "template bytes")
	}
	for i, tpl := range s.templates {
		find(fmt.Sprintf("template %d", i), tpl)
	}
	for _, c := range s.captures {
		find("raw capture "+c.marker, []byte(c.marker))
	}
	if bytes.Contains(b, []byte("placeholder raw capture")) {
		hits = append(hits, "a simulated raw capture")
	}
	for _, m := range jpegMagic {
		if bytes.Contains(b, m) {
			hits = append(hits, "JPEG magic bytes")
		}
	}
	if bytes.Contains(b, pngMagic) {
		hits = append(hits, "PNG magic bytes")
	}
	return hits
}

type encoded struct {
	name string
	b    []byte
}

// encodings are the forms secret could travel in. Base64 depends on where the secret starts in what is
// encoded: each of the three alignments gives a run of characters that any encoding of it contains.
func encodings(secret []byte) []encoded {
	sum := sha256.Sum256(secret)
	out := []encoded{{"as is", secret}, {"hex", []byte(hex.EncodeToString(secret))},
		{"HEX", []byte(strings.ToUpper(hex.EncodeToString(secret)))}, {"unkeyed sha256", []byte(hex.EncodeToString(sum[:]))}}
	for pad := range 3 {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			e := enc.EncodeToString(append(make([]byte, pad), secret...))
			// Drop the characters that mix padding bytes in front and whatever follows at the end.
			from, to := (pad*4+2)/3, 4*((pad+len(secret))/3)
			if to-from >= 8 {
				out = append(out, encoded{fmt.Sprintf("base64 at %d", pad), []byte(e[from:to])})
			}
		}
	}
	return out
}

// openGallery opens a terminal's gallery as the terminal software would, waiting for locks.
func openGallery(t testing.TB, root, mode string) *sql.DB {
	t.Helper()
	path := filepath.Join(root, filepath.FromSlash(fsterm.GalleryPath))
	db, err := sql.Open("sqlite3", "file:"+path+"?mode="+mode+"&_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	return db
}

// markTemplates gives every template of a gallery, and of every subject enrolled later, a distinctive
// value: the magic, 16 random bytes, the magic.
func markTemplates(t testing.TB, root string) {
	t.Helper()
	db := openGallery(t, root, "rw")
	defer db.Close()
	m := strings.ToUpper(hex.EncodeToString(templateMagic))
	value := fmt.Sprintf(`CAST(X'%s' || randomblob(16) || X'%s' AS BLOB)`, m, m)
	for _, q := range []string{
		`CREATE TRIGGER privacy_template AFTER INSERT ON subjects BEGIN UPDATE subjects SET template = ` + value + ` WHERE rowid = NEW.rowid; END`,
		`UPDATE subjects SET template = ` + value,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("mark templates: %v", err)
		}
	}
}

// writeCapture puts a capture in the raw spool, an hour old, as the terminal software would: a JPEG
// header, a marker of its own, a PNG signature. A consented one has its sidecar and stays on the device.
func writeCapture(t testing.TB, root, name string, consented bool) capture {
	t.Helper()
	var r [12]byte
	_, _ = rand.Read(r[:])
	c := capture{marker: "FG-PRIVACY-CAPTURE-" + hex.EncodeToString(r[:]), consented: consented}
	spool := filepath.Join(root, filepath.FromSlash(fsterm.SpoolPath))
	c.path = filepath.Join(spool, "privacy-"+name+".jpg")
	body := append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00}, []byte(c.marker)...)
	body = append(body, pngMagic...)
	tmp := filepath.Join(spool, ".privacy-"+name+".tmp")
	if err := os.WriteFile(tmp, body, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	if consented {
		if err := os.WriteFile(c.path+".consent", []byte("separate consent, form 17\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, c.path); err != nil {
		t.Fatal(err)
	}
	return c
}

// dumpSQLite renders every table of a SQLite database, row by row, values as stored.
func dumpSQLite(t testing.TB, path string) map[string][]byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	out := map[string][]byte{}
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var buf bytes.Buffer
		n := 0
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				fmt.Fprintf(&buf, "%s=", cols[i])
				if b, ok := v.([]byte); ok {
					buf.Write(b)
				} else {
					fmt.Fprint(&buf, v)
				}
				buf.WriteByte('\t')
			}
			buf.WriteByte('\n')
			n++
		}
		rows.Close()
		out[fmt.Sprintf("%s (%d rows)", table, n)] = buf.Bytes()
	}
	return out
}

// postJSON posts to the controller's API and returns the id of the command it created.
func postJSON(t testing.TB, url, body string) string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var cmd struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &cmd) != nil || cmd.ID == "" {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
	return cmd.ID
}

// lockedBuffer is a log destination shared by every goroutine of the run.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}
