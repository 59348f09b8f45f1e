package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Directories of the terminal contract that, when their files change, call for an evaluation at once.
var watchedDirs = []string{"etc/faceguard", "var/lib/terminal", "var/spool/terminal/raw"}

// watch evaluates soon after a watched input changes: the site file, the status file, the gallery, the
// raw spool. Bursts (a gallery transaction touches three files) are folded into one evaluation.
func (a *Agent) watch(ctx context.Context) (stop func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	added := 0
	for _, d := range watchedDirs {
		if err := w.Add(filepath.Join(a.opts.WatchRoot, d)); err != nil {
			a.log.Warn("cannot watch a directory of the terminal contract; it is checked on the timer", "dir", d, "err", err)
			continue
		}
		added++
	}
	if added == 0 {
		w.Close()
		return nil, fmt.Errorf("watch: none of %s could be watched", strings.Join(watchedDirs, ", "))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fold := changeFold{debounce: a.opts.Debounce, galleryEvery: a.opts.GalleryEvery}
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if relevant(ev.Name) {
					now := time.Now()
					if due, moved := fold.change(now, isGallery(ev.Name)); moved {
						timer.Reset(due.Sub(now))
					}
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflow loses events: evaluate to catch up.
				a.log.Warn("file watch error; evaluating to catch up", "err", err)
				a.request("watch-overflow", nil)
			case <-timer.C:
				fold.fired(time.Now())
				a.request("change", nil)
			}
		}
	}()
	return func() { w.Close(); <-done }, nil
}

// changeFold folds the terminal's file changes into evaluations. A change is evaluated Debounce after it
// (a burst, such as the three files of a gallery transaction, makes one evaluation). A change of the
// gallery alone waits, besides, until GalleryEvery has passed since the last evaluation a change caused:
// a busy gate writes to its gallery at every recognition (last_used_at), and each evaluation counts the
// whole gallery again, so without it a gate recognising ten people a second would count its gallery ten
// times a second. The first gallery change after a quiet spell (a withdrawal) is evaluated at once.
type changeFold struct {
	debounce, galleryEvery time.Duration
	due                    time.Time // when the folded changes are evaluated; zero: none pending
	last                   time.Time // when the last evaluation caused by a change was due
}

// change records a change at now. moved says the evaluation is due at a new time, due.
func (f *changeFold) change(now time.Time, gallery bool) (due time.Time, moved bool) {
	due = now.Add(f.debounce)
	if gallery && !f.last.IsZero() {
		if next := f.last.Add(f.galleryEvery); next.After(due) {
			due = next
		}
	}
	if !f.due.IsZero() && !due.Before(f.due) {
		return f.due, false // already due as soon or sooner
	}
	f.due = due
	return due, true
}

// fired records that the folded changes were handed to an evaluation at now.
func (f *changeFold) fired(now time.Time) {
	f.due, f.last = time.Time{}, now
}

// isGallery: the gallery database, its journal or write-ahead log.
func isGallery(name string) bool {
	return strings.HasPrefix(filepath.Base(name), "gallery.db")
}

// relevant leaves out the agent's own temporary files and the terminal's.
func relevant(name string) bool {
	base := filepath.Base(name)
	return !strings.HasPrefix(base, ".") && !strings.HasSuffix(base, ".tmp")
}
