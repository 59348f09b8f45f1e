package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/internal/clock"
	"github.com/faceguard/faceguard/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files of check")

// checkNow is the moment the golden reports are taken at.
var checkNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

// captureName holds a capture's time in its name, as the fixture terminal writes it (+08:00).
var captureName = regexp.MustCompile(`^(\d{8}-\d{6})`)

// goldenRoot copies a fixture terminal and sets each raw capture's mtime from its name, since git keeps
// no mtimes.
func goldenRoot(t *testing.T, name string) string {
	t.Helper()
	root := copyFixture(t, name)
	spool := filepath.Join(root, "var/spool/terminal/raw")
	_ = filepath.WalkDir(spool, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		m := captureName.FindStringSubmatch(d.Name())
		if m == nil {
			return nil
		}
		at, err := time.ParseInLocation("20060102-150405", m[1], checkNow.Location())
		if err != nil {
			return err
		}
		return os.Chtimes(path, at, at)
	})
	return root
}

func invoke(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := runWith(context.Background(), env{clock: clock.NewFake(checkNow), stdout: &out, stderr: &errOut}, args)
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestCheckGolden: what an installer reads for each example terminal, in Chinese, English and JSON.
func TestCheckGolden(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "..", "testdata", "terminals"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		t.Run(name, func(t *testing.T) {
			root := goldenRoot(t, name)
			wantCode := exitNonCompliant
			if name == "residential-gate" {
				wantCode = exitOK
			}
			for _, c := range []struct{ suffix, format, lang string }{
				{"zh.txt", "text", "zh"}, {"en.txt", "text", "en"}, {"json", "json", "en"},
			} {
				code, out, errOut := invoke(t, "check", "--root", root, "--format", c.format, "--lang", c.lang)
				if code != wantCode || errOut != "" {
					t.Fatalf("%s: exit %d (want %d), stderr %q", c.suffix, code, wantCode, errOut)
				}
				golden(t, "check/"+name+"."+c.suffix, out)
			}
		})
	}
}

func TestCheckFactsFile(t *testing.T) {
	good := filepath.Join("..", "..", "device", "testdata", "facts", "compliant_gate.json")
	if code, out, _ := invoke(t, "check", "--facts", good); code != exitOK || !strings.Contains(out, "合规") {
		t.Fatalf("compliant facts: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b, _ := os.ReadFile(good)
	for _, tt := range []struct {
		name, content, want string
	}{
		{"not_json.json", "{\n  \"schema\": \"faceguard.facts/v1\",\n  oops\n}\n", "line 3"},
		{"wrong_type.json", strings.Replace(string(b), `"enabled": true`, `"enabled": "yes"`, 1), "fr.enabled"},
		{"missing.json", strings.Replace(string(b), `"raw_images": {"count": 0, "oldest_age_s": 0, "consented": 0},`, "", 1), "raw_images"},
		{"unknown_field.json", strings.Replace(string(b), `"present": true,`, `"present": true, "colour": "red",`, 1), "colour"},
		{"unknown_category.json", strings.Replace(string(b), "residential_gate", "moon_base", 1), `location.category: "moon_base"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := invoke(t, "check", "--facts", write(tt.name, tt.content))
			if code != exitBadInput || out != "" || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q (want %q)", code, out, errOut, tt.want)
			}
		})
	}
}

func TestCheckUsage(t *testing.T) {
	notTerminal := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing", []string{"check"}, "exactly one of"},
		{"both", []string{"check", "--root", ".", "--facts", "x"}, "exactly one of"},
		{"format", []string{"check", "--root", ".", "--format", "xml"}, "--format"},
		{"lang", []string{"check", "--root", ".", "--lang", "fr"}, "--lang"},
		{"bundle_without_key", []string{"check", "--root", ".", "--bundle", "b.tar.gz"}, "go together"},
		{"missing_root", []string{"check", "--root", "/no/such/terminal"}, "no such file"},
		{"not_a_terminal", []string{"check", "--root", notTerminal}, "is not a terminal root"},
		{"unknown_command", []string{"selfie"}, "unknown command"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := invoke(t, tt.args...)
			if code != exitBadInput || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q (want %q)", code, errOut, tt.want)
			}
		})
	}
}

// TestCheckWithSignedBundle: check judges with a signed bundle when given one, and refuses a bundle that
// does not verify.
func TestCheckWithSignedBundle(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	priv := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	pubFile := filepath.Join(dir, "bundle.pub")
	_ = os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
	raw, err := engine.BuildBundle(context.Background(), policies.Pack(), "2026.11.24")
	if err != nil {
		t.Fatal(err)
	}
	signed, err := engine.SignBundle(raw, priv)
	if err != nil {
		t.Fatal(err)
	}
	signedFile, unsignedFile := filepath.Join(dir, "signed.tar.gz"), filepath.Join(dir, "unsigned.tar.gz")
	_ = os.WriteFile(signedFile, signed, 0o644)
	_ = os.WriteFile(unsignedFile, raw, 0o644)
	root := goldenRoot(t, "hotel-guest-room")

	code, out, errOut := invoke(t, "check", "--root", root, "--lang", "en", "--bundle", signedFile, "--verification-key", pubFile)
	if code != exitNonCompliant || !strings.Contains(out, "policy 2026.11.24") {
		t.Fatalf("signed bundle: exit %d, stderr %q\n%s", code, errOut, out)
	}
	code, _, errOut = invoke(t, "check", "--root", root, "--bundle", unsignedFile, "--verification-key", pubFile)
	if code != exitBadInput || !strings.Contains(errOut, "not signed") {
		t.Fatalf("unsigned bundle: exit %d, stderr %q", code, errOut)
	}
}

func TestFactsCommand(t *testing.T) {
	code, out, errOut := invoke(t, "facts", "--root", goldenRoot(t, "withdrawn-and-minor"))
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, `"withdrawn_pending": 1`) || strings.Contains(out, "s-0004") {
		t.Fatalf("facts output (must count, never name subjects):\n%s", out)
	}
}
