package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Tx is one atomic unit of writes: the audit rows, outbox messages, evaluation and state of one step of the
// agent land together or not at all. It is valid only inside the callback of Store.Tx.
type Tx struct {
	ctx context.Context
	tx  *sql.Tx
	s   *Store
}

// Tx runs fn in one transaction and commits it if fn returns nil. If fn returns an error or panics, the
// transaction is rolled back (nothing of it is written) and the error is returned or the panic goes on.
// fn's own errors are returned unchanged. fn must not call methods of the Store (see Store).
func (s *Store) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	if s.readOnly {
		return fmt.Errorf("store: transaction: %w", ErrReadOnly)
	}
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrapErr("begin", err)
	}
	done := false
	defer func() {
		if !done { // fn failed or panicked; a panic continues once this returns
			_ = sqlTx.Rollback()
		}
	}()
	if err := fn(&Tx{ctx: ctx, tx: sqlTx, s: s}); err != nil {
		return err
	}
	done = true
	if err := sqlTx.Commit(); err != nil { // the driver rolls back what a failed COMMIT left open
		return wrapErr("commit", err)
	}
	return nil
}

// withTx is Tx for the store's own short writes, on the raw *sql.Tx, errors unwrapped.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = sqlTx.Rollback()
		}
	}()
	if err := fn(sqlTx); err != nil {
		return err
	}
	done = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// AuditEntry is one row of the audit chain, and one line of an export. At is kept as the exact text that
