package storetest

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// delivery is one message as a controller receives it, or the controller's answer to a birth (PendingFor).
type delivery struct {
	name  string
	apply func(s fleet.Store) error
}

// deviceStream is what one device publishes over two sessions, in order: births, states (with a last will
// and a reconnect), summaries whose failing controls change, the violation events that go with them,
// actions, sketches, and answers to commands. Receive times are the messages' own, so two controllers
// stamp a message alike.
func deviceStream(r *rand.Rand, dev string, regress bool) []delivery {
	var out []delivery
	var session, seq uint64
	next := func() uint64 { seq++; return seq }
	recv := func(e wire.Envelope) time.Time { return e.TS }
	add := func(name string, f func(s fleet.Store) (bool, error)) {
		out = append(out, delivery{name: fmt.Sprintf("%s s%d/%d %s", dev, session, seq, name), apply: func(s fleet.Store) error {
			_, err := f(s)
			return err
		}})
	}
	controls := []string{"c.sign", "c.raw", "c.egress", "c.minor"}
	severities := map[string]string{"c.sign": "high", "c.raw": "critical", "c.egress": "medium", "c.minor": "low"}
	open := map[string]bool{} // the agent's own view, persisted across restarts
	var auditSeq uint64
	evaluate := func() {
		nextOpen := map[string]bool{}
		for _, c := range controls {
			if r.IntN(3) == 0 {
				nextOpen[c] = true
			}
		}
		for _, c := range controls {
			switch {
			case nextOpen[c] && !open[c]:
				ev := opened(dev, session, next(), c, severities[c])
				add("opened "+c, func(s fleet.Store) (bool, error) { return s.AddEvent(ctx, ev, recv(ev.Envelope)) })
			case !nextOpen[c] && open[c]:
				ev := closed(dev, session, next(), c)
				add("closed "+c, func(s fleet.Store) (bool, error) { return s.AddEvent(ctx, ev, recv(ev.Envelope)) })
			}
		}
		open = nextOpen
		if r.IntN(3) == 0 {
			ev := action(dev, session, next(), "delete_raw_captures")
			add("action", func(s fleet.Store) (bool, error) { return s.AddEvent(ctx, ev, recv(ev.Envelope)) })
		}
		var fs []wire.Failing
		for _, c := range controls {
			if open[c] {
				fs = append(fs, failing(c, severities[c]))
			}
		}
		c := compliance(dev, session, next(), fs...)
		auditSeq += uint64(1 + r.IntN(3))
		c.Audit = wire.AuditHead{Seq: auditSeq, Hash: fmt.Sprintf("%s-%d", dev, auditSeq)}
		add("compliance", func(s fleet.Store) (bool, error) { return s.ApplyCompliance(ctx, c, recv(c.Envelope)) })
		if r.IntN(4) == 0 {
			sub := subjects(dev, session, next(), r.IntN(500))
			add("subjects", func(s fleet.Store) (bool, error) { return s.ApplySubjects(ctx, sub, recv(sub.Envelope)) })
		}
	}
	connect := func() {
		on := online(dev, session, next())
		add("online", func(s fleet.Store) (bool, error) { return s.ApplyState(ctx, on, recv(on.Envelope)) })
		b := birth(dev, session, next(), fmt.Sprintf("site-%d", r.IntN(3)))
		add("birth", func(s fleet.Store) (bool, error) { return s.ApplyBirth(ctx, b, recv(b.Envelope)) })
		now := recv(b.Envelope)
		out = append(out, delivery{name: dev + " pending", apply: func(s fleet.Store) error {
			_, err := s.PendingFor(ctx, dev, now)
			return err
		}})
	}
	answer := func(cmd string) {
		acc := result(dev, session, next(), cmd, wire.ResultAccepted)
		add("accepted "+cmd, func(s fleet.Store) (bool, error) { return s.AddResult(ctx, acc, recv(acc.Envelope)) })
		done := result(dev, session, next(), cmd, wire.ResultSucceeded)
		add("succeeded "+cmd, func(s fleet.Store) (bool, error) { return s.AddResult(ctx, done, recv(done.Envelope)) })
	}

	session, seq = 1, 0
	connect()
	for i := 0; i < 4; i++ {
		evaluate()
	}
	answer("c-all")
	// The broker loses the device and publishes its last will; it reconnects without restarting.
	will := lwt(dev, session)
	add("lwt", func(s fleet.Store) (bool, error) {
		return s.ApplyState(ctx, will, recv(will.Envelope).Add(time.Second))
	})
	connect()
	evaluate()

	// A restart: a new session.
	session, seq = 2, 0
	if regress { // and an audit chain cut short
		auditSeq /= 2
	}
	connect()
	for i := 0; i < 4; i++ {
		evaluate()
	}
	answer("c-" + dev)
	off := state(dev, session, next(), wire.StateOffline, "shutdown")
	add("shutdown", func(s fleet.Store) (bool, error) { return s.ApplyState(ctx, off, recv(off.Envelope)) })
	return out
}

// fleetState is everything a store answers about a fleet, normalised: event ids are the order rows were
// inserted in, which differs from run to run.
type fleetState struct {
	Overview   fleet.Overview
	Devices    []fleet.Device
	Violations []fleet.Violation
	History    map[string][]fleet.ComplianceRecord
	Events     []fleet.Event
	Commands   []fleet.CommandSummary
	Results    map[string][]fleet.CommandResult
	Sketches   []fleet.Sketch
}

