package fsterm

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/faceguard/faceguard/wire"
)

// benchGallery is a gallery of n subjects, each with one or two consents rows and every tenth one
// quarantined, laid out exactly as docs/terminal.md (so without an index on consents.subject_ref
// unless withIndex).
func benchGallery(b *testing.B, n int, withIndex bool) string {
	b.Helper()
	root := actionRoot(b, quarantineTable+";", 365)
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(root, GalleryPath))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		ref := fmt.Sprintf("s-%06d", i)
		enrolled := ago(time.Duration(i%300) * day)
		mustExec(b, tx, `INSERT INTO subjects VALUES (?, ?, 'adult', 'device', ?, NULL)`, ref, []byte("template-placeholder"), enrolled)
		mustExec(b, tx, `INSERT INTO consents VALUES (?, ?, 'separate', NULL, ?, NULL)`, 2*i+1, ref, enrolled)
		if i%3 == 0 {
			mustExec(b, tx, `INSERT INTO consents VALUES (?, ?, 'separate', NULL, ?, NULL)`, 2*i+2, ref, ago(time.Hour))
		}
		if i%10 == 0 {
			mustExec(b, tx, `INSERT INTO faceguard_quarantine VALUES (?, 'operator', ?)`, ref, ago(day))
		}
	}
	if withIndex {
		mustExec(b, tx, `CREATE INDEX consents_subject ON consents (subject_ref)`)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return root
}

func mustExec(b *testing.B, tx *sql.Tx, query string, args ...any) {
	b.Helper()
	if _, err := tx.Exec(query, args...); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkLookupSubject measures the local decision API's gallery read on a 10,000-subject gallery:
// laid out exactly as the contract says (no index on consents.subject_ref, rollback journal), with that
// index, and with it in WAL mode, which is how a terminal that matches often should keep its gallery.
func BenchmarkLookupSubject(b *testing.B) {
	for _, tc := range []struct {
		name      string
		withIndex bool
		wal       bool
	}{
		{"contract_schema", false, false},
		{"consents_subject_index", true, false},
		{"consents_subject_index_wal", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			root := benchGallery(b, 10_000, tc.withIndex)
			if tc.wal {
				execGallery(b, filepath.Join(root, GalleryPath), "PRAGMA journal_mode=WAL")
			}
			term := actionTerminal(b, root)
			ctx := context.Background()
			refs := make([]string, 10_000)
			for i := range refs {
				refs[i] = fmt.Sprintf("s-%06d", i)
			}
			if m, err := term.LookupSubject(ctx, refs[42]); err != nil || !m.Found {
				b.Fatalf("lookup: %+v %v", m, err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := term.LookupSubject(ctx, refs[i%len(refs)]); err != nil {
					b.Fatal(err)
				}
				i += 7919
			}
		})
	}
}

// BenchmarkForgetSubject measures forget-subject on a 100,000-subject gallery (the contract's scale):
// every reference hashed under the fleet key, then one subject deleted with its receipt.
func BenchmarkForgetSubject(b *testing.B) {
	const n = 100_000
	term := actionTerminal(b, benchGallery(b, n, false))
	ctx := context.Background()
	i := 0
	for b.Loop() {
		out, err := term.ForgetSubject(ctx, wire.SubjectHash(testKey, fmt.Sprintf("s-%06d", (i*7919)%n)), "bench")
		if err != nil || out.Count != 1 {
			b.Fatalf("%+v, %v", out, err)
		}
		i++
	}
}
