// Package sqlstore is the fleet store (fleet.Store) over database/sql, in one implementation with two
// dialects: SQLite (one controller, the embedded default) and PostgreSQL (several controllers sharing one
// fleet). The queries are written once; what differs between the dialects — placeholders, a few column
// types, how a transaction is retried — is contained in dialect.
//
// Several controllers may apply the same messages at the same time (every controller receives the
// retained topics). Every write is therefore one transaction whose first statement is a conditional upsert
// (INSERT … ON CONFLICT … DO UPDATE … WHERE the message is newer) or an insert deduplicated by a unique
// constraint: the database, not a read in Go, decides whether a message applies, so there is no window
// between reading and writing. On PostgreSQL the upsert also locks the row it conflicts on, which
// serialises everything that follows in the transaction for that device; transactions take their locks in
// one order (event or command result, then device, then violations), and a deadlock or serialisation
// failure is retried.
//
// The store holds no face image, template or subject reference: devices report counts, hashes and sketches
// of keyed hashes, and that is all there is to keep.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/mattn/go-sqlite3"      // the "sqlite3" database/sql driver

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

var _ fleet.Store = (*Store)(nil)

// SchemaVersion is the version of the tables this package reads and writes.
const SchemaVersion = 1

// ErrSchemaNewer is wrapped when the database was written by a newer controller than this one.
var ErrSchemaNewer = errors.New("fleet store schema is newer than this controller supports")

// DefaultLimit is the page size when a query asks for 0; MaxLimit caps a page.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// busyTimeout bounds how long an SQLite statement waits for the write lock held by another connection.
const busyTimeout = 10 * time.Second

// Options configure Open.
type Options struct {
	// MaxConns bounds the PostgreSQL pool (default 10), and the SQLite read connections (default 4; SQLite
	// writes always go through one connection).
	MaxConns int
}

// Store is an open fleet store. It is safe for concurrent use.
type Store struct {
	d dialect
	// w takes the writes; r the reads. On PostgreSQL both are the same pool. On SQLite w is one
	// connection (SQLite has one writer at a time; queuing in Go is cheaper than busy-waiting in SQLite)
	// and r a few query-only connections, which WAL lets read while w writes.
	w, r *sql.DB

	// group batches SQLite's writes into shared commits (group.go); nil on PostgreSQL, whose pool
	// commits in parallel.
	group *groupCommit

	// retries counts transactions run again after a deadlock or serialisation failure; batches counts
	// SQLite transactions that committed several writes, splits those whose writes had to run again
	// one at a time because one of them failed.
	retries, batches, splits atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Open opens the store named by dsn: a postgres:// or postgresql:// URL is PostgreSQL, anything else an
// SQLite file path or file: URI (the file is created, mode 0600, if missing). It creates or migrates the
// tables, and refuses a database written by a newer controller (ErrSchemaNewer).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	var s *Store
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s, err = openPostgres(dsn, opts)
	} else {
		s, err = openSQLite(dsn, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("fleet store: open %s: %w", s.d.name, err)
	}
	return s, nil
}

func openPostgres(dsn string, opts Options) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("fleet store: open postgres: %w", err)
	}
	n := opts.MaxConns
	if n <= 0 {
		n = 10
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Store{d: postgres, w: db, r: db}, nil
}

func openSQLite(dsn string, opts Options) (*Store, error) {
	isURI := strings.HasPrefix(dsn, "file:")
	path, query := dsn, ""
	if isURI {
		path, query, _ = strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	}
	if path == "" || path == ":memory:" || strings.Contains(query, "mode=memory") {
		// The read connections would each see their own empty database.
		return nil, fmt.Errorf("fleet store: open %q: an SQLite store needs a file", dsn)
	}
	if !isURI {
		// SQLite would create the file with the umask's mode; the -wal and -shm files take this one.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("fleet store: open %s: %w", path, err)
		}
		f.Close()
	}
	base, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("fleet store: open %s: %w", dsn, err)
	}
	uri := func(extra url.Values) string {
		v := url.Values{}
		for k, vs := range base {
			v[k] = vs
		}
		for k, vs := range extra {
			v[k] = vs
		}
		p := path
		if !isURI { // '?', '#' and '%' in a plain path would be read as URI syntax
			p = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
		}
		return "file:" + p + "?" + v.Encode()
	}
	common := url.Values{
		"_journal_mode": {"WAL"},
		"_foreign_keys": {"on"},
		"_busy_timeout": {strconv.Itoa(int(busyTimeout / time.Millisecond))},
	}
	wv := url.Values{
		// FULL: a message acknowledged to the broker after its transaction committed survives a power cut.
		"_synchronous": {"FULL"},
		// BEGIN IMMEDIATE: a transaction takes the write lock at once, so one that read first never fails
		// half-way with SQLITE_BUSY when another process (a second store on the same file) writes too.
		"_txlock": {"immediate"},
	}
	rv := url.Values{"_query_only": {"on"}}
	for k, v := range common {
		wv[k], rv[k] = v, v
	}
	w, err := sql.Open("sqlite3", uri(wv))
	if err != nil {
		return nil, fmt.Errorf("fleet store: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Switching a new file to WAL needs it to itself: another process opening it at the same moment makes
	// SQLite answer "locked" at once, without waiting the busy timeout. Try again.
	for began := time.Now(); ; {
		err := checkWAL(w)
		if err == nil {
			break
		}
		var se sqlite3.Error
		if !errors.As(err, &se) || se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked || time.Since(began) > busyTimeout {
			w.Close()
			return nil, fmt.Errorf("fleet store: open %s: %w", path, err)
		}
		time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
	}
	r, err := sql.Open("sqlite3", uri(rv))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("fleet store: open %s: %w", path, err)
	}
	n := opts.MaxConns
	if n <= 0 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s := &Store{d: sqlite, w: w, r: r}
	s.group = newGroupCommit(s)
	return s, nil
}

