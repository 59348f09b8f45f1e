package fsterm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/wire"
)

// ErrNoSubjectKey is returned by the methods that name subjects by their keyed hash (purges, which
// write receipts; ForgetSubject; SubjectHashes) when Options.SubjectKey is empty.
var ErrNoSubjectKey = errors.New("no subject key configured")

func (t *Terminal) subjectKey() ([]byte, error) {
	if len(t.opts.SubjectKey) == 0 {
		return nil, ErrNoSubjectKey
	}
	return t.opts.SubjectKey, nil
}

// PurgeWithdrawnSubjects deletes every subject the facts count as withdrawn_pending, with its consent
// and quarantine rows, and returns a receipt for each.
func (t *Terminal) PurgeWithdrawnSubjects(ctx context.Context, reason string) (device.Outcome, error) {
	out, err := t.purgeByRule(ctx, t.clock.Now(), reason, (*subjectState).withdrawn)
	if err != nil {
		return device.Outcome{}, fmt.Errorf("purge withdrawn subjects: %w", err)
	}
	return out, nil
}

// PurgeExpiredSubjects deletes every subject the facts count as beyond_retention. Without a notice to
// take the retention from, it purges nothing and says why.
func (t *Terminal) PurgeExpiredSubjects(ctx context.Context, reason string) (device.Outcome, error) {
	days, err := t.retentionDays()
	if err != nil {
		return device.Outcome{}, fmt.Errorf("purge expired subjects: nothing purged, the retention is unknown: %w", err)
	}
	now := t.clock.Now()
	out, err := t.purgeByRule(ctx, now, reason, func(s *subjectState) bool { return s.beyondRetention(now, days) })
	if err != nil {
		return device.Outcome{}, fmt.Errorf("purge expired subjects: %w", err)
	}
	return out, nil
}

// retentionDays reads notice.retention_days from site.yaml the way Facts does, so that "expired" here
// and beyond_retention in the facts come from the same value.
func (t *Terminal) retentionDays() (int, error) {
	f := placeholderFacts(t.clock.Now())
	if res := collectSite(t.path(SitePath), &t.siteParse, &f); res.noticeKnown {
		return f.Notice.RetentionDays, nil
	}
	for _, u := range f.Unknown {
		if u.Fact == device.GroupNotice {
			return 0, fmt.Errorf("%s: %s", u.Source, u.Reason)
		}
	}
	return 0, fmt.Errorf("%s: notice unknown", SitePath)
}

// purgeByRule deletes, in one transaction, every subject rule selects. The selection reads the whole
// gallery with the collector's rules and acts only if every row could be read: a consents row that
// breaks the contract might be the latest one, and purging on a guess is not undone.
func (t *Terminal) purgeByRule(ctx context.Context, now time.Time, reason string, rule func(*subjectState) bool) (device.Outcome, error) {
	key, err := t.subjectKey()
	if err != nil {
		return device.Outcome{}, err
	}
	var out device.Outcome
	err = t.withGallery(ctx, func(g *galleryHandle) error {
		tx, err := g.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
		var refs []string
		if err := scanSubjects(ctx, tx, 0, func(s *subjectState) {
			if rule(s) {
				refs = append(refs, s.ref)
			}
		}); err != nil {
			return err
		}
		if len(refs) == 0 {
			return nil
		}
		receipts, err := deleteSubjects(ctx, tx, key, refs, now, reason)
		if err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		g.checkpoint(ctx)
		out = device.Outcome{Count: len(receipts), Receipts: receipts}
		return nil
	})
	return out, err
}

// ForgetSubject deletes the subject whose keyed hash is subjectHash. It finds the subject by hashing
// every reference under the fleet key, which at the contract's scale (100,000 subjects) takes a tenth
// of a second, and it needs no index the terminal may not have.
func (t *Terminal) ForgetSubject(ctx context.Context, subjectHash, reason string) (device.Outcome, error) {
	key, err := t.subjectKey()
	if err != nil {
		return device.Outcome{}, fmt.Errorf("forget subject: %w", err)
	}
	want := strings.ToLower(subjectHash)
	if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
		return device.Outcome{}, errors.New("forget subject: the subject hash is not 64 hex digits")
	}
	var out device.Outcome
	err = t.withGallery(ctx, func(g *galleryHandle) error {
		ref, found, err := findSubject(ctx, g.db, key, want)
		if err != nil || !found {
			return err
		}
		tx, err := g.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
		receipts, err := deleteSubjects(ctx, tx, key, []string{ref}, t.clock.Now(), reason)
		if err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		if len(receipts) > 0 {
			g.checkpoint(ctx)
		}
		out = device.Outcome{Count: len(receipts), Receipts: receipts}
		return nil
	})
	if err != nil {
		return device.Outcome{}, fmt.Errorf("forget subject: %w", err)
	}
	return out, nil
}

