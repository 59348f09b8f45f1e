package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/faceguard/faceguard/internal/testbroker"
)

// BenchmarkAgentFootprint reports the stripped size of the device binary (linux/amd64) and the resident
// memory of the running agent at steady state, on a terminal whose gallery holds 10,000 subjects,
// evaluating every second and connected to a broker (DESIGN §11: ≤ 35 MB stripped, RSS ≤ 40 MB), in two
// variants:
//
//   - quiet: nothing writes to the gallery, so the agent keeps its count from one evaluation to the next;
//   - matching: ten recognitions a second, as on a busy gate: the terminal asks the agent's match over
//     its socket and records last_used_at in the gallery, so every evaluation (the timer's, once a
//     second here; those the writes cause, at most every gallery_every) counts the 10,000 subjects again.
//
// Run with -benchtime=1x: each variant samples the process once a second for 30 s; rss-steady-MB is the
// median sample of the last 20 s, rss-peak-MB the largest of all.
func BenchmarkAgentFootprint(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "faceguard-agent")
	if out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	url := testbroker.Mochi(b).URL()
	for _, c := range []struct {
		name   string
		writes time.Duration // between the terminal's writes to the gallery; 0: none
	}{{"quiet", 0}, {"matching", 100 * time.Millisecond}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				footprint(b, bin, url, c.writes)
			}
			b.ReportMetric(float64(st.Size())/(1<<20), "stripped-MB")
		})
	}
}

// footprint runs the agent binary for 30 s on a 10,000-subject terminal and reports its memory.
func footprint(b *testing.B, bin, url string, writes time.Duration) {
	n := newNode(b, "residential-gate", url, "footprint")
	gallery := filepath.Join(n.root, "var/lib/terminal/gallery.db")
	fillGallery(b, gallery, 10000)
	cfg, _ := os.ReadFile(n.config)
	_ = os.WriteFile(n.config, []byte(strings.Replace(string(cfg), "evaluate: 1h", "evaluate: 1s", 1)), 0o600)
	cmd := exec.Command(bin, "run", "--config", n.config)
	cmd.Env = append(os.Environ(), strings.Fields(os.Getenv("FOOTPRINT_ENV"))...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	written := make(chan error, 1)
	if writes > 0 {
		go func() { written <- recognise(gallery, filepath.Join(n.state, "agent.sock"), writes, stop) }()
	} else {
		written <- nil
	}
	// A sample a second; steady state is the median sample of the last 20 s (the agent evaluates every
	// second, and a single instant may fall just before or after a collection).
	type sample struct{ rss, anon, file int }
	var samples []sample
	peak := 0
	for range 30 {
		time.Sleep(time.Second)
		rss, anon, file := rssKB(b, cmd.Process.Pid)
		samples = append(samples, sample{rss, anon, file})
		peak = max(peak, rss)
	}
	steady := slices.Clone(samples[10:])
	slices.SortFunc(steady, func(x, y sample) int { return x.rss - y.rss })
	median := steady[len(steady)/2]
	b.Logf("RSS samples (KiB, one a second): %v", samples)
	close(stop)
	if err := <-written; err != nil {
		b.Errorf("the terminal's writes to the gallery: %v", err)
	}
	// FOOTPRINT_SMAPS=FILE keeps the process's memory map at the end (/proc/PID/smaps), to see
	// which mappings are resident.
	if path := os.Getenv("FOOTPRINT_SMAPS"); path != "" {
		smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", cmd.Process.Pid))
		if err == nil {
			err = os.WriteFile(path, smaps, 0o644)
		}
		if err != nil {
			b.Errorf("FOOTPRINT_SMAPS: %v", err)
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	b.ReportMetric(float64(median.rss)/1024, "rss-steady-MB")
	b.ReportMetric(float64(peak)/1024, "rss-peak-MB")
	// RSS is the agent's own memory (anonymous: Go heap, stacks, SQLite's caches) plus the pages of
	// its binary in memory (file). How much of the binary counts depends on the kernel: one that maps
	// the page cache in large folios (FilePmdMapped in smaps) counts most of it.
	b.ReportMetric(float64(median.anon)/1024, "rss-anon-MB")
	b.ReportMetric(float64(median.file)/1024, "rss-file-MB")
}

// recognise is a busy terminal: every interval until stop is closed, it asks the agent's match for a
// subject over the socket and records the recognition in the gallery (last_used_at).
func recognise(gallery, socket string, interval time.Duration, stop <-chan struct{}) error {
	db, err := sql.Open("sqlite3", "file:"+gallery+"?_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer db.Close()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case now := <-t.C:
			ref := fmt.Sprintf("bulk-%06d", i%10000)
			resp, err := c.Post("http://agent/v1/data/faceguard/match", "application/json",
				strings.NewReader(`{"input":{"subject_ref":"`+ref+`"}}`))
			if err != nil {
				if _, serr := os.Stat(socket); errors.Is(serr, fs.ErrNotExist) {
					continue // the agent is still starting
				}
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("match: %s", resp.Status)
			}
			if _, err := db.Exec(`UPDATE subjects SET last_used_at = ? WHERE subject_ref = ?`,
				now.UTC().Format(time.RFC3339Nano), ref); err != nil {
				return err
			}
		}
	}
}

// rssKB reads the resident set of a process, in KiB: in all, anonymous, and file-backed.
func rssKB(b *testing.B, pid int) (total, anon, file int) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			total = kb
		case "RssAnon:":
			anon = kb
		case "RssFile:":
			file = kb
		}
	}
	if total == 0 {
		b.Fatal("no VmRSS")
	}
	return total, anon, file
}

// fillGallery enrols n consented adults (placeholder templates of 512 bytes).
func fillGallery(b *testing.B, path string, n int) {
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	tmpl := make([]byte, 512)
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range n {
		ref := fmt.Sprintf("bulk-%06d", i)
		if _, err := tx.Exec(`INSERT INTO subjects (subject_ref, template, age_band, stored_at, enrolled_at) VALUES (?, ?, 'adult', 'device', ?)`,
			ref, tmpl, now); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO consents (subject_ref, basis, granted_at) VALUES (?, 'separate', ?)`, ref, now); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
