package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/store"
)

// runAudit is `faceguard-agent audit verify|export`: an auditor's access to the tamper-evident record.
func runAudit(ctx context.Context, e env, args []string) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "export") {
		return usageError{errors.New("audit: usage: faceguard-agent audit verify|export [--db FILE | --config FILE]")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("audit "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	db := fs.String("db", "", "the agent's database `file` (default: state_dir/agent.db of --config)")
	configFile := fs.String("config", "/etc/faceguard/agent.yaml", "the agent's configuration `file`, to find the database")
	file := fs.String("file", "", "verify: check an exported JSON-lines `file` instead of the database")
	out := fs.String("out", "", "export: write to `file` instead of stdout")
	asJSON := fs.Bool("json", false, "verify: print the result as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}

	if sub == "verify" && *file != "" {
		f, err := os.Open(*file)
		if err != nil {
			return usageError{err}
		}
		defer f.Close()
		res, err := store.VerifyJSONLines(f)
		if err != nil {
			return usageError{fmt.Errorf("audit verify: %w", err)}
		}
		return printVerify(e, res, *asJSON)
	}

	path := *db
	if path == "" {
		cfg, err := agent.LoadConfig(*configFile)
		if err != nil {
			return usageError{fmt.Errorf("audit: give --db FILE, or a readable --config: %w", err)}
		}
		path = filepath.Join(cfg.StateDir, "agent.db")
	}
	if _, err := os.Stat(path); err != nil {
		return usageError{fmt.Errorf("audit: %w", err)}
	}
	st, err := store.OpenReadOnly(path)
	if err != nil {
		return usageError{err}
	}
	defer st.Close()

	if sub == "export" {
		w := e.stdout
		if *out != "" {
			f, err := os.Create(*out)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		return st.Export(ctx, w)
	}
	res, err := st.Verify(ctx)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	return printVerify(e, res, *asJSON)
}

// printVerify reports the chain's state; a broken chain exits 1, like a non-compliant check.
func printVerify(e env, res store.VerifyResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if res.OK {
		fmt.Fprintf(e.stdout, "audit chain intact: %d rows, head seq %d hash %s\n", res.Rows, res.Head.Seq, res.Head.Hash)
	} else {
		fmt.Fprintf(e.stdout, "AUDIT CHAIN BROKEN: %d problem(s) in %d rows\n", len(res.Problems), res.Rows)
		for _, p := range res.Problems {
			fmt.Fprintf(e.stdout, "  seq %d: %s\n", p.Seq, p.Message)
		}
	}
	if !res.OK {
		return nonCompliant{}
	}
	return nil
}
