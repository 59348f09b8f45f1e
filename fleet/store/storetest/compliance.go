package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

var complianceScenarios = []scenario{
	{"summary_before_birth_creates_device", func(t *testing.T, s fleet.Store) {
		c := compliance("d1", 1, 4, failing("c.sign", "high"), failing("c.raw", "critical"))
		c.Actions = []string{"disable_fr"}
		c.Unknown = []string{"network"}
		c.Fault = ""
		c.FailSafe = true
		c.Control = wire.ControlState{EnrolmentAllowed: true, AlternativesRequiredOn: true, Quarantined: 3}
		c.Policy.Revision = "rev-2"
		ok, err := s.ApplyCompliance(ctx, c, at(1))
		want(t, "summary", ok, err, true)
		d := device(t, s, "d1")
		equal(t, "summary", []any{d.Status, d.Counts, d.Failing, d.Actions, d.Unknown, d.FailSafe, d.Control, d.Audit, d.Policy},
			[]any{"non_compliant", wire.Counts{Critical: 1, High: 1}, c.Failing, c.Actions, c.Unknown, true, c.Control, c.Audit, "rev-2"})
		sameTime(t, "evaluated at", d.EvaluatedAt, c.EvaluatedAt)
		sameTime(t, "last seen", d.LastSeen, at(1))
		equal(t, "site of a device without birth", d.Site, "")
	}},
	{"duplicate_summary_ignored", func(t *testing.T, s fleet.Store) {
		c := compliance("d1", 1, 4)
		ok, err := s.ApplyCompliance(ctx, c, at(1))
		want(t, "first", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, c, at(2))
		want(t, "again", ok, err, false)
		h := must[[]fleet.ComplianceRecord](t)(s.History(ctx, "d1", time.Time{}, 0))
		equal(t, "history rows", len(h), 1)
	}},
	{"older_summary_ignored_but_kept_in_history", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyCompliance(ctx, compliance("d1", 1, 5, failing("c.x", "low")), at(1))
		want(t, "newer", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 3), at(2))
		want(t, "older, delivered late", ok, err, false)
		equal(t, "status", device(t, s, "d1").Status, "non_compliant")
		h := must[[]fleet.ComplianceRecord](t)(s.History(ctx, "d1", time.Time{}, 0))
		var seqs []uint64
		for _, r := range h {
			seqs = append(seqs, r.Seq)
		}
		equal(t, "history, newest first", seqs, []uint64{5, 3})
	}},
	{"history_newest_first_since_and_limit", func(t *testing.T, s fleet.Store) {
		for seq := uint64(1); seq <= 4; seq++ {
			ok, err := s.ApplyCompliance(ctx, compliance("d1", 1, seq), at(int(seq)))
			want(t, "summary", ok, err, true)
		}
		c := compliance("d1", 2, 1, failing("c.x", "medium"))
		c.Fault = "facts unknown"
		ok, err := s.ApplyCompliance(ctx, c, at(9))
		want(t, "new session", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d2", 1, 1), at(9))
		want(t, "another device", ok, err, true)

		h := must[[]fleet.ComplianceRecord](t)(s.History(ctx, "d1", time.Time{}, 2))
		equal(t, "limit 2", len(h), 2)
		r := h[0]
		equal(t, "newest", []any{r.Dev, r.Session, r.Seq, r.Status, r.Counts, r.Failing, r.Fault, r.Policy},
			[]any{"d1", uint64(2), uint64(1), "non_compliant", wire.Counts{Medium: 1}, c.Failing, "facts unknown", "builtin-1"})
		sameTime(t, "evaluated at", r.EvaluatedAt, c.EvaluatedAt)
		equal(t, "then", []uint64{h[1].Session, h[1].Seq}, []uint64{1, 4})

		since := compliance("d1", 1, 3).EvaluatedAt
		h = must[[]fleet.ComplianceRecord](t)(s.History(ctx, "d1", since, 0))
		equal(t, "since the third, inclusive", len(h), 3)
		h = must[[]fleet.ComplianceRecord](t)(s.History(ctx, "nobody", time.Time{}, 0))
		equal(t, "unknown device", len(h), 0)
	}},
	{"failing_control_opens_violation_without_message", func(t *testing.T, s fleet.Store) {
		c := compliance("d1", 1, 2, failing("c.sign", "high"))
		ok, err := s.ApplyCompliance(ctx, c, at(1))
		want(t, "summary", ok, err, true)
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "open", ids(v), []string{"d1/c.sign"})
		equal(t, "no message, no event", []any{v[0].Severity, v[0].Message, v[0].EventID}, []any{"high", wire.Text{}, ""})
		sameList(t, "articles", v[0].Articles, nil)
		sameTime(t, "opened at evaluation", v[0].OpenedAt, c.EvaluatedAt)
	}},
	{"control_no_longer_failing_is_closed", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyCompliance(ctx, compliance("d1", 1, 2, failing("c.a", "high"), failing("c.b", "low")), at(1))
		want(t, "two failing", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 3, failing("c.b", "low")), at(2))
		want(t, "one failing", ok, err, true)
		equal(t, "open", ids(openViolations(t, s, fleet.ViolationQuery{})), []string{"d1/c.b"})
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 4), at(3))
		want(t, "none failing", ok, err, true)
		equal(t, "open", len(openViolations(t, s, fleet.ViolationQuery{})), 0)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 5, failing("c.a", "high")), at(4))
		want(t, "failing again", ok, err, true)
		equal(t, "reopened", ids(openViolations(t, s, fleet.ViolationQuery{})), []string{"d1/c.a"})
	}},
	{"summary_keeps_event_message", func(t *testing.T, s fleet.Store) {
		ev := opened("d1", 1, 1, "c.sign", "high")
		ok, err := s.AddEvent(ctx, ev, at(1))
		want(t, "opened", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 2, failing("c.sign", "high")), at(2))
		want(t, "summary", ok, err, true)
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "one", ids(v), []string{"d1/c.sign"})
		equal(t, "from the event", []any{v[0].Message, v[0].EventID, v[0].Articles}, []any{*ev.Message, ev.EventID, ev.Articles})
		sameTime(t, "opened at the event", v[0].OpenedAt, ev.At)
	}},
	{"older_summary_does_not_close_newer_violation", func(t *testing.T, s fleet.Store) {
		// The agent evaluated (summary, seq 4), then opened a violation (event, seq 5); another controller
		// delivers the summary first after the event.
		ok, err := s.AddEvent(ctx, opened("d1", 1, 5, "c.sign", "high"), at(1))
		want(t, "opened", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 4), at(2))
		want(t, "the device's first summary, older than the event", ok, err, true)
		equal(t, "still open", ids(openViolations(t, s, fleet.ViolationQuery{})), []string{"d1/c.sign"})
	}},
	{"older_summary_does_not_reopen_closed_violation", func(t *testing.T, s fleet.Store) {
		ok, err := s.AddEvent(ctx, closed("d1", 1, 5, "c.sign"), at(1))
		want(t, "closed", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 1, 4, failing("c.sign", "high")), at(2))
		want(t, "summary from before the close", ok, err, true)
		equal(t, "none open", len(openViolations(t, s, fleet.ViolationQuery{})), 0)
	}},
	{"older_opened_event_fills_summary_row", func(t *testing.T, s fleet.Store) {
		// The summary (seq 5) that follows an opened event (seq 4) is delivered first.
		ok, err := s.ApplyCompliance(ctx, compliance("d1", 1, 5, failing("c.sign", "high")), at(1))
		want(t, "summary", ok, err, true)
		ev := opened("d1", 1, 4, "c.sign", "high")
		ok, err = s.AddEvent(ctx, ev, at(2))
		want(t, "opened, older", ok, err, true)
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "one", ids(v), []string{"d1/c.sign"})
		equal(t, "details from the event", []any{v[0].Message, v[0].EventID}, []any{*ev.Message, ev.EventID})
		// Its transition is still the summary's: an older close changes nothing.
		ok, err = s.AddEvent(ctx, closed("d1", 1, 3, "c.sign"), at(3))
		want(t, "an older close", ok, err, true)
		equal(t, "still open", len(openViolations(t, s, fleet.ViolationQuery{})), 1)
	}},
}

