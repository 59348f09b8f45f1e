package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/faceguard/faceguard/internal/atomicfile"
)

// errSlower is returned when the new run is significantly slower than the baseline; the report has
// been printed already.
var errSlower = errors.New("significantly slower than the baseline")

// runCheck runs the guarded suites, writes their output to o.out, and compares it with the baseline
// through benchstat (pinned in go.mod as a tool).
func runCheck(ctx context.Context, o options, stdout, progress io.Writer) error {
	baseline, err := os.ReadFile(o.baseline)
	if err != nil {
		return fmt.Errorf("read the baseline: %w (make bench records it)", err)
	}
	only, err := onlyFilter(o.only)
	if err != nil {
		return err
	}
	busy := readLoad()
	env := environment(ctx)
	var raw bytes.Buffer
	writeRunConfig(&raw, env, o.count)
	var run []suite
	for _, s := range suites {
		if s.guard && only(s.name) {
			s.repeated = true // every guarded suite is compared over count runs
			run = append(run, s)
		}
	}
	out, err := runRounds(run, o.count, progress, runOnce(ctx, progress))
	if err != nil {
		return err
	}
	raw.Write(out)
	others := othersSince(busy)
	writeOthers(&raw, others)
	if err := atomicfile.WriteFile(o.out, raw.Bytes(), 0o644); err != nil {
		return err
	}
	// Compare only what was run again, so the tables hold no rows without a new figure.
	dir, err := os.MkdirTemp("", "benchrun-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	base := filepath.Join(dir, "baseline.txt")
	if err := os.WriteFile(base, onlyBenchmarksOf(baseline, parseResults(raw.Bytes())), 0o644); err != nil {
		return err
	}
	if old, cur := parseResults(baseline).cpu, parseResults(raw.Bytes()).cpu; old != cur {
		fmt.Fprintf(stdout, "note: the baseline was recorded on %q, this run is on %q: differences may be the machine's\n\n", old, cur)
	}
	// The run's own configuration lines (commit, versions, count) differ from run to run; compared
	// unignored, benchstat would put the two runs in separate tables instead of side by side.
	args := []string{"-ignore", strings.Join(runConfigKeys, ","), "baseline=" + base, "new=" + o.out}
	text, err := benchstat(ctx, args...)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, text)
	table, err := benchstat(ctx, append([]string{"-format", "csv"}, args...)...)
	if err != nil {
		return err
	}
	changes, compared, err := parseBenchstatCSV(table)
	if err != nil {
		return err
	}
	if compared == 0 {
		return errors.New("benchstat compared no benchmark of the new run with the baseline: were they renamed? (make bench records a new baseline)")
	}
	var slower []change
	for _, c := range changes {
		if c.slowdown() > o.limit(c.unit) {
			slower = append(slower, c)
		}
	}
	dirty := ""
	if env.dirty {
		dirty = " with uncommitted changes"
	}
	fmt.Fprintf(stdout, "Baseline measured at commit %s; this run at commit %s%s.\n", configValue(baseline, "commit"), env.commit, dirty)
	baseOthers := parseResults(baseline).others
	busier := others >= 0 && baseOthers >= 0 && others > baseOthers+0.25
	if others >= 0 && baseOthers >= 0 {
		fmt.Fprintf(stdout, "Other work on the machine: %.2f cores on average while the baseline ran, %.2f during this run.\n", baseOthers, others)
	}
	fmt.Fprintf(stdout, "%d figures compared; significant changes (p < 0.05): %d. ", compared, len(changes))
	if len(slower) == 0 {
		fmt.Fprintf(stdout, "None is a slowdown beyond %.0f %% (p99: %.0f %%).\n", o.threshold, o.p99Threshold)
		return nil
	}
	fmt.Fprintf(stdout, "Slower beyond the threshold (%.0f %%; p99 %.0f %%):\n", o.threshold, o.p99Threshold)
	for _, c := range slower {
		fmt.Fprintf(stdout, "  %-60s %-10s %s -> %s  %+.1f %%\n", c.name, c.unit, c.old, c.new, c.delta)
	}
	if busier {
		fmt.Fprintln(stdout, "The machine was busier than when the baseline was recorded: the slowdown may be the machine's.\n"+
			"Run the check again when it is quiet before looking for a cause in the code.")
	}
	fmt.Fprintln(stdout, "If the slowdown is intended, record a new baseline with `make bench`.")
	return errSlower
}

// limit is the slowdown in percent that fails the check for a unit; +Inf for units that are reported
// only (bytes, sizes and the like).
func (o options) limit(unit string) float64 {
	switch {
	case unit == "sec/op", strings.HasPrefix(unit, "p50-"), unit == "allocs/op", unit == "msgs/s":
		return o.threshold
	case strings.HasPrefix(unit, "p99-"):
		return o.p99Threshold
	}
	return math.Inf(1)
}

func benchstat(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, goTool(), append([]string{"tool", "benchstat"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("benchstat: %w: %s", err, stderr.String())
	}
	return string(out), nil
}

// onlyBenchmarksOf keeps the configuration lines of raw and the result lines of the benchmarks in keep.
func onlyBenchmarksOf(raw []byte, keep *results) []byte {
	var out bytes.Buffer
	pkg := ""
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(v)
		}
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "Benchmark") {
			name := procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
			if keep.count(pkg, name) == 0 {
				continue
			}
		}
		out.WriteString(line)
	}
	return out.Bytes()
}

// change is one significant difference benchstat found.
type change struct {
	name, unit, old, new string
	delta                float64 // percent, new vs baseline
}

// slowdown is how much worse the new figure is, in percent (negative: better). Rates are better higher.
func (c change) slowdown() float64 {
	if strings.HasSuffix(c.unit, "/s") {
		return -c.delta
	}
	return c.delta
}

// parseBenchstatCSV reads benchstat's -format csv output: per unit a header row (",UNIT,CI,UNIT,CI,vs
// base,P") and a row per benchmark whose "vs base" is "~" when the difference is not significant. It
// returns the significant changes and how many figures had a value on both sides.
func parseBenchstatCSV(s string) ([]change, int, error) {
	rd := csv.NewReader(strings.NewReader(s))
	rd.FieldsPerRecord = -1
	recs, err := rd.ReadAll()
	if err != nil {
		return nil, 0, fmt.Errorf("benchstat csv: %w", err)
	}
	var out []change
	unit, compared := "", 0
	for _, r := range recs {
		switch {
		case len(r) >= 3 && r[0] == "" && r[2] == "CI":
			unit = r[1]
		case len(r) >= 7 && r[0] != "" && r[0] != "geomean" && r[1] != "" && r[3] != "":
			compared++
			if !strings.HasSuffix(r[5], "%") {
				continue // "~": not significant
			}
			d, err := strconv.ParseFloat(strings.TrimSuffix(r[5], "%"), 64)
			if err != nil {
				return nil, 0, fmt.Errorf("benchstat csv: %q: %w", r[5], err)
			}
			out = append(out, change{name: r[0], unit: unit, old: r[1], new: r[3], delta: d})
		}
	}
	return out, compared, nil
}

// configValue is the value of a configuration line of raw benchmark output, or "unknown".
func configValue(raw []byte, key string) string {
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
