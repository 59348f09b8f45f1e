package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
)

// The same decision, data.faceguard.decision on the same facts, taken four ways (DESIGN §11 compares
// them; `make bench` writes the figures to BENCHMARKS.md):
//
//   - embedded: this engine, prepared, in process, as the agent decides;
//   - server:   what a user would build instead, an OPA sidecar (`opa run --server`, the OPA pinned in
//     go.mod) on loopback, asked over HTTP with keep-alive, JSON both ways;
//   - eval:     `opa eval` as a subprocess per decision, the shell-script way;
//   - go:       the floor, the same controls written by hand in Go (floor_test.go).

// decisionDoc is one facts document every path decides on.
type decisionDoc struct {
	name  string
	facts device.Facts
}

func decisionDocs(t testing.TB) []decisionDoc {
	return []decisionDoc{{"compliant", compliantFacts(t)}, {"typical", typicalFacts(t)}, {"hotel_room", hotelFacts(t)}}
}

// decisionPath decides one document; each path is set up once and reused.
type decisionPath func(ctx context.Context, f *device.Facts) (device.Decision, error)

// writePack lays the built-in pack out in a directory (data.json at the root, the modules under
// faceguard/), as an OPA command line loads it.
func writePack(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pack")
	for name, f := range packTree(t, nil) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startOPAServer runs `opa run --server` on a free loopback port with the pack and returns the decision
// path that asks it. The server is killed when the test ends.
func startOPAServer(t testing.TB) decisionPath {
	t.Helper()
	opa, pack := opaBinary(t), writePack(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(opa, "run", "--server", "--addr", addr, "--log-level", "error", "--skip-version-check", pack)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start opa server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.Get(base + "/health?bundles")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("opa server exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("opa server not healthy on %s within 30 s: %v %s", addr, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	url := base + "/v1/data/faceguard/decision"
	return func(ctx context.Context, f *device.Facts) (device.Decision, error) {
		body, err := json.Marshal(struct {
			Input *device.Facts `json:"input"`
		}{f})
		if err != nil {
			return device.Decision{}, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return device.Decision{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return device.Decision{}, err
		}
		defer resp.Body.Close()
		var out struct {
			Result *device.Decision `json:"result"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		_, _ = io.Copy(io.Discard, resp.Body) // drained, so the connection is kept alive
		switch {
		case err != nil:
			return device.Decision{}, fmt.Errorf("opa server: %d: %w", resp.StatusCode, err)
		case resp.StatusCode != http.StatusOK || out.Result == nil:
			return device.Decision{}, fmt.Errorf("opa server: %d, no result", resp.StatusCode)
		}
		return *out.Result, nil
	}
}

// opaEvalPath runs `opa eval` on the pack for every decision, the facts on its standard input.
func opaEvalPath(t testing.TB) decisionPath {
	t.Helper()
	opa, pack := opaBinary(t), writePack(t)
	return func(ctx context.Context, f *device.Facts) (device.Decision, error) {
		in, err := json.Marshal(f)
		if err != nil {
			return device.Decision{}, err
		}
		cmd := exec.CommandContext(ctx, opa, "eval", "--format", "json", "--stdin-input", "--data", pack, "data.faceguard.decision")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			return device.Decision{}, fmt.Errorf("opa eval: %w", err)
		}
		var rs struct {
			Result []struct {
				Expressions []struct {
					Value device.Decision `json:"value"`
				} `json:"expressions"`
			} `json:"result"`
		}
		if err := json.Unmarshal(out, &rs); err != nil {
			return device.Decision{}, fmt.Errorf("opa eval output: %w", err)
		}
		if len(rs.Result) != 1 || len(rs.Result[0].Expressions) != 1 {
			return device.Decision{}, fmt.Errorf("opa eval: undefined decision: %s", out)
		}
		return rs.Result[0].Expressions[0].Value, nil
	}
}

// decisionPaths sets every path up, in the order the figures are shown.
func decisionPaths(t testing.TB) []struct {
	name   string
	decide decisionPath
} {
	e := newEngine(t, Options{})
	fl := newFloor(t, e)
	return []struct {
		name   string
		decide decisionPath
	}{
		{"embedded", e.Decide},
		// The same engine evaluating data.faceguard.decision whole, assembly included: what a bundle that
		// changes decision.rego gets (assemble.go).
		{"rego", func(ctx context.Context, f *device.Facts) (device.Decision, error) {
			return e.active.Load().decideInRego(ctx, factsToAST(f))
		}},
		{"server", startOPAServer(t)},
		{"eval", opaEvalPath(t)},
		{"go", func(_ context.Context, f *device.Facts) (device.Decision, error) { return fl.decide(f), nil }},
	}
}

// TestDecisionPathsAgree checks that the paths the benchmarks compare take the same decision: the OPA
// sidecar and subprocess exactly as the engine (same pack, same OPA), and the Go floor with the same
// controls, severities, articles, facts, actions and counts (its messages are its own wording, so only
// their presence is compared).
func TestDecisionPathsAgree(t *testing.T) {
	ctx := context.Background()
	paths := decisionPaths(t)
	for _, doc := range decisionDocs(t) {
		want, err := paths[0].decide(ctx, &doc.facts)
		if err != nil {
			t.Fatal(err)
		}
		if doc.name != "compliant" && len(want.Violations) == 0 {
			t.Fatalf("%s: the engine finds no violation; the benchmark document no longer measures what it says", doc.name)
		}
		for _, p := range paths[1:] {
			t.Run(p.name+"/"+doc.name, func(t *testing.T) {
				got, err := p.decide(ctx, &doc.facts)
				if err != nil {
					t.Fatal(err)
				}
				if p.name == "go" {
					got, want := withoutMessages(t, got), withoutMessages(t, want)
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("the Go floor decides\n%+v\nthe pack decides\n%+v", got, want)
					}
					return
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s decides\n%+v\nthe engine decides\n%+v", p.name, got, want)
				}
			})
		}
	}
}

// TestFloorOnExampleTerminals holds the Go floor to the pack beyond the benchmark documents: on the facts
// of every example terminal (testdata/terminals) whose facts are complete, with a few problems each.
func TestFloorOnExampleTerminals(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, Options{})
	fl := newFloor(t, e)
	dirs, _ := filepath.Glob("../../testdata/terminals/*")
	if len(dirs) == 0 {
		t.Fatal("no example terminals")
	}
	compared := 0
	for _, dir := range dirs {
		term := fsterm.New(fsterm.Options{Root: dir})
		f, err := term.Facts(ctx)
		term.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Unknown) > 0 {
			continue // the floor does not reproduce "cannot be verified"
		}
		want, err := e.Decide(ctx, &f)
		if err != nil {
			t.Fatal(err)
		}
		if got := fl.decide(&f); !reflect.DeepEqual(withoutMessages(t, got), withoutMessages(t, want)) {
			t.Errorf("%s: the Go floor decides\n%+v\nthe pack decides\n%+v", filepath.Base(dir), got, want)
		}
		t.Logf("%s: %d violations, actions %v", filepath.Base(dir), len(want.Violations), want.Actions)
		compared++
	}
	if compared < 3 {
		t.Fatalf("only %d example terminals with complete facts", compared)
	}
}

// withoutMessages blanks the messages after checking each has both languages.
func withoutMessages(t *testing.T, d device.Decision) device.Decision {
	t.Helper()
	d.Violations = slices.Clone(d.Violations)
	for i, v := range d.Violations {
		if v.Message.ZH == "" || v.Message.EN == "" {
			t.Errorf("%s: a message without both languages: %+v", v.Control, v.Message)
		}
		d.Violations[i].Message = device.Text{}
	}
	return d
}

// BenchmarkDecisionPaths is the full-pack decision on each document taken each way (DESIGN §11: the
// embedded one p50 ≤ 100 µs and ≥ 5× faster than the sidecar). Each iteration's duration is recorded
// for p50 and p99. The eval path takes tens of milliseconds an iteration: `make bench` runs it with a
// fixed count (-benchtime=Nx).
func BenchmarkDecisionPaths(b *testing.B) {
	ctx := context.Background()
	docs := decisionDocs(b)
	paths := decisionPaths(b)
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			for _, doc := range docs {
				b.Run(doc.name, func(b *testing.B) {
					f := doc.facts
					lat := make([]time.Duration, 0, 1024)
					b.ReportAllocs()
					for b.Loop() {
						t0 := time.Now()
						if _, err := p.decide(ctx, &f); err != nil {
							b.Fatal(err)
						}
						lat = append(lat, time.Since(t0))
					}
					reportPercentiles(b, lat)
				})
			}
		})
	}
}

// reportPercentiles reports p50 and p99 of per-iteration latencies next to the mean ns/op.
func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}
