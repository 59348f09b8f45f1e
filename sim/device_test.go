package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/wire"
)

// rig is one real broker with a recorder on everything the fleet publishes.
type rig struct {
	brokerURL string
	rec       *testbroker.Recorder
	ctrlKey   ed25519.PublicKey
}

func newRig(t *testing.T) *rig {
	t.Helper()
	b := testbroker.Mochi(t)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{brokerURL: b.URL(), rec: testbroker.Record(t, b.URL(), wire.Root+"/#"), ctrlKey: pub}
}

// startDevice starts a device for p on the rig; the test stops it at the end.
func (r *rig) startDevice(t *testing.T, p Profile, killable bool) *Device {
	t.Helper()
	d, err := StartDevice(context.Background(), DeviceOptions{
		Dir: filepath.Join(t.TempDir(), p.ID), Profile: p, Engine: sharedEngine(t), BrokerURL: r.brokerURL,
		ControllerKey: r.ctrlKey, SubjectKey: testSubjectKey, EvaluateEvery: time.Hour, ReconnectJitter: 10 * time.Millisecond,
		Killable: killable,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop %s: %v", p.ID, err)
		}
	})
	return d
}

// fastProfile makes a profile react quickly: the control file is polled often, and nobody comes to the
// terminal unless the test says so.
func fastProfile(id string, p Profile) Profile {
	p.ID, p.Site = id, "test-site"
	p.ControlPollEvery = 20 * time.Millisecond
	if p.RecognitionEvery == 0 {
		p.RecognitionEvery = -1
	}
	return p
}

func devEvent(dev, kind, control string) func(testbroker.Message) bool {
	return func(m testbroker.Message) bool {
		if m.Topic != wire.EventTopic(dev) {
			return false
		}
		var e wire.Event
		return json.Unmarshal(m.Payload, &e) == nil && e.Kind == kind && (control == "" || e.Control == control || e.Action == control)
	}
}

