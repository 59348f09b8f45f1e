package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// OutRow is an unsent message of the outbox.
type OutRow struct {
	OutMsg
	ID        int64
	CreatedAt time.Time
}

// Pending returns up to limit unsent messages with an id above after, oldest first; all of them when
// limit ≤ 0. The link drains the outbox page by page, passing the last id it got as after.
func (s *Store) Pending(ctx context.Context, limit int, after int64) ([]OutRow, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.db.QueryContext(ctx, `
SELECT id, topic, payload, qos, retained, coalesce_key, created_at FROM outbox
WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
	if err != nil {
		return nil, wrapErr("pending", err)
	}
	defer rows.Close()
	var out []OutRow
	for rows.Next() {
		var r OutRow
		var key *string
		var created string
		if err := rows.Scan(&r.ID, &r.Topic, &r.Payload, &r.QoS, &r.Retained, &key, &created); err != nil {
			return nil, wrapErr("pending", err)
		}
		if key != nil {
			r.CoalesceKey = *key
		}
		if r.CreatedAt, err = parseTime(created); err != nil {
			return nil, wrapErr(fmt.Sprintf("pending: row %d", r.ID), err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("pending", err)
	}
	return out, nil
}

// Ack removes messages the broker acknowledged. Unknown ids (already acknowledged, or replaced by a newer
// message with the same coalesce key while in flight) are ignored.
func (s *Store) Ack(ctx context.Context, ids ...int64) error {
	if s.readOnly {
		return fmt.Errorf("store: ack: %w", ErrReadOnly)
	}
	if len(ids) == 0 {
		return nil
	}
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM outbox WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	return wrapErr("ack", err)
}

// OutboxLen counts the unsent messages.
func (s *Store) OutboxLen(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, wrapErr("outbox length", err)
	}
	return n, nil
}

// Evaluations returns up to limit of the latest evaluations, newest first; all kept when limit ≤ 0.
func (s *Store) Evaluations(ctx context.Context, limit int) ([]Evaluation, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `
SELECT id, at, facts_sha256, policy_revision, status, decision FROM evaluations ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, wrapErr("evaluations", err)
	}
	defer rows.Close()
	var out []Evaluation
	for rows.Next() {
		var e Evaluation
		var at, decision string
		if err := rows.Scan(&e.ID, &at, &e.FactsSHA256, &e.PolicyRevision, &e.Status, &decision); err != nil {
			return nil, wrapErr("evaluations", err)
		}
		if e.At, err = parseTime(at); err != nil {
			return nil, wrapErr(fmt.Sprintf("evaluations: row %d", e.ID), err)
		}
		e.Decision = json.RawMessage(decision)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("evaluations", err)
	}
	return out, nil
}
