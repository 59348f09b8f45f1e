package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestAppend(t *testing.T) {
	s, _, fake := openTest(t, Options{})
	ctx := context.Background()

	var first, second AuditEntry
	mustTx(t, s, func(tx *Tx) error {
		var err error
		if first, err = tx.Append("start", map[string]string{"agent": "1.0", "note": "<b> & c"}); err != nil {
			return err
		}
		second, err = tx.Append("bundle.activated", json.RawMessage(`{ "revision" : "r2" }`))
		return err
	})
	if first.Seq != 1 || first.PrevHash != GenesisHash {
		t.Errorf("first entry: seq %d prev %s", first.Seq, first.PrevHash)
	}
	if first.At != "2025-06-01T08:00:00.000000000Z" || !first.Time().Equal(fake.Now()) {
		t.Errorf("at = %q", first.At)
	}
	// Stored bytes are the marshalled bytes, without HTML escaping; a RawMessage is compacted.
	if got := string(first.Payload); got != `{"agent":"1.0","note":"<b> & c"}` {
		t.Errorf("payload = %s", got)
	}
	if got := string(second.Payload); got != `{"revision":"r2"}` {
		t.Errorf("payload = %s", got)
	}
	if second.Seq != 2 || second.PrevHash != first.Hash {
		t.Errorf("second entry: seq %d prev %s, want prev %s", second.Seq, second.PrevHash, first.Hash)
	}
	if want := ChainHash(GenesisHash, 1, first.At, "start", first.Payload); first.Hash != want {
		t.Errorf("hash = %s, want %s", first.Hash, want)
	}

	got, err := s.Entries(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []AuditEntry{first, second}) {
		t.Errorf("entries = %+v", got)
	}
	seq, hash, err := s.Head(ctx)
	if err != nil || seq != 2 || hash != second.Hash {
		t.Errorf("head = %d %s %v", seq, hash, err)
	}
	if got, _ := s.Entries(ctx, 2, 1); len(got) != 1 || got[0].Seq != 2 {
		t.Errorf("entries from 2 = %+v", got)
	}
}

func TestChainHashIsTheDocumentedRecipe(t *testing.T) {
	const at, payload = "2025-06-01T08:00:00.000000000Z", `{"a":"<b>"}`
	msg := "faceguard/audit/v1\n" + GenesisHash + "\n1\n" + at + "\nstart\n" + payload
	got := ChainHash(GenesisHash, 1, at, "start", []byte(payload))
	if want := fmt.Sprintf("%x", sha256.Sum256([]byte(msg))); got != want {
		t.Errorf("ChainHash = %s, want %s", got, want)
	}
	if sum := sha256sumShell(t, msg); sum != "" && sum != got {
		t.Errorf("ChainHash = %s, sha256sum says %s", got, sum)
	}
}

// sha256sumShell hashes s with the sha256sum tool, when there is one, as an independent implementation.
func sha256sumShell(t *testing.T, s string) string {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		return ""
	}
	cmd := exec.Command("sha256sum")
	cmd.Stdin = strings.NewReader(s)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

func TestAppendKind(t *testing.T) {
	s, _, _ := openTest(t, Options{})
	for _, kind := range []string{"", "Decision", "decision!", "a b", strings.Repeat("a", 33), "é"} {
		err := s.Tx(context.Background(), func(tx *Tx) error {
			_, err := tx.Append(kind, nil)
			return err
		})
		if err == nil {
			t.Errorf("kind %q accepted", kind)
		}
	}
	for _, kind := range []string{"decision", "action", "receipt", "command", "bundle", "fault", "start", "stop",
		"bundle.refused", "violation_opened", strings.Repeat("z", 32)} {
		mustTx(t, s, func(tx *Tx) error {
			_, err := tx.Append(kind, nil)
			return err
		})
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	s, path, fake := openTest(t, Options{})
	appendN(t, s, fake, 3)
	db := rawDB(t, path)
	for _, q := range []string{`UPDATE audit SET payload = '{}' WHERE seq = 2`, `DELETE FROM audit WHERE seq = 3`} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the trigger to refuse it", q, err)
		}
	}
}

