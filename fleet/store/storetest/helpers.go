package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// t0 is when every scenario begins; messages are stamped and received relative to it.
var t0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

// at is t0 plus n seconds: a receive time.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

var ctx = context.Background()

func envelope(typ, dev string, session, seq uint64) wire.Envelope {
	return wire.Envelope{V: wire.Version, Type: typ, Dev: dev, Session: session, Seq: seq,
		TS: t0.Add(time.Duration(session)*time.Hour + time.Duration(seq)*time.Second)}
}

func birth(dev string, session, seq uint64, site string) wire.Birth {
	return wire.Birth{Envelope: envelope(wire.TypeBirth, dev, session, seq), Site: site, SiteName: "Site " + site,
		Kind: "access_control", Category: "office", Model: "FG-100", Firmware: "1.2.3", Agent: "0.9.0",
		Bundle: wire.BundleInfo{Revision: "builtin-1", SHA256: "ab"}, ConfigVersion: 2, Capabilities: wire.CommandTypes}
}

func state(dev string, session, seq uint64, st, reason string) wire.State {
	return wire.State{Envelope: envelope(wire.TypeState, dev, session, seq), State: st, Reason: reason}
}

func online(dev string, session, seq uint64) wire.State {
	return state(dev, session, seq, wire.StateOnline, "")
}

func lwt(dev string, session uint64) wire.State {
	return state(dev, session, 0, wire.StateOffline, "lwt")
}

// compliance is a summary whose status and counts follow its failing controls.
func compliance(dev string, session, seq uint64, failing ...wire.Failing) wire.Compliance {
	c := wire.Compliance{Envelope: envelope(wire.TypeCompliance, dev, session, seq), Status: "compliant",
		EvaluatedAt: t0.Add(time.Duration(session)*time.Hour + time.Duration(seq)*time.Second),
		Policy:      wire.BundleInfo{Revision: "builtin-1"}, Failing: failing, Actions: []string{},
		Control: wire.ControlState{FaceRecognitionAllowed: true, EnrolmentAllowed: true},
		Audit:   wire.AuditHead{Seq: seq * 10, Hash: fmt.Sprintf("h%d-%d", session, seq*10)}}
	for _, f := range failing {
		c.Status = "non_compliant"
		switch f.Severity {
		case "critical":
			c.Counts.Critical++
		case "high":
			c.Counts.High++
		case "medium":
			c.Counts.Medium++
		default:
			c.Counts.Low++
		}
	}
	return c
}

func failing(control, severity string) wire.Failing {
	return wire.Failing{Control: control, Severity: severity}
}

func opened(dev string, session, seq uint64, control, severity string) wire.Event {
	e := wire.Event{Envelope: envelope(wire.TypeEvent, dev, session, seq), Kind: wire.EventViolationOpened,
		Control: control, Severity: severity, Articles: []string{"art. 6"},
		Message: &wire.Text{ZH: control + " 违规", EN: control + " violated"}}
	e.At = e.TS
	e.EventID = fmt.Sprintf("%s-%d-%d", dev, session, seq)
	return e
}

func closed(dev string, session, seq uint64, control string) wire.Event {
	e := wire.Event{Envelope: envelope(wire.TypeEvent, dev, session, seq), Kind: wire.EventViolationClosed,
		Control: control, Severity: "high", Detail: "closed"}
	e.At = e.TS
	e.EventID = fmt.Sprintf("%s-%d-%d", dev, session, seq)
	return e
}

func action(dev string, session, seq uint64, name string) wire.Event {
	e := wire.Event{Envelope: envelope(wire.TypeEvent, dev, session, seq), Kind: wire.EventAction, Action: name, Count: 2}
	e.At = e.TS
	e.EventID = fmt.Sprintf("%s-%d-%d", dev, session, seq)
	return e
}

func subjects(dev string, session, seq uint64, count int) wire.Subjects {
	return wire.Subjects{Envelope: envelope(wire.TypeSubjects, dev, session, seq), Count: count,
		Sketch: []byte(fmt.Sprintf("sketch-%s-%d-%d", dev, session, seq))}
}

func result(dev string, session, seq uint64, cmd, status string) wire.Result {
	r := wire.Result{Envelope: envelope(wire.TypeResult, dev, session, seq), ID: cmd, Command: wire.CmdReevaluate,
		Status: status}
	if status != wire.ResultAccepted {
		r.Result = json.RawMessage(`{"ok":true}`)
	}
	if status == wire.ResultRejected {
		r.Reason = "expired"
	}
	return r
}

func command(id, target string, issued time.Time, valid time.Duration) fleet.Command {
	return fleet.Command{ID: id, Type: wire.CmdForgetSubject, Target: target,
		Args:     json.RawMessage(`{"subject_hash":"aa"}`),
		IssuedAt: issued, ExpiresAt: issued.Add(valid), CreatedBy: "operator",
		Payload: []byte(`{"payload":"` + id + `","kid":"k1","sig":"s"}`)}
}

// want checks what an Apply or Add reported.
func want(t *testing.T, what string, got bool, err error, wantApplied bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != wantApplied {
		t.Fatalf("%s: applied = %v, want %v", what, got, wantApplied)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func device(t *testing.T, s fleet.Store, id string) fleet.Device {
	t.Helper()
	d, err := s.Device(ctx, id)
	if err != nil {
		t.Fatalf("device %s: %v", id, err)
	}
	return d
}

func openViolations(t *testing.T, s fleet.Store, q fleet.ViolationQuery) []fleet.Violation {
	t.Helper()
	v, _, err := s.OpenViolations(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func commandResults(t *testing.T, s fleet.Store, id string) map[string]fleet.CommandResult {
	t.Helper()
	_, results, err := s.Command(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fleet.CommandResult{}
	for _, r := range results {
		out[r.Dev] = r
	}
	return out
}

func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s: %s, want %s", what, got, want)
	}
}

// sameList compares lists, nil and empty alike.
func sameList[T any](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	equal(t, what, got, want)
}

func notFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, fleet.ErrNotFound) {
		t.Fatalf("%s: %v, want fleet.ErrNotFound", what, err)
	}
}

func ids(vs []fleet.Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Dev+"/"+v.Control)
	}
	return out
}

func deviceIDs(ds []fleet.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}