// findSubject returns the reference whose keyed hash is want. It reads outside the purge's transaction
// so the terminal's write lock is not held while every reference is hashed; deleteSubjects checks again
// that the subject is still there.
func findSubject(ctx context.Context, db *sql.DB, key []byte, want string) (string, bool, error) {
	wantSum, err := hex.DecodeString(want)
	if err != nil || len(wantSum) != sha256.Size || hex.EncodeToString(wantSum) != want {
		return "", false, nil // not a subject hash (lower-case hex of 32 bytes): no subject has it
	}
	rows, err := db.QueryContext(ctx, `SELECT subject_ref FROM subjects WHERE subject_ref IS NOT NULL`)
	if err != nil {
		return "", false, fmt.Errorf("table subjects: %w", err)
	}
	defer rows.Close()
	h := wire.NewSubjectHasher(key)
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			return "", false, fmt.Errorf("table subjects: %w", scanError(err))
		}
		if bytes.Equal(h.Sum(ref), wantSum) {
			return ref, true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("table subjects: %w", err)
	}
	return "", false, nil
}

// deleteSubjects deletes each subject of refs that is still there, with its consents and quarantine
// rows, and returns one sealed receipt per deleted subject, sorted by receipt hash.
func deleteSubjects(ctx context.Context, tx *sql.Tx, key []byte, refs []string, now time.Time, reason string) ([]device.Receipt, error) {
	refs = slices.Clone(refs)
	slices.Sort(refs)
	consents, err := consentRowsOf(ctx, tx, refs)
	if err != nil {
		return nil, err
	}
	readSubject, err := tx.PrepareContext(ctx,
		`SELECT template, age_band, stored_at, enrolled_at, last_used_at FROM subjects WHERE subject_ref = ?`)
	if err != nil {
		return nil, fmt.Errorf("table subjects: %w", err)
	}
	defer readSubject.Close()
	var receipts []device.Receipt
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err // nothing is committed: the transaction rolls back
		}
		var cols [5]any
		err := readSubject.QueryRowContext(ctx, ref).Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4])
		if errors.Is(err, sql.ErrNoRows) {
			continue // gone since it was found: the terminal deleted it itself
		}
		if err != nil {
			return nil, fmt.Errorf("table subjects: %w", scanError(err))
		}
		content := contentHash(cols[:], consents[ref])
		if _, err := tx.ExecContext(ctx, `DELETE FROM subjects WHERE subject_ref = ?`, ref); err != nil {
			return nil, fmt.Errorf("delete from subjects: %w", err)
		}
		for _, c := range consents[ref] {
			// By id, which is the consents primary key, rather than by subject_ref, which the contract
			// does not index: a purge of many subjects would otherwise scan the table once per subject.
			if _, err := tx.ExecContext(ctx, `DELETE FROM consents WHERE id IS ? AND subject_ref = ?`, c[0], ref); err != nil {
				return nil, fmt.Errorf("delete from consents: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM faceguard_quarantine WHERE subject_ref = ?`, ref); err != nil {
			return nil, fmt.Errorf("delete from faceguard_quarantine: %w", err)
		}
		r := device.Receipt{SubjectHash: wire.SubjectHash(key, ref), ContentSHA256: content, DeletedAt: now, Reason: reason}
		r.Seal()
		receipts = append(receipts, r)
	}
	slices.SortFunc(receipts, func(a, b device.Receipt) int { return strings.Compare(a.Hash, b.Hash) })
	return receipts, nil
}

