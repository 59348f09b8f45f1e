package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/faceguard/faceguard/policies"
)

// BuildBundle packs a policy tree (data.json at the root, Rego modules below; *_test.rego left out) into a
// standard, unsigned OPA bundle with the given revision. The tree must compile and keep the canary floor
// (see canary), so a broken pack fails here on the operator's desk and not on a terminal.
func BuildBundle(ctx context.Context, tree fs.FS, revision string) ([]byte, error) {
	if revision == "" {
		return nil, errors.New("build bundle: a revision is required")
	}
	if revision == BuiltinRevision {
		return nil, fmt.Errorf("build bundle: %q is reserved for the built-in pack", BuiltinRevision)
	}
	b, err := loadFSBundle(policies.PolicyFiles(tree))
	if err != nil {
		return nil, fmt.Errorf("build bundle: %w", err)
	}
	roots := []string{"faceguard"}
	b.Manifest.Revision = revision
	b.Manifest.Roots = &roots
	b.Manifest.SetRegoVersion(ast.RegoV1)
	if _, err := compile(ctx, b, Info{Revision: revision, Source: "bundle"}); err != nil {
		return nil, fmt.Errorf("build bundle: %w", err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(*b); err != nil {
		return nil, fmt.Errorf("build bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// SignBundle signs a bundle with a PEM private key (ECDSA or RSA), exactly as `opa build --signing-key`
// would: the result carries .signatures.json over every file.
func SignBundle(raw, privateKeyPEM []byte) ([]byte, error) {
	alg, err := signingAlgorithm(privateKeyPEM)
	if err != nil {
		return nil, err
	}
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "")).
		WithSkipBundleVerification(true).
		WithRegoVersion(ast.RegoV1).
		Read()
	if err != nil {
		return nil, fmt.Errorf("sign bundle: read: %w", err)
	}
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(privateKeyPEM), alg, ""), bundleKeyID, false); err != nil {
		return nil, fmt.Errorf("sign bundle: %w", err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		return nil, fmt.Errorf("sign bundle: %w", err)
	}
	return buf.Bytes(), nil
}

func signingAlgorithm(privateKeyPEM []byte) (string, error) {
	block, _ := pem.Decode(privateKeyPEM)
	if block == nil {
		return "", errors.New("signing key: not PEM")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	var pub any
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	default:
		return "", fmt.Errorf("signing key: %T keys cannot sign OPA bundles; use ECDSA P-256 or RSA", key)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	return VerificationAlgorithm(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
