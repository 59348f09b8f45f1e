package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faceguard/faceguard/internal/clock"
)

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func invoke(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	err := runWith(context.Background(), env{clock: clock.Real{}, stdout: &out, stderr: &errOut}, args)
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

func TestKeysGen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if code, out, errOut := invoke(t, "keys", "gen", "--dir", dir); code != 0 || !strings.Contains(out, "controller.pub") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for name, mode := range map[string]os.FileMode{controllerKeyFile: 0o600, controllerPubFile: 0o644, bundleKeyFile: 0o600,
		bundlePubFile: 0o644, subjectKeyFile: 0o600, apiTokenFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v (want %v)", name, err, st.Mode().Perm(), mode)
		}
	}
	if code, _, errOut := invoke(t, "keys", "gen", "--dir", dir); code != 2 || !strings.Contains(errOut, "--force") {
		t.Fatalf("keys gen over existing keys: exit %d, %s", code, errOut)
	}
	if code, _, _ := invoke(t, "keys", "gen", "--dir", dir, "--force"); code != 0 {
		t.Fatal("keys gen --force failed")
	}
}

func TestBundleBuildSignVerify(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	invoke(t, "keys", "gen", "--dir", keys)
	out := filepath.Join(dir, "b.tar.gz")
	if code, _, errOut := invoke(t, "bundle", "build", "--dir", "../../policies", "--revision", "2026.11.24-1", "-o", out); code != 0 {
		t.Fatalf("build: %s", errOut)
	}
	if code, _, errOut := invoke(t, "bundle", "verify", "--key", filepath.Join(keys, bundlePubFile), out); code != 1 || !strings.Contains(errOut, "not signed") {
		t.Fatalf("verify of an unsigned bundle: exit %d, %s", code, errOut)
	}
	if code, _, errOut := invoke(t, "bundle", "sign", "--key", filepath.Join(keys, bundleKeyFile), out); code != 0 {
		t.Fatalf("sign: %s", errOut)
	}
	if code, stdout, errOut := invoke(t, "bundle", "verify", "--key", filepath.Join(keys, bundlePubFile), out); code != 0 || !strings.Contains(stdout, "revision 2026.11.24-1") {
		t.Fatalf("verify: exit %d, %s %s", code, stdout, errOut)
	}
	other := filepath.Join(dir, "other")
	invoke(t, "keys", "gen", "--dir", other)
	if code, _, errOut := invoke(t, "bundle", "verify", "--key", filepath.Join(other, bundlePubFile), out); code != 1 || !strings.Contains(errOut, "signature") {
		t.Fatalf("verify with another key: exit %d, %s", code, errOut)
	}
	if code, _, errOut := invoke(t, "bundle", "build", "--dir", "../../policies", "-o", out); code != 2 || !strings.Contains(errOut, "--revision") {
		t.Fatalf("build without a revision: exit %d, %s", code, errOut)
	}

	// A bundle from the OPA command line itself, signed with the same key, verifies the same way.
	opa, err := exec.Command("go", "tool", "-n", "opa").Output()
	if err != nil {
		t.Fatalf("go tool -n opa: %v", err)
	}
	src := filepath.Join(dir, "src")
	modules, err := filepath.Glob("../../policies/faceguard/*.rego")
	if err != nil || len(modules) < 5 {
		t.Fatalf("the pack's modules: %v %v", modules, err)
	}
	files := []string{"data.json"}
	for _, m := range modules {
		if !strings.HasSuffix(m, "_test.rego") {
			files = append(files, "faceguard/"+filepath.Base(m))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("../../policies", f))
		if err != nil {
			t.Fatal(err)
		}
		_ = os.MkdirAll(filepath.Dir(filepath.Join(src, f)), 0o755)
		_ = os.WriteFile(filepath.Join(src, f), b, 0o644)
	}
	opaOut := filepath.Join(dir, "opa.tar.gz")
	cmd := exec.Command(strings.TrimSpace(string(opa)), "build", "-b", ".", "--revision", "7", "--signing-key",
		filepath.Join(keys, bundleKeyFile), "--signing-alg", "ES256", "-o", opaOut)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, b)
	}
	if code, stdout, errOut := invoke(t, "bundle", "verify", "--key", filepath.Join(keys, bundlePubFile), opaOut); code != 0 {
		t.Fatalf("verify opa build output: exit %d, %s %s", code, stdout, errOut)
	}
}

