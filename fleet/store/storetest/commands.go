package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

func create(t *testing.T, s fleet.Store, c fleet.Command, targets ...string) {
	t.Helper()
	if err := s.CreateCommand(ctx, c, targets); err != nil {
		t.Fatalf("create %s: %v", c.ID, err)
	}
}

func pendingIDs(t *testing.T, s fleet.Store, dev string, now time.Time) []string {
	t.Helper()
	cmds, err := s.PendingFor(ctx, dev, now)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cmds {
		out = append(out, c.ID)
	}
	return out
}

func statuses(t *testing.T, s fleet.Store, id string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for dev, r := range commandResults(t, s, id) {
		out[dev] = r.Status
	}
	return out
}

var commandScenarios = []scenario{
	{"create_and_read", func(t *testing.T, s fleet.Store) {
		c := command("c1", wire.Broadcast, at(0), time.Hour)
		create(t, s, c, "d2", "d1", "d1")
		got, results, err := s.Command(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "command", []any{got.ID, got.Type, got.Target, string(got.Args), got.CreatedBy},
			[]any{c.ID, c.Type, c.Target, string(c.Args), c.CreatedBy})
		sameTime(t, "issued", got.IssuedAt, c.IssuedAt)
		sameTime(t, "expires", got.ExpiresAt, c.ExpiresAt)
		if !bytes.Equal(got.Payload, c.Payload) {
			t.Fatalf("payload %q, want %q", got.Payload, c.Payload)
		}
		equal(t, "results, by device, once each", len(results), 2)
		equal(t, "first", []string{results[0].CommandID, results[0].Dev, results[0].Status}, []string{"c1", "d1", fleet.CommandPending})
		equal(t, "second", results[1].Dev, "d2")
		_, _, err = s.Command(ctx, "nope")
		notFound(t, "unknown command", err)
	}},
	{"duplicate_command_id_refused", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", "d1", at(0), time.Hour), "d1")
		if err := s.CreateCommand(ctx, command("c1", "d2", at(1), time.Hour), []string{"d2"}); err == nil {
			t.Fatal("a second command with the same id was accepted")
		}
		equal(t, "results untouched", statuses(t, s, "c1"), map[string]string{"d1": fleet.CommandPending})
	}},
	{"broadcast_pending_for_new_device", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", wire.Broadcast, at(0), time.Hour), "d1")
		create(t, s, command("c2", "d1", at(1), time.Hour), "d1")
		equal(t, "the known device", pendingIDs(t, s, "d1", at(10)), []string{"c1", "c2"})
		equal(t, "a device that joined later", pendingIDs(t, s, "d9", at(10)), []string{"c1"})
		equal(t, "tracked", statuses(t, s, "c1"), map[string]string{"d1": fleet.CommandPending, "d9": fleet.CommandPending})
		equal(t, "asked again", pendingIDs(t, s, "d9", at(11)), []string{"c1"})
		equal(t, "still one row each", len(commandResults(t, s, "c1")), 2)
	}},
	{"pending_for_skips_expired_and_answered", func(t *testing.T, s fleet.Store) {
		create(t, s, command("old", wire.Broadcast, at(0), time.Minute), "d1")
		create(t, s, command("done", "d1", at(1), time.Hour), "d1")
		create(t, s, command("busy", "d1", at(2), time.Hour), "d1")
		create(t, s, command("todo", "d1", at(3), time.Hour), "d1")
		ok, err := s.AddResult(ctx, result("d1", 1, 1, "done", wire.ResultSucceeded), at(4))
		want(t, "done", ok, err, true)
		ok, err = s.AddResult(ctx, result("d1", 1, 2, "busy", wire.ResultAccepted), at(5))
		want(t, "busy", ok, err, true)
		now := at(0).Add(2 * time.Minute)
		equal(t, "pending and accepted, unexpired, oldest first", pendingIDs(t, s, "d1", now), []string{"busy", "todo"})
		equal(t, "an expired fleet command is not added", pendingIDs(t, s, "d9", now), []string(nil))
		equal(t, "no row for the newcomer", statuses(t, s, "old"), map[string]string{"d1": fleet.CommandPending})
		equal(t, "expiry is exclusive", pendingIDs(t, s, "d1", at(0).Add(time.Hour+3*time.Second)), []string(nil))
	}},
	{"expire_commands", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", wire.Broadcast, at(0), time.Minute), "d1", "d2", "d3", "d4")
		create(t, s, command("c2", "d1", at(0), time.Hour), "d1")
		ok, err := s.AddResult(ctx, result("d2", 1, 1, "c1", wire.ResultAccepted), at(1))
		want(t, "accepted", ok, err, true)
		ok, err = s.AddResult(ctx, result("d3", 1, 1, "c1", wire.ResultSucceeded), at(1))
		want(t, "succeeded", ok, err, true)
		ok, err = s.AddResult(ctx, result("d4", 1, 1, "c1", wire.ResultRejected), at(1))
		want(t, "rejected", ok, err, true)
		n, err := s.ExpireCommands(ctx, at(59))
		if err != nil || n != 0 {
			t.Fatalf("before expiry: %d, %v", n, err)
		}
		n, err = s.ExpireCommands(ctx, at(60))
		if err != nil || n != 2 {
			t.Fatalf("at expiry: %d timed out, %v; want 2", n, err)
		}
		equal(t, "c1", statuses(t, s, "c1"), map[string]string{"d1": fleet.CommandTimedOut, "d2": fleet.CommandTimedOut,
			"d3": wire.ResultSucceeded, "d4": wire.ResultRejected})
		sameTime(t, "timed out at", commandResults(t, s, "c1")["d1"].UpdatedAt, at(60))
		equal(t, "c2 untouched", statuses(t, s, "c2"), map[string]string{"d1": fleet.CommandPending})
		n, err = s.ExpireCommands(ctx, at(61))
		if err != nil || n != 0 {
			t.Fatalf("again: %d, %v", n, err)
		}
	}},
	{"commands_paging_newest_first_with_counts", func(t *testing.T, s fleet.Store) {
		for i := 1; i <= 7; i++ {
			create(t, s, command(fmt.Sprintf("c%d", i), wire.Broadcast, at(i), time.Hour), "d1", "d2", "d3")
		}
		ok, err := s.AddResult(ctx, result("d1", 1, 1, "c7", wire.ResultSucceeded), at(10))
		want(t, "result", ok, err, true)
		ok, err = s.AddResult(ctx, result("d2", 1, 2, "c7", wire.ResultAccepted), at(10))
		want(t, "result", ok, err, true)
		page, total, err := s.Commands(ctx, 0, 3)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "total", total, 7)
		var got []string
		for _, c := range page {
			got = append(got, c.ID)
		}
		equal(t, "newest first", got, []string{"c7", "c6", "c5"})
		equal(t, "counts", page[0].Results, map[string]int{fleet.CommandPending: 1, wire.ResultAccepted: 1, wire.ResultSucceeded: 1})
		equal(t, "total results", page[0].Total, 3)
		equal(t, "counts", page[1].Results, map[string]int{fleet.CommandPending: 3})
		page, total, err = s.Commands(ctx, 6, 0)
		if err != nil || total != 7 || len(page) != 1 || page[0].ID != "c1" {
			t.Fatalf("last page: %+v, %d, %v", page, total, err)
		}
		page, _, err = s.Commands(ctx, 10, 0)
		if err != nil || len(page) != 0 {
			t.Fatalf("past the end: %+v, %v", page, err)
		}
	}},
}

