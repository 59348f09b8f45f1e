package storetest

import (
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

var birthScenarios = []scenario{
	{"birth_creates_device", func(t *testing.T, s fleet.Store) {
		b := birth("d1", 3, 1, "s1")
		ok, err := s.ApplyBirth(ctx, b, at(1))
		want(t, "birth", ok, err, true)
		d := device(t, s, "d1")
		equal(t, "identity", []any{d.ID, d.Site, d.SiteName, d.Kind, d.Category, d.Model, d.Firmware, d.Agent, d.Policy, d.Config, d.BirthSession},
			[]any{"d1", "s1", "Site s1", "access_control", "office", "FG-100", "1.2.3", "0.9.0", "builtin-1", 2, uint64(3)})
		sameTime(t, "last seen", d.LastSeen, at(1))
		equal(t, "state and status before any", []string{d.State, d.Status}, []string{"", ""})
		if d.AuditRegressed != nil {
			t.Fatalf("audit regressed on a birth: %v", d.AuditRegressed)
		}
	}},
	{"newer_birth_replaces", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyBirth(ctx, birth("d1", 1, 1, "a"), at(1))
		want(t, "first", ok, err, true)
		ok, err = s.ApplyBirth(ctx, birth("d1", 1, 5, "b"), at(2))
		want(t, "higher seq", ok, err, true)
		equal(t, "site", device(t, s, "d1").Site, "b")
		ok, err = s.ApplyBirth(ctx, birth("d1", 2, 1, "c"), at(3))
		want(t, "new session, lower seq", ok, err, true)
		d := device(t, s, "d1")
		equal(t, "site", d.Site, "c")
		equal(t, "birth session", d.BirthSession, uint64(2))
	}},
	{"older_birth_ignored", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyBirth(ctx, birth("d1", 2, 1, "new"), at(1))
		want(t, "newer", ok, err, true)
		ok, err = s.ApplyBirth(ctx, birth("d1", 1, 9, "old"), at(2))
		want(t, "older session", ok, err, false)
		equal(t, "site", device(t, s, "d1").Site, "new")
	}},
	{"duplicate_birth_ignored", func(t *testing.T, s fleet.Store) {
		b := birth("d1", 1, 1, "a")
		ok, err := s.ApplyBirth(ctx, b, at(1))
		want(t, "first", ok, err, true)
		ok, err = s.ApplyBirth(ctx, b, at(2))
		want(t, "again", ok, err, false)
	}},
	{"birth_after_summary_keeps_it", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyCompliance(ctx, compliance("d1", 1, 2, failing("c.x", "high")), at(1))
		want(t, "summary", ok, err, true)
		b := birth("d1", 1, 1, "s1")
		b.Bundle.Revision = "rev-7"
		ok, err = s.ApplyBirth(ctx, b, at(2))
		want(t, "birth, older seq than the summary: another kind", ok, err, true)
		d := device(t, s, "d1")
		equal(t, "status", d.Status, "non_compliant")
		equal(t, "site", d.Site, "s1")
		equal(t, "policy from the birth", d.Policy, "rev-7")
	}},
}

