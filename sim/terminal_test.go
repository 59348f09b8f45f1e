package sim

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
)

func TestDefaultProfileIsACompliantResidentialGate(t *testing.T) {
	term, clk := newTestTerminal(t, Profile{ID: "gate-01", Site: "garden-court"})
	f := adapter(t, term, clk)
	facts, d := judge(t, f)
	if len(facts.Unknown) != 0 {
		t.Fatalf("unknown groups: %+v", facts.Unknown)
	}
	if d.Status != device.StatusCompliant || len(d.Violations) != 0 || len(d.Actions) != 0 {
		t.Fatalf("decision %+v", d)
	}
	if facts.Device.ID != "gate-01" || facts.Device.Kind != device.KindDoorTerminal || facts.Location.Category != "residential_gate" ||
		!facts.FR.Enabled || facts.Subjects.Count != DefaultAdults || facts.RawImages.Count != 0 || len(facts.Egress) != 1 {
		t.Fatalf("facts %+v", facts)
	}
	if si := f.Site(); si.SiteID != "garden-court" || si.SiteName != "garden-court" || si.Model != DefaultModel {
		t.Fatalf("site info %+v", si)
	}
}

func TestNewTerminalRefusesAnExistingTerminal(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewTerminal(dir, Profile{ID: "gate-01", Site: "garden-court"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewTerminal(dir, Profile{ID: "gate-01", Site: "garden-court"}, nil); err == nil {
		t.Fatal("a second terminal was written over the first")
	}
	for _, p := range []Profile{{ID: "Gate 1", Site: "s"}, {ID: "g", Site: ""}, {ID: "g", Site: "s", Kind: "robot"}} {
		if _, err := NewTerminal(t.TempDir(), p, nil); err == nil {
			t.Errorf("profile %+v accepted", p)
		}
	}
}

func TestFaultProfiles(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile Profile
		want    []string
		action  string
	}{
		{"hotel_room", Profile{HotelRoom: true, PublicPlace: true}, []string{"FRM-13-PRIVATE-SPACE"}, device.ActionDisableFaceRecognition},
		{"sign_removed", Profile{SignRemoved: true, Category: "hotel_lobby"}, []string{"FRM-13-SIGNAGE"}, ""},
		{"raw_captures", Profile{RawCaptures: true, RawBacklog: 3}, []string{"FRM-08-RAW-IMAGES"}, device.ActionDeleteRawImages},
		{"template_upload", Profile{TemplateUpload: true}, []string{"FRM-08-LOCAL-STORAGE"}, device.ActionBlockFaceDataEgress},
		{"face_only", Profile{FaceOnly: true}, []string{"FRM-10-ALTERNATIVE"}, device.ActionEnableAlternatives},
		{"minor_without_guardian", Profile{MinorWithoutGuardian: true}, []string{"FRM-07-MINORS"}, device.ActionQuarantineMinorsWithoutGuardian},
		{"unconsented_subject", Profile{UnconsentedSubject: true}, []string{"FRM-06-CONSENT"}, device.ActionQuarantineUnconsentedSubjects},
		{"withdrawn_subject", Profile{WithdrawnSubject: true}, []string{"FRM-06-WITHDRAWAL"}, device.ActionPurgeWithdrawnSubjects},
		{"coercive_prompt", Profile{CoercivePrompt: true}, []string{"FRM-12-NO-COERCION"}, ""},
		{"notice_incomplete", Profile{NoticeIncomplete: true}, []string{"FRM-05-NOTICE"}, device.ActionBlockEnrolment},
		{"default_credentials", Profile{DefaultCredentials: true}, []string{"FRM-14-SECURITY"}, ""},
		{"compliant_public_place", Profile{PublicPlace: true, Category: "hotel_lobby", Kind: device.KindKiosk, Purpose: "identity_verification"}, nil, ""},
		{"compliant_camera", Profile{Kind: device.KindCamera, Category: "parking", Adults: -1}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.profile
			p.ID, p.Site = "dev-"+strings.ReplaceAll(tc.name, "_", "-"), "site-a"
			term, clk := newTestTerminal(t, p)
			facts, d := judge(t, adapter(t, term, clk))
			if len(facts.Unknown) != 0 {
				t.Fatalf("unknown groups: %+v", facts.Unknown)
			}
			if got := controlsOf(d); !slices.Equal(got, tc.want) {
				t.Fatalf("violations %v, want %v (%+v)", got, tc.want, d.Violations)
			}
			if tc.action != "" && !slices.Contains(d.Actions, tc.action) {
				t.Fatalf("actions %v lack %s", d.Actions, tc.action)
			}
		})
	}
}

