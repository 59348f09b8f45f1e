package fsterm

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// galleryMaxConns bounds the agent's connections to the gallery: enough that a lookup on the hot path
// never waits behind a purge holding one, few enough to stay out of the terminal software's way.
const galleryMaxConns = 4

// GallerySchema is the terminal software's two tables of gallery.db as docs/terminal.md specifies them,
// for a terminal (or the simulator) that creates a gallery. The agent only reads them, and adds its own
// faceguard_quarantine table and an index.
const GallerySchema = `
CREATE TABLE subjects (
  subject_ref  TEXT PRIMARY KEY,
  template     BLOB,
  age_band     TEXT NOT NULL DEFAULT 'unknown',
  stored_at    TEXT NOT NULL DEFAULT 'device',
  enrolled_at  TEXT NOT NULL,
  last_used_at TEXT
);
CREATE TABLE consents (
  id           INTEGER PRIMARY KEY,
  subject_ref  TEXT NOT NULL,
  basis        TEXT NOT NULL,
  guardian_ref TEXT,
  granted_at   TEXT NOT NULL,
  withdrawn_at TEXT
);`

// quarantineTable is the one table the agent adds to the terminal's gallery. With consentsIndex and
// subjectsIndex, the only changes it makes to the gallery's schema.
const quarantineTable = `CREATE TABLE IF NOT EXISTS faceguard_quarantine (
  subject_ref TEXT PRIMARY KEY,
  reason      TEXT NOT NULL,
  since       TEXT NOT NULL
)`

// consentsIndex makes a subject's consents a lookup instead of a scan: without it a match on a terminal
// with 10,000 subjects reads the whole consents table (417 µs instead of 21 µs). It changes no data and
// no meaning, so the agent adds it when the terminal's schema lacks it.
const consentsIndex = `CREATE INDEX IF NOT EXISTS faceguard_consents_subject ON consents (subject_ref)`

// subjectsIndex holds the columns the facts count from, so that counting the gallery reads the index
// instead of every row with its template after it (SQLite scans a covering index when it is narrower):
// half the time of a count, and the templates stay out of the agent's page cache. Like consentsIndex it
// changes no data; the terminal's writes of last_used_at do not touch it.
const subjectsIndex = `CREATE INDEX IF NOT EXISTS faceguard_subjects_facts ON subjects (subject_ref, age_band, stored_at, enrolled_at)`

// lookupQuery reads one subject (kind 0) with whether it is quarantined, and every consents row of its
// reference (kind 1), in one statement: the subjects primary key and consentsIndex. Two simple selects
// joined by UNION ALL, not a join: SQLite plans a join whose WHERE binds the reference again for every
// new value bound (go-sqlite3 then also reads the columns' names and types again), which made a lookup
// twice as slow (15.5 µs against 8.3 µs, 68 allocations against 36, measured 2026-11-24).
const lookupQuery = `SELECT 0, s.subject_ref, s.age_band, s.stored_at, s.enrolled_at,
  EXISTS (SELECT 1 FROM faceguard_quarantine q WHERE q.subject_ref = ?1), NULL, NULL, 0, NULL, NULL
FROM subjects s WHERE s.subject_ref = ?1
UNION ALL
SELECT 1, NULL, NULL, NULL, NULL, 0, c.id, c.basis, coalesce(length(c.guardian_ref), 0) > 0, c.granted_at, c.withdrawn_at
FROM consents c WHERE c.subject_ref = ?1`

// galleryHandle is the agent's read-write pool of connections to the gallery, opened on first use and
// kept for as long as the path names the same file.
type galleryHandle struct {
	db     *sql.DB
	file   os.FileInfo // what the path was when it was opened; a different file means reopen
	lookup *sql.Stmt
}

