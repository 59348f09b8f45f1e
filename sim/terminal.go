package sim

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // the simulated gallery is SQLite, as the contract says
	"gopkg.in/yaml.v3"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/clock"
)

// placeholderCapture is the whole content of every raw capture the simulator writes: never an image.
var placeholderCapture = []byte("faceguard simulator: placeholder raw capture, not an image\n")

// templateSize is the size of a simulated template: zero bytes, never a real face template.
const templateSize = 512

// Addresses of the connections a simulated terminal has. The LAN door controller and the fleet broker
// carry no face data; the vendor's sync service receives templates when the profile uploads them.
const (
	localAddr          = "10.0.0.15"
	doorControllerAddr = "10.0.0.5:8443"
	fleetBrokerAddr    = "203.0.113.10:8883"
	uploadAddr         = "198.51.100.20:443"
	uploadDest         = "sync.facevendor.example:443"
)

// Terminal is one simulated terminal: its root directory (docs/terminal.md) and the fake terminal
// software that runs on it (Run). Its methods are safe for concurrent use.
type Terminal struct {
	// OnChange, when set before Run, is called after the fake terminal software changed a file the agent
	// reads (a new state in status.json, a capture, an enrolment, a withdrawal, a dropped connection), so
	// the agent can be told with agent.Notify. A rewrite that only refreshes updated_at does not call it:
	// nothing the agent judges changed.
	OnChange func()
	// Logger, when set before Run, receives the terminal's problems (a file it could not write).
	Logger *slog.Logger

	root string
	p    Profile
	clk  clock.Clock

	// fileMu makes rendering a file from the state and writing it one step, so that two writers never
	// leave an older state on disk after a newer one.
	fileMu sync.Mutex

	mu  sync.Mutex
	rng *rand.Rand
	st  state
	// nextSubject numbers the next enrolment (subject refs are "<device>-s-%06d").
	nextSubject int
	// withdrawn: the profile's withdrawal was made.
	withdrawn bool
	// lastStatus is status.json as last written, without updated_at: a rewrite that would change only
	// the time is a refresh, not a change.
	lastStatus []byte
	// control is what the file looked like when it was last read, to notice a new one cheaply.
	control      fs.FileInfo
	captureSeq   int
	stats        Stats
	runStarted   bool
	controlError string // the last reason control.json was not applied, logged once
}

// state is what the fake terminal software is doing now: its own configuration as changed by the
// orders it obeyed.
type state struct {
	// Orders in force from control.json.
	frAllowed    bool
	enrolAllowed bool
	quarantined  map[string]bool
	generation   *int64
	// Latched by an order, because a terminal that was fixed stays fixed: the agent lifts an order once
	// the fault is gone, and a terminal that then fell back to the fault would flap.
	uploading    bool // the template upload runs (TemplateUpload until egress is blocked)
	alternatives bool // the non-face ways through are healthy and offered
	// coercive: the screen says face is the only way (CoercivePrompt, or SetCoercivePrompt later).
	coercive bool
}

// Stats count what the fake terminal software did.
type Stats struct {
	Recognitions       int   // faces recognised and matched
	Unmatched          int   // recognitions that found nobody enrolled
	FaceOffRefusals    int   // people who came while face recognition was off (they used another way)
	QuarantinedRefused int   // matches refused because the template is quarantined
	RawCaptures        int   // raw captures written
	Enrolments         int   // people enrolled after start
	EnrolmentsRefused  int   // enrolments refused because control.json blocked enrolment
	Withdrawals        int   // consents withdrawn
	UploadStopped      bool  // the template upload was stopped by an order
	AlternativesOn     bool  // the non-face ways through are on
	ControlGeneration  int64 // the generation of the last control.json applied (0: none yet)
}

