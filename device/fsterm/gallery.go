package fsterm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // the gallery is SQLite, owned by the terminal software

	"github.com/faceguard/faceguard/device"
)

// galleryBusyTimeout is how long a count waits for the terminal software's write lock. The terminal is
// the gallery's owner: the agent waits its turn rather than fail, but never long enough to stall a cycle.
const galleryBusyTimeout = 2 * time.Second

// Values the gallery's enumerated columns may hold (docs/terminal.md).
var (
	ageBands       = []string{"under_14", "14_17", "adult", "unknown"}
	storageSites   = []string{"device", "lan", "cloud"}
	consentBasises = []string{"separate", "guardian", "law", "none"}
)

// collectGallery counts the gallery into f.Subjects. retentionDays is nil when notice is unknown; then
// nothing is counted beyond retention, and the notice group already says why. The error is only ctx's.
func collectGallery(ctx context.Context, path string, now time.Time, retentionDays *int, f *device.Facts) error {
	s, err := countGallery(ctx, path, now, retentionDays)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		markUnknown(f, device.GroupSubjects, GalleryPath, err)
		return nil
	}
	f.Subjects = s
	return nil
}

// consent is the part of a consents row the counts need. It holds a subject reference only in memory,
// as a map key, for as long as the count takes.
type consent struct {
	id          int64
	basis       string
	hasGuardian bool
	grantedAt   time.Time
	withdrawnAt *time.Time
}

// later reports whether c supersedes o as a subject's consent: a later grant, or the higher id of two
// granted at the same instant.
func (c consent) later(o consent) bool {
	if !c.grantedAt.Equal(o.grantedAt) {
		return c.grantedAt.After(o.grantedAt)
	}
	return c.id > o.id
}

