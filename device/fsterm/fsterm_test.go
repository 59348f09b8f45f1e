package fsterm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/clock"
)

var update = flag.Bool("update", false, "rewrite the golden facts and the fixture galleries")

// fixturesDir holds the terminal trees shared with the agent's end-to-end tests.
const fixturesDir = "../../testdata/terminals"

// testNow is the fake clock of every test: the fixtures are dated relative to it.
var testNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

// captureAges sets the modification time of every raw capture in the fixture trees, relative to testNow:
// git does not keep mtimes, so they are set after copying. A capture missing here fails the test rather
// than get an accidental age.
var captureAges = map[string]map[string]time.Duration{
	"stale-raw-captures": {
		"20261124-063000-0001.jpg":            3*time.Hour + 30*time.Minute,
		"20261124-095912-0002.jpg":            47*time.Second + 300*time.Millisecond, // rounds up to 48
		"20261122-101500-0003.jpg":            47*time.Hour + 45*time.Minute,         // has a sidecar
		"20261122-101500-0003.jpg.consent":    47 * time.Hour,
		"processing/20261124-095959-0004.jpg": time.Second, // in a subdirectory: not a capture
	},
}

// fixtureRoot copies a fixture tree to a temporary root and sets the captures' mtimes.
func fixtureRoot(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join(fixturesDir, name)
	root := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy fixture %s: %v", name, err)
	}
	spool := filepath.Join(root, SpoolPath)
	err = filepath.WalkDir(spool, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".keep" {
			return err
		}
		rel, _ := filepath.Rel(spool, path)
		age, ok := captureAges[name][filepath.ToSlash(rel)]
		if !ok {
			t.Fatalf("fixture %s: no age set for spool file %s in captureAges", name, rel)
		}
		mtime := testNow.Add(-age)
		return os.Chtimes(path, mtime, mtime)
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("set capture mtimes of %s: %v", name, err)
	}
	return root
}

func fixtureNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(fixturesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no fixture trees")
	}
	return names
}

func newTestTerminal(root string, mod ...func(*Options)) *Terminal {
	opts := Options{Root: root, Clock: clock.NewFake(testNow), StatusMaxAge: 15 * time.Minute}
	for _, m := range mod {
		m(&opts)
	}
	return New(opts)
}

// mustValidate marshals facts as the agent records them and checks them against the schema.
func mustValidate(t *testing.T, f device.Facts) []byte {
	t.Helper()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatalf("marshal facts: %v", err)
	}
	if err := device.ValidateFacts(b); err != nil {
		t.Fatalf("facts do not validate: %v\n%s", err, b)
	}
	return b
}

// unknownGroups maps each unknown group to its entries' "source: reason".
func unknownGroups(f device.Facts) map[string][]string {
	m := map[string][]string{}
	for _, u := range f.Unknown {
		m[u.Fact] = append(m[u.Fact], u.Source+": "+u.Reason)
	}
	return m
}

// TestGolden gathers the facts of every fixture tree and compares them with testdata/golden/NAME.json.
// Run with -update to rewrite the golden files after a deliberate change, and read the diff.
func TestGolden(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			root := fixtureRoot(t, name)
			f, err := newTestTerminal(root).Facts(context.Background())
			if err != nil {
				t.Fatalf("Facts: %v", err)
			}
			got := append(mustValidate(t, f), '\n')
			golden := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("facts of %s differ from %s (run with -update and review the diff)\ngot:\n%s", name, golden, got)
			}
		})
	}
}

