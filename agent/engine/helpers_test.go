package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// tamper rewrites one file of a bundle tarball (or adds it) and leaves the signature as it was.
func tamper(t testing.TB, raw []byte, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	found := false
	write := func(hdrName string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: hdrName, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(hdr.Name, "/") == name {
			body, found = edit(body), true
		}
		write(hdr.Name, body)
	}
	if !found {
		write("/"+name, edit(nil))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// buildUnchecked writes a bundle without BuildBundle's compile and canary checks, to test that the
// engine refuses what the operator's tool would have refused too.
func buildUnchecked(t testing.TB, tree fstest.MapFS, revision string) []byte {
	t.Helper()
	b, err := loadFSBundle(tree)
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.Revision = revision
	b.Manifest.SetRegoVersion(ast.RegoV1)
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(*b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// opaBuild builds and signs the built-in pack with the real OPA command line pinned in go.mod, as an
// operator would: `opa build -b . --revision R --signing-key key.pem --signing-alg ES256`.
func opaBuild(t testing.TB, key keyPair, revision string) []byte {
	t.Helper()
	opa := opaBinary(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	tree := packTree(t, nil)
	for name, f := range tree {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, key.priv, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bundle.tar.gz")
	cmd := exec.Command(opa, "build", "-b", ".", "--revision", revision,
		"--signing-key", keyFile, "--signing-alg", "ES256", "-o", out)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// opaBinary finds the OPA command line pinned as a tool in go.mod (`go tool -n opa` builds it if needed
// and prints its path).
func opaBinary(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "-n", "opa")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool -n opa: %v", err)
	}
	return strings.TrimSpace(string(out))
}
