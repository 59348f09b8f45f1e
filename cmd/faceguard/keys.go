package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// Key files `faceguard keys gen` writes.
const (
	controllerKeyFile = "controller.key" // Ed25519, signs commands (keep on the controller)
	controllerPubFile = "controller.pub" // pinned by every agent
	bundleKeyFile     = "bundle.key"     // ECDSA P-256, signs policy bundles (keep offline if you can)
	bundlePubFile     = "bundle.pub"     // every agent verifies bundles with it
	subjectKeyFile    = "subject.key"    // the fleet's subject hash key, shared by agents and controller
	apiTokenFile      = "api.token"      // the controller's API token for operators' commands
)

// runKeys is `faceguard keys gen --dir DIR`.
func runKeys(e env, args []string) error {
	if len(args) == 0 || args[0] != "gen" {
		return usageError{errors.New("keys: usage: faceguard keys gen --dir DIR [--force]")}
	}
	fs := flag.NewFlagSet("keys gen", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("dir", "", "write the keys into `DIR` (created)")
	force := fs.Bool("force", false, "overwrite keys that exist (every agent must then get the new public keys)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if *dir == "" {
		return usageError{errors.New("keys gen: --dir is required")}
	}
	files, err := generateKeys()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	for name := range files {
		if _, err := os.Stat(filepath.Join(*dir, name)); err == nil && !*force {
			return usageError{fmt.Errorf("keys gen: %s exists; pass --force to replace the keys of a fleet", filepath.Join(*dir, name))}
		}
	}
	for _, name := range []string{controllerKeyFile, controllerPubFile, bundleKeyFile, bundlePubFile, subjectKeyFile, apiTokenFile} {
		mode := os.FileMode(0o600)
		if filepath.Ext(name) == ".pub" {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(*dir, name), files[name], mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, `keys written to %s:
  %-15s signs commands: keep it on the controller
  %-15s pin it on every agent (keys.controller_public_key)
  %-15s signs policy bundles: keep it offline
  %-15s every agent verifies bundles with it (keys.bundle_verification_key)
  %-15s the fleet's subject hash key: on the controller and every agent (keys.subject_key)
  %-15s the controller's API token for operators' commands
`, *dir, controllerKeyFile, controllerPubFile, bundleKeyFile, bundlePubFile, subjectKeyFile, apiTokenFile)
	return nil
}

func generateKeys() (map[string][]byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	bk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	bkDER, err := x509.MarshalECPrivateKey(bk)
	if err != nil {
		return nil, err
	}
	bpDER, err := x509.MarshalPKIXPublicKey(&bk.PublicKey)
	if err != nil {
		return nil, err
	}
	subject := make([]byte, 32)
	token := make([]byte, 24)
	if _, err := rand.Read(subject); err != nil {
		return nil, err
	}
	if _, err := rand.Read(token); err != nil {
		return nil, err
	}
	return map[string][]byte{
		controllerKeyFile: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		controllerPubFile: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		bundleKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: bkDER}),
		bundlePubFile:     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: bpDER}),
		subjectKeyFile:    []byte(hex.EncodeToString(subject) + "\n"),
		apiTokenFile:      []byte(hex.EncodeToString(token) + "\n"),
	}, nil
}