// TestGoldenMeaning pins what each fixture is there to show, so an -update cannot quietly lose it.
func TestGoldenMeaning(t *testing.T) {
	facts := func(t *testing.T, name string) device.Facts {
		t.Helper()
		f, err := newTestTerminal(fixtureRoot(t, name)).Facts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mustValidate(t, f)
		return f
	}
	t.Run("residential_gate_is_whole_and_clean", func(t *testing.T) {
		f := facts(t, "residential-gate")
		if len(f.Unknown) != 0 {
			t.Fatalf("unknown: %v", f.Unknown)
		}
		s := f.Subjects
		if s.Count != 5 || s.WithoutConsent+s.WithdrawnPending+s.MinorsWithoutGuardian+s.BeyondRetention+s.StoredOffDevice != 0 {
			t.Errorf("subjects = %+v", s)
		}
		if len(f.Egress) != 1 || f.Egress[0].Internet {
			t.Errorf("egress = %+v", f.Egress)
		}
	})
	t.Run("hotel_guest_room_keeps_fr_enabled", func(t *testing.T) {
		f := facts(t, "hotel-guest-room")
		if len(f.Unknown) != 0 || f.Location.Category != "hotel_guest_room" || !f.FR.Enabled {
			t.Errorf("location %+v fr %+v unknown %v", f.Location, f.FR, f.Unknown)
		}
	})
	t.Run("template_upload_shows_undeclared_internet_flow", func(t *testing.T) {
		f := facts(t, "template-upload")
		var undeclared []string
		for _, e := range f.Egress {
			if e.Data == device.EgressUnknown && e.Internet {
				undeclared = append(undeclared, e.Dest)
			}
		}
		if strings.Join(undeclared, ",") != "203.0.113.77:8080" {
			t.Errorf("undeclared internet flows = %v, egress %+v", undeclared, f.Egress)
		}
	})
	t.Run("stale_raw_captures", func(t *testing.T) {
		r := facts(t, "stale-raw-captures").RawImages
		if r != (device.RawImages{Count: 3, Consented: 1, OldestAgeS: 12600}) {
			t.Errorf("raw_images = %+v", r)
		}
	})
	t.Run("withdrawn_and_minor", func(t *testing.T) {
		s := facts(t, "withdrawn-and-minor").Subjects
		want := device.Subjects{Count: 7, WithdrawnPending: 1, WithdrawnOldestS: 4*86400 + 2*3600, MinorsWithoutGuardian: 1}
		if s != want {
			t.Errorf("subjects = %+v, want %+v", s, want)
		}
	})
	t.Run("broken_site_marks_only_site_groups", func(t *testing.T) {
		f := facts(t, "broken-site")
		got := unknownGroups(f)
		for _, g := range siteGroups {
			if len(got[g]) != 1 || !strings.Contains(got[g][0], "etc/faceguard/site.yaml: yaml: line 8") {
				t.Errorf("%s: %v", g, got[g])
			}
		}
		if len(f.Unknown) != len(siteGroups) {
			t.Errorf("unknown = %v", f.Unknown)
		}
		if f.Subjects.Count != 3 || f.FR.Mode != "verify_1to1" {
			t.Errorf("the other collectors did not run: %+v %+v", f.Subjects, f.FR)
		}
	})
}

func TestFactsOfAnEmptyRoot(t *testing.T) {
	root := t.TempDir()
	f, err := newTestTerminal(root).Facts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustValidate(t, f)
	var got []string
	for _, u := range f.Unknown {
		got = append(got, u.Fact+" "+u.Source+" "+u.Reason)
	}
	want := []string{
		"device etc/faceguard/site.yaml missing",
		"location etc/faceguard/site.yaml missing",
		"signage etc/faceguard/site.yaml missing",
		"notice etc/faceguard/site.yaml missing",
		"pia etc/faceguard/site.yaml missing",
		"fr var/lib/terminal/status.json missing",
		"alternatives var/lib/terminal/status.json missing",
		"prompts var/lib/terminal/status.json missing",
		"egress var/lib/terminal/status.json missing",
		"security var/lib/terminal/status.json missing",
		"subjects var/lib/terminal/gallery.db missing",
		"raw_images var/spool/terminal/raw missing",
		"egress proc/net/tcp missing",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("unknown:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f.Device != (device.Device{ID: "unknown", Kind: "other", Stage: "production"}) || f.FR.Mode != "off" ||
		f.FR.Purpose != "other" || f.Signage.Evidence != "none" || f.Location.Category != "other" {
		t.Errorf("placeholders: %+v %+v %+v %+v", f.Device, f.FR, f.Signage, f.Location)
	}
	if _, err := os.Stat(filepath.Join(root, GalleryPath)); err == nil {
		t.Error("a gallery was created")
	}
	if !f.CollectedAt.Equal(testNow) || f.CollectedAt.Location() != testNow.Location() {
		t.Errorf("collected_at = %v, want %v in the clock's location", f.CollectedAt, testNow)
	}
}

func TestFactsDeviceID(t *testing.T) {
	tests := []struct {
		name        string
		fixture     string
		option      string
		wantID      string
		wantUnknown bool
	}{
		{"from_site_yaml", "residential-gate", "", "gate-01", false},
		{"configured_wins", "residential-gate", "gate-01-east", "gate-01-east", false},
		{"configured_when_site_is_broken", "broken-site", "gate-03", "gate-03", true},
		{"placeholder_when_site_is_broken", "broken-site", "", "unknown", true},
		{"invalid_configured_id", "residential-gate", "Gate 01", "unknown", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			term := newTestTerminal(fixtureRoot(t, tt.fixture), func(o *Options) { o.DeviceID = tt.option })
			f, err := term.Facts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			mustValidate(t, f)
			if f.Device.ID != tt.wantID || f.IsUnknown(device.GroupDevice) != tt.wantUnknown {
				t.Errorf("device = %+v, unknown %v", f.Device, f.Unknown)
			}
		})
	}
}

func TestFactsStatusMaxAge(t *testing.T) {
	tests := []struct {
		name       string
		now        time.Time
		maxAge     time.Duration
		wantReason string
	}{
		{"fresh", testNow, 15 * time.Minute, ""},
		{"stale", testNow.Add(2*time.Hour - 90*time.Second), 15 * time.Minute, "stale: updated 2h0m0s ago, limit 15m0s"},
		{"not_checked", testNow.Add(48 * time.Hour), 0, ""},
		{"far_in_the_future", testNow.Add(-time.Hour), 15 * time.Minute, "updated_at is 58m30s in the future, limit 15m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			term := New(Options{Root: fixtureRoot(t, "residential-gate"), Clock: clock.NewFake(tt.now), StatusMaxAge: tt.maxAge})
			f, err := term.Facts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			mustValidate(t, f)
			got := unknownGroups(f)
			for _, g := range statusGroups {
				switch {
				case tt.wantReason == "" && len(got[g]) != 0:
					t.Errorf("%s unknown: %v", g, got[g])
				case tt.wantReason != "" && (len(got[g]) != 1 || got[g][0] != StatusPath+": "+tt.wantReason):
					t.Errorf("%s: %v, want %q", g, got[g], tt.wantReason)
				}
			}
			if tt.wantReason != "" && (f.FR.Enabled || len(f.Prompts) != 0) {
				t.Errorf("stale values used: fr %+v prompts %v", f.FR, f.Prompts)
			}
			if got[device.GroupLocation] != nil || got[device.GroupSubjects] != nil {
				t.Errorf("other groups unknown: %v", f.Unknown)
			}
		})
	}
}

