package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// BenchmarkRawCaptureDeletion measures how long after a raw capture reaches raw_image_max_s (10 s) it is
// gone (DESIGN §11: p99 ≤ 1 s). Each capture is written with a modification time that puts its expiry
// 300 ms ahead, so the agent must notice it (fsnotify), set a timer for the exact moment, and delete it.
// Run with -benchtime=Nx: each iteration takes about 300 ms.
func BenchmarkRawCaptureDeletion(b *testing.B) {
	h := start(b, "residential-gate", harnessOpts{})
	spool := filepath.Join(h.root, "var/spool/terminal/raw")
	w, err := fsnotify.NewWatcher()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(spool); err != nil {
		b.Fatal(err)
	}
	const maxAge = 10 * time.Second
	const lead = 300 * time.Millisecond
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		name := filepath.Join(spool, fmt.Sprintf("bench-%06d.jpg", i))
		expiry := time.Now().Add(lead)
		mtime := expiry.Add(-maxAge)
		if err := os.WriteFile(name, []byte("JPEG placeholder"), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Chtimes(name, mtime, mtime); err != nil {
			b.Fatal(err)
		}
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case ev := <-w.Events:
				if ev.Name == name && ev.Has(fsnotify.Remove) {
					break wait
				}
			case err := <-w.Errors:
				b.Fatal(err)
			case <-deadline:
				b.Fatalf("capture %s not deleted 30 s after its expiry", name)
			}
		}
		lat = append(lat, time.Since(expiry))
	}
	benchPercentiles(b, lat)
}