// TestVerify tampers with a chain of 30 entries through a second connection and checks that Verify, and
// VerifyJSONLines on an export of the tampered file, both report exactly the expected problems.
func TestVerify(t *testing.T) {
	const n = 30
	type problems = []Problem
	tests := []struct {
		name       string
		tamper     func(t *testing.T, path string, chain []AuditEntry) // nil: leave it intact
		expectHead bool                                                // verify against the head before tampering
		want       problems
	}{
		{name: "intact"},
		{name: "intact_with_expected_head", expectHead: true},
		{
			name: "payload_edited",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `UPDATE audit SET payload = '{"n":16,"status":"non_compliant"}' WHERE seq = 17`)
			},
			want: problems{{17, "seq 17: hash does not match its content: the row was edited"}},
		},
		{
			name: "payload_edited_not_json",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `UPDATE audit SET payload = 'gone'||char(10)||'"' WHERE seq = 17`)
			},
			want: problems{{17, "seq 17: hash does not match its content: the row was edited"}},
		},
		{
			name: "kind_and_time_edited",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `UPDATE audit SET kind = 'fault' WHERE seq = 3`, `UPDATE audit SET at = '2020-01-01T00:00:00.000000000Z' WHERE seq = 4`)
			},
			want: problems{
				{3, "seq 3: hash does not match its content: the row was edited"},
				{4, "seq 4: hash does not match its content: the row was edited"},
			},
		},
		{
			name: "middle_row_deleted",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `DELETE FROM audit WHERE seq = 18`)
			},
			want: problems{{18, "seq 18 is missing after 17: rows were deleted"}},
		},
		{
			name: "rows_deleted",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `DELETE FROM audit WHERE seq BETWEEN 10 AND 12`)
			},
			want: problems{{10, "seq 10 to 12 are missing after 9: rows were deleted"}},
		},
		{
			name: "first_rows_deleted",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `DELETE FROM audit WHERE seq <= 2`)
			},
			want: problems{{1, "seq 1 to 2 are missing at the start of the chain: rows were deleted"}},
		},
		{
			name: "first_prev_hash_replaced",
			tamper: func(t *testing.T, path string, chain []AuditEntry) {
				e := chain[0]
				e.PrevHash = strings.Repeat("1", 64)
				e.Hash = ChainHash(e.PrevHash, e.Seq, e.At, e.Kind, e.Payload)
				tamper(t, path, fmt.Sprintf(`UPDATE audit SET prev_hash = '%s', hash = '%s' WHERE seq = 1`, e.PrevHash, e.Hash))
			},
			want: problems{
				{1, "seq 1: prev_hash is not the genesis value (64 zeros): the start of the chain was replaced"},
				{2, "seq 2: prev_hash does not match the hash of seq 1: rows were reordered or replaced"},
			},
		},
		{
			name: "two_rows_swapped",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path,
					`UPDATE audit SET seq = 1000 WHERE seq = 19`,
					`UPDATE audit SET seq = 19 WHERE seq = 20`,
					`UPDATE audit SET seq = 20 WHERE seq = 1000`)
			},
			want: problems{
				{19, "seq 19: hash does not match its content: the row was edited"},
				{19, "seq 19: prev_hash does not match the hash of seq 18: rows were reordered or replaced"},
				{20, "seq 20: hash does not match its content: the row was edited"},
				{20, "seq 20: prev_hash does not match the hash of seq 19: rows were reordered or replaced"},
				{21, "seq 21: prev_hash does not match the hash of seq 20: rows were reordered or replaced"},
			},
		},
		{
			// An attacker who knows the recipe rehashes the row they edit; the next row still names the old one.
			name: "row_edited_and_rehashed",
			tamper: func(t *testing.T, path string, chain []AuditEntry) {
				e := chain[16]
				e.Payload = json.RawMessage(`{"n":16,"status":"compliant","note":"nothing to see"}`)
				e.Hash = ChainHash(e.PrevHash, e.Seq, e.At, e.Kind, e.Payload)
				tamper(t, path, fmt.Sprintf(`UPDATE audit SET payload = '%s', hash = '%s' WHERE seq = 17`, e.Payload, e.Hash))
			},
			want: problems{{18, "seq 18: prev_hash does not match the hash of seq 17: rows were reordered or replaced"}},
		},
		{
			name: "last_row_deleted_unanchored",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `DELETE FROM audit WHERE seq = 30`)
			},
			// Without an anchor outside the device, a shorter chain is a valid chain: this is why the agent
			// reports its head to the fleet.
		},
		{
			name: "last_row_deleted",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `DELETE FROM audit WHERE seq = 30`)
			},
			expectHead: true,
			want:       problems{{30, "seq 30 is missing at the end of the chain (the expected head is seq 30): rows were truncated"}},
		},
		{
			name: "tail_truncated",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path, `DELETE FROM audit WHERE seq > 25`)
			},
			expectHead: true,
			want:       problems{{26, "seq 26 to 30 are missing at the end of the chain (the expected head is seq 30): rows were truncated"}},
		},
		{
			// The whole tail rewritten consistently from seq 20: only the anchor reveals it.
			name: "tail_rewritten",
			tamper: func(t *testing.T, path string, chain []AuditEntry) {
				var stmts []string
				prev := chain[18].Hash
				for _, e := range chain[19:] {
					e.Payload = json.RawMessage(`{"forged":true}`)
					e.PrevHash = prev
					e.Hash = ChainHash(e.PrevHash, e.Seq, e.At, e.Kind, e.Payload)
					prev = e.Hash
					stmts = append(stmts, fmt.Sprintf(`UPDATE audit SET payload = '%s', prev_hash = '%s', hash = '%s' WHERE seq = %d`,
						e.Payload, e.PrevHash, e.Hash, e.Seq))
				}
				tamper(t, path, stmts...)
			},
			expectHead: true,
			want:       problems{{30, "seq 30: hash differs from the expected head %s: the chain was rewritten"}}, // %s: the head's hash
		},
		{
			name: "everything_at_once",
			tamper: func(t *testing.T, path string, _ []AuditEntry) {
				tamper(t, path,
					`UPDATE audit SET payload = '{}' WHERE seq = 5`,
					`DELETE FROM audit WHERE seq = 11`,
					`UPDATE audit SET kind = 'action' WHERE seq = 12`,
					`DELETE FROM audit WHERE seq >= 29`)
			},
			expectHead: true,
			want: problems{
				{5, "seq 5: hash does not match its content: the row was edited"},
				{11, "seq 11 is missing after 10: rows were deleted"},
				{12, "seq 12: hash does not match its content: the row was edited"},
				{29, "seq 29 to 30 are missing at the end of the chain (the expected head is seq 30): rows were truncated"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, path, fake := openTest(t, Options{})
			chain := appendN(t, s, fake, n)
			head := Head{Seq: chain[n-1].Seq, Hash: chain[n-1].Hash}
			if tt.tamper != nil {
				tt.tamper(t, path, chain)
			}
			var opts VerifyOptions
			if tt.expectHead {
				opts.ExpectHead = &head
			}
			want := tt.want
			for i := range want {
				if strings.Contains(want[i].Message, "%s") {
					want[i].Message = fmt.Sprintf(want[i].Message, head.Hash)
				}
			}

			res, err := s.Verify(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Problems, want) {
				t.Errorf("Verify problems:\n%s\nwant:\n%s", fmtProblems(res.Problems), fmtProblems(want))
			}
			if res.OK != (len(want) == 0) {
				t.Errorf("OK = %v with %d problems", res.OK, len(res.Problems))
			}

			// The export of the same file, verified without the database, says the same.
			var buf bytes.Buffer
			if err := s.Export(ctx, &buf); err != nil {
				t.Fatal(err)
			}
			fromExport, err := VerifyJSONLines(&buf, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromExport, res) {
				t.Errorf("VerifyJSONLines = %+v\nVerify = %+v", fromExport, res)
			}
		})
	}
}