// TestDemoProfiles checks what an operator sees when the demo fleet starts: each terminal's violations
// before its agent acts.
func TestDemoProfiles(t *testing.T) {
	want := map[string][]string{
		"gc-gate-north":      nil,
		"gc-gate-south":      nil,
		"gc-door-b2":         {"FRM-10-ALTERNATIVE"},
		"gc-gate-east":       {"FRM-07-MINORS"},
		"gc-gate-west":       nil, // withdraws 20 s after start
		"gc-garage":          {"FRM-08-RAW-IMAGES"},
		"lh-lobby-kiosk-1":   {"FRM-08-LOCAL-STORAGE"},
		"lh-lobby-kiosk-2":   nil,
		"lh-lobby-cam":       {"FRM-13-SIGNAGE"},
		"lh-room-1208":       {"FRM-13-PRIVATE-SPACE"},
		"lh-staff-turnstile": {"FRM-12-NO-COERCION"},
		"lh-staff-door":      nil,
	}
	profiles := DemoProfiles()
	if len(profiles) != len(want) {
		t.Fatalf("%d demo profiles, want %d", len(profiles), len(want))
	}
	sites := map[string]bool{}
	for _, p := range profiles {
		sites[p.Site] = true
		t.Run(p.ID, func(t *testing.T) {
			w, ok := want[p.ID]
			if !ok {
				t.Fatalf("unexpected demo device %s", p.ID)
			}
			term, clk := newTestTerminal(t, p)
			facts, d := judge(t, adapter(t, term, clk))
			if len(facts.Unknown) != 0 {
				t.Fatalf("unknown groups: %+v", facts.Unknown)
			}
			if got := controlsOf(d); !slices.Equal(got, w) {
				t.Fatalf("violations %v, want %v", got, w)
			}
		})
	}
	if len(sites) != 2 {
		t.Fatalf("sites %v", sites)
	}
}