// countGallery opens the gallery read-only and counts it by the rules of docs/terminal.md.
func countGallery(ctx context.Context, path string, now time.Time, retentionDays *int) (device.Subjects, error) {
	// SQLite would create a missing file even for a read; the existence check keeps the agent from ever
	// making a gallery the terminal software does not have.
	st, err := os.Stat(path)
	if err != nil {
		return device.Subjects{}, fileError(err)
	}
	if !st.Mode().IsRegular() {
		return device.Subjects{}, errors.New("not a regular file")
	}
	db, err := sql.Open("sqlite3", galleryDSN(path))
	if err != nil {
		return device.Subjects{}, fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	// One read transaction, so both tables are seen at the same instant even while the terminal writes.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return device.Subjects{}, fmt.Errorf("open: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep

	if err := requireTables(ctx, tx, "subjects", "consents"); err != nil {
		return device.Subjects{}, err
	}
	var bad badValues
	latest, err := latestConsents(ctx, tx, &bad)
	if err != nil {
		return device.Subjects{}, err
	}
	s, err := countSubjects(ctx, tx, latest, now, retentionDays, &bad)
	if err != nil {
		return device.Subjects{}, err
	}
	if err := bad.err(); err != nil {
		return device.Subjects{}, err
	}
	return s, nil
}

// galleryDSN opens path read-only. The path is escaped because SQLite reads it as a URI, where ?, # and
// % mean something.
func galleryDSN(path string) string {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return fmt.Sprintf("file:%s?mode=ro&_busy_timeout=%d", escaped, galleryBusyTimeout.Milliseconds())
}

func requireTables(ctx context.Context, tx *sql.Tx, names ...string) error {
	for _, name := range names {
		var n int
		err := tx.QueryRowContext(ctx,
			`SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?`, name).Scan(&n)
		if err != nil {
			return fmt.Errorf("read schema: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("table %s: no such table", name)
		}
	}
	return nil
}

// latestConsents returns each subject's consent: its latest consents row.
func latestConsents(ctx context.Context, tx *sql.Tx, bad *badValues) (map[string]consent, error) {
	rows, err := tx.QueryContext(ctx,
		`SELECT id, subject_ref, basis, guardian_ref, granted_at, withdrawn_at FROM consents`)
	if err != nil {
		return nil, fmt.Errorf("table consents: %w", err)
	}
	defer rows.Close()
	latest := map[string]consent{}
	for rows.Next() {
		var (
			c                    consent
			ref, basis, guardian sql.NullString
			granted, withdrawn   sql.NullString
		)
		if err := rows.Scan(&c.id, &ref, &basis, &guardian, &granted, &withdrawn); err != nil {
			return nil, fmt.Errorf("table consents: %w", scanError(err))
		}
		if !basis.Valid || !slices.Contains(consentBasises, basis.String) {
			bad.add("consents", "basis", "not one of "+strings.Join(consentBasises, ", "))
			continue
		}
		var ok bool
		if c.grantedAt, ok = parseTime(granted); !ok {
			bad.add("consents", "granted_at", "not an RFC 3339 time")
			continue
		}
		if withdrawn.Valid {
			t, ok := parseTime(withdrawn)
			if !ok {
				bad.add("consents", "withdrawn_at", "not an RFC 3339 time")
				continue
			}
			c.withdrawnAt = &t
		}
		if !ref.Valid {
			continue // belongs to no subject, so it cannot be anyone's consent
		}
		c.basis = basis.String
		c.hasGuardian = guardian.Valid && guardian.String != ""
		if prev, seen := latest[ref.String]; !seen || c.later(prev) {
			latest[ref.String] = c
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("table consents: %w", err)
	}
	return latest, nil
}

func countSubjects(ctx context.Context, tx *sql.Tx, latest map[string]consent, now time.Time, retentionDays *int, bad *badValues) (device.Subjects, error) {
	rows, err := tx.QueryContext(ctx, `SELECT subject_ref, age_band, stored_at, enrolled_at FROM subjects`)
	if err != nil {
		return device.Subjects{}, fmt.Errorf("table subjects: %w", err)
	}
	defer rows.Close()
	var (
		s               device.Subjects
		oldestWithdrawn *time.Time
	)
	for rows.Next() {
		var ref, ageBand, storedAt, enrolled sql.NullString
		if err := rows.Scan(&ref, &ageBand, &storedAt, &enrolled); err != nil {
			return device.Subjects{}, fmt.Errorf("table subjects: %w", scanError(err))
		}
		s.Count++
		if !ageBand.Valid || !slices.Contains(ageBands, ageBand.String) {
			bad.add("subjects", "age_band", "not one of "+strings.Join(ageBands, ", "))
		}
		if !storedAt.Valid || !slices.Contains(storageSites, storedAt.String) {
			bad.add("subjects", "stored_at", "not one of "+strings.Join(storageSites, ", "))
		} else if storedAt.String != "device" {
			s.StoredOffDevice++
		}
		enrolledAt, ok := parseTime(enrolled)
		if !ok {
			bad.add("subjects", "enrolled_at", "not an RFC 3339 time")
		} else if retentionDays != nil && beyondRetention(enrolledAt, now, *retentionDays) {
			s.BeyondRetention++
		}

		c, hasConsent := latest[ref.String]
		if !ref.Valid {
			hasConsent = false
		}
		if hasConsent && c.withdrawnAt != nil {
			s.WithdrawnPending++
			if oldestWithdrawn == nil || c.withdrawnAt.Before(*oldestWithdrawn) {
				oldestWithdrawn = c.withdrawnAt
			}
			continue // the consent rules below are for subjects not withdrawn: this one is due for purging
		}
		if !hasConsent || c.basis == "none" || c.basis == "guardian" && !c.hasGuardian {
			s.WithoutConsent++
		}
		if ageBand.String == "under_14" && !(hasConsent && (c.basis == "law" || c.basis == "guardian" && c.hasGuardian)) {
			s.MinorsWithoutGuardian++
		}
	}
	if err := rows.Err(); err != nil {
		return device.Subjects{}, fmt.Errorf("table subjects: %w", err)
	}
	if oldestWithdrawn != nil {
		s.WithdrawnOldestS = ceilSeconds(now.Sub(*oldestWithdrawn))
	}
	return s, nil
}

// beyondRetention reports whether a subject enrolled at enrolled has been kept longer than the notice
// promises. A retention too long for a time.Duration never expires.
func beyondRetention(enrolled, now time.Time, days int) bool {
	if int64(days) > math.MaxInt64/int64(24*time.Hour) {
		return false
	}
	return now.Sub(enrolled) > time.Duration(days)*24*time.Hour
}

func parseTime(v sql.NullString) (time.Time, bool) {
	if !v.Valid {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v.String)
	return t, err == nil
}

// scanError drops the value database/sql quotes in a conversion error: it could be a subject reference.
func scanError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, ": converting"); i >= 0 {
		return errors.New(msg[:i] + ": wrong type")
	}
	return err
}

// badValues counts rows whose values break the gallery's contract, per table and column. A reason names
// the column and how many rows, never a row, because the row would identify a person.
type badValues struct {
	problems []badColumn
}

type badColumn struct {
	table, column, problem string
	rows                   int
}

func (b *badValues) add(table, column, problem string) {
	for i, p := range b.problems {
		if p.table == table && p.column == column && p.problem == problem {
			b.problems[i].rows++
			return
		}
	}
	b.problems = append(b.problems, badColumn{table: table, column: column, problem: problem, rows: 1})
}

func (b *badValues) err() error {
	if len(b.problems) == 0 {
		return nil
	}
	msgs := make([]string, len(b.problems))
	for i, p := range b.problems {
		rows := "rows"
		if p.rows == 1 {
			rows = "row"
		}
		msgs[i] = fmt.Sprintf("table %s, column %s: %d %s %s", p.table, p.column, p.rows, rows, p.problem)
	}
	return errors.New(strings.Join(msgs, "; "))
}
