// Package store is the agent's local, durable, tamper-evident record, kept in one SQLite file: the audit
// chain (decisions, actions, commands, deletion receipts, each row carrying the hash of the one before), the
// outbox (every message to publish, removed only once the broker acknowledged it), a bounded history of
// evaluations, the open violations, the command journal (idempotency) and a small key-value table for agent
// state. It lets the agent keep working offline and lose nothing across a crash or a power cut: everything
// that must stay together is written in one transaction, with synchronous=FULL.
//
// The store must never hold a face image, a face template or a subject reference in clear: payloads are
// opaque to it, so the callers put only counts, hashes and keyed hashes in them. The audit chain is
// append-only: no code path updates or deletes an audit row (triggers refuse it too), and Verify detects
// rows that were edited, deleted, reordered or truncated behind the store's back.
//
// The exported chain (Export) is a documented format an auditor can re-verify without this package: see
// Export.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/faceguard/faceguard/internal/clock"
)

// SchemaVersion is the version of the tables this package reads and writes.
const SchemaVersion = 1

// DefaultMaxEvaluations is how many evaluations are kept when Options.MaxEvaluations is not set.
const DefaultMaxEvaluations = 1000

// busyTimeout bounds how long a statement waits for a lock held by another connection (the `audit verify`
// CLI reading while the agent writes, or a checkpoint).
const busyTimeout = 5 * time.Second

var (
	// ErrDiskFull is wrapped by every error caused by a full disk (SQLITE_FULL): the write was rolled back
	// whole, and the agent should report the fault and retry later.
	ErrDiskFull = errors.New("disk full")
	// ErrSchemaNewer is wrapped when the file was written by a newer agent than this one.
	ErrSchemaNewer = errors.New("store schema is newer than this agent supports")
	// ErrReadOnly is returned by writes on a store opened with OpenReadOnly.
	ErrReadOnly = errors.New("store opened read-only")
)

// Options configure Open.
type Options struct {
	// Clock stamps rows; the real clock when nil.
	Clock clock.Clock
	// MaxEvaluations is how many evaluations are kept (the newest); DefaultMaxEvaluations when ≤ 0.
	MaxEvaluations int
}

// Store is an open store. Its methods are safe for concurrent use; they are serialised on one SQLite
// connection, so a Store method must not be called from inside a Tx callback (it would wait for the
// connection the callback holds). Use the *Tx instead.
type Store struct {
	db       *sql.DB
	clock    clock.Clock
	maxEvals int
	readOnly bool

	closeOnce sync.Once
	closeErr  error
}

// Open opens the store at path, creating the file (mode 0600) and its tables if needed and migrating an
// older schema. It refuses a file written by a newer agent (ErrSchemaNewer).
func Open(path string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.MaxEvaluations <= 0 {
		opts.MaxEvaluations = DefaultMaxEvaluations
	}
	// SQLite would create the file with the umask's mode; the record of a face-recognition terminal is
	// nobody else's business, and the -wal and -shm files take the mode of the database file.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	} else if err := f.Close(); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	params := url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"}, // the driver lowers it to NORMAL with WAL unless told; checkPragmas makes sure
		"_foreign_keys": {"on"},
		"_busy_timeout": {strconv.Itoa(int(busyTimeout / time.Millisecond))},
		// BEGIN IMMEDIATE: a transaction takes the write lock at once, so it never fails half-way with
		// SQLITE_BUSY when another process (a second agent by mistake) writes too.
		"_txlock":          {"immediate"},
		"_stmt_cache_size": {"32"},
		// A small page cache: the agent writes a few rows a minute and the OS keeps the file cached;
		// SQLite's default 2 MB per connection would be a twentieth of the agent's memory budget.
		"_cache_size": {"-512"},
	}
	db, err := sql.Open("sqlite3", fileURI(path, params))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, clock: opts.Clock, maxEvals: opts.MaxEvaluations}
	if err := s.checkPragmas(); err != nil {
		db.Close()
		return nil, wrapErr("open "+path, err)
	}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, wrapErr("open "+path, err)
	}
	return s, nil
}

