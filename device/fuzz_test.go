package device_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
)

// FuzzParseFacts: any document given to `faceguard-agent check --facts` or to the local decision API.
// ParseFacts refuses it with a *FactsError that says why, or returns facts that are valid as they are
// written back, read back the same, and that the built-in pack decides.
func FuzzParseFacts(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "facts", "compliant_gate.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	for _, seed := range []string{
		"", "{}", "[]", "null", "{\n  \"schema\": \"faceguard.facts/v1\",\n  oops\n}", `{"schema":"faceguard.facts/v2"}`,
		strings.Replace(string(good), `"enabled": true`, `"enabled": "yes"`, 1),
		strings.Replace(string(good), `"count": 120`, `"count": 1.0`, 1),
		strings.Replace(string(good), `"count": 120`, `"count": 1e400`, 1),
		strings.Replace(string(good), `"count": 120`, `"count": -1`, 1),
		strings.Replace(string(good), `"collected_at": "`, `"collected_at": "1985-04-12T23:59:60Z", "x": "`, 1),
		strings.Replace(string(good), `"gate-01"`, `"Gate 01"`, 1),
		strings.Replace(string(good), `"residential_gate"`, `"hotel_guest_room"`, 1),
		strings.Replace(string(good), `"prompts": [`, `"prompts": ["必须刷脸\ud800", `, 1),
		string(good) + "{}",
	} {
		f.Add([]byte(seed))
	}
	// The facts of every example terminal, as fsterm gathers them.
	dirs, _ := filepath.Glob(filepath.Join("..", "testdata", "terminals", "*"))
	for _, d := range dirs {
		root := f.TempDir()
		if err := os.CopyFS(root, os.DirFS(d)); err != nil {
			f.Fatal(err)
		}
		term := fsterm.New(fsterm.Options{Root: root, Clock: clock.NewFake(time.Date(2026, 11, 24, 2, 0, 0, 0, time.UTC))})
		facts, err := term.Facts(context.Background())
		term.Close()
		if err == nil {
			b, _ := json.Marshal(facts)
			f.Add(b)
		}
	}
	eng, err := engine.New(context.Background(), engine.Options{})
	if err != nil {
		f.Fatal(err)
	}
	// Oversized (not a seed: the fuzzer would spend its time shrinking a megabyte).
	if _, err := device.ParseFacts(append(bytes.Repeat([]byte(" "), device.MaxFactsBytes), good...)); !errors.Is(err, device.ErrInvalidFacts) {
		f.Fatalf("an oversized document: %v", err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		facts, err := device.ParseFacts(data)
		if err != nil {
			var fe *device.FactsError
			if !errors.As(err, &fe) || !errors.Is(err, device.ErrInvalidFacts) || len(fe.Problems) == 0 || fe.Error() == "" {
				t.Fatalf("refused without saying why: %#v", err)
			}
			return
		}
		again, err := json.Marshal(facts)
		if err != nil {
			t.Fatal(err)
		}
		if err := device.ValidateFacts(again); err != nil {
			t.Fatalf("accepted facts do not validate as written back: %v\n%s", err, again)
		}
		reread, err := device.ParseFacts(again)
		if err != nil {
			t.Fatalf("accepted facts written back are refused: %v", err)
		}
		if third, _ := json.Marshal(reread); !bytes.Equal(third, again) {
			t.Fatalf("facts change when read back:\n%s\n%s", again, third)
		}
		d, err := eng.Decide(context.Background(), &facts)
		if err != nil {
			t.Fatalf("accepted facts cannot be decided: %v", err)
		}
		if d.Status != device.StatusCompliant && d.Status != device.StatusNonCompliant {
			t.Fatalf("decision status %q", d.Status)
		}
		for _, v := range d.Violations {
			if v.Control == "" || v.Message.ZH == "" || v.Message.EN == "" {
				t.Fatalf("a violation without a control or a message: %+v", v)
			}
		}
	})
}
