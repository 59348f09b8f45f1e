package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/faceguard/faceguard/internal/clock"
)

var t0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

// openTest opens a store in a fresh directory with a fake clock; it is closed when the test ends.
func openTest(t testing.TB, opts Options) (*Store, string, *clock.Fake) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.db")
	fake := clock.NewFake(t0)
	if opts.Clock == nil {
		opts.Clock = fake
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path, fake
}

// rawDB is a second, independent connection to the file: what someone with the file and the sqlite3 shell
// could do behind the agent's back.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// tamper runs statements on a raw connection after dropping the append-only triggers, as an attacker would.
func tamper(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db := rawDB(t, path)
	for _, q := range append([]string{`DROP TRIGGER IF EXISTS audit_no_update`, `DROP TRIGGER IF EXISTS audit_no_delete`}, stmts...) {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// appendN appends n entries, one transaction each, moving the clock a little between them.
func appendN(t testing.TB, s *Store, fake *clock.Fake, n int) []AuditEntry {
	t.Helper()
	var out []AuditEntry
	for i := 0; i < n; i++ {
		if fake != nil {
			fake.Advance(1500 * time.Millisecond)
		}
		err := s.Tx(context.Background(), func(tx *Tx) error {
			e, err := tx.Append("decision", map[string]any{"n": i, "status": "compliant", "note": "<ok> & done"})
			out = append(out, e)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func mustTx(t testing.TB, s *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := s.Tx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}
