package sim

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
)

// event is one thing the fake terminal software does when its timer fires.
type event int

const (
	evStatus event = iota
	evControl
	evRecognise
	evEnrol
	evWithdraw
	numEvents
)

// Run is the fake terminal software. Until ctx is cancelled it rewrites status.json (at least every
// StatusEvery, at once on a change of state), looks for a new control.json every ControlPollEvery and
// obeys it, recognises people at the profile's rate (writing a placeholder raw capture each time when the
// profile keeps them), enrols new people and makes the profile's withdrawal on schedule. It calls
// OnChange after each change of a file the agent reads. A file it cannot write is logged and tried again
// at the next tick; Run returns nil when ctx is cancelled.
func (t *Terminal) Run(ctx context.Context) error {
	t.mu.Lock()
	if t.runStarted {
		t.mu.Unlock()
		return errors.New("sim: the terminal is already running")
	}
	t.runStarted = true
	p := t.p
	// The first ticks are spread over their period, so that a fleet started at once does not rewrite
	// its files in lock-step.
	firstStatus := time.Duration(t.rng.Int64N(int64(p.StatusEvery)))
	firstControl := time.Duration(t.rng.Int64N(int64(p.ControlPollEvery)))
	t.mu.Unlock()

	// One buffered slot per kind of event, and at most one pending timer per kind: a timer's send never
	// finds the channel full, so no tick is lost and every timer is re-armed.
	events := make(chan event, numEvents)
	var timers [numEvents]clock.Timer
	arm := func(ev event, d time.Duration) {
		timers[ev] = t.clk.AfterFunc(d, func() {
			select {
			case events <- ev:
			default:
			}
		})
	}
	defer func() {
		for _, tm := range timers {
			if tm != nil {
				tm.Stop()
			}
		}
	}()

	if err := t.Sync(ctx); err != nil {
		t.logger().Warn("terminal: sync", "device", p.ID, "err", err)
	}
	arm(evStatus, firstStatus)
	arm(evControl, firstControl)
	if p.RecognitionEvery > 0 {
		arm(evRecognise, t.jitter(p.RecognitionEvery))
	}
	if p.EnrolEvery > 0 {
		arm(evEnrol, t.jitter(p.EnrolEvery))
	}
	t.mu.Lock()
	withdrawPending := p.WithdrawnSubject && !t.withdrawn
	t.mu.Unlock()
	if withdrawPending {
		arm(evWithdraw, p.WithdrawAfter)
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-events:
			var (
				changed bool
				err     error
				what    string
			)
			switch ev {
			case evStatus:
				what = "refresh status.json"
				changed, err = t.writeStatus(t.clk.Now())
				arm(evStatus, p.StatusEvery)
			case evControl:
				what = "apply control.json"
				changed, err = t.pollControl(false)
				arm(evControl, p.ControlPollEvery)
			case evRecognise:
				what = "recognise"
				changed, err = t.recognise(ctx)
				arm(evRecognise, t.jitter(p.RecognitionEvery))
			case evEnrol:
				what = "enrol"
				changed, err = t.enrol(ctx)
				arm(evEnrol, t.jitter(p.EnrolEvery))
			case evWithdraw:
				what = "withdraw"
				changed, err = t.withdraw(ctx)
				if err != nil && ctx.Err() == nil {
					arm(evWithdraw, p.StatusEvery) // try again
				}
			}
			if err != nil && ctx.Err() == nil {
				t.logger().Warn("terminal: "+what, "device", p.ID, "err", err)
			}
			if changed {
				t.notify()
			}
		}
	}
}

// Sync reads control.json and obeys it now, and rewrites status.json if its state changed, calling
// OnChange if it did. Run does this on its own; Sync is for a caller that wants it at once.
func (t *Terminal) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	changed, err := t.pollControl(true)
	if err != nil {
		return err
	}
	if c, err := t.writeStatus(t.clk.Now()); err != nil {
		return err
	} else if c {
		changed = true
	}
	if changed {
		t.notify()
	}
	return nil
}

