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
//   - decide gathers the facts from the terminal (the gallery is counted in SQLite, the files read) and
//     takes the full-pack decision on them, as every evaluation of the agent does before it records;
//   - match is the agent's match decision for one subject after another across the gallery.
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
			b.Run("decide", func(b *testing.B) {
				lat := make([]time.Duration, 0, 1024)
				b.ReportAllocs()
				for b.Loop() {
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
			})
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
