package fsterm

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/clock"
)

func TestCountSpool(t *testing.T) {
	// files maps a name under the spool to its age; a name ending in "/" is a directory.
	tests := []struct {
		name  string
		files map[string]time.Duration
		want  device.RawImages
	}{
		{"empty", nil, device.RawImages{}},
		{"one_capture_whole_seconds", map[string]time.Duration{"a.jpg": 10 * time.Second},
			device.RawImages{Count: 1, OldestAgeS: 10}},
		{"age_rounds_up", map[string]time.Duration{"a.jpg": 10*time.Second + time.Millisecond},
			device.RawImages{Count: 1, OldestAgeS: 11}},
		{"just_written", map[string]time.Duration{"a.jpg": 0},
			device.RawImages{Count: 1, OldestAgeS: 0}},
		{"mtime_in_the_future", map[string]time.Duration{"a.jpg": -time.Hour},
			device.RawImages{Count: 1, OldestAgeS: 0}},
		{"oldest_of_several", map[string]time.Duration{"a.jpg": 5 * time.Second, "b.jpg": 3 * time.Hour, "c.jpg": time.Minute},
			device.RawImages{Count: 3, OldestAgeS: 10800}},
		{"sidecar_excludes_from_oldest", map[string]time.Duration{
			"old.jpg": 48 * time.Hour, "old.jpg.consent": 48 * time.Hour, "new.jpg": 2 * time.Second},
			device.RawImages{Count: 2, Consented: 1, OldestAgeS: 2}},
		{"only_consented", map[string]time.Duration{"old.jpg": 48 * time.Hour, "old.jpg.consent": time.Hour},
			device.RawImages{Count: 1, Consented: 1, OldestAgeS: 0}},
		{"orphan_sidecar", map[string]time.Duration{"gone.jpg.consent": time.Hour, "a.jpg": time.Second},
			device.RawImages{Count: 1, OldestAgeS: 1}},
		{"sidecar_of_another_name", map[string]time.Duration{"a.jpg": time.Hour, "a.consent": time.Hour},
			device.RawImages{Count: 1, OldestAgeS: 3600}},
		{"dotfiles_ignored", map[string]time.Duration{".keep": 99 * time.Hour, ".a.jpg.tmp": 99 * time.Hour},
			device.RawImages{}},
		{"subdirectories_ignored", map[string]time.Duration{"processing/": 0, "processing/a.jpg": 99 * time.Hour, "b.jpg": time.Second},
			device.RawImages{Count: 1, OldestAgeS: 1}},
		{"sidecar_that_is_a_directory", map[string]time.Duration{"a.jpg": time.Hour, "a.jpg.consent/": 0},
			device.RawImages{Count: 1, OldestAgeS: 3600}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, age := range tt.files {
				path := filepath.Join(dir, name)
				if name[len(name)-1] == '/' {
					if err := os.MkdirAll(path, 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte("JPEG placeholder"), 0o644); err != nil {
					t.Fatal(err)
				}
				mtime := testNow.Add(-age)
				if err := os.Chtimes(path, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			got, err := countSpool(dir, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCollectSpoolBroken(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T) string
		wantReason string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "raw") }, "missing"},
		{"a_file", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "raw")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return path
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := placeholderFacts(testNow)
			collectSpool(tt.setup(t), testNow, &f)
			mustValidate(t, f)
			want := []device.Unknown{{Fact: device.GroupRawImages, Source: SpoolPath, Reason: tt.wantReason}}
			if len(f.Unknown) != 1 || f.Unknown[0] != want[0] {
				t.Errorf("unknown = %v, want %v", f.Unknown, want)
			}
		})
	}
}

// spoolRoot makes a root whose spool holds files (name → age at testNow; a name ending in "/" is a
// directory) and returns the root.
func spoolRoot(t *testing.T, files map[string]time.Duration) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, SpoolPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, age := range files {
		path := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("JPEG placeholder"), 0o644); err != nil {
			t.Fatal(err)
		}
		mtime := testNow.Add(-age)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// spoolNames lists what is left under the spool, relative to it, directories with a trailing "/".
