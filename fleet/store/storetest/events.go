package storetest

import (
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

var eventScenarios = []scenario{
	{"duplicate_event_ignored", func(t *testing.T, s fleet.Store) {
		ev := opened("d1", 1, 1, "c.sign", "high")
		ok, err := s.AddEvent(ctx, ev, at(1))
		want(t, "first", ok, err, true)
		ok, err = s.AddEvent(ctx, ev, at(2))
		want(t, "redelivered", ok, err, false)
		evs := must[[]fleet.Event](t)(s.Events(ctx, "d1", nil, time.Time{}, 0))
		equal(t, "stored once", len(evs), 1)
		equal(t, "one open", len(openViolations(t, s, fleet.ViolationQuery{})), 1)
	}},
	{"event_fields_round_trip", func(t *testing.T, s fleet.Store) {
		ev := wire.Event{Envelope: envelope(wire.TypeEvent, "d1", 2, 7), EventID: "e-7", Kind: wire.EventReceipt,
			At: t0.Add(90 * time.Minute), Action: "forget_subject", Count: 3, Receipts: []string{"r1", "r2"},
			Detail: "forget-subject c9", Articles: []string{"art. 16"}, Message: &wire.Text{ZH: "删除", EN: "deleted"}}
		ok, err := s.AddEvent(ctx, ev, at(5))
		want(t, "receipt", ok, err, true)
		evs := must[[]fleet.Event](t)(s.Events(ctx, "", nil, time.Time{}, 0))
		if len(evs) != 1 {
			t.Fatalf("%d events", len(evs))
		}
		e := evs[0]
		equal(t, "fields", []any{e.Dev, e.Session, e.Seq, e.EventID, e.Kind, e.Action, e.Count, e.Receipts, e.Detail, e.Articles, *e.Message},
			[]any{"d1", uint64(2), uint64(7), "e-7", wire.EventReceipt, "forget_subject", 3, ev.Receipts, ev.Detail, ev.Articles, *ev.Message})
		sameTime(t, "at", e.At, ev.At)
		sameTime(t, "received", e.ReceivedAt, at(5))
		if e.ID == 0 {
			t.Fatal("no id")
		}
		ok, err = s.AddEvent(ctx, action("d1", 2, 8, "disable_fr"), at(6))
		want(t, "action without message", ok, err, true)
		evs = must[[]fleet.Event](t)(s.Events(ctx, "", []string{wire.EventAction}, time.Time{}, 0))
		if len(evs) != 1 || evs[0].Message != nil {
			t.Fatalf("an event without message: %+v", evs)
		}
	}},
	{"violation_opened_then_closed", func(t *testing.T, s fleet.Store) {
		ev := opened("d1", 1, 1, "c.sign", "high")
		ok, err := s.AddEvent(ctx, ev, at(1))
		want(t, "opened", ok, err, true)
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "open", ids(v), []string{"d1/c.sign"})
		equal(t, "details", []any{v[0].Severity, v[0].Articles, v[0].Message, v[0].EventID},
			[]any{"high", ev.Articles, *ev.Message, ev.EventID})
		sameTime(t, "opened at", v[0].OpenedAt, ev.At)
		ok, err = s.AddEvent(ctx, closed("d1", 1, 2, "c.sign"), at(2))
		want(t, "closed", ok, err, true)
		equal(t, "none open", len(openViolations(t, s, fleet.ViolationQuery{})), 0)
	}},
	{"closed_before_opened", func(t *testing.T, s fleet.Store) {
		ok, err := s.AddEvent(ctx, closed("d1", 1, 2, "c.sign"), at(1))
		want(t, "closed first", ok, err, true)
		ok, err = s.AddEvent(ctx, opened("d1", 1, 1, "c.sign", "high"), at(2))
		want(t, "opened, older, recorded as an event", ok, err, true)
		equal(t, "none open", len(openViolations(t, s, fleet.ViolationQuery{})), 0)
		equal(t, "both events", len(must[[]fleet.Event](t)(s.Events(ctx, "d1", nil, time.Time{}, 0))), 2)
	}},
	{"reopened_after_close", func(t *testing.T, s fleet.Store) {
		for i, ev := range []wire.Event{opened("d1", 1, 1, "c.a", "low"), closed("d1", 1, 2, "c.a"), opened("d1", 1, 3, "c.a", "critical")} {
			ok, err := s.AddEvent(ctx, ev, at(i))
			want(t, ev.Kind, ok, err, true)
		}
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "open", ids(v), []string{"d1/c.a"})
		equal(t, "the reopening", []string{v[0].EventID, v[0].Severity}, []string{"d1-1-3", "critical"})
	}},
	{"newer_opened_refreshes_message", func(t *testing.T, s fleet.Store) {
		ok, err := s.AddEvent(ctx, opened("d1", 1, 1, "c.a", "high"), at(1))
		want(t, "opened", ok, err, true)
		ev := opened("d1", 2, 1, "c.a", "high")
		ev.Message = &wire.Text{ZH: "新", EN: "new"}
		ok, err = s.AddEvent(ctx, ev, at(2))
		want(t, "opened again, new session", ok, err, true)
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "message", v[0].Message, wire.Text{ZH: "新", EN: "new"})
		// An older one, delivered late, does not bring the old message back.
		ok, err = s.AddEvent(ctx, opened("d1", 1, 2, "c.a", "high"), at(3))
		want(t, "older opened", ok, err, true)
		equal(t, "message", openViolations(t, s, fleet.ViolationQuery{})[0].Message, wire.Text{ZH: "新", EN: "new"})
	}},
	{"event_before_birth_creates_device", func(t *testing.T, s fleet.Store) {
		ok, err := s.AddEvent(ctx, opened("d7", 1, 1, "c.a", "high"), at(1))
		want(t, "event", ok, err, true)
		d := device(t, s, "d7")
		sameTime(t, "last seen", d.LastSeen, at(1))
		v := openViolations(t, s, fleet.ViolationQuery{})
		equal(t, "open", ids(v), []string{"d7/c.a"})
	}},
	{"events_query", func(t *testing.T, s fleet.Store) {
		evs := []wire.Event{
			opened("d1", 1, 1, "c.a", "high"), action("d1", 1, 2, "disable_fr"), closed("d1", 1, 3, "c.a"),
			opened("d2", 1, 1, "c.b", "low"), action("d2", 1, 4, "purge"),
		}
		for i, ev := range evs {
			ok, err := s.AddEvent(ctx, ev, at(i))
			want(t, ev.EventID, ok, err, true)
		}
		key := func(es []fleet.Event) []string {
			var out []string
			for _, e := range es {
				out = append(out, e.EventID)
			}
			return out
		}
		// Newest first by the time of the event; the same time, the one stored last first.
		all := must[[]fleet.Event](t)(s.Events(ctx, "", nil, time.Time{}, 0))
		equal(t, "all, newest first", key(all), []string{"d2-1-4", "d1-1-3", "d1-1-2", "d2-1-1", "d1-1-1"})
		got := must[[]fleet.Event](t)(s.Events(ctx, "d1", nil, time.Time{}, 0))
		equal(t, "one device", key(got), []string{"d1-1-3", "d1-1-2", "d1-1-1"})
		got = must[[]fleet.Event](t)(s.Events(ctx, "", []string{wire.EventViolationOpened, wire.EventViolationClosed}, time.Time{}, 0))
		equal(t, "kinds", key(got), []string{"d1-1-3", "d2-1-1", "d1-1-1"})
		got = must[[]fleet.Event](t)(s.Events(ctx, "", nil, evs[1].At, 0))
		equal(t, "since, inclusive", key(got), []string{"d2-1-4", "d1-1-3", "d1-1-2"})
		got = must[[]fleet.Event](t)(s.Events(ctx, "", nil, time.Time{}, 2))
		equal(t, "limit", key(got), []string{"d2-1-4", "d1-1-3"})
		got = must[[]fleet.Event](t)(s.Events(ctx, "d1", []string{wire.EventAction}, evs[0].At, 1))
		equal(t, "everything at once", key(got), []string{"d1-1-2"})
	}},
}