// OpenReadOnly opens an existing store for reading, for `faceguard-agent audit verify|export`. It works
// while the agent has the store open (WAL readers do not block the writer, nor it them). Writes fail with
// ErrReadOnly.
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", path, err)
	}
	params := url.Values{
		"mode":          {"ro"},
		"_query_only":   {"on"},
		"_busy_timeout": {strconv.Itoa(int(busyTimeout / time.Millisecond))},
	}
	db, err := sql.Open("sqlite3", fileURI(path, params))
	if err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	s := &Store{db: db, clock: clock.Real{}, maxEvals: DefaultMaxEvaluations, readOnly: true}
	version, err := s.schemaVersion(context.Background(), db)
	if err == nil {
		switch {
		case version == 0:
			err = errors.New("not a faceguard store: it has no schema version")
		case version > SchemaVersion:
			err = fmt.Errorf("%w: the file has schema version %d, this agent reads version %d: use a newer faceguard-agent",
				ErrSchemaNewer, version, SchemaVersion)
		case version < SchemaVersion:
			err = fmt.Errorf("schema version %d is older than %d: start the agent once to migrate it", version, SchemaVersion)
		}
	}
	if err != nil {
		db.Close()
		return nil, wrapErr("open "+path+" read-only", err)
	}
	return s, nil
}

// fileURI makes an SQLite URI of a file path: '?', '#' and '%' in the path would otherwise be read as
// URI syntax.
func fileURI(path string, params url.Values) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + params.Encode()
}

// checkPragmas makes sure the connection is what durability relies on, rather than trusting the driver's
// DSN parsing.
func (s *Store) checkPragmas() error {
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not wal (is the file on a network file system?)", mode)
	}
	var syncMode, fk int
	if err := s.db.QueryRow("PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if syncMode != 2 { // FULL
		return fmt.Errorf("synchronous is %d, not FULL (2)", syncMode)
	}
	if err := s.db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("read foreign_keys: %w", err)
	}
	if fk != 1 {
		return errors.New("foreign_keys is off")
	}
	return nil
}

// Close checkpoints the write-ahead log into the database file and closes the store. Everything committed
// was already durable; the checkpoint only leaves a single, self-contained file behind.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if !s.readOnly {
			// TRUNCATE waits (busy timeout) for readers of older snapshots, then empties the WAL.
			if _, err := s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				errs = append(errs, wrapErr("checkpoint", err))
			}
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, wrapErr("close", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// wrapErr adds context, and ErrDiskFull when SQLite reports a full disk (SQLITE_FULL, which includes a
// database at max_page_count, or an I/O error whose cause is ENOSPC), so the agent can tell "report it and
// retry later" from a bug.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrFull || se.Code == sqlite3.ErrIoErr && se.SystemErrno == syscall.ENOSPC) {
		return fmt.Errorf("store: %s: %w: %w", op, ErrDiskFull, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// Times are stored as UTC RFC 3339 text with a fixed nine-digit fraction: readable in the sqlite3 shell,
// parseable with time.RFC3339Nano, and – unlike RFC3339Nano's trimmed fraction – ordered as strings, which
// PruneCommands relies on.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// NextSession increments and returns the session counter (1 on the first start), in one durable write. The
// agent calls it once per start; the envelope's (session, seq) deduplicates messages across restarts.
func (s *Store) NextSession(ctx context.Context) (uint64, error) {
	if s.readOnly {
		return 0, fmt.Errorf("store: next session: %w", ErrReadOnly)
	}
	var next uint64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		var cur string
		switch err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'session'`).Scan(&cur); {
		case errors.Is(err, sql.ErrNoRows):
			next = 1
		case err != nil:
			return err
		default:
			n, err := strconv.ParseUint(cur, 10, 64)
			if err != nil {
				return fmt.Errorf("session counter %q: %w", cur, err)
			}
			next = n + 1
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO meta (key, value) VALUES ('session', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			strconv.FormatUint(next, 10))
		return err
	})
	if err != nil {
		return 0, wrapErr("next session", err)
	}
	return next, nil
}
