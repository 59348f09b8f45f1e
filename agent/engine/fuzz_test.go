package engine_test

// Whatever bytes arrive as a bundle — garbled on the way, forged, signed by the right key but broken —
// ActivateBundle either activates a verified, newer, working policy or refuses with one of the engine's
// reasons, and a refusal changes nothing: not the active policy, not what a restart would come back on.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/policies"
)

func fuzzKeys(tb testing.TB) (priv, pub []byte) {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
}

// rewriteTar edits the files of a bundle tarball (edit returns the new content, or nil to drop the file).
func rewriteTar(tb testing.TB, raw []byte, edit func(name string, body []byte) []byte) []byte {
	tb.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if body = edit(strings.TrimPrefix(hdr.Name, "/"), body); body == nil {
			continue
		}
		_ = tw.WriteHeader(&tar.Header{Name: hdr.Name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	_ = zw.Close()
	return out.Bytes()
}

// fuzzFacts are facts to decide with every policy the engine accepts.
func fuzzFacts(tb testing.TB) device.Facts {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "device", "testdata", "facts", "compliant_gate.json"))
	if err != nil {
		tb.Fatal(err)
	}
	f, err := device.ParseFacts(b)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

var bundleErrors = []error{engine.ErrBundleUnsigned, engine.ErrBundleSignature, engine.ErrBundleNotNewer, engine.ErrBundleCompile,
	engine.ErrBundleIncomplete, engine.ErrBundleTooLarge, engine.ErrBundleMalformed}

func FuzzActivateBundle(f *testing.F) {
	ctx := context.Background()
	priv, pub := fuzzKeys(f)
	otherPriv, _ := fuzzKeys(f)
	stateDir := f.TempDir()
	eng, err := engine.New(ctx, engine.Options{VerificationKey: pub, StateDir: stateDir})
	if err != nil {
		f.Fatal(err)
	}
	facts := fuzzFacts(f)
	sign := func(raw, key []byte) []byte {
		s, err := engine.SignBundle(raw, key)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	build := func(rev string) []byte {
		raw, err := engine.BuildBundle(ctx, policies.Pack(), rev)
		if err != nil {
			f.Fatal(err)
		}
		return raw
	}
	unsigned := build("2026.12.01-1")
	good := sign(unsigned, priv)
	f.Add(good)
	f.Add(unsigned)
	f.Add(sign(unsigned, otherPriv))
	f.Add(good[:len(good)/2])
	f.Add(good[:10])
	f.Add([]byte{})
	f.Add([]byte("\x1f\x8b"))
	f.Add(sign(build("2026.12.01-0"), priv)) // older than good once good is active
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	f.Add(flipped)
	// Signed by the right key after a file was changed: the signature covers the files as signed.
	f.Add(rewriteTar(f, good, func(name string, body []byte) []byte {
		if name == "data.json" {
			return bytes.Replace(body, []byte("10"), []byte("11"), 1)
		}
		return body
	}))
	// Signed by the right key, and broken: the decision removed, the configuration of the wrong type.
	f.Add(sign(rewriteTar(f, build("2026.12.01-2"), func(name string, body []byte) []byte {
		if name == "faceguard/decision.rego" {
			return []byte("package faceguard\n")
		}
		return body
	}), priv))
	f.Add(sign(rewriteTar(f, build("2026.12.01-3"), func(name string, body []byte) []byte {
		if name == "data.json" {
			return []byte(`{"faceguard":{"config":"none"}}`)
		}
		return body
	}), priv))
	f.Add(sign(rewriteTar(f, build("2026.12.01-4"), func(name string, body []byte) []byte {
		if strings.HasSuffix(name, ".rego") {
			return append(body, []byte("\nx := http.send({\"method\": \"get\", \"url\": \"http://example.com\"})\n")...)
		}
		return body
	}), priv))

	f.Fuzz(func(t *testing.T, raw []byte) {
		before := eng.Info()
		persisted, _ := os.ReadFile(filepath.Join(stateDir, "bundle", "active.tar.gz"))
		info, err := eng.ActivateBundle(ctx, raw)
		after := eng.Info()
		if err != nil {
			known := false
			for _, e := range bundleErrors {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("refused without one of the engine's reasons: %v", err)
			}
			now, _ := os.ReadFile(filepath.Join(stateDir, "bundle", "active.tar.gz"))
			if after != before || !bytes.Equal(now, persisted) {
				t.Fatalf("a refused bundle (%v) changed the policy: %+v → %+v", err, before, after)
			}
		} else {
			if !engine.RevisionNewer(info.Revision, before.Revision) || after.Revision != info.Revision || after.Source != "bundle" {
				t.Fatalf("activated %+v over %+v", info, before)
			}
			if _, err := eng.VerifyBundle(raw); err != nil {
				t.Fatalf("activated a bundle that does not verify: %v", err)
			}
		}
		// Whatever happened, the active policy decides.
		d, err := eng.Decide(ctx, &facts)
		if err != nil || (d.Status != device.StatusCompliant && d.Status != device.StatusNonCompliant) {
			t.Fatalf("the active policy (%+v) does not decide: %+v, %v", after, d, err)
		}
	})
}
