package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// goTool is the go command; GO in the environment overrides it, as in the Makefile.
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}

// configLine is a benchfmt configuration line of go test's output ("pkg: …", "cpu: …").
var configLine = regexp.MustCompile(`^[a-z][a-zA-Z0-9_-]*: `)

// runRounds runs the suites in rounds: every repeated suite once a round, count rounds, and the others
// once, in the first. A benchmark's runs are thus spread over the whole run instead of following each
// other: on a shared machine whose speed drifts by a tenth from one quarter of an hour to the next, six
// runs in a row can all fall into a slow spell and look like a significant change to benchstat (the same
// code compared with itself failed make bench-check so, +12 % on one document, 2026-11-24).
func runRounds(ss []suite, count int, progress io.Writer, run func(suite) ([]byte, error)) ([]byte, error) {
	var raw bytes.Buffer
	for round := 1; round <= count; round++ {
		for _, s := range ss {
			if !s.repeated && round > 1 {
				continue
			}
			fmt.Fprintf(progress, "════ %s (%s, round %d of %d)\n", s.name, s.pkg, round, count)
			out, err := run(s)
			if err != nil {
				return nil, fmt.Errorf("suite %s: %w", s.name, err)
			}
			raw.Write(out)
		}
	}
	return raw.Bytes(), nil
}

// runOnce runs a suite once (the run function of runRounds).
func runOnce(ctx context.Context, progress io.Writer) func(suite) ([]byte, error) {
	return func(s suite) ([]byte, error) { return runSuite(ctx, s, 1, progress) }
}

// runSuite runs one suite and returns the benchmark output in the standard format: configuration and
// result lines only, which benchstat reads. Result lines are echoed to progress as they come.
func runSuite(ctx context.Context, s suite, count int, progress io.Writer) ([]byte, error) {
	args := []string{"test", "-run", "^$", "-bench", s.bench, "-benchmem", "-count", strconv.Itoa(count), "-timeout", "60m"}
	if s.benchtime != "" {
		args = append(args, "-benchtime", s.benchtime)
	}
	args = append(args, "./"+strings.TrimPrefix(s.pkg, "github.com/faceguard/faceguard/"))
	return goTest(ctx, args, progress, func(line string) bool {
		return strings.HasPrefix(line, "Benchmark") && strings.Contains(line, "\t")
	})
}

// goTest runs go test with args and keeps the configuration lines and the lines keep accepts; on
// failure the error carries the end of the output.
func goTest(ctx context.Context, args []string, progress io.Writer, keep func(string) bool) ([]byte, error) {
	cmd := exec.CommandContext(ctx, goTool(), args...)
	var all bytes.Buffer
	cmd.Stderr = io.MultiWriter(&all, progress)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("go test: %w", err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		switch {
		case configLine.MatchString(line):
			out.WriteString(line + "\n")
		case keep(line):
			out.WriteString(line + "\n")
			fmt.Fprintln(progress, line)
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(all.String(), 40))
	}
	return out.Bytes(), nil
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// results are parsed benchmark output: for each benchmark (package and name, without the Benchmark
// prefix and the -GOMAXPROCS suffix), one sample per run, unit → value.
type results struct {
	runs   map[string][]map[string]float64
	cpu    string
	others float64 // cores other work kept busy during the run; -1 unknown
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

func parseResults(raw []byte) *results {
	r := &results{runs: map[string][]map[string]float64{}, others: -1}
	pkg := ""
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(v)
			continue
		}
		if v, ok := strings.CutPrefix(line, "cpu: "); ok {
			r.cpu = strings.TrimSpace(v)
			continue
		}
		if v, ok := strings.CutPrefix(line, "others: "); ok {
			if x, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				r.others = x
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		iters, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		s := map[string]float64{"iterations": iters}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				s[f[i+1]] = v
			}
		}
		name := procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
		r.runs[pkg+"."+name] = append(r.runs[pkg+"."+name], s)
	}
	return r
}

// get is the median over runs of one benchmark's unit.
func (r *results) get(pkg, name, unit string) (float64, bool) {
	var vs []float64
	for _, s := range r.runs[pkg+"."+name] {
		if v, ok := s[unit]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	return median(vs), true
}

// count is how many runs a benchmark has.
func (r *results) count(pkg, name string) int { return len(r.runs[pkg+"."+name]) }

func median(vs []float64) float64 {
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if n := len(vs); n%2 == 1 {
		return vs[n/2]
	} else {
		return (vs[n/2-1] + vs[n/2]) / 2
	}
}

// filingRow is one line of the filing tracker's accuracy test.
type filingRow struct {
	persons, devices, trials      int
	mean, meanAbs, rms, worst, se float64
	sketchBytes                   int
}

var filingLine = regexp.MustCompile(`measured: (\d+) persons on (\d+) devices, (\d+) trials: mean error ([+-]?[\d.]+)%, mean \|error\| ([\d.]+)%, RMS ([\d.]+)%, worst ([\d.]+)% \(standard error ([\d.]+)%\); mean sketch (\d+) B`)

// runFilingAccuracy runs the filing tracker's accuracy test, which logs what it measured.
func runFilingAccuracy(ctx context.Context, progress io.Writer) ([]filingRow, error) {
	out, err := goTest(ctx, []string{"test", "-run", "^TestMergedEstimateError$", "-v", "-count", "1", "./fleet/filing/"},
		progress, filingLine.MatchString)
	if err != nil {
		return nil, err
	}
	return parseFiling(out), nil
}

func parseFiling(out []byte) []filingRow {
	var rows []filingRow
	for _, m := range filingLine.FindAllStringSubmatch(string(out), -1) {
		atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
		atof := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
		rows = append(rows, filingRow{persons: atoi(m[1]), devices: atoi(m[2]), trials: atoi(m[3]), mean: atof(m[4]),
			meanAbs: atof(m[5]), rms: atof(m[6]), worst: atof(m[7]), se: atof(m[8]), sketchBytes: atoi(m[9])})
	}
	return rows
}
