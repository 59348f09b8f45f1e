package agent

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/wire"
)

// TestLargePurgeReceiptsFitTheWire: a purge of thousands of subjects at once (a mass withdrawal, a
// retention period that ran out for a whole office) is reported with every receipt, in messages the
// broker and the controller take: none over wire.MaxPayload, which Mosquitto drops with a PUBACK
// (message_size_limit) and the controller refuses as malformed — the receipts would be lost.
func TestLargePurgeReceiptsFitTheWire(t *testing.T) {
	const withdrawn = 5000
	ta := startTestAgentOn(t, "residential-gate", func(root string) {
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(root, filepath.FromSlash(fsterm.GalleryPath)))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		at := fuzzNow.Add(-2 * time.Hour).Format(time.RFC3339)
		for i := range withdrawn {
			ref := fmt.Sprintf("w-%05d", i)
			if _, err := tx.Exec(`INSERT INTO subjects VALUES (?, x'00', 'adult', 'device', '2026-01-01T00:00:00Z', NULL)`, ref); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(`INSERT INTO consents (subject_ref, basis, granted_at, withdrawn_at) VALUES (?, 'separate', '2026-01-01T00:00:00Z', ?)`, ref, at); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	})
	rows, err := ta.st.Pending(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	receipts := 0
	for _, r := range rows {
		if len(r.Payload) > wire.MaxPayload {
			t.Errorf("%s: a message of %d bytes, over wire.MaxPayload (%d)", r.Topic, len(r.Payload), wire.MaxPayload)
		}
		var e wire.Event
		if r.Topic == wire.EventTopic(fuzzDev) && json.Unmarshal(r.Payload, &e) == nil && e.Kind == wire.EventReceipt {
			receipts += len(e.Receipts)
			if e.Count != len(e.Receipts) {
				t.Errorf("a receipt event counts %d for %d receipts", e.Count, len(e.Receipts))
			}
		}
	}
	if receipts != withdrawn {
		t.Fatalf("%d receipts reported for %d subjects purged", receipts, withdrawn)
	}
}
