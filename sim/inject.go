package sim

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
)

// Faults and activity injected into a running terminal: what a scenario's events and the reliability
// tests do to it besides what its profile does on its own. Each one changes the terminal's files as its
// software would and tells the agent (OnChange).

// SetCoercivePrompt puts the coercive prompt on the screen ("face is the only way", FRM-12-NO-COERCION)
// or takes it off. A violation the agent can only report, not fix: a clean on/off signal for the record.
func (t *Terminal) SetCoercivePrompt(on bool) error {
	t.mu.Lock()
	t.st.coercive = on
	t.mu.Unlock()
	changed, err := t.writeStatus(t.clk.Now())
	if err != nil {
		return err
	}
	if changed {
		t.notify()
	}
	return nil
}

// CoercivePrompt reports whether the coercive prompt is on the screen.
func (t *Terminal) CoercivePrompt() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st.coercive
}

// Capture writes n placeholder raw captures now, as if n people were recognised by a terminal that keeps
// its captures: once one reaches raw_image_max_s the agent must delete it (FRM-08-RAW-IMAGES).
func (t *Terminal) Capture(n int) error {
	for range n {
		if err := t.writeCapture(t.clk.Now()); err != nil {
			return err
		}
	}
	if n > 0 {
		t.notify()
	}
	return nil
}

// WithdrawConsents withdraws the consent of up to n of the device's own enrolled adults whose consent
// still holds, dated the profile's WithdrawnAge ago (so the agent purges them at once, with a receipt
// each, by default). Residents shared with other doors are left alone. It returns how many withdrew.
func (t *Terminal) WithdrawConsents(ctx context.Context, n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	at := t.clk.Now().Add(-t.p.WithdrawnAge)
	var done int
	err := t.inGallery(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT s.subject_ref FROM subjects s
			WHERE s.subject_ref LIKE ?1 ESCAPE '\' AND s.age_band = ?2
			AND EXISTS (SELECT 1 FROM consents c WHERE c.subject_ref = s.subject_ref AND c.basis = ?3 AND c.withdrawn_at IS NULL)
			ORDER BY s.subject_ref LIMIT ?4`,
			likePrefix(t.p.ID+"-s-"), device.AgeAdult, device.BasisSeparate, n)
		if err != nil {
			return fmt.Errorf("withdraw: %w", err)
		}
		var refs []string
		for rows.Next() {
			var ref string
			if err := rows.Scan(&ref); err != nil {
				rows.Close()
				return fmt.Errorf("withdraw: %w", err)
			}
			refs = append(refs, ref)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("withdraw: %w", err)
		}
		for _, ref := range refs {
			if err := withdrawLatest(ctx, tx, ref, at); err != nil {
				return err
			}
		}
		done = len(refs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if done > 0 {
		t.mu.Lock()
		t.stats.Withdrawals += done
		t.mu.Unlock()
		t.notify()
	}
	return done, nil
}

// Enrol enrols n new consenting adults, unless control.json blocks enrolment (they are refused and
// counted). It returns how many were enrolled.
func (t *Terminal) Enrol(ctx context.Context, n int) (int, error) {
	enrolled := 0
	for range n {
		before := t.Stats().Enrolments
		if _, err := t.enrol(ctx); err != nil {
			return enrolled, err
		}
		if t.Stats().Enrolments > before {
			enrolled++
		}
	}
	if enrolled > 0 {
		t.notify()
	}
	return enrolled, nil
}

// likePrefix is a LIKE pattern for strings starting with prefix (with '\' as the escape).
func likePrefix(prefix string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
}

// Orders is what the agent's control.json orders the terminal, and whether the terminal applied it.
type Orders struct {
	Exists                 bool // there is a control.json
	FaceRecognitionAllowed bool
	AlternativesRequiredOn bool
	Generation             int64
	Applied                bool // status.json reports this generation applied
}

// WayThrough reports whether the orders leave people a way through: face recognition on, or the other
// ways required on.
func (o Orders) WayThrough() bool { return o.FaceRecognitionAllowed || o.AlternativesRequiredOn }

// Orders reads control.json as the terminal software does (no file: no orders, face recognition allowed).
func (t *Terminal) Orders() (Orders, error) {
	c, err := readControl(t.path(fsterm.ControlPath))
	if errors.Is(err, fs.ErrNotExist) {
		return Orders{FaceRecognitionAllowed: true}, nil
	}
	if err != nil {
		return Orders{}, fmt.Errorf("sim: control.json: %w", err)
	}
	o := Orders{Exists: true, FaceRecognitionAllowed: c.FaceRecognition.allowed(), AlternativesRequiredOn: c.Alternatives.RequiredOn,
		Generation: *c.Generation}
	t.mu.Lock()
	o.Applied = t.st.generation != nil && *t.st.generation == o.Generation
	t.mu.Unlock()
	return o, nil
}

// Captures counts the raw captures in the spool now.
func (t *Terminal) Captures() (int, error) {
	entries, err := os.ReadDir(t.path(fsterm.SpoolPath))
	if err != nil {
		return 0, fmt.Errorf("sim: spool: %w", err)
	}
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), ".consent") {
			n++
		}
	}
	return n, nil
}