// TestTerminalObeysControl gives the terminal the orders an agent gives and checks that it obeys them,
// that the fixes it makes stick when the orders are lifted, and that its own configuration keeps face
// recognition on.
func TestTerminalObeysControl(t *testing.T) {
	ctx := context.Background()
	term, clk := newTestTerminal(t, Profile{ID: "gate-07", Site: "garden-court", TemplateUpload: true, FaceOnly: true,
		RawCaptures: true, MinorWithoutGuardian: true})
	var changes atomic.Int32
	term.OnChange = func() { changes.Add(1) }
	f := adapter(t, term, clk)
	_, d := judge(t, f)
	if got := controlsOf(d); !slices.Equal(got, []string{"FRM-07-MINORS", "FRM-08-LOCAL-STORAGE", "FRM-10-ALTERNATIVE"}) {
		t.Fatalf("violations %v", got)
	}
	minor := term.subjectRef(DefaultAdults + 1)
	if !term.Matchable(minor) {
		t.Fatal("the minor is not matchable before any order")
	}

	// The agent's orders: quarantine, then every control of control.json.
	if _, err := f.QuarantineMinorsWithoutGuardian(ctx, "FRM-07-MINORS"); err != nil {
		t.Fatal(err)
	}
	off := device.Permission{Allowed: false}
	if _, err := f.ApplyControl(ctx, device.Control{FaceRecognition: off, Enrolment: off, FaceDataEgress: off, AlternativesRequiredOn: true}); err != nil {
		t.Fatal(err)
	}
	if err := term.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if changes.Load() == 0 {
		t.Fatal("OnChange not called")
	}
	s := readStatus(t, term.Root())
	if !s.FR.Enabled {
		t.Fatal("fr.enabled folded the agent's override into the terminal's own configuration")
	}
	if hasFlow(s, device.EgressTemplate) || len(s.Alternatives.Healthy) == 0 || !s.Alternatives.RefuseOptionShown ||
		s.ControlGeneration == nil || *s.ControlGeneration != 1 {
		t.Fatalf("status after the orders: %+v", s)
	}
	tcp, err := os.ReadFile(filepath.Join(term.Root(), fsterm.ProcTCPPath))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(tcp), procAddr(mustAddrPort(uploadAddr), false)) {
		t.Fatalf("the upload's connection is still in proc/net/tcp:\n%s", tcp)
	}
	if term.Matchable(minor) || term.Matchable(term.subjectRef(1)) {
		t.Fatal("matchable with face recognition off")
	}
	if _, err := term.recognise(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := term.enrol(ctx); err != nil {
		t.Fatal(err)
	}
	if st := term.Stats(); st.FaceOffRefusals != 1 || st.RawCaptures != 0 || st.EnrolmentsRefused != 1 || st.Enrolments != 0 ||
		!st.UploadStopped || !st.AlternativesOn || st.ControlGeneration != 1 {
		t.Fatalf("stats %+v", st)
	}
	facts, d := judge(t, f)
	if got := controlsOf(d); !slices.Equal(got, []string{"FRM-07-MINORS"}) {
		t.Fatalf("violations after the orders %v (egress %+v)", got, facts.Egress)
	}

	// The orders lifted but the quarantine: the fixes stay, face recognition and enrolment come back.
	on := device.Permission{Allowed: true}
	if _, err := f.ApplyControl(ctx, device.Control{FaceRecognition: on, Enrolment: on, FaceDataEgress: on}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if err := term.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !term.Matchable(term.subjectRef(1)) || term.Matchable(minor) {
		t.Fatal("after the orders were lifted, the quarantine should be all that remains")
	}
	if _, err := term.recognise(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := term.enrol(ctx); err != nil {
		t.Fatal(err)
	}
	if st := term.Stats(); st.RawCaptures != 1 || st.Enrolments != 1 || !st.UploadStopped || !st.AlternativesOn || st.ControlGeneration != 2 {
		t.Fatalf("stats after the orders were lifted %+v", st)
	}
	if n := len(captures(t, term.Root())); n != 1 {
		t.Fatalf("%d captures, want 1", n)
	}
	if got := controlsOf(func() device.Decision { _, d := judge(t, f); return d }()); !slices.Equal(got, []string{"FRM-07-MINORS"}) {
		t.Fatalf("violations after the orders were lifted %v", got)
	}
}

// TestTerminalRun drives the fake terminal software on a fake clock: status refreshes, recognitions with
// captures, enrolments and the scheduled withdrawal.
func TestTerminalRun(t *testing.T) {
	term, clk := newTestTerminal(t, Profile{ID: "gate-08", Site: "garden-court", RawCaptures: true,
		RecognitionEvery: 10 * time.Second, EnrolEvery: time.Minute, WithdrawnSubject: true, WithdrawAfter: 90 * time.Second})
	var changes atomic.Int32
	term.OnChange = func() { changes.Add(1) }
	f := adapter(t, term, clk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- term.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if _, d := judge(t, f); d.Status != device.StatusCompliant {
		t.Fatalf("before the withdrawal: %v", controlsOf(d))
	}
	// Move time a second at a time, letting the loop keep up.
	for range 120 {
		clk.Advance(time.Second)
		time.Sleep(2 * time.Millisecond)
	}
	eventually(t, "the withdrawal, enrolments and captures", func() bool {
		st := term.Stats()
		return st.Withdrawals == 1 && st.Enrolments >= 1 && st.RawCaptures >= 5
	})
	st := term.Stats()
	if st.Recognitions+st.Unmatched != st.RawCaptures || changes.Load() < int32(st.RawCaptures) {
		t.Fatalf("stats %+v, %d changes", st, changes.Load())
	}
	eventually(t, "a fresh status.json", func() bool {
		up, err := time.Parse(time.RFC3339, readStatus(t, term.Root()).UpdatedAt)
		return err == nil && clk.Now().Sub(up) <= DefaultStatusEvery+time.Second
	})
	facts, d := judge(t, f)
	if got := controlsOf(d); !slices.Equal(got, []string{"FRM-06-WITHDRAWAL", "FRM-08-RAW-IMAGES"}) {
		t.Fatalf("violations %v", got)
	}
	if facts.Subjects.Count != DefaultAdults+st.Enrolments || facts.Subjects.WithdrawnPending != 1 {
		t.Fatalf("subjects %+v", facts.Subjects)
	}
	if err := term.Run(ctx); err == nil {
		t.Fatal("a second Run was accepted")
	}
}

func TestProcAddr(t *testing.T) {
	// The fixtures' encoding: 10.0.0.5:8443 and the IPv4-mapped 10.8.1.5:8443 of tcp6.
	if got := procAddr(mustAddrPort("10.0.0.5:8443"), false); got != "0500000A:20FB" {
		t.Fatalf("v4: %s", got)
	}
	if got := procAddr(mustAddrPort("[::ffff:10.8.1.5]:8443"), true); got != "0000000000000000FFFF00000501080A:20FB" {
		t.Fatalf("v6: %s", got)
	}
}

// A subject forgotten before the scheduled withdrawal leaves nothing to withdraw, and no error.
func TestWithdrawalOfAForgottenSubject(t *testing.T) {
	term, _ := newTestTerminal(t, Profile{ID: "gate-09", Site: "garden-court", WithdrawnSubject: true, WithdrawAfter: time.Minute})
	ctx := context.Background()
	if err := term.inGallery(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM subjects WHERE subject_ref = ?`, term.subjectRef(1))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	changed, err := term.withdraw(ctx)
	if err != nil || changed || !term.withdrawn || term.Stats().Withdrawals != 0 {
		t.Fatalf("changed %v, err %v, stats %+v", changed, err, term.Stats())
	}
}
