package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/faceguard/faceguard/internal/atomicfile"
)

// bundleKeyID pins the verification key: the key id in a bundle's signature header is ignored, so a
// bundle signed with any other key fails.
const bundleKeyID = "faceguard"

// Files under StateDir.
const (
	activeBundleFile = "bundle/active.tar.gz"
	bundleStateFile  = "bundle/state.json"
)

// bundleState is what survives a restart: the active bundle's identity and the highest revision ever
// activated, so a restart cannot be used to downgrade the policy.
type bundleState struct {
	Revision    string    `json:"revision"`
	SHA256      string    `json:"sha256"`
	ActivatedAt time.Time `json:"activated_at"`
}

// VerificationAlgorithm returns the JWT algorithm OPA must use for a PEM public key: RS256 for RSA,
// ES256/384/512 for ECDSA. Symmetric (HS*) and Ed25519 keys are refused: a verification key on a terminal
// must not be able to sign, and OPA bundles cannot be signed with Ed25519.
func VerificationAlgorithm(pemKey []byte) (string, error) {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return "", errors.New("verification key: not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("verification key: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("verification key: RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
		return "RS256", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
		return "", errors.New("verification key: unsupported ECDSA curve")
	}
	return "", fmt.Errorf("verification key: %T keys cannot verify OPA bundles; use ECDSA P-256 or RSA", pub)
}

// ActivateBundle verifies a signed OPA bundle (a .tar.gz as written by `opa build --signing-key` or
// `faceguard bundle sign`), checks it is newer than the active policy, compiles it, and makes it the
// active policy. On any error the active policy stays.
func (e *Engine) ActivateBundle(ctx context.Context, raw []byte) (Info, error) {
	e.swapMu.Lock()
	defer e.swapMu.Unlock()
	b, info, err := e.verifyBundle(raw)
	if err != nil {
		return Info{}, err
	}
	if floor := e.revisionFloor(); !RevisionNewer(info.Revision, floor) {
		return Info{}, fmt.Errorf("%w: %q is not newer than %q", ErrBundleNotNewer, info.Revision, floor)
	}
	g, err := compile(ctx, b, info)
	if err != nil {
		return Info{}, err
	}
	if e.opts.StateDir != "" {
		if err := e.persist(raw, info); err != nil {
			return Info{}, fmt.Errorf("keep bundle on disk: %w", err)
		}
	}
	e.active.Store(g)
	e.log.Info("policy bundle activated", "revision", info.Revision, "sha256", info.SHA256, "assembly", g.assemblyName())
	e.logNotes(g)
	return info, nil
}

// VerifyBundle checks a bundle's signature and reports its revision without activating it.
func (e *Engine) VerifyBundle(raw []byte) (Info, error) {
	_, info, err := e.verifyBundle(raw)
	return info, err
}

func (e *Engine) verifyBundle(raw []byte) (*bundle.Bundle, Info, error) {
	if len(e.opts.VerificationKey) == 0 {
		return nil, Info{}, ErrNoVerificationKey
	}
	if int64(len(raw)) > e.opts.MaxBundleBytes {
		return nil, Info{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrBundleTooLarge, len(raw), e.opts.MaxBundleBytes)
	}
	alg, err := VerificationAlgorithm(e.opts.VerificationKey)
	if err != nil {
		return nil, Info{}, err
	}
	vc := bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{
		bundleKeyID: {Key: string(e.opts.VerificationKey), Algorithm: alg},
	}, bundleKeyID, "", nil)
	b, err := bundle.NewCustomReader(bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "")).
		WithBundleVerificationConfig(vc).
		WithSizeLimitBytes(e.opts.MaxBundleBytes).
		WithRegoVersion(ast.RegoV1).
		WithLazyLoadingMode(false).
		WithProcessAnnotations(true). // per_policy rules (perpolicy.go)
		Read()
	if err != nil {
		return nil, Info{}, classifyBundleError(err)
	}
	if b.Type() != bundle.SnapshotBundleType {
		return nil, Info{}, fmt.Errorf("%w: only snapshot bundles are accepted", ErrBundleMalformed)
	}
	rev := b.Manifest.Revision
	if rev == "" {
		return nil, Info{}, fmt.Errorf("%w: the manifest has no revision (build it with --revision)", ErrBundleMalformed)
	}
	sum := sha256.Sum256(raw)
	return &b, Info{Revision: rev, Source: "bundle", SHA256: hex.EncodeToString(sum[:]), ActivatedAt: time.Now().UTC()}, nil
}

