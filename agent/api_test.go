package agent_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
)

// socketPath is short: a Unix socket path is limited to about 100 bytes.
func socketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "fg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "agent.sock")
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
	}}
}

func post(t testing.TB, c *http.Client, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Post("http://agent"+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %s", path, b)
	}
	return resp.StatusCode, m
}

func TestLocalDecisionAPI(t *testing.T) {
	sock := socketPath(t)
	h := start(t, "withdrawn-and-minor", harnessOpts{socket: sock})
	c := unixClient(sock)
	waitUntil(t, "the API and a first decision", func() bool {
		resp, err := c.Post("http://agent/v1/data/faceguard/decision", "application/json", strings.NewReader(`{}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v, %v", st.Mode(), err)
	}

	match := func(ref string) (bool, []string) {
		t.Helper()
		code, m := post(t, c, "/v1/data/faceguard/match", `{"input":{"subject_ref":"`+ref+`"}}`)
		if code != http.StatusOK {
			t.Fatalf("match %s: %d %v", ref, code, m)
		}
		r := m["result"].(map[string]any)
		var reasons []string
		for _, x := range r["reasons"].([]any) {
			reasons = append(reasons, x.(string))
		}
		msg := r["message"].(map[string]any)
		if msg["zh"] == "" || msg["en"] == "" {
			t.Fatalf("match %s without a message: %v", ref, r)
		}
		return r["allow"].(bool), reasons
	}
	if ok, reasons := match("s-0001"); !ok {
		t.Fatalf("a consented adult is refused: %v", reasons)
	}
	if ok, reasons := match("no-such-subject"); ok || !slices.Contains(reasons, "subject_not_found") {
		t.Fatalf("unknown subject: %v %v", ok, reasons)
	}
	waitUntil(t, "the minor quarantined and refused", func() bool {
		ok, _ := match("s-0005")
		return !ok
	})

	// Judging facts the terminal sends: the OPA REST shape.
	facts, _ := os.ReadFile("../device/testdata/facts/compliant_gate.json")
	code, m := post(t, c, "/v1/data/faceguard/decision", `{"input":`+string(facts)+`}`)
	if code != http.StatusOK || m["result"].(map[string]any)["status"] != device.StatusCompliant {
		t.Fatalf("decision on facts: %d %v", code, m)
	}
	for name, body := range map[string]string{
		"not_json":     `{`,
		"bad_facts":    `{"input":{"schema":"faceguard.facts/v1"}}`,
		"match_no_ref": `{"input":{}}`,
		"match_extra":  `{"input":{"subject_ref":"s-0001","template":"AAAA"}}`,
	} {
		path := "/v1/data/faceguard/decision"
		if strings.HasPrefix(name, "match") {
			path = "/v1/data/faceguard/match"
		}
		if code, m := post(t, c, path, body); code != http.StatusBadRequest || m["code"] != "invalid_parameter" {
			t.Errorf("%s: %d %v", name, code, m)
		}
	}
	if code, _ := post(t, c, "/v1/data/faceguard/selfie", `{}`); code != http.StatusNotFound {
		t.Errorf("unknown path: %d", code)
	}
	huge := bytes.Repeat([]byte("x"), 2<<20)
	resp, err := c.Post("http://agent/v1/data/faceguard/decision", "application/json", bytes.NewReader(huge))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %v %v", resp, err)
	}
	resp.Body.Close()
	h.stop(t)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatal("the socket outlived the agent")
	}
}

// benchPercentiles reports p50 and p99 of per-call latencies next to ns/op.
func benchPercentiles(b *testing.B, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if len(d) == 0 {
		return
	}
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkMatchInProcess is the match decision as the agent makes it: gallery lookup, control state,
// policy (DESIGN §11: p99 ≤ 50 µs in process), on the fixture's gallery and on one of 10,000 subjects.
func BenchmarkMatchInProcess(b *testing.B) {
	for _, size := range []int{0, 10000} {
		b.Run(fmt.Sprintf("gallery_%d_extra", size), func(b *testing.B) {
			h := startWithGallery(b, size, harnessOpts{})
			ctx := context.Background()
			waitUntil(b, "a first decision", func() bool { _, _, ok := h.agent.Snapshot(); return ok })
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				r, err := h.agent.Match(ctx, "s-0001")
				lat = append(lat, time.Since(t0))
				if err != nil || !r.Allow {
					b.Fatalf("%+v %v", r, err)
				}
			}
			benchPercentiles(b, lat)
		})
	}
}

// startWithGallery starts an agent on the residential gate with extra consented adults enrolled.
func startWithGallery(b *testing.B, extra int, o harnessOpts) *harness {
	h := start(b, "residential-gate", o)
	if extra == 0 {
		return h
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(h.root, "var/lib/terminal/gallery.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, _ := db.Begin()
	tmpl := make([]byte, 512)
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range extra {
		ref := fmt.Sprintf("bulk-%06d", i)
		if _, err := tx.Exec(`INSERT INTO subjects (subject_ref, template, age_band, stored_at, enrolled_at) VALUES (?, ?, 'adult', 'device', ?)`, ref, tmpl, now); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO consents (subject_ref, basis, granted_at) VALUES (?, 'separate', ?)`, ref, now); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkMatchOverSocket is the same decision asked by terminal software over the Unix socket
// (DESIGN §11: p99 ≤ 300 µs).
func BenchmarkMatchOverSocket(b *testing.B) {
	sock := socketPath(b)
	start(b, "residential-gate", harnessOpts{socket: sock})
	c := unixClient(sock)
	body := []byte(`{"input":{"subject_ref":"s-0001"}}`)
	waitUntil(b, "the API", func() bool {
		resp, err := c.Post("http://agent/v1/data/faceguard/decision", "application/json", strings.NewReader(`{}`))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		resp, err := c.Post("http://agent/v1/data/faceguard/match", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
	}
	benchPercentiles(b, lat)
}