var auditScenarios = []scenario{
	{"audit_regressed_on_shorter_head", func(t *testing.T, s fleet.Store) {
		c := compliance("d1", 1, 2)
		c.Audit = wire.AuditHead{Seq: 10, Hash: "h10"}
		ok, err := s.ApplyCompliance(ctx, c, at(1))
		want(t, "head 10", ok, err, true)
		c = compliance("d1", 2, 1)
		c.Audit = wire.AuditHead{Seq: 7, Hash: "h7"}
		ok, err = s.ApplyCompliance(ctx, c, at(2))
		want(t, "head 7", ok, err, true)
		d := device(t, s, "d1")
		if d.AuditRegressed == nil {
			t.Fatal("a shorter chain is not marked")
		}
		sameTime(t, "regressed at", *d.AuditRegressed, at(2))
		equal(t, "anchor is the last head", d.Audit, c.Audit)
	}},
	{"audit_regressed_on_rewritten_head", func(t *testing.T, s fleet.Store) {
		c := compliance("d1", 1, 2)
		c.Audit = wire.AuditHead{Seq: 10, Hash: "aaaa"}
		ok, err := s.ApplyCompliance(ctx, c, at(1))
		want(t, "head", ok, err, true)
		c = compliance("d1", 1, 3)
		c.Audit = wire.AuditHead{Seq: 10, Hash: "bbbb"}
		ok, err = s.ApplyCompliance(ctx, c, at(2))
		want(t, "same seq, other hash", ok, err, true)
		if device(t, s, "d1").AuditRegressed == nil {
			t.Fatal("a rewritten chain is not marked")
		}
	}},
	{"audit_not_regressed_on_growth", func(t *testing.T, s fleet.Store) {
		for i, h := range []wire.AuditHead{{}, {Seq: 10, Hash: "a"}, {Seq: 12, Hash: "b"}, {Seq: 12, Hash: "b"}} {
			c := compliance("d1", 1, uint64(i+1))
			c.Audit = h
			ok, err := s.ApplyCompliance(ctx, c, at(i))
			want(t, "summary", ok, err, true)
		}
		if r := device(t, s, "d1").AuditRegressed; r != nil {
			t.Fatalf("regressed at %v on a growing chain", r)
		}
	}},
	{"audit_older_summary_not_compared", func(t *testing.T, s fleet.Store) {
		c := compliance("d1", 1, 5)
		c.Audit = wire.AuditHead{Seq: 50, Hash: "x"}
		ok, err := s.ApplyCompliance(ctx, c, at(1))
		want(t, "newer", ok, err, true)
		c = compliance("d1", 1, 4)
		c.Audit = wire.AuditHead{Seq: 40, Hash: "y"}
		ok, err = s.ApplyCompliance(ctx, c, at(2))
		want(t, "older summary with an older head", ok, err, false)
		if r := device(t, s, "d1").AuditRegressed; r != nil {
			t.Fatalf("regressed at %v by a summary delivered late", r)
		}
	}},
	{"audit_regressed_kept_first_time", func(t *testing.T, s fleet.Store) {
		for i, h := range []wire.AuditHead{{Seq: 10, Hash: "a"}, {Seq: 3, Hash: "b"}, {Seq: 4, Hash: "c"}, {Seq: 1, Hash: "d"}} {
			c := compliance("d1", 1, uint64(i+1))
			c.Audit = h
			ok, err := s.ApplyCompliance(ctx, c, at(i))
			want(t, "summary", ok, err, true)
		}
		r := device(t, s, "d1").AuditRegressed
		if r == nil {
			t.Fatal("not marked")
		}
		sameTime(t, "first regression", *r, at(1))
	}},
}

