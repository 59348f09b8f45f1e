package fsterm

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/clock"
)

// privateSpaceControl is what the agent orders in a hotel guest room.
var privateSpaceControl = device.Control{
	FaceRecognition: device.Permission{Allowed: false, Reason: &device.Reason{
		Control: "FRM-13-PRIVATE-SPACE",
		ZH:      "在酒店客房内启用人脸识别：已关闭人脸识别并启用其他通行方式",
		EN:      "face recognition is enabled in a hotel guest room: switched off, other ways through enabled",
	}},
	Enrolment:              device.Permission{Allowed: true},
	FaceDataEgress:         device.Permission{Allowed: true},
	AlternativesRequiredOn: true,
}

func readControlFile(t *testing.T, root string) (controlFile, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, ControlPath))
	if err != nil {
		t.Fatal(err)
	}
	var c controlFile
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("control.json is not JSON: %v\n%s", err, data)
	}
	return c, data
}

// TestApplyControlGolden pins the bytes of control.json (docs/terminal.md) for an order with a reason
// and a gallery with quarantined subjects. Run with -update after a deliberate change.
func TestApplyControlGolden(t *testing.T) {
	root := actionRoot(t,
		subject("s-0042", "adult", "device", ago(day))+
			subject("s-0007", "under_14", "device", ago(day))+consentRow(1, "s-0007", "separate", "", ago(day), "")+
			subject("s-0100", "adult", "device", ago(day))+consentRow(2, "s-0100", "separate", "", ago(day), ""), 365)
	term := actionTerminal(t, root)
	ctx := context.Background()
	if _, err := term.QuarantineUnconsentedSubjects(ctx, "FRM-06-CONSENT"); err != nil {
		t.Fatal(err)
	}
	if _, err := term.QuarantineMinorsWithoutGuardian(ctx, "FRM-07-MINORS"); err != nil {
		t.Fatal(err)
	}
	changed, err := term.ApplyControl(ctx, privateSpaceControl)
	if err != nil || !changed {
		t.Fatalf("ApplyControl = %v, %v", changed, err)
	}
	_, got := readControlFile(t, root)
	golden := filepath.Join("testdata", "golden", "control.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("control.json differs from %s (run with -update and review the diff):\n%s", golden, got)
	}
}

// TestApplyControlFormat checks the file against the documented keys, whatever the golden file says.
func TestApplyControlFormat(t *testing.T) {
	root := actionRoot(t, "", 365)
	term := actionTerminal(t, root)
	if _, err := term.ApplyControl(context.Background(), device.Control{
		FaceRecognition: device.Permission{Allowed: true},
		Enrolment:       device.Permission{Allowed: false, Reason: &device.Reason{Control: "FRM-05-NOTICE", ZH: "告知", EN: "notice"}},
		FaceDataEgress:  device.Permission{Allowed: false, Reason: &device.Reason{Control: device.FailSafeControl, ZH: "故障", EN: "fault"}},
	}); err != nil {
		t.Fatal(err)
	}
	_, data := readControlFile(t, root)
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return strings.Join(ks, ",")
	}
	if got := keys(doc); got != "alternatives,enrolment,face_data_egress,face_recognition,generation,quarantined_subjects,schema,updated_at" {
		t.Errorf("top-level keys: %s", got)
	}
	if doc["schema"] != ControlSchema || doc["generation"] != float64(1) || doc["updated_at"] != "2026-11-24T10:00:00+08:00" {
		t.Errorf("schema, generation, updated_at: %v %v %v", doc["schema"], doc["generation"], doc["updated_at"])
	}
	if fr := doc["face_recognition"].(map[string]any); keys(fr) != "allowed" || fr["allowed"] != true {
		t.Errorf("face_recognition = %v: an allowed permission has no reason", fr)
	}
	if en := doc["enrolment"].(map[string]any); keys(en) != "allowed,reason" || keys(en["reason"].(map[string]any)) != "control,en,zh" {
		t.Errorf("enrolment = %v", en)
	}
	if alt := doc["alternatives"].(map[string]any); keys(alt) != "required_on" || alt["required_on"] != false {
		t.Errorf("alternatives = %v", alt)
	}
	if q, ok := doc["quarantined_subjects"].([]any); !ok || len(q) != 0 {
		t.Errorf("quarantined_subjects = %#v, want []", doc["quarantined_subjects"])
	}
	if !bytes.HasSuffix(data, []byte("}\n")) {
		t.Error("no final newline")
	}
}

