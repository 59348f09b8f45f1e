package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

const sampleRaw = `commit: abc1234
count: 3
goos: linux
goarch: amd64
pkg: github.com/faceguard/faceguard/agent/engine
cpu: AMD EPYC
BenchmarkDecisionPaths/embedded/typical-2 	    5803	    176478 ns/op	       141.9 p50-µs	       639.3 p99-µs	   61991 B/op	    1209 allocs/op
BenchmarkDecisionPaths/embedded/typical-2 	    5803	    186478 ns/op	       151.9 p50-µs	       539.3 p99-µs	   61991 B/op	    1209 allocs/op
BenchmarkDecisionPaths/embedded/typical-2 	    5803	    196478 ns/op	       161.9 p50-µs	       739.3 p99-µs	   61991 B/op	    1209 allocs/op
BenchmarkDecisionPaths/rego/typical-2 	    5003	    206478 ns/op	       171.9 p50-µs	       701.3 p99-µs	   61991 B/op	    1209 allocs/op
BenchmarkDecisionPaths/server/typical-2 	    2001	    589014 ns/op	       516.3 p50-µs	      2240 p99-µs	   19253 B/op	     157 allocs/op
BenchmarkDecisionPaths/go/typical-2 	  376622	      2856 ns/op	         1.773 p50-µs	         7.551 p99-µs	    2176 B/op	      20 allocs/op
pkg: github.com/faceguard/faceguard/agent
BenchmarkMatchOverSocket-2 	   21156	     57170 ns/op	        41.07 p50-µs	       226.5 p99-µs	   12979 B/op	     187 allocs/op
pkg: github.com/faceguard/faceguard/cmd/faceguard-agent
BenchmarkAgentFootprint/quiet-2   	       1	30141108458 ns/op	        38.62 rss-peak-MB	        35.25 rss-steady-MB	        26.13 stripped-MB
BenchmarkAgentFootprint/matching-2   	       1	30141108458 ns/op	        41.62 rss-peak-MB	        41.25 rss-steady-MB	        26.13 stripped-MB
pkg: github.com/faceguard/faceguard/fleet
BenchmarkControllerIngest/devices_10000/burst-2  	       2	4207484636 ns/op	      2388 msgs/s	   2045211 p50-µs	   4359472 p99-µs	123817764 B/op	 2061106 allocs/op
`

func TestParseResultsTakesMediansPerPackage(t *testing.T) {
	r := parseResults([]byte(sampleRaw))
	if r.cpu != "AMD EPYC" {
		t.Errorf("cpu %q", r.cpu)
	}
	if n := r.count(pkgEngine, "DecisionPaths/embedded/typical"); n != 3 {
		t.Fatalf("%d runs", n)
	}
	for _, c := range []struct {
		pkg, name, unit string
		want            float64
	}{
		{pkgEngine, "DecisionPaths/embedded/typical", "ns/op", 186478},
		{pkgEngine, "DecisionPaths/embedded/typical", "p99-µs", 639.3},
		{pkgAgent, "MatchOverSocket", "p50-µs", 41.07},
		{pkgFleet, "ControllerIngest/devices_10000/burst", "msgs/s", 2388},
	} {
		if got, ok := r.get(c.pkg, c.name, c.unit); !ok || got != c.want {
			t.Errorf("%s %s: %v %v, want %v", c.name, c.unit, got, ok, c.want)
		}
	}
	if _, ok := r.get(pkgAgent, "DecisionPaths/embedded/typical", "ns/op"); ok {
		t.Error("a benchmark found under another package")
	}
}

