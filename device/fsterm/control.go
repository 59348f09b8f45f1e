package fsterm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/atomicfile"
)

// ControlPath is where the agent writes its orders, relative to the root (docs/terminal.md).
const ControlPath = "run/faceguard/control.json"

// ControlSchema is the schema control.json declares.
const ControlSchema = "faceguard.control/v1"

// maxControlBytes bounds what is read back of control.json: room for the quarantine list of a gallery
// at the contract's scale.
const maxControlBytes = 64 << 20

// controlFile is control.json.
//
// control.json lives under run/faceguard on the device and is read only by the terminal software, so it
// may list quarantined subject references: the terminal needs them to skip those templates, and nothing
// in this file leaves the device. The agent never reports it or sends it anywhere.
type controlFile struct {
	Schema              string              `json:"schema"`
	Generation          int64               `json:"generation"`
	UpdatedAt           time.Time           `json:"updated_at"`
	FaceRecognition     device.Permission   `json:"face_recognition"`
	Enrolment           device.Permission   `json:"enrolment"`
	FaceDataEgress      device.Permission   `json:"face_data_egress"`
	Alternatives        controlAlternatives `json:"alternatives"`
	QuarantinedSubjects []string            `json:"quarantined_subjects"`
}

type controlAlternatives struct {
	RequiredOn bool `json:"required_on"`
}

// orders is the file without what changes on every write, for telling whether anything changed.
func (c controlFile) orders() []byte {
	c.Generation, c.UpdatedAt = 0, time.Time{}
	if c.QuarantinedSubjects == nil {
		c.QuarantinedSubjects = []string{}
	}
	b, _ := json.Marshal(c) // plain structs of strings and bools: cannot fail
	return b
}

// ApplyControl writes the agent's orders to run/faceguard/control.json, with the quarantined subjects
// read from the gallery. It rewrites the file only when an order or the quarantine list changed, so the
// terminal software sees a new generation only for a new order.
//
// The generation only grows: it is one more than the highest of the current file's, the last this
// Terminal wrote, and the last the terminal software reported applying (status.json, as of the last
// Facts call), so a lost or corrupt control.json (run/ is often a tmpfs) does not send it backwards.
func (t *Terminal) ApplyControl(ctx context.Context, c device.Control) (bool, error) {
	t.controlMu.Lock()
	defer t.controlMu.Unlock()
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("apply control: %w", err)
	}
	path := t.path(ControlPath)
	current, currentErr := readControl(path)

	quarantined, err := t.quarantinedSubjects(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("apply control: %w", ctx.Err())
		}
		// The gallery cannot be read (missing, locked, broken; the facts say why). Keep the list the
		// terminal already has rather than release everyone, and still give the other orders: turning
		// face recognition off must never wait for the gallery.
		quarantined = []string{}
		if currentErr == nil {
			quarantined = current.QuarantinedSubjects
		}
	}
	next := controlFile{
		Schema:              ControlSchema,
		UpdatedAt:           t.clock.Now(),
		FaceRecognition:     c.FaceRecognition,
		Enrolment:           c.Enrolment,
		FaceDataEgress:      c.FaceDataEgress,
		Alternatives:        controlAlternatives{RequiredOn: c.AlternativesRequiredOn},
		QuarantinedSubjects: quarantined,
	}
	if currentErr == nil && bytes.Equal(current.orders(), next.orders()) {
		t.lastGeneration = max(t.lastGeneration, current.Generation)
		return false, nil
	}

	generation := t.lastGeneration
	if currentErr == nil {
		generation = max(generation, current.Generation)
	}
	if applied := t.Site().ControlGeneration; applied != nil {
		generation = max(generation, *applied)
	}
	if generation < math.MaxInt64 {
		generation++
	}
	next.Generation = generation
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return false, fmt.Errorf("apply control: %w", err)
	}
	data = append(data, '\n')
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("apply control: %s: %w", filepath.Dir(ControlPath), fileError(err))
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		// atomicfile names the absolute path; the error names the file relative to the root, as the
		// facts do.
		if inner := errors.Unwrap(err); inner != nil {
			err = inner
		}
		return false, fmt.Errorf("apply control: write %s: %w", ControlPath, fileError(err))
	}
	t.lastGeneration = generation
	return true, nil
}

// readControl reads the current control.json. Anything other than a file this version wrote (missing,
// not JSON, another schema, unknown keys) is an error, and the caller replaces it.
func readControl(path string) (controlFile, error) {
	data, err := readFile(path, maxControlBytes)
	if err != nil {
		return controlFile{}, err
	}
	var c controlFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return controlFile{}, err
	}
	if dec.More() {
		return controlFile{}, errors.New("data after the JSON object")
	}
	if c.Schema != ControlSchema {
		return controlFile{}, fmt.Errorf("schema %q", c.Schema)
	}
	if c.Generation < 0 {
		return controlFile{}, errors.New("negative generation")
	}
	return c, nil
}
