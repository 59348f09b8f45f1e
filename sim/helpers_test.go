package sim

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
)

// testSubjectKey is the fleet subject key of every test.
var testSubjectKey = []byte("0123456789abcdef0123456789abcdef-sim-test")

var (
	engineOnce sync.Once
	testEngine *engine.Engine
	engineErr  error
)

// sharedEngine compiles the built-in pack once for the whole test binary, as a fleet shares one.
func sharedEngine(t testing.TB) *engine.Engine {
	t.Helper()
	engineOnce.Do(func() { testEngine, engineErr = engine.New(context.Background(), engine.Options{}) })
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return testEngine
}

// testNow is the fake clock's start.
var testNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

// newTestTerminal writes a terminal for p under a temporary directory, on a fake clock.
func newTestTerminal(t testing.TB, p Profile) (*Terminal, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(testNow)
	term, err := NewTerminal(filepath.Join(t.TempDir(), "root"), p, clk)
	if err != nil {
		t.Fatal(err)
	}
	return term, clk
}

// adapter is fsterm over a simulated terminal, as an agent would configure it.
func adapter(t testing.TB, term *Terminal, clk clock.Clock) *fsterm.Terminal {
	t.Helper()
	f := fsterm.New(fsterm.Options{Root: term.Root(), Clock: clk, DeviceID: term.Profile().ID,
		StatusMaxAge: 15 * time.Minute, SubjectKey: testSubjectKey})
	t.Cleanup(func() { f.Close() })
	return f
}

// judge gathers the facts of the terminal through fsterm and evaluates them with the pack.
func judge(t testing.TB, f *fsterm.Terminal) (device.Facts, device.Decision) {
	t.Helper()
	ctx := context.Background()
	facts, err := f.Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := sharedEngine(t).Decide(ctx, &facts)
	if err != nil {
		t.Fatal(err)
	}
	return facts, d
}

func controlsOf(d device.Decision) []string {
	var out []string
	for _, v := range d.Violations {
		out = append(out, v.Control)
	}
	slices.Sort(out)
	return out
}

// readStatus reads the terminal's status.json.
func readStatus(t testing.TB, root string) statusJSON {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(fsterm.StatusPath)))
	if err != nil {
		t.Fatal(err)
	}
	var s statusJSON
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("status.json: %v", err)
	}
	return s
}

func hasFlow(s statusJSON, data string) bool {
	return slices.ContainsFunc(s.Egress, func(f statusFlow) bool { return f.Data == data })
}

// captures lists the raw captures in the spool.
func captures(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(fsterm.SpoolPath)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && e.Name()[0] != '.' {
			out = append(out, e.Name())
		}
	}
	return out
}

// galleryCount runs a count query on the terminal's gallery.
func galleryCount(t testing.TB, root, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(root, filepath.FromSlash(fsterm.GalleryPath))+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

const patience = 30 * time.Second

// eventually waits until cond holds; the bound is the test's patience, not a claim about speed.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", patience, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
