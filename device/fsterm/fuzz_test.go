package fsterm

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
)

// validateFuzzFacts fails when a document built from accepted input does not validate: whatever a
// terminal writes, the agent must be able to record and evaluate what fsterm makes of it.
func validateFuzzFacts(t *testing.T, f device.Facts) {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if err := device.ValidateFacts(b); err != nil {
		t.Fatalf("accepted input gives invalid facts: %v\n%s", err, b)
	}
}

// addFixtureSeeds adds the file at rel of every fixture tree to the corpus.
func addFixtureSeeds(f *testing.F, rel string) {
	paths, _ := filepath.Glob(filepath.Join(fixturesDir, "*", rel))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(goodStatus))
	addFixtureSeeds(f, StatusPath)
	for _, seed := range []string{
		"", "{}", "[]", "null", `{"schema": "faceguard.terminal-status/v1"}`,
		`{"schema": "faceguard.terminal-status/v1", "updated_at": "2026-11-24T10:00:00Z", "fr": {"enabled": true}}`,
		`{"schema": "faceguard.terminal-status/v1", "updated_at": "0000-01-01T00:00:00Z", "prompts": ["\ud800"], "egress": [{"dest": "\u0000", "internet": true, "data": "video", "consent": "none", "remote": "[::ffff:1.2.3.4]:0"}]}`,
		`{"schema": "faceguard.terminal-status/v1", "updated_at": "9999-12-31T23:59:59.999999999-23:59", "control_generation": 9223372036854775807}`,
		strings.Replace(goodStatus, `"pin"]`, `"pin", "pin"]`, 1),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseStatus(data)
		if err != nil {
			if doc != nil {
				t.Fatal("a refused file returned a document")
			}
			return
		}
		_ = checkFresh(doc.updatedAt, testNow, 15*time.Minute)
		facts := placeholderFacts(testNow)
		doc.apply(&facts)
		validateFuzzFacts(t, facts)
		for _, ap := range doc.declaredRemotes {
			if !ap.IsValid() || ap.Addr().Is4In6() || ap.Addr().Zone() != "" {
				t.Fatalf("declared remote %v is not a plain ip:port", ap)
			}
		}
	})
}

func FuzzParseSite(f *testing.F) {
	f.Add([]byte(goodSite))
	addFixtureSeeds(f, SitePath)
	for _, seed := range []string{
		"", "schema: faceguard.site/v1\n", "- a\n", "a: &x [*x]\n",
		"schema: faceguard.site/v1\nsite: {id: a}\nnetwork: {}\nnotice: {shown_before_capture: yes, fields: [], retention_days: 0x10}\n",
		"schema: faceguard.site/v1\nsite: {id: a}\nnetwork: {allowed_remotes: ['::ffff:0.0.0.0/96']}\nsignage: {present: true, evidence: none, verified_at: 0000-01-01T00:00:00Z}\n",
		"schema: faceguard.site/v1\nsite: &s {id: a}\nnetwork: {}\ndevice: *s\nlocation: {<<: *s}\n",
		strings.Replace(goodSite, "retention_days: 365", "retention_days: 1_000", 1),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := parseSite(data)
		if err != nil {
			return
		}
		facts := placeholderFacts(testNow)
		res := doc.apply(&facts)
		if res.deviceID != "" {
			facts.Device.ID = res.deviceID
		}
		validateFuzzFacts(t, facts)
		if !idPattern.MatchString(res.siteID) {
			t.Fatalf("accepted site id %q", res.siteID)
		}
	})
}

func FuzzParseProcNetTCP(f *testing.F) {
	addFixtureSeeds(f, ProcTCPPath)
	addFixtureSeeds(f, ProcTCP6Path)
	f.Add([]byte(tcpHeader + tcpLine(0, "0F00000A:CF14", "4D7100CB:1F90", "01")))
	f.Add([]byte(tcp6Header + tcpLine(0, "0000000000000000FFFF00000701080A:9C40", "0000000000000000FFFF00000501080A:20FB", "01")))
	f.Add([]byte(tcpHeader + "\n\n" + tcpLine(99, "00000000:0000", "FFFFFFFF:FFFF", "FF")))
	f.Add([]byte("sl local_address\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v6 := range []bool{false, true} {
			remotes, err := parseProcNetTCP(bytes.NewReader(data), v6)
			if err != nil {
				continue
			}
			for _, ap := range remotes {
				if ap.Addr().Is4() == v6 {
					t.Fatalf("v6=%v table gave %v", v6, ap)
				}
			}
			facts := placeholderFacts(testNow)
			facts.Egress = undeclaredFlows(remotes, nil, allowList{})
			if len(facts.Egress) > maxObservedFlow {
				t.Fatalf("%d flows, over the cap", len(facts.Egress))
			}
			validateFuzzFacts(t, facts)
		}
	})
}

// FuzzApplyControl: whatever control.json holds, ApplyControl succeeds and leaves a file it accepts;
// when it accepted the old file, giving the orders that file holds again changes nothing, and when it
// did not, the file is replaced.
func FuzzApplyControl(f *testing.F) {
	if golden, err := os.ReadFile(filepath.Join("testdata", "golden", "control.json")); err == nil {
		f.Add(golden)
	}
	for _, seed := range []string{
		"", "{}", "null", "[]", `{"schema": "faceguard.control/v1"}`,
		`{"schema": "faceguard.control/v1", "generation": 9223372036854775807, "updated_at": "2026-11-24T10:00:00Z", "quarantined_subjects": null}`,
		`{"SCHEMA": "faceguard.control/v1", "generation": 3, "updated_at": "2026-11-24T10:00:00Z", "face_recognition": {"allowed": true, "reason": null}}`,
		`{"schema": "faceguard.control/v1", "generation": 3, "updated_at": "2026-11-24T10:00:00Z", "enrolment": {"allowed": false, "reason": {"control": "\ud800", "zh": "", "en": ""}}, "quarantined_subjects": ["b", "a", "a"]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		writeControl(t, root, string(data))
		path := filepath.Join(root, ControlPath)
		old, oldErr := readControl(path)
		order := privateSpaceControl
		if oldErr == nil {
			order = device.Control{FaceRecognition: old.FaceRecognition, Enrolment: old.Enrolment,
				FaceDataEgress: old.FaceDataEgress, AlternativesRequiredOn: old.Alternatives.RequiredOn}
		}
		term := newTestTerminal(root) // no gallery: the quarantine list is kept from the file
		changed, err := term.ApplyControl(context.Background(), order)
		if err != nil {
			t.Fatalf("ApplyControl: %v", err)
		}
		if changed != (oldErr != nil) {
			t.Fatalf("changed = %v for a file read with error %v", changed, oldErr)
		}
		got, err := readControl(path)
		if err != nil {
			t.Fatalf("ApplyControl left a file it does not accept: %v", err)
		}
		if changed && got.Generation < 1 || !changed && got.Generation != old.Generation {
			t.Fatalf("generation %d after %d", got.Generation, old.Generation)
		}
	})
}