// withGallery runs fn with the gallery's handle, opening it if it is not open yet or if the terminal
// software replaced the file since (a rename over gallery.db leaves the old handle on a deleted file).
// A missing gallery is an error: the agent never creates one.
func (t *Terminal) withGallery(ctx context.Context, fn func(*galleryHandle) error) error {
	path := t.path(GalleryPath)
	st, err := statRegular(path)
	if err != nil {
		return fmt.Errorf("%s: %w", GalleryPath, err)
	}
	t.galleryMu.RLock()
	if h := t.gallery; h == nil || !os.SameFile(h.file, st) {
		t.galleryMu.RUnlock()
		if err := t.reopenGallery(ctx, path, st); err != nil {
			return fmt.Errorf("%s: %w", GalleryPath, err)
		}
		t.galleryMu.RLock()
	}
	defer t.galleryMu.RUnlock()
	if t.gallery == nil {
		return fmt.Errorf("%s: closed while opening", GalleryPath)
	}
	if err := fn(t.gallery); err != nil {
		return fmt.Errorf("%s: %w", GalleryPath, err)
	}
	return nil
}

func (t *Terminal) reopenGallery(ctx context.Context, path string, st os.FileInfo) error {
	t.galleryMu.Lock()
	defer t.galleryMu.Unlock()
	if t.gallery != nil && os.SameFile(t.gallery.file, st) {
		return nil // another caller got there first
	}
	if t.gallery != nil {
		_ = t.gallery.close() // a replaced file: nothing of ours is pending on it
		t.gallery = nil
	}
	h, err := openGalleryRW(ctx, path, st, t.opts.GalleryIdleTimeout)
	if err != nil {
		return err
	}
	t.gallery = h
	return nil
}

// openGalleryRW opens the gallery read-write. It leaves the journal mode as the terminal software set
// it (WAL or not), waits for the terminal's locks rather than fail, starts every transaction with the
// write lock (BEGIN IMMEDIATE) so that what an action selected is still true when it deletes, and has
// SQLite overwrite deleted content so a purged template does not linger in free pages.
func openGalleryRW(ctx context.Context, path string, st os.FileInfo, idle time.Duration) (*galleryHandle, error) {
	db, err := sql.Open("sqlite3", galleryRWDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	db.SetMaxOpenConns(galleryMaxConns)
	// One connection stays warm for the match hot path and the actions; the others (a purge beside a
	// lookup) close as soon as they are released: each holds SQLite's page cache, which a terminal's
	// memory budget and a simulator of thousands of terminals both feel. No idle timeout unless the
	// options ask for one: it closes the warm one too, after a quiet spell, and the next match or
	// forget-subject opens it again (in a simulator of 10,000 terminals, 0.7 ms of a forget-subject's CPU
	// for the open alone).
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(idle)
	if err := prepareGallerySchema(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	lookup, err := db.PrepareContext(ctx, lookupQuery)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare lookup: %w", err)
	}
	return &galleryHandle{db: db, file: st, lookup: lookup}, nil
}

// prepareGallerySchema checks that the file is a gallery and adds the quarantine table if it is not
// there yet. A database without the contract's tables is left untouched.
func prepareGallerySchema(ctx context.Context, db *sql.DB) error {
	if err := requireTables(ctx, db, "subjects", "consents"); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, consentsIndex); err != nil {
		return fmt.Errorf("create index on consents: %w", err)
	}
	if _, err := db.ExecContext(ctx, subjectsIndex); err != nil {
		return fmt.Errorf("create index on subjects: %w", err)
	}
	if ok, err := hasTable(ctx, db, "faceguard_quarantine"); err != nil || ok {
		return err
	}
	if _, err := db.ExecContext(ctx, quarantineTable); err != nil {
		return fmt.Errorf("create table faceguard_quarantine: %w", err)
	}
	return nil
}

// galleryRWDSN is galleryDSN for writing: mode=rw so that SQLite never creates a missing gallery.
func galleryRWDSN(path string) string {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return fmt.Sprintf("file:%s?mode=rw&_busy_timeout=%d&_txlock=immediate&_secure_delete=on&_cache_size=-512",
		escaped, galleryBusyTimeout.Milliseconds())
}

func (h *galleryHandle) close() error {
	return errors.Join(h.lookup.Close(), h.db.Close())
}

// Close closes the gallery connections the facts and the actions opened. A Terminal used after Close
// opens them again.
func (t *Terminal) Close() error {
	var errs []error
	if err := t.galleryRO.close(); err != nil {
		errs = append(errs, err)
	}
	t.galleryMu.Lock()
	defer t.galleryMu.Unlock()
	if t.gallery != nil {
		errs = append(errs, t.gallery.close())
		t.gallery = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", GalleryPath, err)
	}
	return nil
}