func fmtProblems(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "\t%d: %s\n", p.Seq, p.Message)
	}
	return b.String()
}

func TestVerifyEmptyChain(t *testing.T) {
	s, _, _ := openTest(t, Options{})
	res, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Rows != 0 || res.Head != (Head{0, GenesisHash}) {
		t.Errorf("empty chain: %+v", res)
	}
	res, _ = s.Verify(context.Background(), VerifyOptions{ExpectHead: &Head{Seq: 2, Hash: "ab"}})
	want := []Problem{{1, "seq 1 to 2 are missing at the end of the chain (the expected head is seq 2): rows were truncated"}}
	if !reflect.DeepEqual(res.Problems, want) {
		t.Errorf("emptied chain: %s", fmtProblems(res.Problems))
	}
}

func TestExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _, fake := openTest(t, Options{})
	chain := appendN(t, s, fake, 10)
	mustTx(t, s, func(tx *Tx) error {
		// Payloads that a careless exporter would alter: HTML characters, unicode line separators, big
		// numbers, nesting, a string that looks like the end of a line.
		_, err := tx.Append("receipt", map[string]any{
			"html": "<script>&</script>", "sep": "a\u2028b\u2029c", "big": uint64(1) << 63, "f": 1.5e300,
			"nested": map[string]any{"a": []any{1, "x", nil, true}}, "tricky": `,"prev_hash":"x","hash":"y"}`,
			"zh": "人脸识别", "nl": "line\nbreak",
		})
		return err
	})

	var buf bytes.Buffer
	if err := s.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 11 {
		t.Fatalf("%d lines", len(lines))
	}
	var first map[string]json.RawMessage
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	wantFirst := fmt.Sprintf(`{"seq":1,"at":%q,"kind":"decision","payload":%s,"prev_hash":%q,"hash":%q}`,
		chain[0].At, chain[0].Payload, GenesisHash, chain[0].Hash)
	if lines[0] != wantFirst {
		t.Errorf("line 1:\n%s\nwant\n%s", lines[0], wantFirst)
	}

	seq, hash, _ := s.Head(ctx)
	res, err := VerifyJSONLines(strings.NewReader(buf.String()), VerifyOptions{ExpectHead: &Head{seq, hash}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || res.Rows != 11 || res.Head != (Head{seq, hash}) {
		t.Errorf("round trip: %+v", res)
	}

	t.Run("python", func(t *testing.T) {
		out, err := verifyWithPython(t, buf.Bytes())
		if err != nil || !strings.HasPrefix(out, fmt.Sprintf("ok 11 %s", hash)) {
			t.Fatalf("python verification of the export: %v\n%s", err, out)
		}
		edited := strings.Replace(buf.String(), `"n":4`, `"n":5`, 1)
		if out, err := verifyWithPython(t, []byte(edited)); err == nil {
			t.Fatalf("python verification of an edited export passed: %s", out)
		}
	})

	t.Run("tampered_export", func(t *testing.T) {
		ls := append([]string(nil), lines...)
		ls[4] = strings.Replace(ls[4], `"n":4`, `"n":44`, 1)                   // seq 5 edited
		ls = append(ls[:6], ls[7:]...)                                         // seq 7 removed
		ls = append(ls[:2], append([]string{`{"seq":"three"}`}, ls[2:]...)...) // garbage at line 3
		ls = ls[:len(ls)-1]                                                    // seq 11 truncated
		res, err := VerifyJSONLines(strings.NewReader(strings.Join(ls, "\n")+"\n"), VerifyOptions{ExpectHead: &Head{seq, hash}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Problems) > 0 && strings.HasPrefix(res.Problems[0].Message, "line 3: not an audit entry: ") {
			res.Problems[0].Message = "line 3: not an audit entry: …"
		}
		want := []Problem{
			{0, "line 3: not an audit entry: …"},
			{5, "seq 5: hash does not match its content: the row was edited"},
			{7, "seq 7 is missing after 6: rows were deleted"},
			{11, "seq 11 is missing at the end of the chain (the expected head is seq 11): rows were truncated"},
		}
		if !reflect.DeepEqual(res.Problems, want) || res.OK {
			t.Errorf("problems:\n%s", fmtProblems(res.Problems))
		}
	})

	t.Run("reordered_export", func(t *testing.T) {
		ls := append([]string(nil), lines...)
		ls[2], ls[3] = ls[3], ls[2]
		res, _ := VerifyJSONLines(strings.NewReader(strings.Join(ls, "\n")))
		want := []Problem{
			{3, "seq 3 is missing after 2: rows were deleted"},
			{3, "seq 3 comes after seq 4: entries are duplicated or out of order"},
		}
		if !reflect.DeepEqual(res.Problems, want) {
			t.Errorf("problems:\n%s", fmtProblems(res.Problems))
		}
	})
}

// verifyWithPython runs the snippet documented on Export, to show that an auditor needs nothing of ours.
func verifyWithPython(t *testing.T, export []byte) (string, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to show an auditor needs nothing of ours (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	script := `import hashlib, json, sys
prev, seq = "0" * 64, 0
for line in open(sys.argv[1], "rb"):
    e, seq = json.loads(line), seq + 1
    payload = line[line.index(b'"payload":') + 10 : line.rindex(b',"prev_hash":')]
    msg = "faceguard/audit/v1\n%s\n%d\n%s\n%s\n" % (prev, seq, e["at"], e["kind"])
    assert e["seq"] == seq and e["prev_hash"] == prev, seq
    assert hashlib.sha256(msg.encode() + payload).hexdigest() == e["hash"], seq
    prev = e["hash"]
print("ok", seq, prev)
`
	// The snippet is the one documented on Export.
	src, err := os.ReadFile("audit.go")
	if err != nil {
		t.Fatal(err)
	}
	var documented strings.Builder
	for _, line := range strings.SplitAfter(strings.TrimSuffix(script, "\n"), "\n") {
		documented.WriteString("//\t" + line)
	}
	if !strings.Contains(string(src), documented.String()) {
		t.Fatal("the Python snippet tested here is not the one in Export's documentation")
	}
	if err := os.WriteFile(filepath.Join(dir, "verify.py"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "audit.jsonl"), export, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, filepath.Join(dir, "verify.py"), filepath.Join(dir, "audit.jsonl")).CombinedOutput()
	return string(out), err
}