func decodeEvent(t *testing.T, m testbroker.Message) wire.Event {
	t.Helper()
	var e wire.Event
	if err := json.Unmarshal(m.Payload, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// readControlFile reads the agent's orders as the terminal sees them.
func readControlFile(t *testing.T, root string) controlJSON {
	t.Helper()
	c, err := readControl(filepath.Join(root, filepath.FromSlash(fsterm.ControlPath)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// applied waits until the terminal reports the latest control.json as applied.
func applied(t *testing.T, d *Device) {
	t.Helper()
	eventually(t, "the terminal to apply the latest control.json", func() bool {
		c, err := readControl(filepath.Join(d.Terminal().Root(), filepath.FromSlash(fsterm.ControlPath)))
		if err != nil {
			return false
		}
		s := readStatus(t, d.Terminal().Root())
		return s.ControlGeneration != nil && *s.ControlGeneration == *c.Generation
	})
}

func failing(d device.Decision, control string) bool {
	return slices.ContainsFunc(d.Violations, func(v device.Violation) bool { return v.Control == control })
}

// TestDeviceFaults runs one device per fault against a real broker, with real agents sharing one engine:
// the agent acts, the fake terminal obeys, and both show in the files and over MQTT.
func TestDeviceFaults(t *testing.T) {
	r := newRig(t)

	t.Run("hotel_room", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("room-1208", Profile{HotelRoom: true, PublicPlace: true, Kind: device.KindCamera,
			RecognitionEvery: 50 * time.Millisecond}), false)
		r.rec.WaitFor(t, patience, "FRM-13-PRIVATE-SPACE opened", devEvent(d.ID(), wire.EventViolationOpened, "FRM-13-PRIVATE-SPACE"))
		r.rec.WaitFor(t, patience, "face recognition switched off", devEvent(d.ID(), wire.EventAction, device.ActionDisableFaceRecognition))
		c := readControlFile(t, d.Terminal().Root())
		if c.FaceRecognition.allowed() || !c.Alternatives.RequiredOn {
			t.Fatalf("control.json %+v", c)
		}
		applied(t, d)
		eventually(t, "people to find face recognition off", func() bool { return d.Terminal().Stats().FaceOffRefusals > 0 })
		before := d.Terminal().Stats().Recognitions
		eventually(t, "more people to come", func() bool { return d.Terminal().Stats().FaceOffRefusals > 3 })
		if after := d.Terminal().Stats().Recognitions; after != before {
			t.Fatalf("recognitions went on with face recognition off: %d → %d", before, after)
		}
		if s := readStatus(t, d.Terminal().Root()); !s.FR.Enabled {
			t.Fatal("the terminal folded the agent's order into fr.enabled")
		}
		// The terminal applied the order and the agent judged it again: the violation stays open.
		d.Agent().Reevaluate("test")
		comp := r.rec.WaitFor(t, patience, "a summary with face recognition off", func(m testbroker.Message) bool {
			var c wire.Compliance
			return m.Topic == wire.ComplianceTopic(d.ID()) && json.Unmarshal(m.Payload, &c) == nil && !c.Control.FaceRecognitionAllowed
		})
		var cs wire.Compliance
		_ = json.Unmarshal(comp.Payload, &cs)
		if cs.Status != device.StatusNonCompliant || cs.Counts.Critical != 1 || !cs.Control.AlternativesRequiredOn {
			t.Fatalf("summary %+v", cs)
		}
		eventually(t, "the re-evaluation", func() bool {
			dec, _, ok := d.Agent().Snapshot()
			return ok && failing(dec, "FRM-13-PRIVATE-SPACE")
		})
		for _, m := range r.rec.Messages() {
			if devEvent(d.ID(), wire.EventViolationClosed, "FRM-13-PRIVATE-SPACE")(m) {
				t.Fatal("FRM-13-PRIVATE-SPACE closed while the camera is still in the room")
			}
		}
	})

	t.Run("raw_captures", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("garage-cam", Profile{RawCaptures: true, RawBacklog: 4}), false)
		if n := len(captures(t, d.Terminal().Root())); n != 4 {
			t.Fatalf("%d captures at start, want 4", n)
		}
		m := r.rec.WaitFor(t, patience, "the captures deleted", devEvent(d.ID(), wire.EventAction, device.ActionDeleteRawImages))
		if e := decodeEvent(t, m); e.Count != 4 {
			t.Fatalf("deleted %d captures, want 4", e.Count)
		}
		if n := captures(t, d.Terminal().Root()); len(n) != 0 {
			t.Fatalf("captures left: %v", n)
		}
		r.rec.WaitFor(t, patience, "FRM-08-RAW-IMAGES closed", devEvent(d.ID(), wire.EventViolationClosed, "FRM-08-RAW-IMAGES"))
	})

	t.Run("template_upload", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("lobby-kiosk", Profile{TemplateUpload: true, Kind: device.KindKiosk}), false)
		r.rec.WaitFor(t, patience, "FRM-08-LOCAL-STORAGE opened", devEvent(d.ID(), wire.EventViolationOpened, "FRM-08-LOCAL-STORAGE"))
		r.rec.WaitFor(t, patience, "FRM-08-LOCAL-STORAGE closed", devEvent(d.ID(), wire.EventViolationClosed, "FRM-08-LOCAL-STORAGE"))
		if s := readStatus(t, d.Terminal().Root()); hasFlow(s, device.EgressTemplate) {
			t.Fatalf("the upload is still declared: %+v", s.Egress)
		}
		tcp, err := os.ReadFile(filepath.Join(d.Terminal().Root(), fsterm.ProcTCPPath))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(tcp), procAddr(mustAddrPort(uploadAddr), false)) {
			t.Fatalf("the upload's connection is still open:\n%s", tcp)
		}
		if !d.Terminal().Stats().UploadStopped {
			t.Fatal("stats do not show the upload stopped")
		}
	})

	t.Run("face_only", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("door-b2", Profile{FaceOnly: true}), false)
		r.rec.WaitFor(t, patience, "the alternatives required", devEvent(d.ID(), wire.EventAction, device.ActionEnableAlternatives))
		r.rec.WaitFor(t, patience, "FRM-10-ALTERNATIVE closed", devEvent(d.ID(), wire.EventViolationClosed, "FRM-10-ALTERNATIVE"))
		if s := readStatus(t, d.Terminal().Root()); len(s.Alternatives.Healthy) == 0 || !s.Alternatives.RefuseOptionShown {
			t.Fatalf("alternatives %+v", s.Alternatives)
		}
	})

	t.Run("withdrawn_subject", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("gate-west", Profile{WithdrawnSubject: true, WithdrawAfter: 200 * time.Millisecond}), false)
		m := r.rec.WaitFor(t, patience, "a deletion receipt", devEvent(d.ID(), wire.EventReceipt, device.ActionPurgeWithdrawnSubjects))
		if e := decodeEvent(t, m); e.Count != 1 || len(e.Receipts) != 1 || len(e.Receipts[0]) != 64 {
			t.Fatalf("receipt event %+v", e)
		}
		if strings.Contains(string(m.Payload), "-s-0") {
			t.Fatalf("a subject reference crossed MQTT: %s", m.Payload)
		}
		withdrawn := d.Terminal().subjectRef(1)
		if n := galleryCount(t, d.Terminal().Root(), `SELECT count(*) FROM subjects WHERE subject_ref = ?`, withdrawn); n != 0 {
			t.Fatal("the withdrawn subject is still enrolled")
		}
		if n := galleryCount(t, d.Terminal().Root(), `SELECT count(*) FROM subjects`); n != DefaultAdults-1 {
			t.Fatalf("%d subjects left, want %d", n, DefaultAdults-1)
		}
		r.rec.WaitFor(t, patience, "FRM-06-WITHDRAWAL closed", devEvent(d.ID(), wire.EventViolationClosed, "FRM-06-WITHDRAWAL"))
	})

	t.Run("minor_without_guardian", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("gate-east", Profile{MinorWithoutGuardian: true}), false)
		minor := d.Terminal().subjectRef(DefaultAdults + 1)
		r.rec.WaitFor(t, patience, "the minor quarantined", devEvent(d.ID(), wire.EventAction, device.ActionQuarantineMinorsWithoutGuardian))
		if n := galleryCount(t, d.Terminal().Root(), `SELECT count(*) FROM faceguard_quarantine WHERE subject_ref = ?`, minor); n != 1 {
			t.Fatal("the minor is not in faceguard_quarantine")
		}
		eventually(t, "the terminal to stop matching the minor", func() bool { return !d.Terminal().Matchable(minor) })
		if c := readControlFile(t, d.Terminal().Root()); !slices.Equal(c.QuarantinedSubjects, []string{minor}) || !c.FaceRecognition.allowed() {
			t.Fatalf("control.json %+v", c)
		}
		if !d.Terminal().Matchable(d.Terminal().subjectRef(1)) {
			t.Fatal("an adult with consent is not matched")
		}
		// Quarantined, not fixed: the violation stays until a guardian consents.
		d.Agent().Reevaluate("test")
		time.Sleep(100 * time.Millisecond)
		if dec, _, _ := d.Agent().Snapshot(); !failing(dec, "FRM-07-MINORS") {
			t.Fatalf("FRM-07-MINORS no longer failing: %+v", dec.Violations)
		}
	})

	t.Run("notice_incomplete", func(t *testing.T) {
		t.Parallel()
		d := r.startDevice(t, fastProfile("gate-new", Profile{NoticeIncomplete: true, EnrolEvery: 50 * time.Millisecond}), false)
		r.rec.WaitFor(t, patience, "enrolment blocked", devEvent(d.ID(), wire.EventAction, device.ActionBlockEnrolment))
		applied(t, d)
		n := d.Terminal().Stats().Enrolments
		eventually(t, "enrolments refused", func() bool { return d.Terminal().Stats().EnrolmentsRefused > 2 })
		if got := d.Terminal().Stats().Enrolments; got != n {
			t.Fatalf("enrolments went on while blocked: %d → %d", n, got)
		}
	})
}