// NewTerminal writes a complete terminal root under dir for the profile: site.yaml, status.json, the
// gallery with the profile's subjects, the raw spool (with the profile's backlog) and proc/net/tcp{,6}.
// dir must not hold a terminal already. clk stamps every time written (nil: the system clock).
func NewTerminal(dir string, p Profile, clk clock.Clock) (*Terminal, error) {
	p, err := p.normalized()
	if err != nil {
		return nil, err
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(fsterm.GalleryPath))); err == nil {
		return nil, fmt.Errorf("sim: %s already holds a terminal", dir)
	}
	h := fnv.New64a()
	h.Write([]byte(p.ID))
	seed := h.Sum64()
	t := &Terminal{
		root: dir,
		p:    p,
		clk:  clk,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		st: state{
			frAllowed:    true,
			enrolAllowed: true,
			quarantined:  map[string]bool{},
			uploading:    p.TemplateUpload,
			alternatives: !p.FaceOnly,
			coercive:     p.CoercivePrompt,
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	for _, d := range []string{"etc/faceguard", "var/lib/terminal", fsterm.SpoolPath, "proc/net"} {
		if err := os.MkdirAll(t.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
	}
	now := clk.Now()
	if err := t.writeSite(now); err != nil {
		return nil, err
	}
	if err := t.createGallery(context.Background(), now); err != nil {
		return nil, err
	}
	if err := t.writeBacklog(now); err != nil {
		return nil, err
	}
	if err := t.writeProcNet(); err != nil {
		return nil, err
	}
	if _, err := t.writeStatus(now); err != nil {
		return nil, err
	}
	return t, nil
}

// Root is the terminal's root directory: what the agent's --root would be.
func (t *Terminal) Root() string { return t.root }

// Profile is the profile with its defaults filled in.
func (t *Terminal) Profile() Profile { return t.p }

// Stats returns what the terminal did so far.
func (t *Terminal) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.UploadStopped = t.p.TemplateUpload && !t.st.uploading
	s.AlternativesOn = t.st.alternatives
	if t.st.generation != nil {
		s.ControlGeneration = *t.st.generation
	}
	return s
}

func (t *Terminal) path(rel string) string { return filepath.Join(t.root, filepath.FromSlash(rel)) }

// subjectRef is the synthetic reference of the n-th subject: it names nobody.
func (t *Terminal) subjectRef(n int) string { return fmt.Sprintf("%s-s-%06d", t.p.ID, n) }

// ---------------------------------------------------------------- site.yaml

type siteYAML struct {
	Schema   string       `yaml:"schema"`
	Site     siteSection  `yaml:"site"`
	Device   deviceYAML   `yaml:"device"`
	Location locationYAML `yaml:"location"`
	Signage  signageYAML  `yaml:"signage"`
	Notice   noticeYAML   `yaml:"notice"`
	PIA      piaYAML      `yaml:"pia"`
	Network  networkYAML  `yaml:"network"`
}

type (
	siteSection struct {
		ID   string `yaml:"id"`
		Name string `yaml:"name"`
	}
	deviceYAML struct {
		ID    string `yaml:"id"`
		Kind  string `yaml:"kind"`
		Stage string `yaml:"stage"`
	}
	locationYAML struct {
		Category           string  `yaml:"category"`
		PublicPlace        bool    `yaml:"public_place"`
		PrivateSpace       bool    `yaml:"private_space"`
		NecessityRef       *string `yaml:"necessity_ref"`
		CaptureZoneDefined bool    `yaml:"capture_zone_defined"`
	}
	signageYAML struct {
		Present    bool    `yaml:"present"`
		Evidence   string  `yaml:"evidence"`
		VerifiedAt *string `yaml:"verified_at"`
	}
	noticeYAML struct {
		ShownBeforeCapture bool     `yaml:"shown_before_capture"`
		Fields             []string `yaml:"fields,flow"`
		RetentionDays      int      `yaml:"retention_days"`
	}
	piaYAML struct {
		Ref         *string `yaml:"ref"`
		CompletedAt *string `yaml:"completed_at"`
		Purpose     *string `yaml:"purpose"`
	}
	networkYAML struct {
		AllowedRemotes []string `yaml:"allowed_remotes"`
	}
)

var noticeFields = []string{"processor_contact", "purpose", "method", "retention_period", "impact", "rights"}

func ptr[T any](v T) *T { return &v }

func (t *Terminal) writeSite(now time.Time) error {
	p := t.p
	rfc := func(d time.Duration) *string { return ptr(now.Add(-d).Format(time.RFC3339)) }
	doc := siteYAML{
		Schema: fsterm.SiteSchema,
		Site:   siteSection{ID: p.Site, Name: p.SiteName},
		Device: deviceYAML{ID: p.ID, Kind: p.Kind, Stage: device.StageProduction},
		Location: locationYAML{
			Category:           p.Category,
			PublicPlace:        p.PublicPlace,
			CaptureZoneDefined: true,
		},
		Signage: signageYAML{Present: true, Evidence: "photo_audit", VerifiedAt: rfc(30 * 24 * time.Hour)},
		Notice:  noticeYAML{ShownBeforeCapture: true, Fields: noticeFields, RetentionDays: DefaultRetentionDays},
		PIA: piaYAML{
			Ref:         ptr("PIA-SIM-" + strings.ToUpper(p.Site)),
			CompletedAt: rfc(60 * 24 * time.Hour),
			Purpose:     ptr(p.Purpose),
		},
		// The fleet broker's connection carries no face data: the installer allows it.
		Network: networkYAML{AllowedRemotes: []string{fleetBrokerAddr}},
	}
	if p.PublicPlace {
		doc.Location.NecessityRef = ptr("NEC-SIM-" + strings.ToUpper(p.ID))
	}
	if p.SignRemoved {
		doc.Signage = signageYAML{Present: false, Evidence: "none"}
	}
	if p.NoticeIncomplete {
		doc.Notice.Fields = noticeFields[:4]
	}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("sim: site.yaml: %w", err)
	}
	data := append([]byte("# Written by the faceguard simulator: the installer's attestation of a simulated terminal.\n"), body...)
	if err := writeAtomic(t.path(fsterm.SitePath), data); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------- status.json

type statusJSON struct {
	Schema            string       `json:"schema"`
	UpdatedAt         string       `json:"updated_at"`
	Model             string       `json:"model"`
	Firmware          string       `json:"firmware"`
	FR                statusFR     `json:"fr"`
	Alternatives      statusAlts   `json:"alternatives"`
	Prompts           []string     `json:"prompts"`
	Egress            []statusFlow `json:"egress"`
	Security          statusSec    `json:"security"`
	ControlGeneration *int64       `json:"control_generation,omitempty"`
}

type (
	statusFR struct {
		Enabled bool   `json:"enabled"`
		Mode    string `json:"mode"`
		Purpose string `json:"purpose"`
	}
	statusAlts struct {
		Configured        []string `json:"configured"`
		Healthy           []string `json:"healthy"`
		RefuseOptionShown bool     `json:"refuse_option_shown"`
	}
	statusFlow struct {
		Dest     string `json:"dest"`
		Internet bool   `json:"internet"`
		Data     string `json:"data"`
		Consent  string `json:"consent"`
		Remote   string `json:"remote,omitempty"`
	}
	statusSec struct {
		StorageEncrypted   bool `json:"storage_encrypted"`
		TransportTLS       bool `json:"transport_tls"`
		AuditLog           bool `json:"audit_log"`
		AccessControl      bool `json:"access_control"`
		IntrusionDetection bool `json:"intrusion_detection"`
		DefaultCredentials bool `json:"default_credentials"`
	}
)

// Prompts the terminal shows.
const (
	promptFaceOrCard = "请刷脸或刷卡通行 / Face or card to enter"
	promptRefuse     = "不想刷脸？请使用其他方式 / Prefer not to use your face? Use another way"
	promptFaceOnly   = "请看向摄像头 / Please look at the camera"
	promptCoercive   = "必须刷脸通行 / Face scan required to enter"
)

// alternativesOf are the non-face ways through a kind of terminal has.
func alternativesOf(kind string) []string {
	switch kind {
	case device.KindKiosk:
		return []string{"id_card", "staff_desk"}
	case device.KindCamera:
		return []string{"staff_desk"}
	default:
		return []string{"ic_card", "pin"}
	}
}

// statusLocked renders status.json from the state, without updated_at. t.mu is held.
func (t *Terminal) statusLocked() statusJSON {
	p, st := t.p, t.st
	s := statusJSON{
		Schema:   fsterm.StatusSchema,
		Model:    p.Model,
		Firmware: p.Firmware,
		// The terminal's own configuration: never the agent's override (docs/terminal.md).
		FR:       statusFR{Enabled: true, Mode: "verify_1to1", Purpose: p.Purpose},
		Security: statusSec{StorageEncrypted: true, TransportTLS: true, AuditLog: true, AccessControl: true, IntrusionDetection: true, DefaultCredentials: p.DefaultCredentials},
		Egress: []statusFlow{{Dest: "door-controller.lan:8443", Internet: false, Data: device.EgressMatchResult,
			Consent: device.ConsentNone, Remote: doorControllerAddr}},
		ControlGeneration: st.generation,
	}
	configured := alternativesOf(p.Kind)
	if st.alternatives {
		s.Alternatives = statusAlts{Configured: configured, Healthy: configured, RefuseOptionShown: true}
		s.Prompts = []string{promptFaceOrCard, promptRefuse}
	} else {
		s.Alternatives = statusAlts{Configured: configured, Healthy: []string{}, RefuseOptionShown: false}
		s.Prompts = []string{promptFaceOnly}
	}
	if st.coercive {
		s.Prompts[0] = promptCoercive
	}
	if st.uploading {
		s.Egress = append(s.Egress, statusFlow{Dest: uploadDest, Internet: true, Data: device.EgressTemplate,
			Consent: device.ConsentNone, Remote: uploadAddr})
	}
	return s
}

// writeStatus rewrites status.json with a fresh updated_at. changed reports whether anything but the
// time differs from the last write.
func (t *Terminal) writeStatus(now time.Time) (changed bool, err error) {
	t.fileMu.Lock()
	defer t.fileMu.Unlock()
	t.mu.Lock()
	s := t.statusLocked()
	key, _ := json.Marshal(s)
	changed = string(key) != string(t.lastStatus)
	t.mu.Unlock()
	s.UpdatedAt = now.Format(time.RFC3339)
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return false, fmt.Errorf("sim: status.json: %w", err)
	}
	if err := writeAtomic(t.path(fsterm.StatusPath), append(data, '\n')); err != nil {
		return false, fmt.Errorf("sim: %w", err)
	}
	t.mu.Lock()
	t.lastStatus = key
	t.mu.Unlock()
	return changed, nil
}

