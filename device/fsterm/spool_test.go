package fsterm

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
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