// was hashed (UTC RFC 3339 with nanoseconds); Time parses it. Seq, not At, orders the chain: the device
// clock may be corrected backwards.
type AuditEntry struct {
	Seq      uint64          `json:"seq"`
	At       string          `json:"at"`
	Kind     string          `json:"kind"`
	Payload  json.RawMessage `json:"payload"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// Time is At parsed; the zero time if the row was edited into something unparseable.
func (e AuditEntry) Time() time.Time {
	t, _ := parseTime(e.At)
	return t
}

// Append adds an entry to the audit chain. payload is marshalled once with encoding/json (HTML characters
// not escaped); those exact bytes are stored and hashed. Kind is 1 to 32 of [a-z_.]: "decision", "action",
// "receipt", "command", "bundle", "fault", "start", "stop".
func (tx *Tx) Append(kind string, payload any) (AuditEntry, error) {
	if !validKind(kind) {
		return AuditEntry{}, fmt.Errorf("store: append audit: kind %q is not 1 to 32 of [a-z_.]", kind)
	}
	body, err := marshalPayload(payload)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: append audit %s: %w", kind, err)
	}
	head := Head{Hash: GenesisHash}
	err = tx.tx.QueryRowContext(tx.ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&head.Seq, &head.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return AuditEntry{}, wrapErr("append audit: read head", err)
	}
	e := AuditEntry{
		Seq:      head.Seq + 1,
		At:       formatTime(tx.s.clock.Now()),
		Kind:     kind,
		Payload:  body,
		PrevHash: head.Hash,
	}
	e.Hash = ChainHash(e.PrevHash, e.Seq, e.At, e.Kind, e.Payload)
	if _, err := tx.tx.ExecContext(tx.ctx,
		`INSERT INTO audit (seq, at, kind, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)`,
		e.Seq, e.At, e.Kind, string(e.Payload), e.PrevHash, e.Hash); err != nil {
		return AuditEntry{}, wrapErr("append audit", err)
	}
	return e, nil
}

func validKind(kind string) bool {
	if len(kind) < 1 || len(kind) > 32 {
		return false
	}
	for _, c := range []byte(kind) {
		if !(c >= 'a' && c <= 'z' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// marshalPayload is json.Marshal without HTML escaping, so a payload reads the same in the sqlite3 shell,
// in jq and in the export as what was meant ("<" rather than "\u003c").
func marshalPayload(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("marshal payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// OutMsg is a message to publish.
type OutMsg struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
	// CoalesceKey, when set, makes this message replace every unsent one with the same key: for retained
	// state, compliance and subjects, where only the latest matters. Events have none and are never dropped.
	CoalesceKey string
}

// Enqueue adds messages to the outbox, in order. They stay there until Ack.
func (tx *Tx) Enqueue(msgs ...OutMsg) error {
	now := formatTime(tx.s.clock.Now())
	for _, m := range msgs {
		if m.Topic == "" {
			return errors.New("store: enqueue: empty topic")
		}
		if m.QoS > 2 {
			return fmt.Errorf("store: enqueue %s: qos %d", m.Topic, m.QoS)
		}
		var key sql.NullString
		if m.CoalesceKey != "" {
			key = sql.NullString{String: m.CoalesceKey, Valid: true}
			if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM outbox WHERE coalesce_key = ?`, m.CoalesceKey); err != nil {
				return wrapErr("enqueue "+m.Topic+": coalesce", err)
			}
		}
		payload := m.Payload
		if payload == nil {
			payload = []byte{} // the driver binds a nil slice as NULL
		}
		if _, err := tx.tx.ExecContext(tx.ctx,
			`INSERT INTO outbox (topic, payload, qos, retained, coalesce_key, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			m.Topic, payload, m.QoS, m.Retained, key, now); err != nil {
			return wrapErr("enqueue "+m.Topic, err)
		}
	}
	return nil
}

// Evaluation is one policy evaluation, kept in a bounded history (Options.MaxEvaluations, newest kept).
type Evaluation struct {
	ID             int64
	At             time.Time // the store's clock when zero
	FactsSHA256    string
	PolicyRevision string
	Status         string
	Decision       json.RawMessage
}

// RecordEvaluation stores an evaluation, prunes the oldest beyond the limit, and returns its id.
func (tx *Tx) RecordEvaluation(e Evaluation) (int64, error) {
	if e.At.IsZero() {
		e.At = tx.s.clock.Now()
	}
	decision := []byte(e.Decision)
	if len(decision) == 0 {
		decision = []byte("null")
	}
	if !json.Valid(decision) {
		return 0, errors.New("store: record evaluation: decision is not valid JSON")
	}
	res, err := tx.tx.ExecContext(tx.ctx,
		`INSERT INTO evaluations (at, facts_sha256, policy_revision, status, decision) VALUES (?, ?, ?, ?, ?)`,
		formatTime(e.At), e.FactsSHA256, e.PolicyRevision, e.Status, string(decision))
	if err != nil {
		return 0, wrapErr("record evaluation", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, wrapErr("record evaluation", err)
	}
	if _, err := tx.tx.ExecContext(tx.ctx,
		`DELETE FROM evaluations WHERE id < (SELECT min(id) FROM (SELECT id FROM evaluations ORDER BY id DESC LIMIT ?))`,
		tx.s.maxEvals); err != nil {
		return 0, wrapErr("record evaluation: prune", err)
	}
	return id, nil
}

// OpenViolation is a failing control the fleet has been told about with a "violation_opened" event.
type OpenViolation struct {
	Severity string
	OpenedAt time.Time
	EventID  string
}

// SetOpenViolations replaces the set of open violations, keyed by control.
func (tx *Tx) SetOpenViolations(open map[string]OpenViolation) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `DELETE FROM open_violations`); err != nil {
		return wrapErr("set open violations", err)
	}
	for control, v := range open {
		if _, err := tx.tx.ExecContext(tx.ctx,
			`INSERT INTO open_violations (control, severity, opened_at, event_id) VALUES (?, ?, ?, ?)`,
			control, v.Severity, formatTime(v.OpenedAt), v.EventID); err != nil {
			return wrapErr("set open violations: "+control, err)
		}
	}
	return nil
}

// OpenViolations returns the open violations, keyed by control (empty, not nil, when there are none).
func (tx *Tx) OpenViolations() (map[string]OpenViolation, error) {
	rows, err := tx.tx.QueryContext(tx.ctx, `SELECT control, severity, opened_at, event_id FROM open_violations`)
	if err != nil {
		return nil, wrapErr("open violations", err)
	}
	defer rows.Close()
	open := map[string]OpenViolation{}
	for rows.Next() {
		var control, at string
		var v OpenViolation
		if err := rows.Scan(&control, &v.Severity, &at, &v.EventID); err != nil {
			return nil, wrapErr("open violations", err)
		}
		if v.OpenedAt, err = parseTime(at); err != nil {
			return nil, wrapErr("open violations: "+control, err)
		}
		open[control] = v
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("open violations", err)
	}
	return open, nil
}

// JournalEntry is what the agent remembers of a command, by its id, for at least the command's lifetime:
// a duplicate delivery is answered from here instead of being executed again.
type JournalEntry struct {
	ID            string
	Type          string
	PayloadSHA256 string
	ReceivedAt    time.Time // set once: an update keeps the first value; the store's clock when zero
	ExpiresAt     time.Time
	Status        string
	Result        json.RawMessage // nil until there is one
	UpdatedAt     time.Time       // set by PutCommand
}

// Command returns the journal entry of a command id.
func (tx *Tx) Command(id string) (JournalEntry, bool, error) {
	var e JournalEntry
	var received, expires, updated string
	var result sql.NullString
	err := tx.tx.QueryRowContext(tx.ctx,
		`SELECT id, type, payload_sha256, received_at, expires_at, status, result, updated_at FROM commands WHERE id = ?`, id).
		Scan(&e.ID, &e.Type, &e.PayloadSHA256, &received, &expires, &e.Status, &result, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return JournalEntry{}, false, nil
	}
	if err != nil {
		return JournalEntry{}, false, wrapErr("read command "+id, err)
	}
	if result.Valid {
		e.Result = json.RawMessage(result.String)
	}
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&e.ReceivedAt, received}, {&e.ExpiresAt, expires}, {&e.UpdatedAt, updated}} {
		if *f.dst, err = parseTime(f.src); err != nil {
			return JournalEntry{}, false, wrapErr("read command "+id, err)
		}
	}
	return e, true, nil
}

// PutCommand inserts the journal entry of a command, or updates it by id (keeping its first ReceivedAt).
func (tx *Tx) PutCommand(e JournalEntry) error {
	if e.ID == "" {
		return errors.New("store: put command: empty id")
	}
	now := tx.s.clock.Now()
	if e.ReceivedAt.IsZero() {
		e.ReceivedAt = now
	}
	var result sql.NullString
	if len(e.Result) > 0 {
		if !json.Valid(e.Result) {
			return fmt.Errorf("store: put command %s: result is not valid JSON", e.ID)
		}
		result = sql.NullString{String: string(e.Result), Valid: true}
	}
	_, err := tx.tx.ExecContext(tx.ctx, `
INSERT INTO commands (id, type, payload_sha256, received_at, expires_at, status, result, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	type = excluded.type, payload_sha256 = excluded.payload_sha256, expires_at = excluded.expires_at,
	status = excluded.status, result = excluded.result, updated_at = excluded.updated_at`,
		e.ID, e.Type, e.PayloadSHA256, formatTime(e.ReceivedAt), formatTime(e.ExpiresAt), e.Status, result, formatTime(now))
	if err != nil {
		return wrapErr("put command "+e.ID, err)
	}
	return nil
}

// PruneCommands forgets the commands that expired before t (a duplicate of one would be rejected as
// expired anyway) and returns how many.
func (s *Store) PruneCommands(ctx context.Context, before time.Time) (int, error) {
	if s.readOnly {
		return 0, fmt.Errorf("store: prune commands: %w", ErrReadOnly)
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM commands WHERE expires_at < ?`, formatTime(before))
	if err != nil {
		return 0, wrapErr("prune commands", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, wrapErr("prune commands", err)
	}
	return int(n), nil
}

// Get reads a value of the agent's small state (config overrides, config version, last compliance hash…).
func (tx *Tx) Get(key string) (string, bool, error) {
	var v string
	err := tx.tx.QueryRowContext(tx.ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, wrapErr("get "+key, err)
	}
	return v, true, nil
}

// Put writes a value of the agent's small state.
func (tx *Tx) Put(key, value string) error {
	if _, err := tx.tx.ExecContext(tx.ctx,
		`INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		key, value); err != nil {
		return wrapErr("put "+key, err)
	}
	return nil
}