// ---------------------------------------------------------------- gallery.db

// openGallery opens the gallery as the terminal software does: one connection, waiting for the agent's
// locks rather than failing, a small page cache. It is opened for each use and closed after, so that an
// idle simulated terminal holds no SQLite connection (thousands of them share one process).
func (t *Terminal) openGallery(create bool) (*sql.DB, error) {
	path := t.path(fsterm.GalleryPath)
	mode := "rw"
	if create {
		mode = "rwc"
	}
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?mode=%s&_busy_timeout=5000&_txlock=immediate&_cache_size=-64", escaped, mode))
	if err != nil {
		return nil, fmt.Errorf("sim: open gallery: %w", err)
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// enrolment is one subject as written at enrolment.
type enrolment struct {
	ref        string
	ageBand    string
	basis      string
	enrolledAt time.Time
	lastUsed   *time.Time
}

func (t *Terminal) createGallery(ctx context.Context, now time.Time) error {
	db, err := t.openGallery(true)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `PRAGMA journal_mode=WAL`); err != nil {
		return fmt.Errorf("sim: gallery: %w", err)
	}
	if _, err := db.ExecContext(ctx, fsterm.GallerySchema); err != nil {
		return fmt.Errorf("sim: gallery: %w", err)
	}
	var subjects []enrolment
	t.mu.Lock()
	for range t.p.Adults {
		t.nextSubject++
		enrolled := now.Add(-time.Duration(1+t.rng.IntN(300)) * 24 * time.Hour)
		used := now.Add(-time.Duration(t.rng.IntN(48*60)) * time.Minute)
		subjects = append(subjects, enrolment{ref: t.subjectRef(t.nextSubject), ageBand: device.AgeAdult,
			basis: device.BasisSeparate, enrolledAt: enrolled, lastUsed: &used})
	}
	for _, ref := range t.p.Residents {
		enrolled := now.Add(-time.Duration(1+t.rng.IntN(300)) * 24 * time.Hour)
		subjects = append(subjects, enrolment{ref: ref, ageBand: device.AgeAdult, basis: device.BasisSeparate, enrolledAt: enrolled})
	}
	if t.p.MinorWithoutGuardian {
		t.nextSubject++
		subjects = append(subjects, enrolment{ref: t.subjectRef(t.nextSubject), ageBand: device.AgeUnder14,
			basis: device.BasisSeparate, enrolledAt: now.Add(-20 * 24 * time.Hour)})
	}
	if t.p.UnconsentedSubject {
		t.nextSubject++
		subjects = append(subjects, enrolment{ref: t.subjectRef(t.nextSubject), ageBand: device.AgeAdult,
			basis: device.BasisNone, enrolledAt: now.Add(-10 * 24 * time.Hour)})
	}
	t.mu.Unlock()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sim: gallery: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	for _, s := range subjects {
		if err := insertSubject(ctx, tx, s); err != nil {
			return err
		}
	}
	if t.p.WithdrawnSubject && t.p.WithdrawAfter == 0 {
		if err := withdrawLatest(ctx, tx, t.subjectRef(1), now.Add(-t.p.WithdrawnAge)); err != nil {
			return err
		}
		t.withdrawn = true
		t.stats.Withdrawals++
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sim: gallery: %w", err)
	}
	return nil
}

func insertSubject(ctx context.Context, tx *sql.Tx, s enrolment) error {
	var used any
	if s.lastUsed != nil {
		used = s.lastUsed.Format(time.RFC3339)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO subjects (subject_ref, template, age_band, stored_at, enrolled_at, last_used_at)
		VALUES (?, ?, ?, 'device', ?, ?)`, s.ref, make([]byte, templateSize), s.ageBand, s.enrolledAt.Format(time.RFC3339), used); err != nil {
		return fmt.Errorf("sim: enrol: %w", err)
	}
	// Consent is given just before enrolment.
	if _, err := tx.ExecContext(ctx, `INSERT INTO consents (subject_ref, basis, guardian_ref, granted_at) VALUES (?, ?, NULL, ?)`,
		s.ref, s.basis, s.enrolledAt.Add(-time.Minute).Format(time.RFC3339)); err != nil {
		return fmt.Errorf("sim: enrol: %w", err)
	}
	return nil
}

// withdrawLatest records a withdrawal on the subject's consent (its latest consents row).
func withdrawLatest(ctx context.Context, tx *sql.Tx, ref string, at time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE consents SET withdrawn_at = ?1 WHERE id = (
		SELECT id FROM consents WHERE subject_ref = ?2 ORDER BY granted_at DESC, id DESC LIMIT 1)
		AND EXISTS (SELECT 1 FROM subjects WHERE subject_ref = ?2)`,
		at.Format(time.RFC3339), ref)
	if err != nil {
		return fmt.Errorf("sim: withdraw: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errNotEnrolled
	}
	return nil
}

// errNotEnrolled: the subject who was to withdraw is not in the gallery (any more).
var errNotEnrolled = errors.New("sim: withdraw: the subject is not enrolled")

// ---------------------------------------------------------------- raw spool

// writeBacklog writes the captures left in the spool before the terminal started, an hour old.
func (t *Terminal) writeBacklog(now time.Time) error {
	for i := range t.p.RawBacklog {
		if err := t.writeCapture(now.Add(-time.Hour - time.Duration(i)*time.Minute)); err != nil {
			return err
		}
	}
	return nil
}

// writeCapture writes one placeholder capture with the given modification time: first under a dot name,
// which the agent ignores, then renamed into place.
func (t *Terminal) writeCapture(at time.Time) error {
	t.mu.Lock()
	t.captureSeq++
	name := fmt.Sprintf("%s-%05d.raw", at.UTC().Format("20060102-150405"), t.captureSeq)
	t.mu.Unlock()
	dir := t.path(fsterm.SpoolPath)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, placeholderCapture, 0o600); err != nil {
		return fmt.Errorf("sim: capture: %w", err)
	}
	if err := os.Chtimes(tmp, at, at); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sim: capture: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sim: capture: %w", err)
	}
	t.mu.Lock()
	t.stats.RawCaptures++
	t.mu.Unlock()
	return nil
}

// ---------------------------------------------------------------- files

// writeAtomic writes a file the way the contract asks of terminal software: a temporary file in the same
// directory, renamed over the target, so a reader sees the old content or the new, never a mix. It does
// not fsync: a simulated terminal lives on a tmpfs, and thousands of them rewrite status.json every few
// seconds.
func writeAtomic(name string, data []byte) error {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	return nil
}
