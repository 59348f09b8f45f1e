package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/wire"
)

// lastResult returns the last answer the agent queued for a command id.
func (ta *testAgent) lastResult(t *testing.T, id string, before agentState) wire.Result {
	t.Helper()
	var last *wire.Result
	for _, r := range ta.newOutbox(t, before) {
		var res wire.Result
		if r.Topic == wire.ResultTopic(fuzzDev, id) && json.Unmarshal(r.Payload, &res) == nil {
			last = &res
		}
	}
	if last == nil {
		t.Fatalf("no answer to %s", id)
	}
	return *last
}

func (ta *testAgent) receipts(t *testing.T) int {
	t.Helper()
	entries, err := ta.st.Entries(context.Background(), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Kind == "receipt" {
			n++
		}
	}
	return n
}

func (ta *testAgent) enrolled(t *testing.T, ref string) bool {
	t.Helper()
	db := ta.gallery(t)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM subjects WHERE subject_ref = ?`, ref).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func (ta *testAgent) gallery(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(ta.root, filepath.FromSlash(fsterm.GalleryPath))+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestReplayAfterJournalPruneIsRefusedAsExpired: a day after a command expired the agent forgets it (the
// journal is bounded), and the command's validity window is then what refuses a replay. A forget-subject
// captured on the wire and replayed after the person enrolled again must not delete them.
func TestReplayAfterJournalPruneIsRefusedAsExpired(t *testing.T) {
	ta := startTestAgent(t, "residential-gate")
	forget := ta.sign(t, fuzzCommand("forget-replay", wire.CmdForgetSubject, fuzzDev, fuzzNow,
		`{"subject_hash":"`+wire.SubjectHash(ta.subKey, "s-0001")+`"}`))
	topic := wire.CommandTopic(fuzzDev, wire.CmdForgetSubject)
	before := ta.state(t)
	if !ta.deliver(t, topic, forget) {
		t.Fatal("not acknowledged")
	}
	if status := ta.waitFinal(t, "forget-replay"); status != wire.ResultSucceeded {
		t.Fatalf("forget: %s", status)
	}
	if r := ta.lastResult(t, "forget-replay", before); !strings.Contains(string(r.Result), `"deleted":1`) {
		t.Fatalf("forget answered %s", r.Result)
	}
	ta.settle(t)
	if ta.enrolled(t, "s-0001") || ta.receipts(t) != 1 {
		t.Fatalf("s-0001 enrolled %v after the forget, %d receipts", ta.enrolled(t, "s-0001"), ta.receipts(t))
	}

	// The person comes back and consents again.
	db := ta.gallery(t)
	for _, q := range []string{
		`INSERT INTO subjects VALUES ('s-0001', x'706c616365686f6c646572', 'adult', 'device', '2026-11-24T10:30:00+08:00', NULL)`,
		`INSERT INTO consents (subject_ref, basis, guardian_ref, granted_at) VALUES ('s-0001', 'separate', NULL, '2026-11-24T10:29:00+08:00')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	// A day and more after the command expired, an evaluation prunes the journal.
	ta.clock.Advance(26 * time.Hour)
	ta.settle(t)
	var kept int
	if err := ta.db.QueryRow(`SELECT count(*) FROM commands WHERE id = 'forget-replay'`).Scan(&kept); err != nil || kept != 0 {
		t.Fatalf("the journal still holds the command (%d, %v): the test would prove nothing", kept, err)
	}

	before = ta.state(t)
	if !ta.deliver(t, topic, forget) {
		t.Fatal("the replay was not acknowledged: the broker would deliver it again and again")
	}
	r := ta.lastResult(t, "forget-replay", before)
	if r.Status != wire.ResultRejected || r.Duplicate || !strings.Contains(r.Reason, "expired") {
		t.Fatalf("the replay was answered %+v", r)
	}
	ta.settle(t)
	if !ta.enrolled(t, "s-0001") || ta.receipts(t) != 1 {
		t.Fatalf("the replay deleted the person enrolled again (enrolled %v, %d receipts)", ta.enrolled(t, "s-0001"), ta.receipts(t))
	}
}

// TestMisaddressedCommandsRefused: commands signed by the controller's key, but for someone else or on
// the wrong topic, are refused with a reason and run nowhere.
func TestMisaddressedCommandsRefused(t *testing.T) {
	ta := startTestAgent(t, "residential-gate")
	args := `{"subject_hash":"` + wire.SubjectHash(ta.subKey, "s-0002") + `"}`
	for _, tc := range []struct {
		name, topic, dev, reason string
	}{
		// A broadcast is signed with dev "*" for the broadcast topic; on a device's topic it is refused,
		// so a fleet command cannot be re-aimed at one device.
		{"broadcast_on_device_topic", wire.CommandTopic(fuzzDev, wire.CmdForgetSubject), wire.Broadcast, "another device"},
		{"device_command_on_broadcast_topic", wire.BroadcastTopic(wire.CmdForgetSubject), fuzzDev, "another device"},
		{"for_this_device_on_another_topic", wire.CommandTopic("dev-2", wire.CmdForgetSubject), fuzzDev, "another device"},
		{"for_another_device_on_its_topic", wire.CommandTopic("dev-2", wire.CmdForgetSubject), "dev-2", "another device"},
		{"for_another_device_on_this_topic", wire.CommandTopic(fuzzDev, wire.CmdForgetSubject), "dev-2", "another device"},
		{"type_not_the_topics", wire.CommandTopic(fuzzDev, wire.CmdReevaluate), fuzzDev, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, "_", "-")
			before := ta.state(t)
			if !ta.deliver(t, tc.topic, ta.sign(t, fuzzCommand(id, wire.CmdForgetSubject, tc.dev, fuzzNow, args))) {
				t.Fatal("not acknowledged")
			}
			r := ta.lastResult(t, id, before)
			if r.Status != wire.ResultRejected || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("answered %+v", r)
			}
			if after := ta.state(t); after.journal != before.journal || !ta.enrolled(t, "s-0002") || ta.receipts(t) != 0 {
				t.Fatal("the refused command ran")
			}
		})
	}
}
