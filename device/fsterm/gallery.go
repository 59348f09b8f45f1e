package fsterm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sort"
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
//
// The reader also keeps its last tally, with SQLite's data_version of the transaction that made it: the
// version changes whenever any other connection (the terminal software, the agent's actions) commits to
// the file, so an unchanged version means the same rows, and the count is taken again only for the time
// (retention, the oldest withdrawal's age). Counting walks every subject, 3 µs and 18 allocations each:
// at 10,000 subjects that is 28 ms and 9 MB an evaluation, for a gallery that mostly has not changed.
type galleryReader struct {
	mu   sync.Mutex
	db   *sql.DB
	file os.FileInfo
	// last is the tally at data_version version of this connection; nil on a new connection and after a
	// failed count, when the tables are checked again.
	last    *tally
	version int64
	// release returns a count's garbage to the operating system after it (Options.ReleaseMemoryAfterCount).
	release bool
}

// count counts the gallery at path, opening or reopening the connection as needed.
func (r *galleryReader) count(ctx context.Context, path string, now time.Time, retentionDays *int) (device.Subjects, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := statRegular(path)
	if err != nil || (r.db != nil && !os.SameFile(r.file, st)) {
		r.closeLocked() // gone or replaced: let go of the old file
	}
	if err != nil {
		return device.Subjects{}, err
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

	// Read first: it starts the transaction's snapshot, so the version is that of the rows counted.
	var version int64
	if err := tx.QueryRowContext(ctx, "PRAGMA data_version").Scan(&version); err != nil {
		return device.Subjects{}, fmt.Errorf("open: %w", err)
	}
	guess := 0
	if r.last != nil {
		if version == r.version {
			return r.last.at(now, retentionDays), nil
		}
		guess = r.last.subjects.Count
	} else if err := requireTables(ctx, tx, "subjects", "consents"); err != nil {
		return device.Subjects{}, err
	}
	t, err := tallySubjects(ctx, tx, guess)
	if err != nil {
		r.last = nil
		return device.Subjects{}, err
	}
	r.last, r.version = t, version
	if r.release {
		debug.FreeOSMemory()
	}
	return t.at(now, retentionDays), nil
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
	r.db, r.file, r.last = nil, nil, nil
	return err
}

// statRegular stats the gallery, which must exist and be a regular file: SQLite would create a missing
// one, and the agent never makes a gallery the terminal software does not have.
func statRegular(path string) (os.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fileError(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return st, nil
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

// tally is a count of the gallery by the rules of docs/terminal.md, in the part that does not depend on
// the time; at gives the facts' counts at an instant. The reader keeps the last one while the gallery is
// unchanged (see galleryReader).
type tally struct {
	subjects        device.Subjects // BeyondRetention and WithdrawnOldestS are left to at
	oldestWithdrawn *time.Time
	enrolled        []time.Time // every readable enrolment time, ascending
}

// tallySubjects counts the gallery; subjects is a guess of how many it holds (the last count's).
func tallySubjects(ctx context.Context, tx queryer, subjects int) (*tally, error) {
	t := &tally{enrolled: make([]time.Time, 0, subjects)}
	s := &t.subjects
	err := scanSubjects(ctx, tx, subjects, func(st *subjectState) {
		s.Count++
		if st.storedOffDevice() {
			s.StoredOffDevice++
		}
		if st.enrolledOK {
			t.enrolled = append(t.enrolled, st.enrolledAt)
		}
		if st.withdrawn() {
			s.WithdrawnPending++
			if t.oldestWithdrawn == nil || st.consent.withdrawnAt.Before(*t.oldestWithdrawn) {
				t.oldestWithdrawn = st.consent.withdrawnAt
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
		return nil, err
	}
	slices.SortFunc(t.enrolled, time.Time.Compare)
	return t, nil
}

// at is the count at now. retentionDays is nil when the notice is unknown: nothing is beyond retention.
func (t *tally) at(now time.Time, retentionDays *int) device.Subjects {
	s := t.subjects
	if retentionDays != nil {
		// Beyond retention holds for the earliest enrolments up to some point: count them by search.
		s.BeyondRetention = sort.Search(len(t.enrolled), func(i int) bool {
			return !beyondRetention(t.enrolled[i], now, *retentionDays)
		})
	}
	if t.oldestWithdrawn != nil {
		s.WithdrawnOldestS = ceilSeconds(now.Sub(*t.oldestWithdrawn))
	}
	return s
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
