package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
)

// migrations[i] takes the schema from version i to version i+1, written once for both dialects: {id},
// {text} and {blob} are replaced by each dialect's types (dialect.ddl). Append only: a released step never
// changes, because fleets have already run it.
//
// Sessions and seqs are BIGINT (signed: a device's uint64 beyond 2^63 is refused). Times are {text}, see
// timeLayout. A (session, seq) pair that is NULL means "nothing of that kind received yet".
var migrations = []string{
	// 0 → 1
	`
CREATE TABLE devices (
	id              {text} PRIMARY KEY,
	-- birth
	site            {text} NOT NULL DEFAULT '',
	site_name       {text} NOT NULL DEFAULT '',
	kind            {text} NOT NULL DEFAULT '',
	category        {text} NOT NULL DEFAULT '',
	model           {text} NOT NULL DEFAULT '',
	firmware        {text} NOT NULL DEFAULT '',
	agent           {text} NOT NULL DEFAULT '',
	policy          {text} NOT NULL DEFAULT '',
	config_version  BIGINT NOT NULL DEFAULT 0,
	capabilities    {text} NOT NULL DEFAULT '[]',
	birth_session   BIGINT,
	birth_seq       BIGINT,
	-- state
	state           {text} NOT NULL DEFAULT '',
	state_reason    {text} NOT NULL DEFAULT '',
	state_session   BIGINT,
	state_seq       BIGINT,
	last_seen       {text},
	-- compliance summary
	comp_session    BIGINT,
	comp_seq        BIGINT,
	status          {text} NOT NULL DEFAULT '',
	evaluated_at    {text},
	critical        BIGINT NOT NULL DEFAULT 0,
	high            BIGINT NOT NULL DEFAULT 0,
	medium          BIGINT NOT NULL DEFAULT 0,
	low             BIGINT NOT NULL DEFAULT 0,
	failing         {text} NOT NULL DEFAULT '[]',
	actions         {text} NOT NULL DEFAULT '[]',
	unknown         {text} NOT NULL DEFAULT '[]',
	fault           {text} NOT NULL DEFAULT '',
	fail_safe       BOOLEAN NOT NULL DEFAULT FALSE,
	control         {text} NOT NULL DEFAULT '{}',
	audit_seq       BIGINT NOT NULL DEFAULT 0,
	audit_hash      {text} NOT NULL DEFAULT '',
	audit_regressed {text},
	-- subjects
	subj_session    BIGINT,
	subj_seq        BIGINT,
	subjects        BIGINT NOT NULL DEFAULT 0
);
-- Pages: ordered by site then id, filtered by site, status, state or critical.
CREATE INDEX devices_site ON devices (site, id);
CREATE INDEX devices_status ON devices (status, site, id);
CREATE INDEX devices_state ON devices (state, site, id);
CREATE INDEX devices_critical ON devices (site, id) WHERE critical > 0;

CREATE TABLE history (
	dev          {text} NOT NULL REFERENCES devices (id),
	session      BIGINT NOT NULL,
	seq          BIGINT NOT NULL,
	evaluated_at {text} NOT NULL,
	status       {text} NOT NULL,
	critical     BIGINT NOT NULL,
	high         BIGINT NOT NULL,
	medium       BIGINT NOT NULL,
	low          BIGINT NOT NULL,
	failing      {text} NOT NULL,
	actions      {text} NOT NULL,
	fault        {text} NOT NULL,
	policy       {text} NOT NULL,
	received_at  {text} NOT NULL,
	PRIMARY KEY (dev, session, seq)
);
CREATE INDEX history_evaluated_at ON history (dev, evaluated_at);

CREATE TABLE events (
	id           {id},
	dev          {text} NOT NULL REFERENCES devices (id),
	session      BIGINT NOT NULL,
	seq          BIGINT NOT NULL,
	event_id     {text} NOT NULL,
	kind         {text} NOT NULL,
	at           {text} NOT NULL,
	control      {text} NOT NULL,
	severity     {text} NOT NULL,
	articles     {text} NOT NULL,
	message      {text},
	action       {text} NOT NULL,
	action_count BIGINT NOT NULL,
	receipts     {text} NOT NULL,
	detail       {text} NOT NULL,
	received_at  {text} NOT NULL,
	UNIQUE (dev, session, seq)
);
CREATE INDEX events_dev_at ON events (dev, at, id);
CREATE INDEX events_at ON events (at, id);

-- One row per (device, control) that ever had a violation: open while closed_at is NULL. A closed row is
-- kept for its last transition (t_session, t_seq), so that an older event delivered late changes nothing.
CREATE TABLE violations (
	dev        {text} NOT NULL REFERENCES devices (id),
	control    {text} NOT NULL,
	site       {text} NOT NULL, -- the device's, kept here for the page's order and its index
	severity   {text} NOT NULL,
	sev_rank   BIGINT NOT NULL,
	articles   {text} NOT NULL,
	message_zh {text} NOT NULL,
	message_en {text} NOT NULL,
	opened_at  {text} NOT NULL,
	event_id   {text} NOT NULL,
	closed_at  {text},
	t_session  BIGINT NOT NULL,
	t_seq      BIGINT NOT NULL,
	PRIMARY KEY (dev, control)
);
CREATE INDEX violations_open ON violations (sev_rank, site, dev, control) WHERE closed_at IS NULL;

CREATE TABLE sketches (
	dev        {text} PRIMARY KEY REFERENCES devices (id),
	subjects   BIGINT NOT NULL,
	data       {blob} NOT NULL,
	updated_at {text} NOT NULL
);

CREATE TABLE commands (
	id         {text} PRIMARY KEY,
	type       {text} NOT NULL,
	target     {text} NOT NULL,
	args       {text},
	issued_at  {text} NOT NULL,
	expires_at {text} NOT NULL,
	created_by {text} NOT NULL,
	payload    {blob} NOT NULL
);
CREATE INDEX commands_issued_at ON commands (issued_at, id);
CREATE INDEX commands_expires_at ON commands (expires_at);

-- Targets are not a foreign key to devices: a command may name a device the fleet has not heard from yet.
CREATE TABLE command_results (
	command_id  {text} NOT NULL REFERENCES commands (id),
	dev         {text} NOT NULL,
	status      {text} NOT NULL,
	reason      {text} NOT NULL DEFAULT '',
	result      {text},
	duplicate   BOOLEAN NOT NULL DEFAULT FALSE,
	res_session BIGINT,
	res_seq     BIGINT,
	updated_at  {text} NOT NULL,
	PRIMARY KEY (command_id, dev)
);
CREATE INDEX command_results_dev ON command_results (dev, status);
CREATE INDEX command_results_waiting ON command_results (command_id) WHERE status IN ('pending', 'accepted');

CREATE TABLE bundles (
	revision     {text} PRIMARY KEY,
	sha256       {text} NOT NULL,
	size         BIGINT NOT NULL,
	chunk_sha256 {text} NOT NULL,
	data         {blob} NOT NULL,
	created_at   {text} NOT NULL
);

CREATE TABLE filing_records (
	id         {id},
	kind       {text} NOT NULL,
	on_date    {text} NOT NULL,
	reference  {text} NOT NULL,
	note       {text} NOT NULL,
	created_at {text} NOT NULL
);
`,
}

