package fsterm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/atomicfile"
)

// consentSuffix names the sidecar that marks a capture kept under separate consent.
const consentSuffix = ".consent"

// collectSpool counts the raw capture spool into f.RawImages. It reads names and modification times
// only, never a capture's bytes.
func collectSpool(dir string, now time.Time, f *device.Facts) {
	r, err := countSpool(dir, now)
	if err != nil {
		markUnknown(f, device.GroupRawImages, SpoolPath, err)
		return
	}
	f.RawImages = r
}

func countSpool(dir string, now time.Time) (device.RawImages, error) {
	captures, err := listCaptures(dir)
	if err != nil {
		return device.RawImages{}, err
	}
	var (
		r      device.RawImages
		oldest time.Duration
	)
	for _, c := range captures {
		r.Count++
		if c.consented {
			r.Consented++
			continue
		}
		if age := now.Sub(c.modTime); age > oldest {
			oldest = age
		}
	}
	r.OldestAgeS = ceilSeconds(oldest)
	return r, nil
}

// capture is one raw capture of the spool.
type capture struct {
	name      string
	modTime   time.Time
	consented bool // a sidecar NAME.consent marks it kept under separate consent
}

// listCaptures lists the spool's captures by the rules of docs/terminal.md, which the count and the
// deletion share: every regular file (not a symlink) whose name does not start with "." and does not end
// in ".consent", consented when a regular file NAME.consent sits next to it. Subdirectories are not
// looked into.
func listCaptures(dir string) ([]capture, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fileError(err)
	}
	if !st.IsDir() {
		return nil, errors.New("not a directory")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fileError(err)
	}
	sidecars := map[string]bool{}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), consentSuffix) {
			sidecars[strings.TrimSuffix(e.Name(), consentSuffix)] = true
		}
	}
	var captures []capture
	for _, e := range entries {
		name := e.Name()
		if !isCaptureName(name) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since the listing: the agent's own purge, or the terminal's
		}
		if err != nil {
			return nil, fileError(err)
		}
		captures = append(captures, capture{name: name, modTime: info.ModTime(), consented: sidecars[name]})
	}
	return captures, nil
}

func isCaptureName(name string) bool {
	return !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, consentSuffix)
}

// captureExpired reports whether a capture of modification time mtime has reached maxAge at now. It is
// >=, not the facts' rounded-up "older than": a capture goes the moment it reaches its limit, so nothing
// the policy can find over the limit is left.
func captureExpired(mtime, now time.Time, maxAge time.Duration) bool { return now.Sub(mtime) >= maxAge }

// DeleteRawImages deletes every capture without a sidecar that has reached maxAge. It deletes nothing
// else: not consented captures, not sidecars (an orphan one marks nothing), not dotfiles, subdirectories
// or symlinks. Count is the number of captures deleted.
func (t *Terminal) DeleteRawImages(ctx context.Context, maxAge time.Duration) (device.Outcome, error) {
	if maxAge < 0 {
		return device.Outcome{}, fmt.Errorf("delete raw images: negative maximum age %v", maxAge)
	}
	dir := t.path(SpoolPath)
	captures, err := listCaptures(dir)
	if err != nil {
		return device.Outcome{}, fmt.Errorf("delete raw images: %s: %w", SpoolPath, err)
	}
	now := t.clock.Now()
	var (
		out      device.Outcome
		failed   int
		firstErr error
	)
	for _, c := range captures {
		if err := ctx.Err(); err != nil {
			firstErr = err
			break
		}
		if c.consented || !captureExpired(c.modTime, now, maxAge) {
			continue
		}
		deleted, err := deleteExpiredCapture(dir, c.name, now, maxAge)
		if err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if deleted {
			out.Count++
		}
	}
	if out.Count > 0 {
		// The deletions are durable before they are reported as done.
		if err := atomicfile.SyncDir(dir); err != nil && firstErr == nil {
			firstErr = errors.New("sync the directory failed")
		}
	}
	switch {
	case failed > 0:
		// The names are left out: a terminal may name captures after the people in them.
		return out, fmt.Errorf("delete raw images: %s: %d captures could not be deleted: %w", SpoolPath, failed, firstErr)
	case firstErr != nil:
		return out, fmt.Errorf("delete raw images: %s: %w", SpoolPath, firstErr)
	}
	return out, nil
}

// deleteExpiredCapture deletes one capture after checking again, just before, that it is still an
// expired regular file without a sidecar: the terminal may have recorded consent, or written a new
// capture under the same name, since the listing. A capture that is gone already is not an error.
func deleteExpiredCapture(dir, name string, now time.Time, maxAge time.Duration) (bool, error) {
	path := filepath.Join(dir, name)
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fileError(err)
	}
	if !info.Mode().IsRegular() || !captureExpired(info.ModTime(), now, maxAge) {
		return false, nil
	}
	switch sidecar, err := os.Lstat(path + consentSuffix); {
	case err == nil && sidecar.Mode().IsRegular():
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fileError(err) // cannot tell whether it is consented: keep it
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fileError(err)
	}
	return true, nil
}

// NextRawExpiry is when the oldest capture without a sidecar reaches maxAge: its modification time plus
// maxAge, which may be in the past. ok is false when there is no such capture.
func (t *Terminal) NextRawExpiry(ctx context.Context, maxAge time.Duration) (time.Time, bool, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, false, fmt.Errorf("next raw expiry: %w", err)
	}
	captures, err := listCaptures(t.path(SpoolPath))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next raw expiry: %s: %w", SpoolPath, err)
	}
	var (
		oldest time.Time
		ok     bool
	)
	for _, c := range captures {
		if c.consented {
			continue
		}
		if !ok || c.modTime.Before(oldest) {
			oldest, ok = c.modTime, true
		}
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return oldest.Add(maxAge), true, nil
}
