package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/faceguard/faceguard/agent/engine"
)

// runBundle is `faceguard bundle build|sign|verify`: standard OPA bundles, so `opa build --signing-key`
// output is accepted the same way.
func runBundle(ctx context.Context, e env, args []string) error {
	if len(args) == 0 {
		return usageError{errors.New("bundle: usage: faceguard bundle build|sign|verify …")}
	}
	fs := flag.NewFlagSet("bundle "+args[0], flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	switch args[0] {
	case "build":
		dir := fs.String("dir", "policies", "the policy tree: data.json and the Rego modules (tests are left out)")
		rev := fs.String("revision", "", "the bundle's `revision`; agents accept only a newer one (e.g. 2026.11.24-1)")
		out := fs.String("o", "bundle.tar.gz", "write the unsigned bundle to `FILE`")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *rev == "" {
			return usageError{errors.New("bundle build: --revision is required")}
		}
		raw, err := engine.BuildBundle(ctx, os.DirFS(*dir), *rev)
		if err != nil {
			return usageError{err}
		}
		if err := os.WriteFile(*out, raw, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "built %s: revision %s, %d bytes (unsigned: run faceguard bundle sign)\n", *out, *rev, len(raw))
		return nil
	case "sign":
		key := fs.String("key", "", "the bundle signing key `FILE` (bundle.key of faceguard keys gen, or any ECDSA/RSA PEM)")
		out := fs.String("o", "", "write the signed bundle to `FILE` (default: replace the input)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *key == "" || fs.NArg() != 1 {
			return usageError{errors.New("bundle sign: usage: faceguard bundle sign --key bundle.key [-o OUT] BUNDLE")}
		}
		raw, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return usageError{err}
		}
		k, err := os.ReadFile(*key)
		if err != nil {
			return usageError{err}
		}
		signed, err := engine.SignBundle(raw, k)
		if err != nil {
			return usageError{err}
		}
		dst := *out
		if dst == "" {
			dst = fs.Arg(0)
		}
		if err := os.WriteFile(dst, signed, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "signed %s\n", dst)
		return nil
	case "verify":
		key := fs.String("key", "", "the public `FILE` bundles must be signed with (bundle.pub)")
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *key == "" || fs.NArg() != 1 {
			return usageError{errors.New("bundle verify: usage: faceguard bundle verify --key bundle.pub BUNDLE")}
		}
		info, err := verifyBundleFile(ctx, fs.Arg(0), *key)
		if err != nil {
			return failed{fmt.Sprintf("bundle %s refused: %v", fs.Arg(0), err)}
		}
		fmt.Fprintf(e.stdout, "bundle %s: signature valid, revision %s, sha256 %s; it compiles and keeps the pack's floor\n",
			fs.Arg(0), info.Revision, info.SHA256)
		return nil
	}
	return usageError{fmt.Errorf("bundle: unknown subcommand %q", args[0])}
}

// verifyBundleFile checks a bundle as an agent would: signature, compilation, canary floor.
func verifyBundleFile(ctx context.Context, path, keyFile string) (engine.Info, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return engine.Info{}, err
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return engine.Info{}, err
	}
	return verifyBundleBytes(ctx, raw, key)
}

func verifyBundleBytes(ctx context.Context, raw, key []byte) (engine.Info, error) {
	eng, err := engine.New(ctx, engine.Options{VerificationKey: key})
	if err != nil {
		return engine.Info{}, err
	}
	return eng.ActivateBundle(ctx, raw)
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{errors.New("help shown")}
		}
		return usageError{err}
	}
	return nil
}
