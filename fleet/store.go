package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/faceguard/faceguard/wire"
)

// ErrNotFound is returned for a device, command or bundle the store does not hold.
var ErrNotFound = errors.New("not found")

// Store keeps the fleet's state: SQLite for one controller, PostgreSQL when several controllers share a
// fleet. One contract test suite runs against both (fleet/store/storetest).
//
// Several controllers write concurrently (shared subscriptions split the per-message topics, and every
// controller receives the retained ones), so every Apply and Add is atomic and idempotent: it applies a
// message only if it is newer than what is stored for that device, by (session, seq), and reports whether
// it did. Deduplication on (dev, session, seq) makes a redelivered message a no-op.
type Store interface {
	// ApplyBirth records a device's birth (its identity, versions, capabilities).
	ApplyBirth(ctx context.Context, b wire.Birth, receivedAt time.Time) (bool, error)
	// ApplyState records online/offline. An offline whose session is older than the current state's is a
	// stale last will and is ignored; the last will of the current session ("lwt") applies even though its
	// seq is 0, since the broker publishes it after everything else of that session.
	ApplyState(ctx context.Context, s wire.State, receivedAt time.Time) (bool, error)
	// ApplyCompliance records a compliance summary: the device's current status, a row of its history,
	// the open violations reconciled with its failing controls (a control no longer failing is closed),
	// and its audit head (a head behind the last one of the same device marks AuditRegressed).
	ApplyCompliance(ctx context.Context, c wire.Compliance, receivedAt time.Time) (bool, error)
	// ApplySubjects records a device's subject sketch.
	ApplySubjects(ctx context.Context, s wire.Subjects, receivedAt time.Time) (bool, error)
	// AddEvent records an event once. A violation_opened event opens (or refreshes) the open violation of
	// (dev, control) with its message; a violation_closed closes it; each only if it is newer, by
	// (session, seq), than the last transition recorded for that (dev, control).
	AddEvent(ctx context.Context, e wire.Event, receivedAt time.Time) (bool, error)
	// AddResult records a command result once and moves the (command, device) status forward; a final
	// status is never replaced by a non-final one. A result for a command the store does not know is
	// ignored (false, nil).
	AddResult(ctx context.Context, r wire.Result, receivedAt time.Time) (bool, error)

	// CreateCommand records a command and one pending result per target device.
	CreateCommand(ctx context.Context, c Command, targets []string) error
	// PendingFor returns the unexpired commands still waiting for an answer from dev, to re-send when it
	// announces its birth. For a fleet command issued before dev was known, a pending result for dev is
	// added first, so a device that joins later is tracked too.
	PendingFor(ctx context.Context, dev string, now time.Time) ([]Command, error)
	// Command returns a command and its result at every target.
	Command(ctx context.Context, id string) (Command, []CommandResult, error)
	// Commands lists commands, newest first, with their results counted by status.
	Commands(ctx context.Context, offset, limit int) ([]CommandSummary, int, error)
	// ExpireCommands marks every result still pending or accepted of an expired command timed_out.
	ExpireCommands(ctx context.Context, now time.Time) (int, error)

	// PutBundle keeps a signed bundle to serve its chunks; Bundle returns it by revision.
	PutBundle(ctx context.Context, b Bundle) error
	Bundle(ctx context.Context, revision string) (Bundle, error)

	// Overview counts devices by status and site.
	Overview(ctx context.Context) (Overview, error)
	// Devices returns one page of devices ordered by site then id, and how many match in all.
	Devices(ctx context.Context, q DeviceQuery) ([]Device, int, error)
	// Device returns one device.
	Device(ctx context.Context, id string) (Device, error)
	// DeviceIDs returns every known device id (the targets of a fleet command).
	DeviceIDs(ctx context.Context) ([]string, error)
	// OpenViolations returns one page of open violations ordered by severity, site, device, control.
	OpenViolations(ctx context.Context, q ViolationQuery) ([]Violation, int, error)
	// History returns a device's compliance summaries, newest first.
	History(ctx context.Context, dev string, since time.Time, limit int) ([]ComplianceRecord, error)
	// Events returns a device's events of the given kinds (all when empty) since a time, newest first;
	// dev "" means every device.
	Events(ctx context.Context, dev string, kinds []string, since time.Time, limit int) ([]Event, error)
	// Sketches returns every device's latest subject sketch.
	Sketches(ctx context.Context) ([]Sketch, error)

	// FilingRecords returns the filing tracker's dated facts, oldest first; AddFilingRecord adds one.
	FilingRecords(ctx context.Context) ([]FilingRecord, error)
	AddFilingRecord(ctx context.Context, r FilingRecord) error

	Close() error
}