func TestFactsSite(t *testing.T) {
	term := newTestTerminal(fixtureRoot(t, "residential-gate"))
	if got := term.Site(); got != (SiteInfo{}) {
		t.Errorf("Site before Facts = %+v", got)
	}
	if _, err := term.Facts(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := term.Site()
	if got.SiteID != "garden-court" || got.SiteName != "花园小区 / Garden Court" || got.Model != "FRT-900" ||
		got.Firmware != "4.2.1" || got.ControlGeneration == nil || *got.ControlGeneration != 12 {
		t.Errorf("Site = %+v", got)
	}

	broken := newTestTerminal(fixtureRoot(t, "broken-site"))
	if _, err := broken.Facts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := broken.Site(); got.SiteID != "" || got.Model != "FRT-900" {
		t.Errorf("Site of a broken site.yaml = %+v", got)
	}
}

func TestFactsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newTestTerminal(fixtureRoot(t, "residential-gate")).Facts(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCeilSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want int
	}{
		{"negative", -time.Second, 0},
		{"zero", 0, 0},
		{"a_nanosecond", time.Nanosecond, 1},
		{"whole", 10 * time.Second, 10},
		{"just_over", 10*time.Second + time.Millisecond, 11},
		{"capped", 1 << 62, maxCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ceilSeconds(tt.d); got != tt.want {
				t.Errorf("ceilSeconds(%v) = %d, want %d", tt.d, got, tt.want)
			}
		})
	}
}

// TestFactsKeepTheLastParse: site.yaml and status.json are parsed again only when their bytes change,
// and nothing done to one Facts result reaches the next.
func TestFactsKeepTheLastParse(t *testing.T) {
	for _, name := range fixtureNames(t) {
		t.Run(name, func(t *testing.T) {
			root := fixtureRoot(t, name)
			term := newTestTerminal(root)
			ctx := context.Background()
			first, err := term.Facts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := string(mustValidate(t, first))
			site, status := term.siteParse.doc, term.statusParse.doc
			// What the agent or a later step might do to its copy.
			for i := range first.Egress {
				first.Egress[i].Dest = "changed"
			}
			first.Egress = append(first.Egress, device.Egress{Dest: "appended"})
			for i := range first.Prompts {
				first.Prompts[i] = "changed"
			}
			for i := range first.Notice.Fields {
				first.Notice.Fields[i] = "changed"
			}
			for i := range first.Alternatives.Configured {
				first.Alternatives.Configured[i] = "changed"
			}
			second, err := term.Facts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(mustValidate(t, second)); got != want {
				t.Errorf("the second Facts differs from the first:\n%s\nwant:\n%s", got, want)
			}
			if term.siteParse.doc != site || term.statusParse.doc != status {
				t.Error("unchanged files were parsed again")
			}
			fresh, err := newTestTerminal(root).Facts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(mustValidate(t, fresh)); got != want {
				t.Errorf("a new terminal gathers other facts:\n%s\nwant:\n%s", got, want)
			}
		})
	}

	// A changed file is parsed again, whatever its modification time says.
	root := fixtureRoot(t, "residential-gate")
	term := newTestTerminal(root)
	if _, err := term.Facts(context.Background()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, SitePath)
	st, _ := os.Stat(path)
	data, _ := os.ReadFile(path)
	changed := strings.Replace(string(data), "public_place: false", "public_place: true ", 1)
	if changed == string(data) {
		t.Fatal("the fixture's site.yaml has no public_place: false")
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(path, st.ModTime(), st.ModTime())
	f, err := term.Facts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !f.Location.PublicPlace {
		t.Error("site.yaml was changed but the facts still say what it said before")
	}
}