func init() {
	if len(migrations) != SchemaVersion {
		panic("sqlstore: SchemaVersion does not match the migrations")
	}
}

// migrateLock is the PostgreSQL advisory lock that serialises controllers migrating the same database at
// once (SQLite's BEGIN IMMEDIATE does it there).
const migrateLock = 0x66_6c_65_65_74 // "fleet"

// migrate brings the schema to SchemaVersion in one transaction, so a failure half-way leaves the old
// version (PostgreSQL and SQLite both roll DDL back).
func (s *Store) migrate(ctx context.Context) error {
	err := s.runTx(ctx, s.w, nil, func(t *tx) error {
		if s.d.name == postgres.name {
			if _, err := t.exec(`SELECT pg_advisory_xact_lock(?)`, int64(migrateLock)); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		if _, err := t.exec(`CREATE TABLE IF NOT EXISTS meta (key ` + s.d.ddl.Replace("{text}") + ` PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
			return fmt.Errorf("create meta: %w", err)
		}
		version, err := schemaVersion(t)
		if err != nil {
			return err
		}
		if version > SchemaVersion {
			return fmt.Errorf("%w: the database has schema version %d, this controller writes version %d: use a newer faceguard",
				ErrSchemaNewer, version, SchemaVersion)
		}
		if version == SchemaVersion {
			return nil
		}
		for v := version; v < SchemaVersion; v++ {
			if _, err := t.tx.ExecContext(ctx, s.d.ddl.Replace(migrations[v])); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
			}
		}
		if _, err := t.exec(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.Itoa(SchemaVersion)); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	})
	return err
}

// schemaVersion reads the schema version; 0 when the database is new.
func schemaVersion(t *tx) (int, error) {
	var v string
	switch err := t.queryRow(`SELECT value FROM meta WHERE key = 'schema_version'`).Scan(&v); {
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