var resultScenarios = []scenario{
	{"result_moves_forward", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", "d1", at(0), time.Hour), "d1")
		ok, err := s.AddResult(ctx, result("d1", 1, 1, "c1", wire.ResultAccepted), at(1))
		want(t, "accepted", ok, err, true)
		equal(t, "status", statuses(t, s, "c1")["d1"], wire.ResultAccepted)
		r := result("d1", 1, 2, "c1", wire.ResultSucceeded)
		r.Duplicate = true
		ok, err = s.AddResult(ctx, r, at(2))
		want(t, "succeeded", ok, err, true)
		got := commandResults(t, s, "c1")["d1"]
		equal(t, "result", []any{got.Status, string(got.Result), got.Duplicate, got.Reason},
			[]any{wire.ResultSucceeded, `{"ok":true}`, true, ""})
		sameTime(t, "updated", got.UpdatedAt, at(2))
	}},
	{"final_result_not_regressed", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", "d1", at(0), time.Hour), "d1")
		ok, err := s.AddResult(ctx, result("d1", 1, 2, "c1", wire.ResultSucceeded), at(1))
		want(t, "succeeded", ok, err, true)
		ok, err = s.AddResult(ctx, result("d1", 1, 1, "c1", wire.ResultAccepted), at(2))
		want(t, "accepted, delivered late", ok, err, false)
		ok, err = s.AddResult(ctx, result("d1", 1, 3, "c1", wire.ResultAccepted), at(3))
		want(t, "accepted, newer", ok, err, false)
		ok, err = s.AddResult(ctx, result("d1", 1, 4, "c1", wire.ResultRejected), at(4))
		want(t, "another final (a duplicate delivery rejected)", ok, err, false)
		equal(t, "status", statuses(t, s, "c1")["d1"], wire.ResultSucceeded)
	}},
	{"duplicate_result_ignored", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", "d1", at(0), time.Hour), "d1")
		r := result("d1", 1, 1, "c1", wire.ResultAccepted)
		ok, err := s.AddResult(ctx, r, at(1))
		want(t, "first", ok, err, true)
		ok, err = s.AddResult(ctx, r, at(2))
		want(t, "redelivered", ok, err, false)
		sameTime(t, "updated once", commandResults(t, s, "c1")["d1"].UpdatedAt, at(1))
	}},
	{"unknown_command_ignored", func(t *testing.T, s fleet.Store) {
		ok, err := s.AddResult(ctx, result("d1", 1, 1, "nope", wire.ResultSucceeded), at(1))
		want(t, "unknown", ok, err, false)
		_, err = s.Device(ctx, "d1")
		notFound(t, "no device from an ignored result", err)
	}},
	{"result_from_non_target_ignored", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", "d1", at(0), time.Hour), "d1")
		ok, err := s.AddResult(ctx, result("d2", 1, 1, "c1", wire.ResultRejected), at(1))
		want(t, "another device", ok, err, false)
		equal(t, "results", statuses(t, s, "c1"), map[string]string{"d1": fleet.CommandPending})
	}},
	{"broadcast_result_from_unlisted_device", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", wire.Broadcast, at(0), time.Hour), "d1")
		ok, err := s.AddResult(ctx, result("d5", 1, 1, "c1", wire.ResultSucceeded), at(1))
		want(t, "a device that joined after the command", ok, err, true)
		equal(t, "results", statuses(t, s, "c1"), map[string]string{"d1": fleet.CommandPending, "d5": wire.ResultSucceeded})
		sameTime(t, "device seen", device(t, s, "d5").LastSeen, at(1))
	}},
	{"late_final_replaces_timed_out", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", wire.Broadcast, at(0), time.Minute), "d1", "d2")
		if n, err := s.ExpireCommands(ctx, at(120)); err != nil || n != 2 {
			t.Fatalf("expire: %d, %v", n, err)
		}
		ok, err := s.AddResult(ctx, result("d1", 1, 1, "c1", wire.ResultAccepted), at(121))
		want(t, "accepted after the timeout", ok, err, false)
		ok, err = s.AddResult(ctx, result("d1", 1, 2, "c1", wire.ResultSucceeded), at(122))
		want(t, "succeeded after the timeout", ok, err, true)
		equal(t, "results", statuses(t, s, "c1"), map[string]string{"d1": wire.ResultSucceeded, "d2": fleet.CommandTimedOut})
	}},
	{"unknown_status_refused", func(t *testing.T, s fleet.Store) {
		create(t, s, command("c1", "d1", at(0), time.Hour), "d1")
		// Malformed: the controller drops it rather than have it delivered again.
		ok, err := s.AddResult(ctx, result("d1", 1, 1, "c1", "done"), at(1))
		if !errors.Is(err, wire.ErrMessage) || ok {
			t.Fatalf("status %q: %v, %v; want wire.ErrMessage", "done", ok, err)
		}
		equal(t, "results", statuses(t, s, "c1"), map[string]string{"d1": fleet.CommandPending})
	}},
}

