package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/faceguard/faceguard/internal/atomicfile"
	"github.com/faceguard/faceguard/internal/benchdoc"
)

// section is the part of BENCHMARKS.md this command owns.
const section = "benchmarks"

// runBench runs every suite (or those -only names), then writes the baseline and the document.
func runBench(ctx context.Context, o options, progress io.Writer) error {
	start := time.Now()
	only, err := onlyFilter(o.only)
	if err != nil {
		return err
	}
	var bins []binary
	if o.only == "" { // sizes first: a missing cross build fails now, not after ten minutes
		for _, b := range []struct{ arch, path string }{{"linux/amd64", o.amd64}, {"linux/arm64", o.arm64}} {
			bin, err := inspectBinary(ctx, b.arch, b.path)
			if err != nil {
				return err
			}
			bins = append(bins, bin)
		}
	}
	env := environment(ctx)
	busy := readLoad()
	var raw bytes.Buffer
	writeRunConfig(&raw, env, o.count)
	var run []suite
	for _, s := range suites {
		if only(s.name) {
			run = append(run, s)
		}
	}
	out, err := runRounds(run, o.count, progress, runOnce(ctx, progress))
	if err != nil {
		return err
	}
	raw.Write(out)
	var filing []filingRow
	if only("filing") {
		fmt.Fprintln(progress, "════ filing accuracy")
		if filing, err = runFilingAccuracy(ctx, progress); err != nil {
			return fmt.Errorf("filing accuracy: %w", err)
		}
	}
	env.elapsed = time.Since(start)
	env.count = o.count
	env.others = othersSince(busy)
	writeOthers(&raw, env.others)
	body := render(parseResults(raw.Bytes()), env, bins, filing)
	if o.only != "" {
		fmt.Fprintln(progress, "-only: nothing written; the section would read:")
		fmt.Fprintln(progress, body)
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(o.baseline), 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(o.baseline, raw.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write baseline: %w", err)
	}
	if err := benchdoc.Replace(o.doc, section, "make bench", body); err != nil {
		return err
	}
	fmt.Fprintf(progress, "wrote %s (section %q) and %s in %s\n", o.doc, section, o.baseline, env.elapsed.Round(time.Second))
	return nil
}

// runConfigKeys are the configuration lines that describe a run rather than a benchmark.
var runConfigKeys = []string{"commit", "go", "opa", "count", "others"}

// writeRunConfig starts raw output with the run's configuration lines (benchfmt keys).
func writeRunConfig(w io.Writer, e env, count int) {
	fmt.Fprintf(w, "commit: %s\ngo: %s\nopa: %s\ncount: %d\n", e.commit, e.goVersion, e.opaVersion, count)
}

// writeOthers ends raw output with the other work measured during the run (machine.go).
func writeOthers(w io.Writer, others float64) {
	if others >= 0 {
		fmt.Fprintf(w, "others: %.2f\n", others)
	}
}

func onlyFilter(expr string) (func(string) bool, error) {
	if expr == "" {
		return func(string) bool { return true }, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("-only: %w", err)
	}
	return re.MatchString, nil
}

// env describes the run and the machine.
type env struct {
	date                  time.Time
	commit                string
	dirty                 bool
	goVersion, opaVersion string
	kernel                string
	memGiB                float64
	cores                 int
	elapsed               time.Duration
	count                 int
	others                float64 // cores other work kept busy during the run; -1 unknown
}

func environment(ctx context.Context) env {
	e := env{date: time.Now().UTC(), cores: runtime.NumCPU()}
	e.commit = output(ctx, "git", "rev-parse", "--short", "HEAD")
	// Changes to what this command writes do not make the measured code dirty.
	e.dirty = output(ctx, "git", "status", "--porcelain", "--untracked-files=no", "--", ".",
		":(exclude)BENCHMARKS.md", ":(exclude)testdata/bench") != ""
	e.goVersion = output(ctx, goTool(), "env", "GOVERSION")
	e.opaVersion = output(ctx, goTool(), "list", "-m", "-f", "{{.Version}}", "github.com/open-policy-agent/opa")
	e.kernel = output(ctx, "uname", "-r")
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			e.memGiB = kb / (1 << 20)
		}
	}
	return e
}

func output(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// binary is a built device binary.
type binary struct {
	arch, path string
	size       int64
	file       string // what file(1) says, without the build ids
}

var buildIDs = regexp.MustCompile(`,? (Go )?BuildID(\[[a-z0-9]+\])?=[^,]*`)

// inspectBinary checks with file(1) that the binary is a stripped ELF of the architecture.
func inspectBinary(ctx context.Context, arch, path string) (binary, error) {
	st, err := os.Stat(path)
	if err != nil {
		return binary{}, fmt.Errorf("the %s device binary: %w (make build, make cross)", arch, err)
	}
	desc := output(ctx, "file", "-b", path)
	want := map[string]string{"linux/amd64": "x86-64", "linux/arm64": "aarch64"}[arch]
	if !strings.Contains(desc, "ELF") || !strings.Contains(desc, want) {
		return binary{}, fmt.Errorf("%s is not a %s ELF binary: file says %q", path, arch, desc)
	}
	if !strings.HasSuffix(desc, ", stripped") {
		return binary{}, fmt.Errorf("%s is not stripped: file says %q", path, desc)
	}
	return binary{arch: arch, path: path, size: st.Size(), file: buildIDs.ReplaceAllString(desc, "")}, nil
}
