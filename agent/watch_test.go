package agent

import (
	"testing"
	"time"
)

// TestChangeFold: a change is evaluated a debounce after it, a burst once; a gallery change right after
// an evaluation waits for the gallery interval, unless another file's change calls for one sooner; the
// first gallery change after a quiet spell is evaluated at once.
func TestChangeFold(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f := changeFold{debounce: 200 * time.Millisecond, galleryEvery: 5 * time.Second}
	step := func(what string, now time.Time, gallery bool, wantDue time.Time, wantMoved bool) {
		t.Helper()
		due, moved := f.change(now, gallery)
		if !due.Equal(wantDue) || moved != wantMoved {
			t.Fatalf("%s: due %v moved %v, want %v %v", what, due.Sub(t0), moved, wantDue.Sub(t0), wantMoved)
		}
	}
	step("the first gallery change", at(0), true, at(200), true)
	step("the rest of its transaction", at(5), true, at(200), false)
	f.fired(at(200))
	step("a recognition right after", at(300), true, at(5200), true)
	step("more recognitions", at(1000), true, at(5200), false)
	step("the site file changes", at(2000), false, at(2200), true)
	f.fired(at(2200))
	step("a recognition after that evaluation", at(2300), true, at(7200), true)
	f.fired(at(7200))
	step("the raw spool, any time", at(7300), false, at(7500), true)
	f.fired(at(7500))
	step("a gallery change after a quiet spell", at(60000), true, at(60200), true)

	every := changeFold{debounce: 200 * time.Millisecond}
	every.fired(at(0))
	if due, _ := every.change(at(10), true); !due.Equal(at(210)) {
		t.Fatalf("gallery_every 0: due %v, want a debounce after the change", due.Sub(t0))
	}
	for name, want := range map[string]bool{"gallery.db": true, "gallery.db-wal": true, "gallery.db-journal": true,
		"status.json": false, "site.yaml": false, "cap-1.jpg": false} {
		if isGallery("/t/var/lib/terminal/"+name) != want {
			t.Errorf("isGallery(%s) = %v", name, !want)
		}
	}
}
