package benchdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceKeepsTheRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nhand-written intro\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, "bench", "make bench", "first run\n"); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, "soak", "make soak", "soak figures"); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, "bench", "make bench", "second run"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"hand-written intro", "second run", "soak figures", "<!-- end soak -->"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "first run") || strings.Count(got, "<!-- begin bench") != 1 {
		t.Errorf("the bench section was not replaced in place:\n%s", got)
	}
	if strings.Index(got, "second run") > strings.Index(got, "soak figures") {
		t.Errorf("the bench section moved:\n%s", got)
	}
}

func TestReplaceRefusesABadName(t *testing.T) {
	if err := Replace(filepath.Join(t.TempDir(), "x.md"), "a b", "x", "y"); err == nil {
		t.Fatal("a name with a space was accepted")
	}
}
