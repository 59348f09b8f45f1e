package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
)

// runFacts prints the facts document gathered from a terminal root: what the policy will see.
func runFacts(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("facts", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	root := fs.String("root", "", "the terminal laid out under `DIR` (docs/terminal.md)")
	deviceID := fs.String("device-id", "", "device `id` to use instead of the one in site.yaml")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *root == "" || fs.NArg() > 0 {
		return usageError{errors.New("facts: usage: faceguard-agent facts --root DIR")}
	}
	f, err := gatherFacts(ctx, e, *root, *deviceID)
	if err != nil {
		return usageError{err}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("facts: %w", err)
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}