var dashboardLine = regexp.MustCompile(`dashboard\s+http://([0-9.:]+)/`)

// TestDemo runs `faceguard demo` as a user would and drives it with the fleet commands: status, forget
// (a receipt from every door that held the resident), reevaluate, push a signed bundle, filing, report.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runWith(ctx, env{clock: clock.Real{}, stdout: &out, stderr: &errOut},
			[]string{"demo", "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--dir", dir, "--summary", "0"})
	}()
	var addr string
	deadline := time.Now().Add(60 * time.Second)
	for addr == "" {
		if m := dashboardLine.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s\n%s", err, out.String(), errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo never printed its dashboard address:\n%s\n%s", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	server := "http://" + addr
	// Every terminal reports before the commands go out.
	deadline = time.Now().Add(60 * time.Second)
	for {
		_, stdout, _ := invoke(t, "fleet", "status", "--server", server, "--json")
		var st struct {
			Overview struct {
				Total struct {
					Devices      int `json:"devices"`
					Compliant    int `json:"compliant"`
					NonCompliant int `json:"non_compliant"`
				} `json:"total"`
			} `json:"overview"`
		}
		_ = json.Unmarshal([]byte(stdout), &st)
		if st.Overview.Total.Devices == 12 && st.Overview.Total.Compliant+st.Overview.Total.NonCompliant == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo fleet never reported in full: %s", stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, stdout, stderr := invoke(t, "fleet", "status", "--server", server)
	if code != 0 || !strings.Contains(stdout, "lh-room-1208") || !strings.Contains(stdout, "FRM-13-PRIVATE-SPACE") {
		t.Fatalf("fleet status: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = invoke(t, "fleet", "forget", "--server", server, "--subject", "resident-0001", "--timeout", "60s")
	if code != 0 || strings.Count(stdout, `"deleted":1`) != 5 || !strings.Contains(stdout, "every device confirmed") {
		t.Fatalf("fleet forget: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = invoke(t, "fleet", "reevaluate", "--server", server, "--devices", "lh-room-1208", "--timeout", "60s")
	if code != 0 || !strings.Contains(stdout, `"critical":1`) {
		t.Fatalf("fleet reevaluate: exit %d\n%s%s", code, stdout, stderr)
	}
	bundle := filepath.Join(dir, "policy.tar.gz")
	invoke(t, "bundle", "build", "--dir", "../../policies", "--revision", "2026.11.24-9", "-o", bundle)
	invoke(t, "bundle", "sign", "--key", filepath.Join(dir, "keys", bundleKeyFile), bundle)
	code, stdout, stderr = invoke(t, "fleet", "push", "--server", server, "--bundle", bundle, "--timeout", "60s")
	if code != 0 || !strings.Contains(stdout, "every device confirmed") {
		t.Fatalf("fleet push: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = invoke(t, "fleet", "filing", "--server", server)
	if code != 0 || !strings.Contains(stdout, "persons stored") || !strings.Contains(stdout, "not_required") {
		t.Fatalf("fleet filing: exit %d\n%s%s", code, stdout, stderr)
	}
	report := filepath.Join(dir, "report.html")
	if code, _, stderr = invoke(t, "fleet", "report", "--server", server, "-o", report); code != 0 {
		t.Fatalf("fleet report: %s", stderr)
	}
	if b, _ := os.ReadFile(report); !bytes.Contains(b, []byte("lh-room-1208")) || !bytes.Contains(b, []byte("FRM-13-PRIVATE-SPACE")) {
		t.Fatal("the report lacks the hotel-room camera")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not stop on Ctrl-C")
	}
	if !strings.Contains(out.String(), "stopped.") {
		t.Fatalf("no clean stop:\n%s", out.String())
	}
}

func TestFleetCommandsWithoutAController(t *testing.T) {
	code, _, stderr := invoke(t, "fleet", "status", "--server", "http://127.0.0.1:1")
	if code != 2 || !strings.Contains(stderr, "does not answer") {
		t.Fatalf("exit %d, %s", code, stderr)
	}
	if code, _, stderr := invoke(t, "fleet", "forget", "--server", "http://127.0.0.1:1"); code != 2 || !strings.Contains(stderr, "--subject") {
		t.Fatalf("forget without a subject: exit %d, %s", code, stderr)
	}
}
