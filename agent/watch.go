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
		var pending <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if relevant(ev.Name) && pending == nil {
					pending = time.After(a.opts.Debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflow loses events: evaluate to catch up.
				a.log.Warn("file watch error; evaluating to catch up", "err", err)
				a.request("watch-overflow", nil)
			case <-pending:
				pending = nil
				a.request("change", nil)
			}
		}
	}()
	return func() { w.Close(); <-done }, nil
}

// relevant leaves out the agent's own temporary files and the terminal's.
func relevant(name string) bool {
	base := filepath.Base(name)
	return !strings.HasPrefix(base, ".") && !strings.HasSuffix(base, ".tmp")
}
