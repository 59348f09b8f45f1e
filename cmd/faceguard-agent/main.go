// Command faceguard-agent runs on a face-recognition terminal: it gathers the terminal's facts, judges
// them against the policy pack, enforces what it can, and reports to the fleet.
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

const usage = `faceguard-agent keeps a face-recognition terminal lawful under the Measures (人脸识别技术应用安全管理办法).

Usage:
  faceguard-agent check   (--root DIR | --facts FILE) [--format text|json] [--lang zh|en]
                          [--bundle FILE --verification-key FILE]
  faceguard-agent facts   --root DIR
  faceguard-agent run     --config FILE          keep the terminal lawful and report to the fleet
  faceguard-agent audit   verify|export [--config FILE | --db FILE]
  faceguard-agent version

Run "faceguard-agent COMMAND -h" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWith(ctx, env{clock: clock.Real{}, stdout: stdout, stderr: stderr}, args)
}

// env is what a command gets from the outside world; tests give it a fake clock.
type env struct {
	clock          clock.Clock
	stdout, stderr io.Writer
}

func runWith(ctx context.Context, e env, args []string) error {
	stdout, stderr := e.stdout, e.stderr
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "check":
		return runCheck(ctx, e, args[1:])
	case "facts":
		return runFacts(ctx, e, args[1:])
	case "run":
		return runDaemon(ctx, e, args[1:])
	case "audit":
		return runAudit(ctx, e, args[1:])
	case "version":
		return runVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

// Exit codes. check's are its contract: 0 compliant, 1 non-compliant, 2 bad input.
const (
	exitOK           = 0
	exitNonCompliant = 1
	exitBadInput     = 2
)

// usageError is bad input from the command line or a file the user gave: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// nonCompliant is not a failure of the program: the terminal broke a rule, and the report said which.
type nonCompliant struct{}

func (nonCompliant) Error() string { return "non-compliant" }

func exitCode(err error, stderr io.Writer) int {
	var nc nonCompliant
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &nc):
		return exitNonCompliant
	}
	fmt.Fprintln(stderr, "faceguard-agent:", err)
	return exitBadInput
}