var bundleScenarios = []scenario{
	{"bundle_round_trip", func(t *testing.T, s fleet.Store) {
		b := fleet.Bundle{Revision: "rev-1", SHA256: "abc", Size: 5, ChunkSHA256: []string{"c1", "c2"},
			Data: []byte{0, 1, 2, 0xff, 4}, CreatedAt: at(3)}
		if err := s.PutBundle(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := s.Bundle(ctx, "rev-1")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Data, b.Data) {
			t.Fatalf("data %x, want %x", got.Data, b.Data)
		}
		equal(t, "bundle", []any{got.Revision, got.SHA256, got.Size, got.ChunkSHA256}, []any{b.Revision, b.SHA256, b.Size, b.ChunkSHA256})
		sameTime(t, "created", got.CreatedAt, b.CreatedAt)
		_, err = s.Bundle(ctx, "rev-2")
		notFound(t, "unknown revision", err)
	}},
	{"bundle_put_again", func(t *testing.T, s fleet.Store) {
		b := fleet.Bundle{Revision: "rev-1", SHA256: "abc", Size: 1, Data: []byte{1}, CreatedAt: at(1)}
		if err := s.PutBundle(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.PutBundle(ctx, b); err != nil {
			t.Fatalf("the same bundle again: %v", err)
		}
		other := b
		other.SHA256, other.Data = "def", []byte{2}
		if err := s.PutBundle(ctx, other); err == nil || errors.Is(err, fleet.ErrNotFound) {
			t.Fatalf("other content under a stored revision: %v", err)
		}
		got, _ := s.Bundle(ctx, "rev-1")
		equal(t, "kept", got.SHA256, "abc")
	}},
}
