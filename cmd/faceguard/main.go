// Command faceguard is the operator's tool: the fleet controller and its dashboard, fleet-wide commands,
// the filing tracker, signed policy bundles, the simulator, and the demo.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/faceguard/faceguard/internal/clock"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

const usage = `faceguard is the operator's tool for a fleet of face-recognition terminals.

Usage:
  faceguard demo      [--mqtt-addr ADDR] [--http-addr ADDR]   the whole system in one process
  faceguard keys gen  --dir DIR                                 the controller's keys, a bundle signing key, the subject key
  faceguard bundle    build|sign|verify …                       signed OPA policy bundles
  faceguard fleet     serve|status|push|reevaluate|forget|report|filing …
  faceguard sim       --devices N --broker URL [--scenario FILE] simulated terminals against a broker
  faceguard version

Run "faceguard COMMAND -h" for a command's flags.
`

// env is what a command gets from the outside world; tests give it a fake clock.
type env struct {
	clock          clock.Clock
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWith(ctx, env{clock: clock.Real{}, stdout: stdout, stderr: stderr}, args)
}

func runWith(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "keys":
		return runKeys(e, args[1:])
	case "bundle":
		return runBundle(ctx, e, args[1:])
	case "fleet":
		return runFleet(ctx, e, args[1:])
	case "demo":
		return runDemo(ctx, e, args[1:])
	case "sim":
		return runSim(ctx, e, args[1:])
	case "version":
		return runVersion(e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	fmt.Fprint(e.stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

// usageError is bad input: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// failed is a command that ran and did not get what it needed (a device that did not confirm): exit 1.
type failed struct{ msg string }

func (f failed) Error() string { return f.msg }

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "faceguard:", err)
	var f failed
	if errors.As(err, &f) {
		return 1
	}
	return 2
}