// classifyBundleError maps OPA's reader errors to the sentinels callers and operators act on.
func classifyBundleError(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "missing .signatures.json"):
		return fmt.Errorf("%w: %v", ErrBundleUnsigned, err)
	case strings.Contains(msg, "digest mismatch"),
		strings.Contains(msg, "verification error"),
		strings.Contains(msg, "verify JWT"),
		strings.Contains(msg, "not included in bundle signature"),
		strings.Contains(msg, "specified in bundle signatures but not found"),
		strings.Contains(msg, "signature"):
		return fmt.Errorf("%w: %v", ErrBundleSignature, err)
	case strings.Contains(msg, "size_limit_bytes"):
		return fmt.Errorf("%w: %v", ErrBundleTooLarge, err)
	}
	return fmt.Errorf("%w: %v", ErrBundleMalformed, err)
}

// revisionFloor is the revision a new bundle must beat: the active one, or the highest ever activated
// on this device if the active bundle had to be dropped.
func (e *Engine) revisionFloor() string {
	floor := e.active.Load().info.Revision
	if st, err := e.readState(); err == nil && RevisionNewer(st.Revision, floor) {
		floor = st.Revision
	}
	return floor
}

func (e *Engine) persist(raw []byte, info Info) error {
	dir := filepath.Join(e.opts.StateDir, "bundle")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(e.opts.StateDir, activeBundleFile), raw, 0o600); err != nil {
		return err
	}
	st, _ := json.Marshal(bundleState{Revision: info.Revision, SHA256: info.SHA256, ActivatedAt: info.ActivatedAt})
	return atomicfile.WriteFile(filepath.Join(e.opts.StateDir, bundleStateFile), st, 0o600)
}

func (e *Engine) readState() (bundleState, error) {
	var st bundleState
	if e.opts.StateDir == "" {
		return st, os.ErrNotExist
	}
	b, err := os.ReadFile(filepath.Join(e.opts.StateDir, bundleStateFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// restorePersisted comes back on the last activated bundle. If it no longer verifies (the key changed,
// the file was damaged) the built-in pack stays and the reason is logged; the revision floor is kept.
func (e *Engine) restorePersisted(ctx context.Context) {
	raw, err := os.ReadFile(filepath.Join(e.opts.StateDir, activeBundleFile))
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		e.log.Error("cannot read the last active bundle; using the built-in pack", "err", err)
		return
	}
	b, info, err := e.verifyBundle(raw)
	if err == nil {
		var g *generation
		if g, err = compile(ctx, b, info); err == nil {
			if st, serr := e.readState(); serr == nil && st.SHA256 == info.SHA256 {
				g.info.ActivatedAt = st.ActivatedAt
			}
			e.active.Store(g)
			e.log.Info("restored policy bundle", "revision", info.Revision, "assembly", g.assemblyName())
			e.logNotes(g)
			return
		}
	}
	e.log.Error("the last active bundle does not load; using the built-in pack", "err", err)
}

// RevisionNewer reports whether revision a is newer than b. Revisions compare in natural order: runs of
// digits as numbers, the rest as text, so "2026.11.2" < "2026.11.10" and "7" < "12". The built-in pack's
// revision is older than any other.
func RevisionNewer(a, b string) bool {
	if a == b {
		return false
	}
	if b == BuiltinRevision {
		return true
	}
	if a == BuiltinRevision {
		return false
	}
	return naturalCompare(a, b) > 0
}

func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		ca, ra := leadingChunk(a)
		cb, rb := leadingChunk(b)
		if c := compareChunk(ca, cb); c != 0 {
			return c
		}
		a, b = ra, rb
	}
	return len(a) - len(b)
}

func leadingChunk(s string) (chunk, rest string) {
	digit := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == digit {
		i++
	}
	return s[:i], s[i:]
}

func compareChunk(a, b string) int {
	if isDigit(a[0]) && isDigit(b[0]) {
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return len(a) - len(b)
		}
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
