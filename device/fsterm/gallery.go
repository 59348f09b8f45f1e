package fsterm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	_ "github.com/mattn/go-sqlite3" // the gallery is SQLite, owned by the terminal software

	"github.com/faceguard/faceguard/device"
)

// galleryBusyTimeout is how long a count or an action waits for the terminal software's lock. The
// terminal is the gallery's owner: the agent waits its turn rather than fail, but never long enough to
// stall a cycle.
const galleryBusyTimeout = 2 * time.Second

// Values the gallery's enumerated columns may hold (docs/terminal.md).
var (
	ageBands       = []string{"under_14", "14_17", "adult", "unknown"}
	storageSites   = []string{"device", "lan", "cloud"}
	consentBasises = []string{"separate", "guardian", "law", "none"}
)

// collectGallery counts the gallery into f.Subjects, on r's connection (nil: a connection opened for
// this count). retentionDays is nil when notice is unknown; then nothing is counted beyond retention, and
// the notice group already says why. The error is only ctx's.
func collectGallery(ctx context.Context, r *galleryReader, path string, now time.Time, retentionDays *int, f *device.Facts) error {
	var s device.Subjects
	var err error
	if r == nil {
		s, err = countGallery(ctx, path, now, retentionDays)
	} else {
		s, err = r.count(ctx, path, now, retentionDays)
	}
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

// countGallery opens the gallery read-only, counts it by the rules of docs/terminal.md, and closes it.
func countGallery(ctx context.Context, path string, now time.Time, retentionDays *int) (device.Subjects, error) {
	var r galleryReader
	defer r.close()
	return r.count(ctx, path, now, retentionDays)
}

// galleryReader is the read-only connection the facts are counted on, kept open from one evaluation to
// the next for as long as the path names the same file (a rename over gallery.db opens the new file).
// Opening and closing a connection per evaluation costs little on a terminal, but closing one costs
// go-sqlite3 a walk over every connection of the process: in a simulator of thousands of terminals that
// was a quarter of the fleet's CPU time.
type galleryReader struct {
	mu   sync.Mutex
	db   *sql.DB
	file os.FileInfo
	// checked: the tables were there on this connection; checked again after any failed count.
	checked bool
}

// count counts the gallery at path, opening or reopening the connection as needed.
func (r *galleryReader) count(ctx context.Context, path string, now time.Time, retentionDays *int) (device.Subjects, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// SQLite would create a missing file even for a read; the existence check keeps the agent from ever
	// making a gallery the terminal software does not have.
	st, err := os.Stat(path)
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil || (r.db != nil && !os.SameFile(r.file, st)) {
		r.closeLocked() // gone or replaced: let go of the old file
	}
	if err != nil {
		return device.Subjects{}, fileError(err)
	}
	if r.db == nil {
		db, err := sql.Open("sqlite3", galleryDSN(path))
		if err != nil {
			return device.Subjects{}, fmt.Errorf("open: %w", err)
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		r.db, r.file = db, st
	}

	// One read transaction, so both tables are seen at the same instant even while the terminal writes.
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return device.Subjects{}, fmt.Errorf("open: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep

	if !r.checked {
		if err := requireTables(ctx, tx, "subjects", "consents"); err != nil {
			return device.Subjects{}, err
		}
	}
	s, err := countSubjects(ctx, tx, now, retentionDays)
	r.checked = err == nil
	return s, err
}

// close closes the connection; a later count opens it again.
func (r *galleryReader) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeLocked()
}

func (r *galleryReader) closeLocked() error {
	if r.db == nil {
		return nil
	}
	err := r.db.Close()
	r.db, r.file, r.checked = nil, nil, false
	return err
}

// galleryDSN opens path read-only. The path is escaped because SQLite reads it as a URI, where ?, # and
// % mean something.
func galleryDSN(path string) string {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return fmt.Sprintf("file:%s?mode=ro&_busy_timeout=%d&_cache_size=-512&_stmt_cache_size=8", escaped, galleryBusyTimeout.Milliseconds())
}

func requireTables(ctx context.Context, q queryer, names ...string) error {
	for _, name := range names {
		ok, err := hasTable(ctx, q, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("table %s: no such table", name)
		}
	}
	return nil
}

func hasTable(ctx context.Context, q queryer, name string) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?`, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("read schema: %w", err)
	}
	return n > 0, nil
}

func countSubjects(ctx context.Context, tx queryer, now time.Time, retentionDays *int) (device.Subjects, error) {
	var (
		s               device.Subjects
		oldestWithdrawn *time.Time
	)
	err := scanSubjects(ctx, tx, func(st *subjectState) {
		s.Count++
		if st.storedOffDevice() {
			s.StoredOffDevice++
		}
		if retentionDays != nil && st.beyondRetention(now, *retentionDays) {
			s.BeyondRetention++
		}
		if st.withdrawn() {
			s.WithdrawnPending++
			if oldestWithdrawn == nil || st.consent.withdrawnAt.Before(*oldestWithdrawn) {
				oldestWithdrawn = st.consent.withdrawnAt
			}
		}
		if st.withoutConsent() {
			s.WithoutConsent++
		}
		if st.minorWithoutGuardian() {
			s.MinorsWithoutGuardian++
		}
	})
	if err != nil {
		return device.Subjects{}, err
	}
	if oldestWithdrawn != nil {
		s.WithdrawnOldestS = ceilSeconds(now.Sub(*oldestWithdrawn))
	}
	return s, nil
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
