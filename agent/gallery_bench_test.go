package agent_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
)

// BenchmarkGallerySize is the cost of judging a terminal as its gallery grows (DESIGN §11 sets no
// limit; BENCHMARKS.md shows the curve): a real agent runs on the residential gate whose gallery.db holds
// N subjects in all, and
//
//   - decide gathers the facts from the terminal (the files read, the gallery's count kept from the
//     last evaluation while the gallery is unchanged) and takes the full-pack decision on them, as every
//     evaluation of the agent does before it records;
//   - recount is the same after the terminal software wrote to the gallery (a match's last_used_at,
//     which changes no count), so the gallery is counted again, subject by subject; the write is not timed;
//   - match is the agent's match decision for one subject after another across the gallery, measured
//     before recount so that no evaluation the writes caused runs beside it.
func BenchmarkGallerySize(b *testing.B) {
	for _, n := range []int{100, 1000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("subjects_%d", n), func(b *testing.B) {
			h := startWithGallery(b, n-fixtureSubjects(b), harnessOpts{})
			ctx := context.Background()
			waitUntil(b, "a first decision", func() bool { _, _, ok := h.agent.Snapshot(); return ok })
			eng, err := engine.New(ctx, engine.Options{})
			if err != nil {
				b.Fatal(err)
			}
			decide := func(b *testing.B, write func()) {
				lat := make([]time.Duration, 0, 1024)
				b.ReportAllocs()
				for b.Loop() {
					write()
					t0 := time.Now()
					f, err := h.term.Facts(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if f.Subjects.Count != n {
						b.Fatalf("the facts count %d subjects, want %d (unknown: %v)", f.Subjects.Count, n, f.Unknown)
					}
					if _, err := eng.Decide(ctx, &f); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				benchPercentiles(b, lat)
			}
			// Filling the gallery made the running agent count it again: let that evaluation finish, so
			// that decide and match measure a terminal at rest (recount, which writes, comes last).
			if err := h.agent.EvaluateNow(ctx, "benchmark"); err != nil {
				b.Fatal(err)
			}
			b.Run("decide", func(b *testing.B) { decide(b, func() {}) })
			b.Run("match", func(b *testing.B) {
				lat := make([]time.Duration, 0, 1024)
				extra := n - fixtureSubjects(b)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					ref := fmt.Sprintf("bulk-%06d", (i*7919)%extra) // spread over the gallery, not one hot row
					i++
					t0 := time.Now()
					r, err := h.agent.Match(ctx, ref)
					lat = append(lat, time.Since(t0))
					if err != nil || !r.Allow {
						b.Fatalf("%s: %+v %v", ref, r, err)
					}
				}
				benchPercentiles(b, lat)
			})
			b.Run("recount", func(b *testing.B) {
				db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.root, "var/lib/terminal/gallery.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				// What a terminal writes on each recognition: when the subject was last matched.
				decide(b, func() {
					res, err := db.Exec(`UPDATE subjects SET last_used_at = ? WHERE subject_ref = (SELECT min(subject_ref) FROM subjects)`,
						time.Now().UTC().Format(time.RFC3339Nano))
					if n, _ := res.RowsAffected(); err != nil || n != 1 {
						b.Fatalf("write to the gallery: %d rows, %v", n, err)
					}
				})
			})
		})
	}
}

// fixtureSubjects is how many subjects the residential gate's gallery holds before any are added.
func fixtureSubjects(b *testing.B) int {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join("..", "testdata", "terminals", "residential-gate", "var/lib/terminal/gallery.db")+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM subjects`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}