// TestApplyControlIdempotent: the same orders do not rewrite the file; a new order or a change of the
// quarantine list does, with the next generation.
func TestApplyControlIdempotent(t *testing.T) {
	root := actionRoot(t, subject("s-1", "adult", "device", ago(day))+consentRow(1, "s-1", "separate", "", ago(day), ""), 365)
	clk := clock.NewFake(testNow)
	term := actionTerminal(t, root, func(o *Options) { o.Clock = clk })
	ctx := context.Background()
	path := filepath.Join(root, ControlPath)

	apply := func(c device.Control, wantChanged bool, wantGeneration int64) {
		t.Helper()
		changed, err := term.ApplyControl(ctx, c)
		if err != nil || changed != wantChanged {
			t.Fatalf("ApplyControl = %v, %v; want changed %v", changed, err, wantChanged)
		}
		if got, _ := readControlFile(t, root); got.Generation != wantGeneration {
			t.Fatalf("generation = %d, want %d", got.Generation, wantGeneration)
		}
	}
	apply(privateSpaceControl, true, 1)
	old := testNow.Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	clk.Advance(time.Minute)
	apply(privateSpaceControl, false, 1)
	if st, err := os.Stat(path); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("the file was rewritten: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the content changed")
	}

	lifted := privateSpaceControl
	lifted.FaceRecognition = device.Permission{Allowed: true}
	apply(lifted, true, 2)
	if got, _ := readControlFile(t, root); !got.UpdatedAt.Equal(testNow.Add(time.Minute)) {
		t.Errorf("updated_at = %v", got.UpdatedAt)
	}
	apply(lifted, false, 2)

	// A reason that changes only its message is a change.
	reworded := privateSpaceControl
	reworded.FaceRecognition.Reason = &device.Reason{Control: "FRM-13-PRIVATE-SPACE", ZH: "新", EN: "new"}
	apply(privateSpaceControl, true, 3)
	apply(reworded, true, 4)

	// The quarantine list is part of the orders.
	execGallery(t, filepath.Join(root, GalleryPath), subject("s-2", "adult", "device", ago(day)))
	if out, err := term.QuarantineUnconsentedSubjects(ctx, "FRM-06-CONSENT"); err != nil || out.Count != 1 {
		t.Fatalf("quarantine: %+v, %v", out, err)
	}
	apply(reworded, true, 5)
	if got, _ := readControlFile(t, root); strings.Join(got.QuarantinedSubjects, ",") != "s-2" {
		t.Errorf("quarantined_subjects = %v", got.QuarantinedSubjects)
	}
	apply(reworded, false, 5)
}

// TestApplyControlGeneration: the generation never goes back, even when control.json is lost (run/ is
// a tmpfs) or corrupt.
func TestApplyControlGeneration(t *testing.T) {
	ctx := context.Background()
	t.Run("continues_from_the_file", func(t *testing.T) {
		root := actionRoot(t, "", 365)
		writeControl(t, root, `{"schema": "faceguard.control/v1", "generation": 41, "updated_at": "2026-11-24T09:00:00+08:00",
 "face_recognition": {"allowed": true}, "enrolment": {"allowed": true}, "face_data_egress": {"allowed": true},
 "alternatives": {"required_on": false}, "quarantined_subjects": []}`)
		term := actionTerminal(t, root)
		if changed, err := term.ApplyControl(ctx, device.Control{FaceRecognition: device.Permission{Allowed: true},
			Enrolment: device.Permission{Allowed: true}, FaceDataEgress: device.Permission{Allowed: true}}); err != nil || changed {
			t.Fatalf("the same orders: %v, %v", changed, err)
		}
		if changed, err := term.ApplyControl(ctx, privateSpaceControl); err != nil || !changed {
			t.Fatalf("new orders: %v, %v", changed, err)
		}
		if got, _ := readControlFile(t, root); got.Generation != 42 {
			t.Errorf("generation = %d, want 42", got.Generation)
		}
		// The file disappears (a reboot): this Terminal remembers.
		if err := os.Remove(filepath.Join(root, ControlPath)); err != nil {
			t.Fatal(err)
		}
		if changed, err := term.ApplyControl(ctx, privateSpaceControl); err != nil || !changed {
			t.Fatalf("after the file was lost: %v, %v", changed, err)
		}
		if got, _ := readControlFile(t, root); got.Generation != 43 {
			t.Errorf("generation = %d, want 43", got.Generation)
		}
	})
	t.Run("continues_from_what_the_terminal_applied", func(t *testing.T) {
		// residential-gate's status.json says control_generation 12, and there is no control.json.
		term := actionTerminal(t, fixtureRoot(t, "residential-gate"))
		if _, err := term.Facts(ctx); err != nil {
			t.Fatal(err)
		}
		if changed, err := term.ApplyControl(ctx, privateSpaceControl); err != nil || !changed {
			t.Fatalf("%v, %v", changed, err)
		}
		if got, _ := readControlFile(t, term.opts.Root); got.Generation != 13 {
			t.Errorf("generation = %d, want 13", got.Generation)
		}
	})
	for name, content := range map[string]string{
		"not_json":        "{\"schema\": \"faceguard.cont",
		"another_schema":  `{"schema": "faceguard.control/v2", "generation": 7}`,
		"unknown_key":     `{"schema": "faceguard.control/v1", "generation": 7, "face_recognition": {"allowed": true}, "mode": "x"}`,
		"negative":        `{"schema": "faceguard.control/v1", "generation": -7}`,
		"trailing_data":   `{"schema": "faceguard.control/v1", "generation": 7} {}`,
		"empty":           "",
		"wrong_type":      `{"schema": "faceguard.control/v1", "generation": "7"}`,
		"quarantine_null": `{"schema": "faceguard.control/v1", "generation": 7, "quarantined_subjects": {}}`,
	} {
		t.Run("replaces_a_corrupt_file/"+name, func(t *testing.T) {
			root := actionRoot(t, "", 365)
			writeControl(t, root, content)
			term := actionTerminal(t, root)
			changed, err := term.ApplyControl(ctx, privateSpaceControl)
			if err != nil || !changed {
				t.Fatalf("%v, %v", changed, err)
			}
			got, _ := readControlFile(t, root)
			if got.Schema != ControlSchema || got.Generation < 1 || got.FaceRecognition.Allowed {
				t.Errorf("replaced with %+v", got)
			}
			if changed, err := term.ApplyControl(ctx, privateSpaceControl); err != nil || changed {
				t.Errorf("second call: %v, %v", changed, err)
			}
		})
	}
}

