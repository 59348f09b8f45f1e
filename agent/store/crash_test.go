package store

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test runs the test binary again as a child that writes in a loop, and kills it with SIGKILL
// mid-stream: what the agent survives on `kill -9` (DESIGN §11: zero lost events).
const (
	crashChildDB    = "FACEGUARD_STORE_CRASH_DB"
	crashChildStart = "FACEGUARD_STORE_CRASH_START"
)

// TestCrashChild is the child: it returns at once unless the parent started it. After each commit it prints
// "committed N" on stdout; the parent then requires transaction N to be in the file.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildDB)
	if path == "" {
		return // not started by TestCrashKill9: nothing to do
	}
	start, err := strconv.Atoi(os.Getenv(crashChildStart))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.NextSession(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute) // never outlive a parent that failed to kill us
	for i := start; time.Now().Before(deadline); i++ {
		err := s.Tx(ctx, func(tx *Tx) error {
			if _, err := tx.Append("decision", map[string]any{"i": i, "pad": strings.Repeat("d", i%700)}); err != nil {
				return err
			}
			if _, err := tx.RecordEvaluation(Evaluation{Status: "compliant", Decision: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
				return err
			}
			if _, err := tx.Append("action", map[string]int{"i": i}); err != nil {
				return err
			}
			return tx.Enqueue(
				OutMsg{Topic: "t/event", Payload: []byte(strconv.Itoa(i)), QoS: 1},
				OutMsg{Topic: "t/compliance", Payload: []byte(strconv.Itoa(i)), QoS: 1, Retained: true, CoalesceKey: "compliance"},
			)
		})
		if err != nil {
			t.Fatal(err)
		}
		// os.Stdout is unbuffered: once this returns, the parent can read the line even if we die next.
		fmt.Fprintf(os.Stdout, "committed %d\n", i)
	}
}

func TestCrashKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	committed := map[int]bool{}
	next := 0
	for round, killAfter := range []int{1, 40, 150, 7} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildDB+"="+path, crashChildStart+"="+strconv.Itoa(next))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		seen, killed := 0, false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n, ok := strings.CutPrefix(sc.Text(), "committed ")
			if !ok {
				continue
			}
			i, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			committed[i] = true
			if i >= next {
				next = i + 1
			}
			if seen++; seen == killAfter && !killed {
				// Mid-stream: the child is already in its next transaction, or committing it.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("round %d: the child ended before it was killed: %v", round, err)
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want SIGKILL", round, err)
		}
		next += 1000 // the unreported transaction may have committed: keep ids unique
		t.Logf("round %d: %d transactions reported before the kill", round, seen)
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	res, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("chain broken after kill -9:\n%s", fmtProblems(res.Problems))
	}

	// Every reported transaction is whole in the file, and no transaction is there in part.
	decisions, actions := map[int]bool{}, map[int]bool{}
	entries, err := s.Entries(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var p struct{ I int }
		if err := json.Unmarshal(e.Payload, &p); err != nil {
			t.Fatal(err)
		}
		map[string]map[int]bool{"decision": decisions, "action": actions}[e.Kind][p.I] = true
	}
	events := map[int]bool{}
	rows, err := s.Pending(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	compliance := 0
	for _, r := range rows {
		i, _ := strconv.Atoi(string(r.Payload))
		switch r.Topic {
		case "t/event":
			events[i] = true
		case "t/compliance":
			compliance++
		}
	}
	for i := range committed {
		if !decisions[i] || !actions[i] || !events[i] {
			t.Errorf("transaction %d was reported committed but is missing: decision %v action %v event %v",
				i, decisions[i], actions[i], events[i])
		}
	}
	if len(decisions) != len(events) || len(actions) != len(events) {
		t.Errorf("torn transactions: %d decisions, %d actions, %d events", len(decisions), len(actions), len(events))
	}
	if compliance != 1 {
		t.Errorf("%d coalesced compliance rows, want 1", compliance)
	}
	if sessions, err := s.NextSession(ctx); err != nil || sessions != 5 {
		t.Errorf("next session %d %v, want 5 after 4 child starts", sessions, err)
	}
	t.Logf("%d transactions reported, %d in the file, chain of %d rows verified", len(committed), len(events), res.Rows)
}