func (t *Terminal) notify() {
	if t.OnChange != nil {
		t.OnChange()
	}
}

func (t *Terminal) logger() *slog.Logger {
	if t.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Logger
}

// jitter is an interval around mean (half to one and a half times it), so that simulated people do not
// arrive in lock-step.
func (t *Terminal) jitter(mean time.Duration) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return mean/2 + time.Duration(t.rng.Int64N(int64(mean)+1))
}

// ---------------------------------------------------------------- control.json

// controlJSON is what the terminal software reads of control.json. Unknown keys are ignored: a newer
// agent may order more than this terminal knows, and what it knows it still obeys.
type controlJSON struct {
	Schema          string         `json:"schema"`
	Generation      *int64         `json:"generation"`
	FaceRecognition permissionJSON `json:"face_recognition"`
	Enrolment       permissionJSON `json:"enrolment"`
	FaceDataEgress  permissionJSON `json:"face_data_egress"`
	Alternatives    struct {
		RequiredOn bool `json:"required_on"`
	} `json:"alternatives"`
	QuarantinedSubjects []string `json:"quarantined_subjects"`
}

// permissionJSON: an absent "allowed" is no order, which leaves the terminal as it is configured.
type permissionJSON struct {
	Allowed *bool `json:"allowed"`
}

func (p permissionJSON) allowed() bool { return p.Allowed == nil || *p.Allowed }

// maxControlBytes bounds what is read of control.json (room for a large quarantine list).
const maxControlBytes = 64 << 20

// pollControl reads control.json when it changed since the last read (or always, with force) and
// obeys it. A missing file means no orders; a file that cannot be understood keeps the orders in force,
// because obeying half of it could loosen what the agent ordered. changed reports a change of files.
func (t *Terminal) pollControl(force bool) (changed bool, err error) {
	path := t.path(fsterm.ControlPath)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.mu.Lock()
		had := t.control != nil
		t.control = nil
		t.mu.Unlock()
		if !had && !force {
			return false, nil
		}
		return t.obey(controlJSON{})
	}
	if err != nil {
		return false, fmt.Errorf("control.json: %w", err)
	}
	t.mu.Lock()
	same := t.control != nil && os.SameFile(t.control, fi) && t.control.ModTime().Equal(fi.ModTime()) && t.control.Size() == fi.Size()
	t.mu.Unlock()
	if same && !force {
		return false, nil
	}
	c, err := readControl(path)
	t.mu.Lock()
	t.control = fi
	t.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("control.json not applied: %w", err)
	}
	return t.obey(c)
}

func readControl(path string) (controlJSON, error) {
	f, err := os.Open(path)
	if err != nil {
		return controlJSON{}, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxControlBytes+1)); err != nil {
		return controlJSON{}, err
	}
	if buf.Len() > maxControlBytes {
		return controlJSON{}, fmt.Errorf("larger than %d bytes", maxControlBytes)
	}
	var c controlJSON
	if err := json.Unmarshal(buf.Bytes(), &c); err != nil {
		return controlJSON{}, err
	}
	if c.Schema != fsterm.ControlSchema {
		return controlJSON{}, fmt.Errorf("schema %q, want %s", c.Schema, fsterm.ControlSchema)
	}
	if c.Generation == nil {
		return controlJSON{}, errors.New("no generation")
	}
	return c, nil
}

// obey applies the orders: face recognition and enrolment as allowed, the quarantine list, and the
// latched fixes (the upload stopped, the alternatives on). Files change in an order that never shows the
// agent a violation that is not there: the dropped connection leaves proc/net/tcp before the flow leaves
// status.json (a declared flow without its connection is still the same violation; a connection without
// its declaration would be a new one).
func (t *Terminal) obey(c controlJSON) (changed bool, err error) {
	t.mu.Lock()
	st := &t.st
	st.frAllowed = c.FaceRecognition.allowed()
	st.enrolAllowed = c.Enrolment.allowed()
	stopUpload := st.uploading && !c.FaceDataEgress.allowed()
	if stopUpload {
		st.uploading = false
	}
	if c.Alternatives.RequiredOn {
		st.alternatives = true
	}
	st.quarantined = make(map[string]bool, len(c.QuarantinedSubjects))
	for _, ref := range c.QuarantinedSubjects {
		st.quarantined[ref] = true
	}
	if c.Generation != nil {
		g := *c.Generation
		st.generation = &g
	}
	t.mu.Unlock()
	if stopUpload {
		if err := t.writeProcNet(); err != nil {
			return false, err
		}
		changed = true
	}
	if c, err := t.writeStatus(t.clk.Now()); err != nil {
		return changed, err
	} else if c {
		changed = true
	}
	return changed, nil
}