var subjectScenarios = []scenario{
	{"subjects_recorded", func(t *testing.T, s fleet.Store) {
		sub := subjects("d1", 1, 3, 42)
		ok, err := s.ApplySubjects(ctx, sub, at(1))
		want(t, "subjects", ok, err, true)
		ok, err = s.ApplySubjects(ctx, subjects("d2", 1, 1, 7), at(2))
		want(t, "another device", ok, err, true)
		equal(t, "count on the device", device(t, s, "d1").Subjects, 42)
		sk := must[[]fleet.Sketch](t)(s.Sketches(ctx))
		equal(t, "sketches", len(sk), 2)
		equal(t, "first", []any{sk[0].Dev, sk[0].Count}, []any{"d1", 42})
		if !bytes.Equal(sk[0].Data, sub.Sketch) {
			t.Fatalf("sketch %q, want %q", sk[0].Data, sub.Sketch)
		}
		sameTime(t, "updated", sk[0].UpdatedAt, at(1))
	}},
	{"older_subjects_ignored", func(t *testing.T, s fleet.Store) {
		newer := subjects("d1", 2, 1, 50)
		ok, err := s.ApplySubjects(ctx, newer, at(1))
		want(t, "newer", ok, err, true)
		ok, err = s.ApplySubjects(ctx, subjects("d1", 1, 9, 10), at(2))
		want(t, "older", ok, err, false)
		ok, err = s.ApplySubjects(ctx, newer, at(3))
		want(t, "duplicate", ok, err, false)
		equal(t, "count", device(t, s, "d1").Subjects, 50)
		sk := must[[]fleet.Sketch](t)(s.Sketches(ctx))
		if len(sk) != 1 || !bytes.Equal(sk[0].Data, newer.Sketch) || sk[0].Count != 50 {
			t.Fatalf("sketches %+v", sk)
		}
	}},
}