// TestDeviceStopAndKill: a clean stop publishes the offline state itself; a kill leaves it to the broker's
// last will, as a crash does.
func TestDeviceStopAndKill(t *testing.T) {
	r := newRig(t)
	stopped := r.startDevice(t, fastProfile("gate-stopped", Profile{}), false)
	killed := r.startDevice(t, fastProfile("gate-killed", Profile{}), true)
	for _, d := range []*Device{stopped, killed} {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		if err := d.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	if err := stopped.Kill(); err != ErrNotKillable {
		t.Fatalf("kill of a device started without a relay: %v", err)
	}
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	for dev, reason := range map[string]string{stopped.ID(): "shutdown", killed.ID(): "lwt"} {
		r.rec.WaitFor(t, patience, dev+" offline ("+reason+")", func(m testbroker.Message) bool {
			var s wire.State
			return m.Topic == wire.StateTopic(dev) && json.Unmarshal(m.Payload, &s) == nil && s.State == wire.StateOffline && s.Reason == reason
		})
	}
	for _, m := range r.rec.Messages() {
		var s wire.State
		if m.Topic == wire.StateTopic(killed.ID()) && json.Unmarshal(m.Payload, &s) == nil && s.Reason == "shutdown" {
			t.Fatal("the killed device published a clean offline state")
		}
	}
}

func TestStartDeviceChecksOptions(t *testing.T) {
	base := DeviceOptions{Dir: t.TempDir(), Profile: Profile{ID: "gate-01", Site: "s"}, Engine: sharedEngine(t), SubjectKey: testSubjectKey}
	for name, mutate := range map[string]func(*DeviceOptions){
		"no dir":         func(o *DeviceOptions) { o.Dir = "" },
		"no engine":      func(o *DeviceOptions) { o.Engine = nil },
		"short key":      func(o *DeviceOptions) { o.SubjectKey = []byte("short") },
		"invalid device": func(o *DeviceOptions) { o.Profile.ID = "Gate 1" },
	} {
		o := base
		mutate(&o)
		if d, err := StartDevice(context.Background(), o); err == nil {
			d.Stop()
			t.Errorf("%s: accepted", name)
		}
	}
}