func spoolNames(t *testing.T, root string) []string {
	t.Helper()
	dir := filepath.Join(root, SpoolPath)
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			rel += "/"
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

func TestDeleteRawImages(t *testing.T) {
	const maxAge = 10 * time.Second
	root := spoolRoot(t, map[string]time.Duration{
		"at-limit.jpg":                  maxAge,               // reaches the limit now: deleted
		"just-under.jpg":                maxAge - time.Second, // kept
		"a-nanosecond-under.jpg":        maxAge - time.Nanosecond,
		"old.jpg":                       3 * time.Hour, // deleted
		"consented.jpg":                 48 * time.Hour,
		"consented.jpg.consent":         48 * time.Hour,
		"orphan.jpg.consent":            48 * time.Hour, // a sidecar marks nothing, and is not the agent's to delete
		"future.jpg":                    -time.Hour,
		".hidden.jpg":                   48 * time.Hour,
		".tmp-upload":                   48 * time.Hour,
		"processing/":                   0,
		"processing/inner.jpg":          48 * time.Hour,
		"sidecar-is-a-dir.jpg":          48 * time.Hour, // deleted: a directory is not a sidecar
		"sidecar-is-a-dir.jpg.consent/": 0,
	})
	// A symlink to an old capture outside the spool: neither the link nor its target is a capture.
	outside := filepath.Join(t.TempDir(), "elsewhere.jpg")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := testNow.Add(-48 * time.Hour)
	if err := os.Chtimes(outside, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, SpoolPath, "link.jpg")); err != nil {
		t.Fatal(err)
	}

	term := newTestTerminal(root)
	out, err := term.DeleteRawImages(context.Background(), maxAge)
	if err != nil {
		t.Fatal(err)
	}
	if out.Count != 3 || out.Receipts != nil {
		t.Errorf("outcome = %+v, want 3 deleted and no receipts", out)
	}
	want := []string{
		".hidden.jpg", ".tmp-upload", "a-nanosecond-under.jpg", "consented.jpg", "consented.jpg.consent",
		"future.jpg", "just-under.jpg", "link.jpg", "orphan.jpg.consent", "processing/", "processing/inner.jpg",
		"sidecar-is-a-dir.jpg.consent/",
	}
	if got := spoolNames(t, root); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("left:\n%v\nwant:\n%v", got, want)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the symlink's target was touched: %v", err)
	}

	again, err := term.DeleteRawImages(context.Background(), maxAge)
	if err != nil || again.Count != 0 {
		t.Errorf("second call: %+v, %v; want nothing deleted", again, err)
	}

	// What is left is not over the limit by the facts' own count.
	r, err := countSpool(filepath.Join(root, SpoolPath), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if r.OldestAgeS > int(maxAge/time.Second) {
		t.Errorf("after deleting, oldest_age_s = %d, over the limit", r.OldestAgeS)
	}
}

// TestDeleteRawImagesAtTheExpiry: a capture is deleted exactly when NextRawExpiry says it reaches the
// limit, and not a nanosecond before.
func TestDeleteRawImagesAtTheExpiry(t *testing.T) {
	const maxAge = 10 * time.Second
	root := spoolRoot(t, map[string]time.Duration{"a.jpg": 3 * time.Second, "b.jpg": time.Second})
	clk := clock.NewFake(testNow)
	term := newTestTerminal(root, func(o *Options) { o.Clock = clk })
	ctx := context.Background()
	at, ok, err := term.NextRawExpiry(ctx, maxAge)
	if err != nil || !ok || !at.Equal(testNow.Add(7*time.Second)) {
		t.Fatalf("NextRawExpiry = %v, %v, %v; want now+7s", at, ok, err)
	}
	clk.Set(at.Add(-time.Nanosecond))
	if out, err := term.DeleteRawImages(ctx, maxAge); err != nil || out.Count != 0 {
		t.Fatalf("a nanosecond early: %+v, %v", out, err)
	}
	clk.Set(at)
	if out, err := term.DeleteRawImages(ctx, maxAge); err != nil || out.Count != 1 {
		t.Fatalf("at the expiry: %+v, %v", out, err)
	}
	at, ok, err = term.NextRawExpiry(ctx, maxAge)
	if err != nil || !ok || !at.Equal(testNow.Add(9*time.Second)) {
		t.Fatalf("next = %v, %v, %v; want now+9s", at, ok, err)
	}
}

