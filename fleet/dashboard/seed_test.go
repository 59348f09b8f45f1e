package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/wire"
)

// testNow is the tests' clock: 2025-09-01 10:00 in China.
var testNow = time.Date(2025, 9, 1, 2, 0, 0, 0, time.UTC)

// openStore opens an empty store for a test: the controller's real one, SQLite in a file of the test's.
func openStore(tb testing.TB) fleet.Store {
	tb.Helper()
	st, err := sqlstore.Open(context.Background(), filepath.Join(tb.TempDir(), "fleet.db"), sqlstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// The known violation every test looks for: a terminal in a hotel guest room.
const (
	knownDevice     = "room-1208"
	knownControl    = "FRM-13-PRIVATE-SPACE"
	knownMessageZH  = "设备安装在酒店客房（hotel_guest_room），属于私密空间，禁止使用人脸识别"
	knownMessageEN  = "face recognition is enabled in a hotel guest room, a private space"
	knownReceipt    = "rcpt-sha256-5f2c9a0e7d41b3c8"
	estateSite      = "gz-estate"
	estateDevices   = 120
	fleetDeviceSize = 6 + estateDevices
)

// seeder feeds a store the wire messages devices send, as the controller does.
type seeder struct {
	tb  testing.TB
	st  fleet.Store
	ctx context.Context
	seq map[string]uint64
}

func newSeeder(tb testing.TB, st fleet.Store) *seeder {
	return &seeder{tb: tb, st: st, ctx: context.Background(), seq: map[string]uint64{}}
}

func (s *seeder) env(dev, typ string, at time.Time) wire.Envelope {
	s.seq[dev]++
	return wire.Envelope{V: wire.Version, Type: typ, Dev: dev, Session: 1, Seq: s.seq[dev], TS: at}
}

func (s *seeder) must(ok bool, err error) {
	s.tb.Helper()
	if err != nil {
		s.tb.Fatal(err)
	}
	if !ok {
		s.tb.Fatal("the store did not apply a seed message")
	}
}

func (s *seeder) birth(dev, site, siteName, category string, at time.Time) {
	s.tb.Helper()
	s.must(s.st.ApplyBirth(s.ctx, wire.Birth{Envelope: s.env(dev, wire.TypeBirth, at), Site: site, SiteName: siteName,
		Kind: "access_terminal", Category: category, Model: "FG-T200", Firmware: "3.4.1", Agent: "0.9.0",
		Bundle: wire.BundleInfo{Revision: "rev-2025-08"}, ConfigVersion: 3, Capabilities: []string{"fr"}}, at))
	s.must(s.st.ApplyState(s.ctx, wire.State{Envelope: s.env(dev, wire.TypeState, at), State: wire.StateOnline}, at))
}

func (s *seeder) offline(dev string, at time.Time) {
	s.tb.Helper()
	s.must(s.st.ApplyState(s.ctx, wire.State{Envelope: s.env(dev, wire.TypeState, at), State: wire.StateOffline, Reason: "shutdown"}, at))
}

// compliance reports a summary; failing lists control:severity pairs.
func (s *seeder) compliance(dev string, at time.Time, c wire.Compliance) {
	s.tb.Helper()
	c.Envelope = s.env(dev, wire.TypeCompliance, at)
	c.EvaluatedAt = at
	c.Policy = wire.BundleInfo{Revision: "rev-2025-08"}
	if c.Status == "" {
		c.Status = "compliant"
	}
	for _, f := range c.Failing {
		switch f.Severity {
		case "critical":
			c.Counts.Critical++
		case "high":
			c.Counts.High++
		case "medium":
			c.Counts.Medium++
		case "low":
			c.Counts.Low++
		}
	}
	s.must(s.st.ApplyCompliance(s.ctx, c, at))
}

func (s *seeder) event(dev string, at time.Time, e wire.Event) {
	s.tb.Helper()
	e.Envelope = s.env(dev, wire.TypeEvent, at)
	e.At = at
	if e.EventID == "" {
		e.EventID = fmt.Sprintf("%s-%d", dev, e.Seq)
	}
	s.must(s.st.AddEvent(s.ctx, e, at))
}

func (s *seeder) open(dev string, at time.Time, control, severity string, articles []string, zh, en string) {
	s.tb.Helper()
	s.event(dev, at, wire.Event{Kind: wire.EventViolationOpened, Control: control, Severity: severity, Articles: articles,
		Message: &wire.Text{ZH: zh, EN: en}})
}

// allowedFR is the orders of a terminal whose face recognition runs normally.
var allowedFR = wire.ControlState{FaceRecognitionAllowed: true, EnrolmentAllowed: true}

// seedFleet gives the store two sites of a few devices each (a hotel and a bank branch) with their
// violations, actions, receipts, faults and commands, and a residential estate of 120 compliant devices
// for paging.
func seedFleet(tb testing.TB, st fleet.Store) {
	tb.Helper()
	s := newSeeder(tb, st)
	t0 := testNow.Add(-3 * time.Hour)

	// The hotel: a terminal in a guest room (critical), two in the lobby (one offline).
	s.birth(knownDevice, "sh-hotel", "上海外滩酒店", "hotel_guest_room", t0)
	s.birth("lobby-01", "sh-hotel", "上海外滩酒店", "hotel_lobby", t0)
	s.birth("lobby-02", "sh-hotel", "上海外滩酒店", "hotel_lobby", t0)
	s.compliance("lobby-01", t0.Add(time.Minute), wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: 10, Hash: "aa01"}})
	s.compliance("lobby-02", t0.Add(time.Minute), wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: 7, Hash: "aa02"}})
	s.offline("lobby-02", t0.Add(2*time.Hour))

	t1 := t0.Add(10 * time.Minute)
	s.compliance(knownDevice, t1, wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: 40, Hash: "c0ffee40"}})
	t2 := t1.Add(time.Hour)
	s.open(knownDevice, t2, knownControl, "critical", []string{"FRM Art. 13"}, knownMessageZH, knownMessageEN)
	s.open(knownDevice, t2, "FRM-10-ALTERNATIVE", "high", []string{"FRM Art. 10"},
		"未提供可用的替代验证方式", "no healthy alternative way in")
	s.compliance(knownDevice, t2, wire.Compliance{Status: "non_compliant",
		Failing: []wire.Failing{{Control: knownControl, Severity: "critical"}, {Control: "FRM-10-ALTERNATIVE", Severity: "high"}},
		Actions: []string{"disable_face_recognition", "enable_alternatives", "delete_raw_images"},
		Control: wire.ControlState{FaceRecognitionAllowed: false, EnrolmentAllowed: false, AlternativesRequiredOn: true, Quarantined: 2},
		Audit:   wire.AuditHead{Seq: 52, Hash: "c0ffee52"}})
	s.event(knownDevice, t2.Add(time.Second), wire.Event{Kind: wire.EventAction, Action: "disable_face_recognition", Count: 1, Control: knownControl})
	s.event(knownDevice, t2.Add(time.Second), wire.Event{Kind: wire.EventAction, Action: "enable_alternatives", Count: 1, Control: knownControl})
	s.event(knownDevice, t2.Add(2*time.Second), wire.Event{Kind: wire.EventReceipt, Action: "delete_raw_images", Count: 3,
		Receipts: []string{knownReceipt, "rcpt-sha256-0b1d"}, Control: "FRM-08-RAW-IMAGES"})
	s.event(knownDevice, t2.Add(3*time.Second), wire.Event{Kind: wire.EventFault, Detail: "camera: read frame: timeout"})
	// The alternative came back: that violation closed.
	t3 := t2.Add(30 * time.Minute)
	s.event(knownDevice, t3, wire.Event{Kind: wire.EventViolationClosed, Control: "FRM-10-ALTERNATIVE"})
	s.compliance(knownDevice, t3, wire.Compliance{Status: "non_compliant",
		Failing: []wire.Failing{{Control: knownControl, Severity: "critical"}},
		Actions: []string{"disable_face_recognition", "enable_alternatives"},
		Control: wire.ControlState{FaceRecognitionAllowed: false, EnrolmentAllowed: true, AlternativesRequiredOn: true, Quarantined: 2},
		Audit:   wire.AuditHead{Seq: 60, Hash: "c0ffee60"}})
	s.must(st.ApplySubjects(s.ctx, wire.Subjects{Envelope: s.env(knownDevice, wire.TypeSubjects, t3), Count: 35}, t3))

	// The bank branch: a teller terminal without signs, a gate that failed safe, an ATM whose audit chain
	// went backwards.
	s.birth("teller-01", "bj-bank", "北京朝阳支行", "bank_branch", t0)
	s.birth("gate-01", "bj-bank", "北京朝阳支行", "bank_branch", t0)
	s.birth("atm-07", "bj-bank", "北京朝阳支行", "bank_branch", t0)
	s.open("teller-01", t1, "FRM-13-SIGNAGE", "high", []string{"FRM Art. 13", "PIPL Art. 26"},
		"公共场所未设置显著提示标识", "no conspicuous sign at a public place")
	s.compliance("teller-01", t1, wire.Compliance{Status: "non_compliant", Failing: []wire.Failing{{Control: "FRM-13-SIGNAGE", Severity: "high"}},
		Control: allowedFR, Audit: wire.AuditHead{Seq: 5, Hash: "bb05"}})
	s.compliance("gate-01", t1, wire.Compliance{Status: wire.StatusError, FailSafe: true, Fault: "policy bundle signature invalid",
		Unknown: []string{"subjects", "signage"}, Control: wire.ControlState{AlternativesRequiredOn: true},
		Audit: wire.AuditHead{Seq: 3, Hash: "cc03"}})
	s.compliance("atm-07", t1, wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: 100, Hash: "dd100"}})
	s.compliance("atm-07", t2, wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: 50, Hash: "dd050"}})

	// The estate: many compliant gates.
	for i := range estateDevices {
		dev := fmt.Sprintf("gz-door-%03d", i)
		s.birth(dev, estateSite, "广州天河花园", "residential_gate", t0)
		s.compliance(dev, t1, wire.Compliance{Control: allowedFR, Audit: wire.AuditHead{Seq: 1, Hash: "ee"}})
	}

	// Commands: a fleet-wide re-evaluation, and a forget-subject to the hotel.
	ctx := context.Background()
	re := fleet.Command{ID: "cmd-reeval-1", Type: wire.CmdReevaluate, Target: wire.Broadcast, Args: json.RawMessage(`{}`),
		IssuedAt: t2, ExpiresAt: t2.Add(24 * time.Hour), CreatedBy: "api"}
	ids, err := st.DeviceIDs(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.CreateCommand(ctx, re, ids); err != nil {
		tb.Fatal(err)
	}
	for _, dev := range ids {
		if !strings.HasPrefix(dev, "gz-door-") {
			continue // the hotel's and the bank's stay pending, but for the teller below
		}
		s.must(st.AddResult(ctx, wire.Result{Envelope: s.env(dev, wire.TypeResult, t2), ID: re.ID, Command: re.Type, Status: wire.ResultSucceeded}, t2.Add(time.Minute)))
	}
	s.must(st.AddResult(ctx, wire.Result{Envelope: s.env("teller-01", wire.TypeResult, t2), ID: re.ID, Command: re.Type,
		Status: wire.ResultFailed, Reason: "engine busy"}, t2.Add(time.Minute)))
	fg := fleet.Command{ID: "cmd-forget-1", Type: wire.CmdForgetSubject, Target: knownDevice,
		Args:     json.RawMessage(`{"subject_hash":"3b1f0c"}`),
		IssuedAt: t3, ExpiresAt: t3.Add(24 * time.Hour), CreatedBy: "api"}
	if err := st.CreateCommand(ctx, fg, []string{knownDevice}); err != nil {
		tb.Fatal(err)
	}
	s.must(st.AddResult(ctx, wire.Result{Envelope: s.env(knownDevice, wire.TypeResult, t3), ID: fg.ID, Command: fg.Type,
		Status: wire.ResultSucceeded, Result: json.RawMessage(`{"receipt":"rcpt-forget-77"}`)}, t3.Add(time.Minute)))

	if err := st.AddFilingRecord(ctx, fleet.FilingRecord{Kind: "threshold_crossed", Date: "2025-08-11", CreatedAt: testNow}); err != nil {
		tb.Fatal(err)
	}
}

// newTestServer serves the dashboard over a seeded store.
func newTestServer(tb testing.TB, o Options) (*httptest.Server, fleet.Store) {
	tb.Helper()
	if o.Store == nil {
		o.Store = openStore(tb)
		seedFleet(tb, o.Store)
	}
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	mux := http.NewServeMux()
	Register(mux, o)
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv, o.Store
}