// consentRowsOf returns the consents rows of each subject of refs, in id order, as stored: id, basis,
// guardian_ref, granted_at, withdrawn_at.
func consentRowsOf(ctx context.Context, tx *sql.Tx, refs []string) (map[string][][5]any, error) {
	want := make(map[string]bool, len(refs))
	for _, r := range refs {
		want[r] = true
	}
	query, args := `SELECT subject_ref, id, basis, guardian_ref, granted_at, withdrawn_at FROM consents ORDER BY id`, []any(nil)
	if len(refs) == 1 {
		query, args = `SELECT subject_ref, id, basis, guardian_ref, granted_at, withdrawn_at FROM consents WHERE subject_ref = ? ORDER BY id`, []any{refs[0]}
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("table consents: %w", err)
	}
	defer rows.Close()
	out := map[string][][5]any{}
	for rows.Next() {
		var (
			ref sql.NullString
			c   [5]any
		)
		if err := rows.Scan(&ref, &c[0], &c[1], &c[2], &c[3], &c[4]); err != nil {
			return nil, fmt.Errorf("table consents: %w", scanError(err))
		}
		if ref.Valid && want[ref.String] {
			out[ref.String] = append(out[ref.String], c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("table consents: %w", err)
	}
	return out, nil
}

// contentHash is the SHA-256 of what a purge deletes: the subject's row (template, age_band, stored_at,
// enrolled_at, last_used_at) and its consents rows in id order (id, basis, guardian_ref, granted_at,
// withdrawn_at), each value with its SQLite type and length, so that no two different contents encode
// alike. Whoever holds a copy of the gallery can recompute it.
//
// subject_ref itself is left out on purpose: the receipt names the subject by its keyed hash, and an
// unkeyed hash over a guessable reference (s-0042) and a few guessable columns could be searched for the
// reference when the template is empty.
func contentHash(subject []any, consents [][5]any) string {
	h := sha256.New()
	h.Write([]byte("faceguard/receipt-content/v1\x00"))
	h.Write([]byte{'S'})
	for _, v := range subject {
		hashValue(h, v)
	}
	for _, c := range consents {
		h.Write([]byte{'C'})
		for _, v := range c {
			hashValue(h, v)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashValue(h hash.Hash, v any) {
	var (
		tag byte
		b   []byte
	)
	switch x := v.(type) {
	case nil:
		tag = 'N'
	case int64:
		tag, b = 'I', strconv.AppendInt(nil, x, 10)
	case float64:
		tag, b = 'R', strconv.AppendFloat(nil, x, 'g', -1, 64)
	case bool: // a column declared BOOLEAN
		tag, b = 'I', []byte("0")
		if x {
			b = []byte("1")
		}
	case []byte:
		tag, b = 'B', x
	case string:
		tag, b = 'T', []byte(x)
	case time.Time: // a column declared DATE, DATETIME or TIMESTAMP
		tag, b = 'T', []byte(x.Format(time.RFC3339Nano))
	default:
		tag, b = '?', fmt.Append(nil, x)
	}
	var n [9]byte
	n[0] = tag
	binary.BigEndian.PutUint64(n[1:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// checkpoint copies a WAL gallery's log into the database and empties it, so that after a purge the
// deleted rows (overwritten in the database by secure_delete) do not linger in old log frames. Best
// effort: a terminal holding a long read keeps its frames, and a later checkpoint gets them.
func (g *galleryHandle) checkpoint(ctx context.Context) {
	_, _ = g.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
}

// QuarantineUnconsentedSubjects quarantines every subject the facts count as without_consent.
func (t *Terminal) QuarantineUnconsentedSubjects(ctx context.Context, reason string) (device.Outcome, error) {
	out, err := t.quarantineByRule(ctx, device.ActionQuarantineUnconsentedSubjects, reason, (*subjectState).withoutConsent)
	if err != nil {
		return device.Outcome{}, fmt.Errorf("quarantine unconsented subjects: %w", err)
	}
	return out, nil
}

// QuarantineMinorsWithoutGuardian quarantines every subject the facts count as minors_without_guardian.
func (t *Terminal) QuarantineMinorsWithoutGuardian(ctx context.Context, reason string) (device.Outcome, error) {
	out, err := t.quarantineByRule(ctx, device.ActionQuarantineMinorsWithoutGuardian, reason, (*subjectState).minorWithoutGuardian)
	if err != nil {
		return device.Outcome{}, fmt.Errorf("quarantine minors without guardian: %w", err)
	}
	return out, nil
}

// quarantineReason is what a quarantine row's reason column holds: the action that placed it, then the
// reason the agent gave. The action's name is the prefix by which an action recognises its own rows.
func quarantineReason(action, reason string) string {
	if reason == "" {
		return action
	}
	return action + ": " + reason
}

func placedBy(action, stored string) bool {
	return stored == action || strings.HasPrefix(stored, action+": ")
}

// quarantineByRule, in one transaction, adds a faceguard_quarantine row for every subject rule selects
// (a subject already quarantined, for whatever reason, keeps its row), and releases rows this action
// placed earlier whose subject is gone or no longer breaks any consent rule (not withdrawn, not without
// consent, not a minor without guardian consent): its consent was fixed. Rows another action or the
// operator placed are left alone, and a subject that still breaks another rule stays quarantined. Count
// is the number of rows added; releases are not counted.
//
// Release happens only when the action runs, that is while the policy still orders it because some
// subject breaks its rule; once none does, the rows that remain stay until the operator resolves them.
func (t *Terminal) quarantineByRule(ctx context.Context, action, reason string, rule func(*subjectState) bool) (device.Outcome, error) {
	var out device.Outcome
	err := t.withGallery(ctx, func(g *galleryHandle) error {
		tx, err := g.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
		var (
			selected []string
			keep     = map[string]bool{}
		)
		if err := scanSubjects(ctx, tx, 0, func(s *subjectState) {
			if rule(s) {
				selected = append(selected, s.ref)
			}
			if s.mustNotMatch() {
				keep[s.ref] = true
			}
		}); err != nil {
			return err
		}
		released, err := quarantineRowsToRelease(ctx, tx, action, keep)
		if err != nil {
			return err
		}
		for _, ref := range released {
			if _, err := tx.ExecContext(ctx, `DELETE FROM faceguard_quarantine WHERE subject_ref = ?`, ref); err != nil {
				return fmt.Errorf("delete from faceguard_quarantine: %w", err)
			}
		}
		since := t.clock.Now().Format(time.RFC3339)
		label := quarantineReason(action, reason)
		added := 0
		for _, ref := range selected {
			res, err := tx.ExecContext(ctx,
				`INSERT OR IGNORE INTO faceguard_quarantine (subject_ref, reason, since) VALUES (?, ?, ?)`, ref, label, since)
			if err != nil {
				return fmt.Errorf("insert into faceguard_quarantine: %w", err)
			}
			if n, err := res.RowsAffected(); err == nil {
				added += int(n)
			}
		}
		if len(released) == 0 && added == 0 {
			return nil // nothing to write: roll back and leave the file as it was
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		out.Count = added
		return nil
	})
	return out, err
}

func quarantineRowsToRelease(ctx context.Context, tx *sql.Tx, action string, keep map[string]bool) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT subject_ref, reason FROM faceguard_quarantine`)
	if err != nil {
		return nil, fmt.Errorf("table faceguard_quarantine: %w", err)
	}
	defer rows.Close()
	var release []string
	for rows.Next() {
		var ref, reason sql.NullString
		if err := rows.Scan(&ref, &reason); err != nil {
			return nil, fmt.Errorf("table faceguard_quarantine: %w", scanError(err))
		}
		if ref.Valid && placedBy(action, reason.String) && !keep[ref.String] {
			release = append(release, ref.String)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("table faceguard_quarantine: %w", err)
	}
	return release, nil
}

// quarantinedSubjects lists the quarantined references, sorted, for control.json.
func (t *Terminal) quarantinedSubjects(ctx context.Context) ([]string, error) {
	refs := []string{}
	err := t.withGallery(ctx, func(g *galleryHandle) error {
		rows, err := g.db.QueryContext(ctx, `SELECT subject_ref FROM faceguard_quarantine WHERE subject_ref IS NOT NULL`)
		if err != nil {
			return fmt.Errorf("table faceguard_quarantine: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var ref string
			if err := rows.Scan(&ref); err != nil {
				return fmt.Errorf("table faceguard_quarantine: %w", scanError(err))
			}
			refs = append(refs, ref)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(refs)
	return refs, nil
}

// QuarantinedCount counts the rows of faceguard_quarantine (device.Terminal).
func (t *Terminal) QuarantinedCount(ctx context.Context) (int, error) {
	n := 0
	err := t.withGallery(ctx, func(g *galleryHandle) error {
		if err := g.db.QueryRowContext(ctx, `SELECT count(*) FROM faceguard_quarantine`).Scan(&n); err != nil {
			return fmt.Errorf("table faceguard_quarantine: %w", scanError(err))
		}
		return nil
	})
	return n, err
}

// LookupSubject tells what the gallery says about one subject, by the same rules the facts count with.
// It is on the terminal's hot path: one prepared statement from the subjects primary key. The reference
// is never logged and never part of an error.
func (t *Terminal) LookupSubject(ctx context.Context, subjectRef string) (device.MatchSubject, error) {
	m := device.MatchSubject{Consent: device.BasisNone, AgeBand: device.AgeUnknown}
	err := t.withGallery(ctx, func(g *galleryHandle) error {
		rows, err := g.lookup.QueryContext(ctx, subjectRef)
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		defer rows.Close()
		var (
			bad         badValues
			st          subjectState
			found       bool
			quarantined bool
			buf         [4]consentRecord
			consents    = buf[:0] // a subject's consents, read before or after its row
		)
		for rows.Next() {
			var (
				kind int
				s    subjectRecord
				c    consentRecord
				id   sql.NullInt64
				q    bool
			)
			if err := rows.Scan(&kind, &s.ref, &s.ageBand, &s.storedAt, &s.enrolled, &q,
				&id, &c.basis, &c.hasGuardian, &c.granted, &c.withdrawn); err != nil {
				return fmt.Errorf("query: %w", scanError(err))
			}
			if kind == 0 {
				if !found {
					found, quarantined = true, q
					st = s.parse(&bad)
				}
				continue
			}
			if !id.Valid {
				bad.add("consents", "id", "without a value")
				continue
			}
			c.id = id.Int64
			consents = append(consents, c)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if !found {
			return nil // consents of no subject are nobody's
		}
		for i := range consents {
			if cs, ok := consents[i].parse(&bad); ok && (!st.hasConsent || cs.later(st.consent)) {
				st.consent, st.hasConsent = cs, true
			}
		}
		if err := bad.err(); err != nil {
			return fmt.Errorf("the subject's rows break the contract: %w", err)
		}
		m = device.MatchSubject{
			Found:           true,
			Consent:         device.BasisNone,
			Withdrawn:       st.withdrawn(),
			AgeBand:         st.ageBand,
			GuardianConsent: st.guardianConsent(),
			Quarantined:     quarantined,
		}
		if st.hasConsent {
			m.Consent = st.consent.basis
		}
		return nil
	})
	if err != nil {
		return device.MatchSubject{Consent: device.BasisNone, AgeBand: device.AgeUnknown}, fmt.Errorf("lookup subject: %w", err)
	}
	return m, nil
}

// subjectHashBatch is how many references SubjectHashes reads at a time: each read is short, so a
// gallery in rollback-journal mode is not kept from the terminal's writes while fn works.
const subjectHashBatch = 1000

// SubjectHashes calls fn with the keyed hash of every subject, in order of reference. A subject enrolled
// or deleted while it runs may or may not be included.
func (t *Terminal) SubjectHashes(ctx context.Context, fn func(hash string)) error {
	key, err := t.subjectKey()
	if err != nil {
		return fmt.Errorf("subject hashes: %w", err)
	}
	h := wire.NewSubjectHasher(key)
	var after *string
	for {
		var batch []string
		err := t.withGallery(ctx, func(g *galleryHandle) error {
			var err error
			batch, err = subjectRefsAfter(ctx, g.db, after)
			return err
		})
		if err != nil {
			return fmt.Errorf("subject hashes: %w", err)
		}
		for _, ref := range batch {
			fn(h.Hash(ref))
		}
		if len(batch) < subjectHashBatch {
			return nil
		}
		after = &batch[len(batch)-1]
	}
}

func subjectRefsAfter(ctx context.Context, db *sql.DB, after *string) ([]string, error) {
	query, args := `SELECT subject_ref FROM subjects WHERE subject_ref IS NOT NULL ORDER BY subject_ref LIMIT ?`, []any{subjectHashBatch}
	if after != nil {
		query, args = `SELECT subject_ref FROM subjects WHERE subject_ref > ? ORDER BY subject_ref LIMIT ?`, []any{*after, subjectHashBatch}
	}
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("table subjects: %w", err)
	}
	defer rows.Close()
	refs := make([]string, 0, subjectHashBatch)
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			return nil, fmt.Errorf("table subjects: %w", scanError(err))
		}
		refs = append(refs, ref)
	}
	return refs, rows.Err()
}
