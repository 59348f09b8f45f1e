// Command benchrun runs the project's benchmarks and turns them into figures.
//
//	go run ./internal/benchrun bench   # make bench: every suite; writes the "benchmarks" section of
//	                                   # BENCHMARKS.md and the raw output (the baseline)
//	go run ./internal/benchrun check   # make bench-check: the guarded suites again, compared with the
//	                                   # baseline by benchstat; non-zero on a significant slowdown
//
// It only measures and writes its own outputs: it never edits another section of BENCHMARKS.md (make
// soak owns "fleet-scale"), and a failed benchmark leaves the document and the baseline as they were.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errSlower) {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
		}
		os.Exit(1)
	}
}

const usage = `Usage:
  benchrun bench [flags]   run every suite, write BENCHMARKS.md (section "benchmarks") and the baseline
  benchrun check [flags]   run the guarded suites, compare with the baseline (benchstat)
`

// options are the flags of both commands.
type options struct {
	count        int
	doc          string
	baseline     string
	out          string
	amd64, arm64 string
	only         string
	threshold    float64
	p99Threshold float64
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "bench" && args[0] != "check") {
		fmt.Fprint(stderr, usage)
		return errors.New("want a command: bench or check")
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.count, "count", 6, "runs of each repeated suite (-count of go test); medians are reported")
	fs.StringVar(&o.doc, "doc", "BENCHMARKS.md", "the document whose section \"benchmarks\" is written")
	fs.StringVar(&o.baseline, "baseline", "testdata/bench/baseline.txt", "the recorded raw benchmark output")
	fs.StringVar(&o.out, "out", "bench.out", "check: where the new raw output goes")
	fs.StringVar(&o.amd64, "amd64", "bin/faceguard-agent", "the device binary for linux/amd64 (make build)")
	fs.StringVar(&o.arm64, "arm64", "bin/linux-arm64/faceguard-agent", "the device binary for linux/arm64 (make cross)")
	fs.StringVar(&o.only, "only", "", "run only the suites whose name matches this regexp (bench: no document is written)")
	fs.Float64Var(&o.threshold, "threshold", 10, "check: fail on a significant slowdown of time/op, p50 or allocs/op beyond this many percent")
	fs.Float64Var(&o.p99Threshold, "p99-threshold", 50, "check: the same for p99, which is noisier on a shared machine")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.count < 1 {
		return errors.New("-count must be at least 1")
	}
	if cmd == "bench" {
		return runBench(ctx, o, stderr)
	}
	return runCheck(ctx, o, stdout, stderr)
}