// ---------------------------------------------------------------- people

// recognise is one person at the terminal. With face recognition off they use another way through and
// nothing is captured. Otherwise the camera captures (a placeholder file, if the profile keeps raw
// captures) and the template is matched, unless it is quarantined.
func (t *Terminal) recognise(ctx context.Context) (changed bool, err error) {
	t.mu.Lock()
	allowed := t.st.frAllowed
	if !allowed {
		t.stats.FaceOffRefusals++
	}
	t.mu.Unlock()
	if !allowed {
		return false, nil
	}
	if t.p.RawCaptures {
		if err := t.writeCapture(t.clk.Now()); err != nil {
			return false, err
		}
		changed = true
	}
	ref, err := t.someSubject(ctx)
	if err != nil {
		return changed, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case ref == "":
		t.stats.Unmatched++
	case t.st.quarantined[ref]:
		t.stats.QuarantinedRefused++
	default:
		t.stats.Recognitions++
	}
	return changed, nil
}

// someSubject picks the enrolled subject who came to the terminal ("" if nobody is enrolled).
func (t *Terminal) someSubject(ctx context.Context) (string, error) {
	db, err := t.openGallery(false)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var ref string
	err = db.QueryRowContext(ctx, `SELECT subject_ref FROM subjects ORDER BY random() LIMIT 1`).Scan(&ref)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("match: %w", err)
	}
	return ref, nil
}

// Matchable reports whether the terminal would use this subject's template for a match now: face
// recognition is allowed and the template is not quarantined.
func (t *Terminal) Matchable(ref string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st.frAllowed && !t.st.quarantined[ref]
}

// enrol enrols a new consenting adult, unless control.json blocks enrolment.
func (t *Terminal) enrol(ctx context.Context) (changed bool, err error) {
	t.mu.Lock()
	if !t.st.enrolAllowed {
		t.stats.EnrolmentsRefused++
		t.mu.Unlock()
		return false, nil
	}
	t.nextSubject++
	ref := t.subjectRef(t.nextSubject)
	t.mu.Unlock()
	now := t.clk.Now()
	err = t.inGallery(ctx, func(tx *sql.Tx) error {
		return insertSubject(ctx, tx, enrolment{ref: ref, ageBand: device.AgeAdult, basis: device.BasisSeparate, enrolledAt: now})
	})
	if err != nil {
		return false, err
	}
	t.mu.Lock()
	t.stats.Enrolments++
	t.mu.Unlock()
	return true, nil
}

// withdraw records the profile's withdrawal of consent.
func (t *Terminal) withdraw(ctx context.Context) (changed bool, err error) {
	at := t.clk.Now().Add(-t.p.WithdrawnAge)
	err = t.inGallery(ctx, func(tx *sql.Tx) error { return withdrawLatest(ctx, tx, t.subjectRef(1), at) })
	if err != nil && !errors.Is(err, errNotEnrolled) {
		return false, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.withdrawn = true
	if err != nil {
		return false, nil // already gone (a forget-subject came first): nothing left to withdraw
	}
	t.stats.Withdrawals++
	return true, nil
}

// inGallery runs fn in one write transaction on the gallery.
func (t *Terminal) inGallery(ctx context.Context, fn func(*sql.Tx) error) error {
	db, err := t.openGallery(false)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("gallery: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("gallery: %w", err)
	}
	return nil
}
