package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Terminal is the seam between the agent and one terminal: facts in, actions out. device/fsterm is the
// reference implementation over the file layout of docs/terminal.md; a vendor may add another.
//
// Every action is idempotent: applied twice it changes nothing the second time and says so (Outcome.Count
// 0, changed false). No method may return or log a subject reference, a template or an image; receipts
// name subjects only by their keyed hash.
type Terminal interface {
	// Facts gathers the facts document. Groups that cannot be gathered are listed in Facts.Unknown and
	// the call still succeeds; an error means nothing could be gathered at all.
	Facts(ctx context.Context) (Facts, error)

	// ApplyControl gives the terminal the agent's orders (disable_face_recognition, enable_alternatives,
	// block_face_data_egress, block_enrolment are fields of Control, so lifting an order is as explicit as
	// giving it). It reports whether anything changed.
	ApplyControl(ctx context.Context, c Control) (changed bool, err error)

	// DeleteRawImages deletes raw captures without separate consent older than maxAge (delete_raw_images).
	DeleteRawImages(ctx context.Context, maxAge time.Duration) (Outcome, error)
	// NextRawExpiry is when the next capture without separate consent reaches maxAge, so the agent can set
	// a timer for the exact moment instead of sweeping. ok is false when there is none.
	NextRawExpiry(ctx context.Context, maxAge time.Duration) (at time.Time, ok bool, err error)

	// PurgeWithdrawnSubjects deletes every subject whose consent was withdrawn, template and consent rows,
	// with a receipt each (purge_withdrawn_subjects).
	PurgeWithdrawnSubjects(ctx context.Context, reason string) (Outcome, error)
	// PurgeExpiredSubjects deletes subjects kept beyond the notice's retention (purge_expired_subjects).
	PurgeExpiredSubjects(ctx context.Context, reason string) (Outcome, error)
	// QuarantineUnconsentedSubjects excludes templates without valid separate consent from matching
	// (quarantine_unconsented_subjects).
	QuarantineUnconsentedSubjects(ctx context.Context, reason string) (Outcome, error)
	// QuarantineMinorsWithoutGuardian excludes under-14 subjects without guardian consent from matching
	// (quarantine_minors_without_guardian).
	QuarantineMinorsWithoutGuardian(ctx context.Context, reason string) (Outcome, error)

	// QuarantinedCount is how many subjects are kept out of matching now, for whatever reason.
	QuarantinedCount(ctx context.Context) (int, error)

	// ForgetSubject deletes the subject whose keyed hash is subjectHash (the forget-subject command). Not
	// holding the subject is a success with Count 0.
	ForgetSubject(ctx context.Context, subjectHash, reason string) (Outcome, error)
	// LookupSubject tells the local decision API what the gallery says about one subject.
	LookupSubject(ctx context.Context, subjectRef string) (MatchSubject, error)
	// SubjectHashes calls fn with the keyed hash of every enrolled subject (the filing tracker's input).
	SubjectHashes(ctx context.Context, fn func(hash string)) error
}

// Control is what the agent orders the terminal to do (run/faceguard/control.json).
type Control struct {
	FaceRecognition        Permission `json:"face_recognition"`
	Enrolment              Permission `json:"enrolment"`
	FaceDataEgress         Permission `json:"face_data_egress"`
	AlternativesRequiredOn bool       `json:"alternatives_required_on"`
}

// Permission allows or forbids one thing, and says why when it forbids.
type Permission struct {
	Allowed bool    `json:"allowed"`
	Reason  *Reason `json:"reason,omitempty"`
}

// Reason names the control (or "FAIL-SAFE") behind an order, with its message.
type Reason struct {
	Control string `json:"control"`
	ZH      string `json:"zh"`
	EN      string `json:"en"`
}

// FailSafeControl is the name a fail-safe order gives as its control.
const FailSafeControl = "FAIL-SAFE"

// Outcome is what an action did.
type Outcome struct {
	Count    int       // how many things it changed (captures deleted, subjects purged or quarantined)
	Receipts []Receipt // one per deleted subject
}

// Receipt proves a deletion without revealing what was deleted: the keyed hash of the subject, a hash
// of what was deleted (template and consent rows), when and why. Hash is the SHA-256 of the receipt
// itself and is what leaves the device.
type Receipt struct {
	SubjectHash   string    `json:"subject_hash"`
	ContentSHA256 string    `json:"content_sha256"`
	DeletedAt     time.Time `json:"deleted_at"`
	Reason        string    `json:"reason"`
	Hash          string    `json:"hash"`
}

// Seal computes r.Hash over the receipt's other fields, so anyone holding the receipt can check that the
// hash reported to the fleet is this receipt's.
func (r *Receipt) Seal() {
	r.Hash = r.computeHash()
}

// Valid reports whether r.Hash is the hash of r's fields.
func (r *Receipt) Valid() bool { return r.Hash != "" && r.Hash == r.computeHash() }

func (r *Receipt) computeHash() string {
	sum := sha256.Sum256([]byte("faceguard/receipt/v1\n" + r.SubjectHash + "\n" + r.ContentSHA256 + "\n" +
		r.DeletedAt.UTC().Format(time.RFC3339Nano) + "\n" + r.Reason))
	return hex.EncodeToString(sum[:])
}