var stateScenarios = []scenario{
	{"online_then_shutdown", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 1, 1), at(1))
		want(t, "online", ok, err, true)
		d := device(t, s, "d1")
		equal(t, "state", []any{d.State, d.StateReason, d.StateSession}, []any{"online", "", uint64(1)})
		ok, err = s.ApplyState(ctx, state("d1", 1, 7, wire.StateOffline, "shutdown"), at(2))
		want(t, "shutdown", ok, err, true)
		d = device(t, s, "d1")
		equal(t, "state", []any{d.State, d.StateReason}, []any{"offline", "shutdown"})
	}},
	{"stale_lwt_ignored", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 1, 1), at(1))
		want(t, "online s1", ok, err, true)
		ok, err = s.ApplyState(ctx, online("d1", 2, 1), at(2))
		want(t, "online s2 (a restart)", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 1), at(3))
		want(t, "the last will of session 1, delivered late", ok, err, false)
		d := device(t, s, "d1")
		equal(t, "state", []any{d.State, d.StateSession}, []any{"online", uint64(2)})
	}},
	{"lwt_of_current_session_applies", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 2, 3), at(1))
		want(t, "online", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(2))
		want(t, "lwt with seq 0", ok, err, true)
		d := device(t, s, "d1")
		equal(t, "state", []any{d.State, d.StateReason, d.StateSession}, []any{"offline", "lwt", uint64(2)})
	}},
	{"lwt_redelivered_ignored", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 2, 3), at(1))
		want(t, "online", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(2))
		want(t, "lwt", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(3))
		want(t, "lwt again", ok, err, false)
	}},
	{"online_after_lwt_same_session_applies", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 2, 3), at(1))
		want(t, "online", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(2))
		want(t, "lwt", ok, err, true)
		ok, err = s.ApplyState(ctx, online("d1", 2, 9), at(3))
		want(t, "reconnect without restart", ok, err, true)
		equal(t, "state", device(t, s, "d1").State, "online")
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(4))
		want(t, "a second lwt of the session", ok, err, true)
		equal(t, "state", device(t, s, "d1").State, "offline")
	}},
	{"stale_online_after_lwt_ignored", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 2, 3), at(1))
		want(t, "online", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(2))
		want(t, "lwt", ok, err, true)
		ok, err = s.ApplyState(ctx, online("d1", 2, 3), at(3))
		want(t, "the same online redelivered", ok, err, false)
		ok, err = s.ApplyState(ctx, online("d1", 2, 2), at(4))
		want(t, "an older online", ok, err, false)
		d := device(t, s, "d1")
		equal(t, "state", []any{d.State, d.StateReason}, []any{"offline", "lwt"})
	}},
	{"lwt_of_newer_session_applies", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d1", 1, 3), at(1))
		want(t, "online", ok, err, true)
		ok, err = s.ApplyState(ctx, lwt("d1", 2), at(2))
		want(t, "lwt of a session whose online was missed", ok, err, true)
		equal(t, "state session", device(t, s, "d1").StateSession, uint64(2))
	}},
	{"older_state_ignored", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, state("d1", 1, 5, wire.StateOffline, "shutdown"), at(1))
		want(t, "shutdown", ok, err, true)
		ok, err = s.ApplyState(ctx, online("d1", 1, 4), at(2))
		want(t, "older online", ok, err, false)
		ok, err = s.ApplyState(ctx, state("d1", 1, 5, wire.StateOffline, "shutdown"), at(3))
		want(t, "duplicate", ok, err, false)
		equal(t, "state", device(t, s, "d1").State, "offline")
	}},
	{"state_before_birth_creates_device", func(t *testing.T, s fleet.Store) {
		ok, err := s.ApplyState(ctx, online("d9", 1, 1), at(1))
		want(t, "online", ok, err, true)
		equal(t, "ids", must[[]string](t)(s.DeviceIDs(ctx)), []string{"d9"})
		ok, err = s.ApplyBirth(ctx, birth("d9", 1, 2, "s1"), at(2))
		want(t, "birth", ok, err, true)
		d := device(t, s, "d9")
		equal(t, "born and online", []string{d.Site, d.State}, []string{"s1", "online"})
	}},
}

var lastSeenScenarios = []scenario{
	{"last_seen_by_any_applied_message", func(t *testing.T, s fleet.Store) {
		if err := s.CreateCommand(ctx, command("c1", "d1", at(0), time.Hour), []string{"d1"}); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name  string
			apply func(time.Time) (bool, error)
			moved bool
		}{
			{"birth", func(r time.Time) (bool, error) { return s.ApplyBirth(ctx, birth("d1", 1, 1, "s"), r) }, true},
			{"state", func(r time.Time) (bool, error) { return s.ApplyState(ctx, online("d1", 1, 2), r) }, true},
			{"compliance", func(r time.Time) (bool, error) { return s.ApplyCompliance(ctx, compliance("d1", 1, 3), r) }, true},
			{"subjects", func(r time.Time) (bool, error) { return s.ApplySubjects(ctx, subjects("d1", 1, 4, 10), r) }, true},
			{"event", func(r time.Time) (bool, error) { return s.AddEvent(ctx, action("d1", 1, 5, "disable_fr"), r) }, true},
			{"result", func(r time.Time) (bool, error) { return s.AddResult(ctx, result("d1", 1, 6, "c1", "succeeded"), r) }, true},
			{"duplicate event", func(r time.Time) (bool, error) { return s.AddEvent(ctx, action("d1", 1, 5, "disable_fr"), r) }, false},
			{"stale birth", func(r time.Time) (bool, error) { return s.ApplyBirth(ctx, birth("d1", 1, 1, "s"), r) }, false},
			{"stale state", func(r time.Time) (bool, error) { return s.ApplyState(ctx, online("d1", 1, 1), r) }, false},
		}
		for i, st := range steps {
			r := at(10 * (i + 1))
			var before time.Time
			if i > 0 {
				before = device(t, s, "d1").LastSeen
			}
			ok, err := st.apply(r)
			want(t, st.name, ok, err, st.moved)
			got := device(t, s, "d1").LastSeen
			if st.moved {
				sameTime(t, st.name+": last seen", got, r)
			} else {
				sameTime(t, st.name+": last seen unchanged", got, before)
			}
		}
		// A message received (by another controller) a little earlier than the last one does not move it back.
		ok, err := s.ApplyState(ctx, state("d1", 1, 9, wire.StateOffline, "shutdown"), at(1))
		want(t, "late stamp", ok, err, true)
		sameTime(t, "last seen never moves back", device(t, s, "d1").LastSeen, at(60))
	}},
}
