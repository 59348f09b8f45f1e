package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
)

// runCheck is the installer's one-shot check: gather or read facts, judge them, print what to fix.
func runCheck(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	root := fs.String("root", "", "check the terminal laid out under `DIR` (docs/terminal.md)")
	factsFile := fs.String("facts", "", "check a facts document from `FILE` (- for stdin) instead of a terminal")
	format := fs.String("format", "text", "report `format`: text (for people) or json (the Decision, nothing else)")
	lang := fs.String("lang", "zh", "report `language`: zh or en")
	bundleFile := fs.String("bundle", "", "judge with the signed policy bundle in `FILE` instead of the built-in pack")
	keyFile := fs.String("verification-key", "", "PEM public key `FILE` the bundle must be signed with")
	deviceID := fs.String("device-id", "", "device `id` to use instead of the one in site.yaml (with --root)")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: faceguard-agent check (--root DIR | --facts FILE) [flags]\n\n"+
			"Exit status: 0 compliant, 1 non-compliant, 2 bad input or unreadable terminal.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("check: unexpected argument %q", fs.Arg(0))}
	case (*root == "") == (*factsFile == ""):
		return usageError{errors.New("check: give exactly one of --root DIR or --facts FILE")}
	case *format != "text" && *format != "json":
		return usageError{fmt.Errorf("check: --format must be text or json, not %q", *format)}
	case *lang != "zh" && *lang != "en":
		return usageError{fmt.Errorf("check: --lang must be zh or en, not %q", *lang)}
	case (*bundleFile == "") != (*keyFile == ""):
		return usageError{errors.New("check: --bundle and --verification-key go together")}
	}

	eng, err := newCheckEngine(ctx, *bundleFile, *keyFile)
	if err != nil {
		return usageError{err}
	}
	var facts device.Facts
	if *factsFile != "" {
		facts, err = readFactsFile(*factsFile, eng)
	} else {
		facts, err = gatherFacts(ctx, e, *root, *deviceID)
	}
	if err != nil {
		return usageError{err}
	}
	decision, err := eng.Decide(ctx, &facts)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}

	if *format == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(decision); err != nil {
			return err
		}
	} else {
		writeReport(e.stdout, *lang, &facts, decision, eng)
	}
	if decision.Status != device.StatusCompliant {
		return nonCompliant{}
	}
	return nil
}

func newCheckEngine(ctx context.Context, bundleFile, keyFile string) (*engine.Engine, error) {
	var key []byte
	if keyFile != "" {
		var err error
		if key, err = os.ReadFile(keyFile); err != nil {
			return nil, fmt.Errorf("verification key: %w", err)
		}
		if _, err := engine.VerificationAlgorithm(key); err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
	}
	eng, err := engine.New(ctx, engine.Options{VerificationKey: key})
	if err != nil {
		return nil, err
	}
	if bundleFile != "" {
		raw, err := os.ReadFile(bundleFile)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if _, err := eng.ActivateBundle(ctx, raw); err != nil {
			return nil, fmt.Errorf("bundle %s refused: %w", bundleFile, err)
		}
	}
	return eng, nil
}

// readFactsFile reads a facts document and holds it to the schema and to the policy's vocabulary.
func readFactsFile(name string, eng *engine.Engine) (device.Facts, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, device.MaxFactsBytes+1))
	} else {
		data, err = readLimited(name, device.MaxFactsBytes+1)
	}
	if err != nil {
		return device.Facts{}, err
	}
	f, err := device.ParseFacts(data)
	if err != nil {
		return f, fmt.Errorf("%s: %w", name, err)
	}
	cats := eng.Categories()
	if _, ok := cats[f.Location.Category]; !ok && !f.IsUnknown(device.GroupLocation) {
		known := make([]string, 0, len(cats))
		for c := range cats {
			known = append(known, c)
		}
		sort.Strings(known)
		return f, fmt.Errorf("%s: invalid facts: location.category: %q is not a category of the policy (one of %s)",
			name, f.Location.Category, strings.Join(known, ", "))
	}
	return f, nil
}

func readLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// gatherFacts reads a terminal laid out under root. A root that holds none of the contract's files is
// not a terminal: that is a usage error, not a terminal whose every fact is unknown.
func gatherFacts(ctx context.Context, e env, root, deviceID string) (device.Facts, error) {
	st, err := os.Stat(root)
	if err != nil {
		return device.Facts{}, fmt.Errorf("terminal root: %w", err)
	}
	if !st.IsDir() {
		return device.Facts{}, fmt.Errorf("terminal root %s is not a directory", root)
	}
	found := false
	for _, p := range []string{"etc/faceguard/site.yaml", "var/lib/terminal/status.json", "var/lib/terminal/gallery.db"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			found = true
		}
	}
	if !found {
		return device.Facts{}, fmt.Errorf("%s is not a terminal root: it has none of etc/faceguard/site.yaml, "+
			"var/lib/terminal/status.json, var/lib/terminal/gallery.db (see docs/terminal.md)", root)
	}
	term := fsterm.New(fsterm.Options{Root: root, Clock: e.clock, DeviceID: deviceID})
	return term.Facts(ctx)
}