func TestNextRawExpiry(t *testing.T) {
	tests := []struct {
		name   string
		files  map[string]time.Duration
		want   time.Duration // from testNow
		wantOK bool
	}{
		{"empty", nil, 0, false},
		{"only_consented", map[string]time.Duration{"a.jpg": time.Hour, "a.jpg.consent": time.Hour}, 0, false},
		{"only_not_captures", map[string]time.Duration{".a.jpg": time.Hour, "x.consent": time.Hour, "d/": 0, "d/a.jpg": time.Hour}, 0, false},
		{"oldest_of_several", map[string]time.Duration{"a.jpg": 2 * time.Second, "b.jpg": 4 * time.Second, "c.jpg": -time.Hour}, 10*time.Second - 4*time.Second, true},
		{"already_past", map[string]time.Duration{"a.jpg": time.Hour}, 10*time.Second - time.Hour, true},
		{"consented_oldest_ignored", map[string]time.Duration{"a.jpg": time.Hour, "a.jpg.consent": 0, "b.jpg": time.Second}, 9 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at, ok, err := newTestTerminal(spoolRoot(t, tt.files)).NextRawExpiry(context.Background(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK || ok && !at.Equal(testNow.Add(tt.want)) {
				t.Errorf("got %v, %v; want now%+v, %v", at, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSpoolActionsBroken(t *testing.T) {
	ctx := context.Background()
	t.Run("missing", func(t *testing.T) {
		term := newTestTerminal(t.TempDir())
		if _, err := term.DeleteRawImages(ctx, time.Second); err == nil || err.Error() != "delete raw images: var/spool/terminal/raw: missing" {
			t.Errorf("DeleteRawImages: %v", err)
		}
		if _, _, err := term.NextRawExpiry(ctx, time.Second); err == nil || err.Error() != "next raw expiry: var/spool/terminal/raw: missing" {
			t.Errorf("NextRawExpiry: %v", err)
		}
	})
	t.Run("a_file", func(t *testing.T) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(SpoolPath)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, SpoolPath), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := newTestTerminal(root).DeleteRawImages(ctx, time.Second); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("DeleteRawImages: %v", err)
		}
	})
	t.Run("negative_max_age", func(t *testing.T) {
		root := spoolRoot(t, map[string]time.Duration{"future.jpg": -time.Hour})
		if _, err := newTestTerminal(root).DeleteRawImages(ctx, -2*time.Hour); err == nil {
			t.Error("a negative maximum age was accepted")
		}
		if got := spoolNames(t, root); len(got) != 1 {
			t.Errorf("left %v", got)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		root := spoolRoot(t, map[string]time.Duration{"a.jpg": time.Hour})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := newTestTerminal(root).DeleteRawImages(cctx, time.Second); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
		if got := spoolNames(t, root); len(got) != 1 {
			t.Errorf("deleted after cancel: left %v", got)
		}
	})
}

// TestDeleteExpiredCaptureChecksAgain: between the listing and the deletion the terminal may record
// consent, replace the capture, or delete it; each is respected.
func TestDeleteExpiredCaptureChecksAgain(t *testing.T) {
	const maxAge = 10 * time.Second
	tests := []struct {
		name        string
		files       map[string]time.Duration
		wantDeleted bool
	}{
		{"still_expired", map[string]time.Duration{"a.jpg": time.Hour}, true},
		{"consent_recorded_meanwhile", map[string]time.Duration{"a.jpg": time.Hour, "a.jpg.consent": 0}, false},
		{"replaced_by_a_new_capture", map[string]time.Duration{"a.jpg": time.Second}, false},
		{"gone_meanwhile", nil, false},
		{"replaced_by_a_directory", map[string]time.Duration{"a.jpg/": 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := spoolRoot(t, tt.files)
			deleted, err := deleteExpiredCapture(filepath.Join(root, SpoolPath), "a.jpg", testNow, maxAge)
			if err != nil || deleted != tt.wantDeleted {
				t.Errorf("deleted = %v, %v; want %v", deleted, err, tt.wantDeleted)
			}
		})
	}
}