func TestRenderShowsRatiosVerdictsAndGaps(t *testing.T) {
	bins := []binary{{arch: "linux/amd64", path: "bin/faceguard-agent", size: 27_400_000, file: "ELF 64-bit LSB executable, x86-64, stripped"}}
	out := render(parseResults([]byte(sampleRaw)), env{elapsed: 11*time.Minute + 3*time.Second, count: 3}, bins, nil)
	for _, want := range []string{
		"| full-pack decision, prepared, in process — typical | p50 ≤ 100 µs | p50 152 µs | **not met** |",
		"typical 3.4×", // 516.3 / 151.9
		"| 152 µs / 639 µs | 172 µs / 701 µs | 516 µs / 2.24 ms |", // embedded, rego and server of the typical document
		"| 3.4× | 3.0× |", // server ÷ embedded, server ÷ rego
		"| the same, assembled in Rego too (a bundle with its own `decision.rego`) | — | p50 compliant —, typical 172 µs, hotel_room — | |",
		"| device binary, stripped, linux/amd64 | ≤ 35 MB | 27.4 MB | met |",
		"| agent RSS at steady state, 10,000 subjects, pack loaded — gallery unchanged | ≤ 40 MB | 37.0 MB | met |",
		"| agent RSS at steady state, 10,000 subjects, pack loaded — busy gate (10 recognitions/s) | ≤ 40 MB | 43.3 MB | **not met** |",
		"| `match` over the Unix socket | p99 ≤ 300 µs | p99 227 µs | met |",
		"| raw capture past `raw_image_max_s` → deleted | p99 ≤ 1 s | p99 — | not measured |",
		"| 10,000 | 2,388 msgs/s | 2.05 s / 4.36 s |",
		"took 11 min 03 s (",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{fmtDur(541), "541 ns"}, {fmtDur(1773), "1.77 µs"}, {fmtDur(151_900), "152 µs"}, {fmtDur(25_074_000), "25.1 ms"},
		{fmtDur(4_359_472_000), "4.36 s"}, {fmtNum(1234567), "1,234,567"}, {fmtNum(0.5), "0.500"}, {fmtRatio(3.44), "3.4×"},
		{fmtRatio(108.4), "108×"}, {fmtRatio(1234), "1,234×"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestConfigValue(t *testing.T) {
	if got := configValue([]byte(sampleRaw), "commit"); got != "abc1234" {
		t.Errorf("commit %q", got)
	}
	if got := configValue([]byte(sampleRaw), "nothing"); got != "unknown" {
		t.Errorf("missing key: %q", got)
	}
}

func TestParseFiling(t *testing.T) {
	rows := parseFiling([]byte("    sketch_test.go:269: measured: 10000 persons on 200 devices, 16 trials: mean error +0.085%, mean |error| 0.380%, RMS 0.483%, worst 1.060% (standard error 0.812%); mean sketch 407 B\n"))
	if len(rows) != 1 || rows[0] != (filingRow{persons: 10000, devices: 200, trials: 16, mean: 0.085, meanAbs: 0.38, rms: 0.483, worst: 1.06, se: 0.812, sketchBytes: 407}) {
		t.Fatalf("%+v", rows)
	}
}

// benchstat's CSV as `benchstat -format csv baseline=… new=…` writes it.
const sampleCSV = `goos: linux
goarch: amd64
pkg: github.com/faceguard/faceguard/agent/engine
cpu: AMD EPYC
,baseline,,new,,,
,sec/op,CI,sec/op,CI,vs base,P
DecisionPaths/embedded/compliant-2,7.3386e-05,∞,9.0e-05,∞,+22.64%,p=0.008 n=5
DecisionPaths/embedded/typical-2,1.7e-04,∞,1.71e-04,∞,~,p=0.310 n=5
Match-2,1.5e-08,∞,1.4e-08,∞,-6.67%,p=0.008 n=5
geomean,2.7e-06,,7.3e-05,,+30.00%,

,baseline,,new,,,
,p99-µs,CI,p99-µs,CI,vs base,P
DecisionPaths/embedded/compliant-2,327.7,∞,400,∞,+22.06%,p=0.008 n=5

,baseline,,new,,,
,B/op,CI,B/op,CI,vs base,P
DecisionPaths/embedded/compliant-2,33773,∞,43773,∞,+29.61%,p=0.008 n=5
`

func TestCheckFailsOnlyOnSignificantSlowdownsBeyondTheThreshold(t *testing.T) {
	changes, compared, err := parseBenchstatCSV(sampleCSV)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 4 || compared != 5 {
		t.Fatalf("%d compared, %d changes: %+v", compared, len(changes), changes)
	}
	o := options{threshold: 10, p99Threshold: 50}
	var failing []string
	for _, c := range changes {
		if c.slowdown() > o.limit(c.unit) {
			failing = append(failing, c.name+" "+c.unit)
		}
	}
	// The time slowdown fails; the p99 one is within its wider threshold, bytes are reported only, the
	// faster Match and the insignificant typical change pass.
	if strings.Join(failing, ",") != "DecisionPaths/embedded/compliant-2 sec/op" {
		t.Fatalf("failing: %v", failing)
	}
	if (change{unit: "msgs/s", delta: -20}).slowdown() != 20 {
		t.Error("a lower rate is not a slowdown")
	}
}

func TestNothingComparedIsSeen(t *testing.T) {
	// Runs benchstat put in separate tables (a configuration key that differs) have one side each.
	_, compared, err := parseBenchstatCSV(",baseline,,,\n,sec/op,CI,,\nMatch-2,1.5e-08,∞,,\n\n,new,,,\n,sec/op,CI,,\nMatch-2,1.5e-08,∞,,\n")
	if err != nil || compared != 0 {
		t.Fatalf("compared %d, err %v", compared, err)
	}
}

func TestOnlyBenchmarksOfKeepsWhatWasRunAgain(t *testing.T) {
	keep := parseResults([]byte("pkg: github.com/faceguard/faceguard/agent\nBenchmarkMatchOverSocket-2 \t 1\t 5 ns/op\n"))
	got := string(onlyBenchmarksOf([]byte(sampleRaw), keep))
	if !strings.Contains(got, "BenchmarkMatchOverSocket-2") || strings.Contains(got, "DecisionPaths") || !strings.Contains(got, "pkg: ") {
		t.Fatalf("%s", got)
	}
}

// TestRunRoundsInterleaves: each repeated suite runs once a round, the others once, in the first round.
func TestRunRoundsInterleaves(t *testing.T) {
	var order []string
	ss := []suite{{name: "a", repeated: true}, {name: "once"}, {name: "b", repeated: true}}
	out, err := runRounds(ss, 3, io.Discard, func(s suite) ([]byte, error) {
		order = append(order, s.name)
		return []byte(s.name + "\n"), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, " "); got != "a once b a b a b" {
		t.Fatalf("order %q", got)
	}
	if string(out) != "a\nonce\nb\na\nb\na\nb\n" {
		t.Fatalf("output %q", out)
	}
}