func dump(t *testing.T, s fleet.Store) fleetState {
	t.Helper()
	var st fleetState
	var err error
	if st.Overview, err = s.Overview(ctx); err != nil {
		t.Fatal(err)
	}
	if st.Devices, _, err = s.Devices(ctx, fleet.DeviceQuery{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	if st.Violations, _, err = s.OpenViolations(ctx, fleet.ViolationQuery{Limit: 1000}); err != nil {
		t.Fatal(err)
	}
	st.History = map[string][]fleet.ComplianceRecord{}
	for _, d := range st.Devices {
		if st.History[d.ID], err = s.History(ctx, d.ID, time.Time{}, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if st.Events, err = s.Events(ctx, "", nil, time.Time{}, 1000); err != nil {
		t.Fatal(err)
	}
	for i := range st.Events {
		st.Events[i].ID = 0
	}
	sort.Slice(st.Events, func(i, j int) bool {
		a, b := st.Events[i], st.Events[j]
		if a.Dev != b.Dev {
			return a.Dev < b.Dev
		}
		if a.Session != b.Session {
			return a.Session < b.Session
		}
		return a.Seq < b.Seq
	})
	if st.Commands, _, err = s.Commands(ctx, 0, 1000); err != nil {
		t.Fatal(err)
	}
	st.Results = map[string][]fleet.CommandResult{}
	for _, c := range st.Commands {
		if _, st.Results[c.ID], err = s.Command(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if st.Sketches, err = s.Sketches(ctx); err != nil {
		t.Fatal(err)
	}
	return st
}

// RunConcurrent checks that two controllers, each with its own handle on one database, applying the same
// messages at once (as they do with retained topics, and with redeliveries) leave the store as applying
// them once does: no errors, no duplicate events or history rows, the same devices, violations and
// command results. openPair returns two handles on one fresh database, closed when the test ends.
func RunConcurrent(t *testing.T, openPair func(t *testing.T) (fleet.Store, fleet.Store)) {
	const devices = 12
	var streams [][]delivery
	totalEvents, totalSummaries := 0, 0
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < devices; i++ {
		stream := deviceStream(r, fmt.Sprintf("dev-%02d", i), i%5 == 0)
		streams = append(streams, stream)
		for _, d := range stream {
			switch {
			case containsAny(d.name, " opened ", " closed ", " action"):
				totalEvents++
			case containsAny(d.name, " compliance"):
				totalSummaries++
			}
		}
	}
	setup := func(t *testing.T, s fleet.Store) {
		t.Helper()
		// A fleet command the first half of the devices were known for; the others join later and get it
		// from PendingFor. A per-device command for each. One that expires before anyone answers.
		var half []string
		for i := 0; i < devices/2; i++ {
			half = append(half, fmt.Sprintf("dev-%02d", i))
		}
		create(t, s, command("c-all", wire.Broadcast, t0, 7*24*time.Hour), half...)
		create(t, s, command("c-short", wire.Broadcast, t0, time.Minute), half...)
		for i := 0; i < devices; i++ {
			dev := fmt.Sprintf("dev-%02d", i)
			create(t, s, command("c-"+dev, dev, t0, 7*24*time.Hour), dev)
		}
	}
	expireAt := t0.Add(48 * time.Hour)

	// The reference: every message once, in order.
	ref, _ := openPair(t)
	setup(t, ref)
	for _, stream := range streams {
		for _, d := range stream {
			if err := d.apply(ref); err != nil {
				t.Fatalf("%s: %v", d.name, err)
			}
		}
	}
	if _, err := ref.ExpireCommands(ctx, expireAt); err != nil {
		t.Fatal(err)
	}
	want := dump(t, ref)
	if len(want.Events) != totalEvents {
		t.Fatalf("reference: %d events, the stream has %d", len(want.Events), totalEvents)
	}
	n := 0
	for _, h := range want.History {
		n += len(h)
	}
	if n != totalSummaries {
		t.Fatalf("reference: %d history rows, the stream has %d", n, totalSummaries)
	}

	// Two controllers: each gets every message, each device's in order (MQTT keeps a publisher's order),
	// the devices interleaved differently, and some messages twice.
	a, b := openPair(t)
	setup(t, a)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []fleet.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i+10), 7))
			pos := make([]int, len(streams))
			left := 0
			for _, st := range streams {
				left += len(st)
			}
			for left > 0 {
				k := r.IntN(len(streams))
				for pos[k] == len(streams[k]) {
					k = (k + 1) % len(streams)
				}
				d := streams[k][pos[k]]
				times := 1
				if r.IntN(10) == 0 {
					times = 2 // a redelivery
				}
				for ; times > 0; times-- {
					if err := d.apply(s); err != nil {
						errs <- fmt.Errorf("controller %d: %s: %w", i, d.name, err)
						return
					}
				}
				pos[k]++
				left--
			}
			if _, err := s.ExpireCommands(ctx, expireAt); err != nil {
				errs <- fmt.Errorf("controller %d: expire: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for i, s := range []fleet.Store{a, b} {
		got := dump(t, s)
		compareStates(t, fmt.Sprintf("through handle %d", i), got, want)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func compareStates(t *testing.T, what string, got, want fleetState) {
	t.Helper()
	equal(t, what+": overview", got.Overview, want.Overview)
	equal(t, what+": device count", len(got.Devices), len(want.Devices))
	for i := range want.Devices {
		equal(t, what+": device "+want.Devices[i].ID, got.Devices[i], want.Devices[i])
	}
	equal(t, what+": open violations", got.Violations, want.Violations)
	for dev, h := range want.History {
		equal(t, what+": history of "+dev, got.History[dev], h)
	}
	equal(t, what+": event count", len(got.Events), len(want.Events))
	for i := range want.Events {
		equal(t, what+": event", got.Events[i], want.Events[i])
	}
	equal(t, what+": commands", got.Commands, want.Commands)
	equal(t, what+": command results", got.Results, want.Results)
	equal(t, what+": sketches", got.Sketches, want.Sketches)
}
