package fsterm

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/faceguard/faceguard/device"
)

// The rules of docs/terminal.md that say which subjects are withdrawn, without consent, minors without
// guardian consent or kept beyond retention live here and nowhere else. The collector counts with them
// and the actions select with them, so what the policy is told and what the agent then does to the
// gallery cannot drift apart: a subject purged as withdrawn is exactly one the facts counted as
// withdrawn_pending.

// queryer is what the rules read through: a transaction, so that both tables are seen at one instant.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// consent is the part of a consents row the rules need.
type consent struct {
	id          int64
	basis       string
	hasGuardian bool
	grantedAt   time.Time
	withdrawnAt *time.Time
}

// later reports whether c supersedes o as a subject's consent: a later grant, or the higher id of two
// granted at the same instant. Grants are compared as instants, not as text, because terminals write
// them in different zones.
func (c consent) later(o consent) bool {
	if !c.grantedAt.Equal(o.grantedAt) {
		return c.grantedAt.After(o.grantedAt)
	}
	return c.id > o.id
}

// subjectState is one subject as the rules see it: its row and its consent, the latest consents row.
// It holds the subject reference only in memory, for as long as a count or an action takes.
type subjectState struct {
	ref        string
	ageBand    string
	storedAt   string
	enrolledAt time.Time
	enrolledOK bool // enrolled_at is a valid time; a subject without one is never beyond retention
	consent    consent
	hasConsent bool
}

// withdrawn: the subject's consent has withdrawn_at set. Such a subject is due for purging, and the
// consent rules below do not apply to it.
func (s *subjectState) withdrawn() bool { return s.hasConsent && s.consent.withdrawnAt != nil }

// withoutConsent: not withdrawn, and the consent is missing, has basis none, or is guardian consent
// that names no guardian.
func (s *subjectState) withoutConsent() bool {
	if s.withdrawn() {
		return false
	}
	return !s.hasConsent || s.consent.basis == device.BasisNone || s.consent.basis == device.BasisGuardian && !s.consent.hasGuardian
}

// minorWithoutGuardian: an under-14 subject, not withdrawn, whose basis is neither law nor guardian
// consent that names the guardian.
func (s *subjectState) minorWithoutGuardian() bool {
	if s.withdrawn() || s.ageBand != device.AgeUnder14 {
		return false
	}
	return !s.hasConsent || !(s.consent.basis == device.BasisLaw || s.guardianConsent())
}

// guardianConsent: the consent is a guardian's and names the guardian.
func (s *subjectState) guardianConsent() bool {
	return s.hasConsent && s.consent.basis == device.BasisGuardian && s.consent.hasGuardian
}

// beyondRetention: enrolled longer ago than the notice's retention.
func (s *subjectState) beyondRetention(now time.Time, retentionDays int) bool {
	return s.enrolledOK && beyondRetention(s.enrolledAt, now, retentionDays)
}

// storedOffDevice: the template is kept somewhere other than the device.
func (s *subjectState) storedOffDevice() bool { return s.storedAt != "" && s.storedAt != "device" }

// mustNotMatch: the subject breaks a consent rule, so a quarantine placed on it stays. A subject that
// breaks none any more (its consent was fixed) is released from the quarantine an action placed.
func (s *subjectState) mustNotMatch() bool {
	return s.withdrawn() || s.withoutConsent() || s.minorWithoutGuardian()
}

// beyondRetention reports whether a subject enrolled at enrolled has been kept longer than the notice
// promises. A retention too long for a time.Duration never expires.
func beyondRetention(enrolled, now time.Time, days int) bool {
	if int64(days) > math.MaxInt64/int64(24*time.Hour) {
		return false
	}
	return now.Sub(enrolled) > time.Duration(days)*24*time.Hour
}

// scanSubjects calls fn with every subject of the gallery and its consent. It reads the whole gallery
// even when rows break the contract, so that the error names every broken column; a caller must not act
// on what fn saw unless scanSubjects returns nil, because a consents row it could not read may be the
// latest one. The subject fn is given is reused for the next row: fn copies what it keeps. subjects is a
// guess of how many the gallery holds, to size the table of consents (0: no guess).
func scanSubjects(ctx context.Context, q queryer, subjects int, fn func(*subjectState)) error {
	var bad badValues
	latest, err := latestConsents(ctx, q, subjects, &bad)
	if err != nil {
		return err
	}
	rows, err := q.QueryContext(ctx, subjectsQuery)
	if err != nil {
		return fmt.Errorf("table subjects: %w", err)
	}
	defer rows.Close()
	// One record and one subject for all rows: Scan and fn take their addresses, which would put a copy
	// per row on the heap (a gallery is counted at every evaluation).
	var (
		row subjectRecord
		st  subjectState
	)
	for rows.Next() {
		row = subjectRecord{}
		if err := rows.Scan(&row.ref, &row.ageBand, &row.storedAt, &row.enrolled); err != nil {
			return fmt.Errorf("table subjects: %w", scanError(err))
		}
		st = row.parse(&bad)
		if row.ref.Valid {
			st.consent, st.hasConsent = latest[row.ref.String]
		}
		fn(&st)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("table subjects: %w", err)
	}
	return bad.err()
}

