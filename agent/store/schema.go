package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// migrations[i] takes the schema from version i to version i+1. Append only: a released step never changes,
// because devices in the field have already run it.
var migrations = []string{
	// 0 → 1
	`
CREATE TABLE audit (
	seq       INTEGER PRIMARY KEY CHECK (seq > 0),
	at        TEXT NOT NULL,
	kind      TEXT NOT NULL,
	payload   TEXT NOT NULL,
	prev_hash TEXT NOT NULL,
	hash      TEXT NOT NULL
);
-- The chain is append-only. The triggers stop mistakes, not an attacker with the file (Verify is for that).
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit chain is append-only'); END;

CREATE TABLE outbox (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	topic        TEXT NOT NULL,
	payload      BLOB NOT NULL,
	qos          INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),
	retained     INTEGER NOT NULL CHECK (retained IN (0, 1)),
	coalesce_key TEXT,
	created_at   TEXT NOT NULL
);
CREATE INDEX outbox_coalesce_key ON outbox (coalesce_key) WHERE coalesce_key IS NOT NULL;

CREATE TABLE evaluations (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	at              TEXT NOT NULL,
	facts_sha256    TEXT NOT NULL,
	policy_revision TEXT NOT NULL,
	status          TEXT NOT NULL,
	decision        TEXT NOT NULL
);

CREATE TABLE open_violations (
	control   TEXT PRIMARY KEY,
	severity  TEXT NOT NULL,
	opened_at TEXT NOT NULL,
	event_id  TEXT NOT NULL
);

CREATE TABLE commands (
	id             TEXT PRIMARY KEY,
	type           TEXT NOT NULL,
	payload_sha256 TEXT NOT NULL,
	received_at    TEXT NOT NULL,
	expires_at     TEXT NOT NULL,
	status         TEXT NOT NULL,
	result         TEXT,
	updated_at     TEXT NOT NULL
);
CREATE INDEX commands_expires_at ON commands (expires_at);

CREATE TABLE kv (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
}

func init() {
	if len(migrations) != SchemaVersion {
		panic("store: SchemaVersion does not match the migrations")
	}
}

// migrate brings the schema to SchemaVersion in one transaction, so a crash mid-way leaves the old version.
func (s *Store) migrate(ctx context.Context) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
			return fmt.Errorf("create meta: %w", err)
		}
		version, err := s.schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if version > SchemaVersion {
			return fmt.Errorf("%w: the file has schema version %d, this agent writes version %d: "+
				"use a newer faceguard-agent, or move the file aside", ErrSchemaNewer, version, SchemaVersion)
		}
		for v := version; v < SchemaVersion; v++ {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
			}
		}
		if version == SchemaVersion {
			return nil
		}
		_, err = tx.ExecContext(ctx,
			`INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			strconv.Itoa(SchemaVersion))
		if err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	})
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion reads the schema version; 0 when the file is new (no meta table or no version in it).
func (s *Store) schemaVersion(ctx context.Context, q querier) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read schema: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var v string
	switch err := q.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	version, err := strconv.Atoi(v)
	if err != nil || version < 0 {
		return 0, fmt.Errorf("schema version %q is not a number", v)
	}
	return version, nil
}