func writeControl(t *testing.T, root, content string) {
	t.Helper()
	path := filepath.Join(root, ControlPath)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestApplyControlWithoutGallery: orders still get through when the gallery cannot be read, and the
// quarantine list the terminal already has is kept rather than emptied.
func TestApplyControlWithoutGallery(t *testing.T) {
	ctx := context.Background()
	root := actionRoot(t, subject("s-9", "adult", "device", ago(day)), 365)
	term := actionTerminal(t, root)
	if _, err := term.QuarantineUnconsentedSubjects(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := term.ApplyControl(ctx, device.Control{FaceRecognition: device.Permission{Allowed: true}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, GalleryPath)); err != nil {
		t.Fatal(err)
	}
	changed, err := term.ApplyControl(ctx, privateSpaceControl)
	if err != nil || !changed {
		t.Fatalf("%v, %v", changed, err)
	}
	got, _ := readControlFile(t, root)
	if got.FaceRecognition.Allowed || strings.Join(got.QuarantinedSubjects, ",") != "s-9" {
		t.Errorf("control = %+v", got)
	}
	if _, err := os.Stat(filepath.Join(root, GalleryPath)); !os.IsNotExist(err) {
		t.Errorf("a gallery was created: %v", err)
	}

	// Neither a gallery nor a readable control.json: the orders still go out, with an empty list.
	writeControl(t, root, "garbage")
	if changed, err := term.ApplyControl(ctx, privateSpaceControl); err != nil || !changed {
		t.Fatalf("%v, %v", changed, err)
	}
	if got, _ := readControlFile(t, root); got.FaceRecognition.Allowed || got.QuarantinedSubjects == nil || len(got.QuarantinedSubjects) != 0 {
		t.Errorf("control = %+v", got)
	}
}

// TestApplyControlAtomic: the directory is created, the file has the documented modes, and no
// temporary file is left behind after many writes.
func TestApplyControlAtomic(t *testing.T) {
	root := t.TempDir() // not even a gallery
	clk := clock.NewFake(testNow)
	term := actionTerminal(t, root, func(o *Options) { o.Clock = clk })
	ctx := context.Background()
	for i := range 20 {
		c := privateSpaceControl
		c.Enrolment.Allowed = i%2 == 0
		if changed, err := term.ApplyControl(ctx, c); err != nil || !changed {
			t.Fatalf("write %d: %v, %v", i, changed, err)
		}
		clk.Advance(time.Second)
	}
	dir := filepath.Join(root, filepath.Dir(ControlPath))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "control.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("run/faceguard holds %v", names)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm()&0o700 != 0o700 || st.Mode().Perm()&0o055 != 0o055 {
		t.Errorf("directory mode: %v, %v", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(dir, "control.json")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file mode: %v, %v", st.Mode(), err)
	}
	if got, _ := readControlFile(t, root); got.Generation != 20 {
		t.Errorf("generation = %d", got.Generation)
	}
}

func TestApplyControlCancelled(t *testing.T) {
	root := actionRoot(t, "", 365)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := actionTerminal(t, root).ApplyControl(ctx, privateSpaceControl); err == nil {
		t.Fatal("no error for a cancelled context")
	}
	if _, err := os.Stat(filepath.Join(root, ControlPath)); !os.IsNotExist(err) {
		t.Errorf("written after cancel: %v", err)
	}
}