// subjectsQuery reads what the rules need of every subject: the columns of subjectsIndex.
const subjectsQuery = `SELECT subject_ref, age_band, stored_at, enrolled_at FROM subjects`

// latestConsents returns each subject's consent: its latest consents row.
func latestConsents(ctx context.Context, q queryer, subjects int, bad *badValues) (map[string]consent, error) {
	rows, err := q.QueryContext(ctx,
		// Whether a guardian is named is all the rules need: the reference itself is never read.
		`SELECT id, subject_ref, basis, coalesce(length(guardian_ref), 0) > 0, granted_at, withdrawn_at FROM consents`)
	if err != nil {
		return nil, fmt.Errorf("table consents: %w", err)
	}
	defer rows.Close()
	latest := make(map[string]consent, subjects)
	var r consentRecord // one for all rows, as in scanSubjects
	for rows.Next() {
		r = consentRecord{}
		if err := rows.Scan(&r.id, &r.ref, &r.basis, &r.hasGuardian, &r.granted, &r.withdrawn); err != nil {
			return nil, fmt.Errorf("table consents: %w", scanError(err))
		}
		c, ok := r.parse(bad)
		if !ok || !r.ref.Valid {
			continue // unreadable (and reported), or belongs to no subject so it cannot be anyone's consent
		}
		if prev, seen := latest[r.ref.String]; !seen || c.later(prev) {
			latest[r.ref.String] = c
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("table consents: %w", err)
	}
	return latest, nil
}

// subjectRecord is a subjects row as read, before its values are checked.
type subjectRecord struct {
	ref, ageBand, storedAt, enrolled sql.NullString
}

// parse checks a subjects row against the contract, counting what breaks it in bad, and returns the
// subject without its consent.
func (r *subjectRecord) parse(bad *badValues) subjectState {
	st := subjectState{ref: r.ref.String, ageBand: r.ageBand.String}
	if !r.ref.Valid {
		// A subject without a reference could be neither quarantined nor purged nor forgotten.
		bad.add("subjects", "subject_ref", "without a value")
	}
	if !r.ageBand.Valid || !slices.Contains(ageBands, r.ageBand.String) {
		bad.add("subjects", "age_band", "not one of "+strings.Join(ageBands, ", "))
	}
	if !r.storedAt.Valid || !slices.Contains(storageSites, r.storedAt.String) {
		bad.add("subjects", "stored_at", "not one of "+strings.Join(storageSites, ", "))
	} else {
		st.storedAt = r.storedAt.String
	}
	if st.enrolledAt, st.enrolledOK = parseTime(r.enrolled); !st.enrolledOK {
		bad.add("subjects", "enrolled_at", "not an RFC 3339 time")
	}
	return st
}

// consentRecord is a consents row as read, before its values are checked.
type consentRecord struct {
	id                 int64
	ref, basis         sql.NullString
	hasGuardian        bool
	granted, withdrawn sql.NullString
}

// parse checks a consents row against the contract; a row that breaks it is counted in bad and not used.
func (r *consentRecord) parse(bad *badValues) (consent, bool) {
	c := consent{id: r.id}
	if !r.basis.Valid || !slices.Contains(consentBasises, r.basis.String) {
		bad.add("consents", "basis", "not one of "+strings.Join(consentBasises, ", "))
		return consent{}, false
	}
	var ok bool
	if c.grantedAt, ok = parseTime(r.granted); !ok {
		bad.add("consents", "granted_at", "not an RFC 3339 time")
		return consent{}, false
	}
	if r.withdrawn.Valid {
		t, ok := parseTime(r.withdrawn)
		if !ok {
			bad.add("consents", "withdrawn_at", "not an RFC 3339 time")
			return consent{}, false
		}
		c.withdrawnAt = &t
	}
	c.basis = r.basis.String
	c.hasGuardian = r.hasGuardian
	return c, true
}