// checkWAL makes sure the write connection is what concurrent reads and durability rely on, rather than
// trusting the driver's DSN parsing.
func checkWAL(db *sql.DB) error {
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not wal (is the file on a network file system?)", mode)
	}
	var fk int
	if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("read foreign_keys: %w", err)
	}
	if fk != 1 {
		return errors.New("foreign_keys is off")
	}
	return nil
}

// Close closes the store.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.group != nil {
			s.group.close()
		}
		errs := []error{s.w.Close()}
		if s.r != s.w {
			errs = append(errs, s.r.Close())
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("fleet store: close: %w", err)
		}
	})
	return s.closeErr
}

// Dialect names the database: "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.d.name }

// dialect is everything that differs between SQLite and PostgreSQL.
type dialect struct {
	name string
	// dollar: placeholders are $1, $2… instead of ?.
	dollar bool
	// ddl replaces the type tokens of the schema.
	ddl *strings.Replacer
	// readTx are the options of a read transaction: a consistent snapshot for a page and its count.
	readTx *sql.TxOptions
}

var (
	sqlite = dialect{
		name: "sqlite",
		ddl: strings.NewReplacer(
			"{id}", "INTEGER PRIMARY KEY AUTOINCREMENT",
			"{text}", "TEXT",
			"{blob}", "BLOB",
		),
		readTx: &sql.TxOptions{ReadOnly: true}, // a deferred transaction on a WAL snapshot
	}
	postgres = dialect{
		name:   "postgres",
		dollar: true,
		ddl: strings.NewReplacer(
			"{id}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
			// Byte order, as in SQLite: the same pages in the same order on both, times stored as text
			// compare as times, and LIKE 'x%' can use an index, whatever the database's locale.
			"{text}", `TEXT COLLATE "C"`,
			"{blob}", "BYTEA",
		),
		readTx: &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	}
)

// rebind turns the ? placeholders of a query into $n for PostgreSQL. Queries have no ? inside literals.
func (d dialect) rebind(q string) string {
	if !d.dollar {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// retryable reports whether a transaction failed only because another one got in its way (PostgreSQL
// chose it as a deadlock victim, or could not serialise it) and should simply run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// tx is a transaction with the dialect's placeholders.
type tx struct {
	ctx context.Context
	tx  *sql.Tx
	d   dialect
}

func (t *tx) exec(q string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, t.d.rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *tx) query(q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(t.ctx, t.d.rebind(q), args...)
}

func (t *tx) queryRow(q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, t.d.rebind(q), args...)
}

// write runs fn in a write transaction and commits it. On SQLite the transaction may be shared with
// other writes that queued at the same time (group.go); on PostgreSQL it is fn's own, run again when the
// database asks for it. Either way fn may run more than once and must not carry state across attempts.
func (s *Store) write(ctx context.Context, op string, fn func(t *tx) error) error {
	if s.group != nil {
		if err := s.group.write(ctx, fn); err != nil {
			return fmt.Errorf("fleet store: %s: %w", op, err)
		}
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := s.runTx(ctx, s.w, nil, fn)
		if err == nil {
			return nil
		}
		if attempt < 8 && retryable(err) && ctx.Err() == nil {
			s.retries.Add(1)
			time.Sleep(time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond)
			continue
		}
		return fmt.Errorf("fleet store: %s: %w", op, err)
	}
}

// read runs fn in a read-only transaction, so a page and its count come from one snapshot.
func (s *Store) read(ctx context.Context, op string, fn func(t *tx) error) error {
	if err := s.runTx(ctx, s.r, s.d.readTx, fn); err != nil {
		return fmt.Errorf("fleet store: %s: %w", op, err)
	}
	return nil
}

func (s *Store) runTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(t *tx) error) error {
	sqlTx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	done := false
	defer func() {
		if !done { // fn failed or panicked; a panic continues once this returns
			_ = sqlTx.Rollback()
		}
	}()
	if err := fn(&tx{ctx: ctx, tx: sqlTx, d: s.d}); err != nil {
		return err
	}
	done = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Times are stored as UTC RFC 3339 text with a fixed nine-digit fraction, in both dialects: readable in
// either shell, and ordered as strings (with byte-order collation), which every "since" and every "newest
// first" relies on.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// nullTime is NULL for the zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatTime(t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t, nil
}

func parseNullTime(s sql.NullString) (time.Time, error) {
	if !s.Valid || s.String == "" {
		return time.Time{}, nil
	}
	return parseTime(s.String)
}

// i64 converts a session, seq or audit seq for the database, whose integers are signed 64-bit.
func i64(name string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%w: %s %d is out of range", wire.ErrMessage, name, v)
	}
	return int64(v), nil
}

// pageLimit applies the paging defaults.
func pageLimit(offset, limit int) (int, int) {
	if offset < 0 {
		offset = 0
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	if limit > MaxLimit {
		limit = MaxLimit
	}
	return offset, limit
}

// likePattern is a LIKE pattern for a case-insensitive substring search of s, compared with lower() of
// the column. Both databases fold only ASCII letters in lower() here (SQLite always, PostgreSQL with the
// "C" collation), so the pattern is folded the same way: Chinese has no case, and the results agree.
func likePattern(s string) string {
	var b strings.Builder
	b.WriteByte('%')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' || c == '_' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('%')
	return b.String()
}

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
