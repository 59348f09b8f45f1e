package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/faceguard/faceguard/fleet"
)

// insertBatch is how many rows one multi-row INSERT carries: far below both databases' limits on
// parameters, and few round trips for a fleet command to 10,000 devices.
const insertBatch = 500

// CreateCommand records a command and one pending result per target. A command id is an idempotency key
// the controller makes up: reusing one is an error, not a no-op.
func (s *Store) CreateCommand(ctx context.Context, c fleet.Command, targets []string) error {
	if c.ID == "" {
		return errors.New("fleet store: create command: empty id")
	}
	var args any
	if len(c.Args) > 0 {
		args = string(c.Args)
	}
	payload := c.Payload
	if payload == nil {
		payload = []byte{}
	}
	var devs []string
	seen := map[string]bool{}
	for _, d := range targets {
		if d != "" && !seen[d] {
			seen[d] = true
			devs = append(devs, d)
		}
	}
	issued := formatTime(c.IssuedAt)
	return s.write(ctx, "create command "+c.ID, func(t *tx) error {
		n, err := t.exec(`INSERT INTO commands (id, type, target, args, issued_at, expires_at, created_by, payload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			c.ID, c.Type, c.Target, args, issued, formatTime(c.ExpiresAt), c.CreatedBy, payload)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("a command with id %s exists", c.ID)
		}
		for start := 0; start < len(devs); start += insertBatch {
			batch := devs[start:min(start+insertBatch, len(devs))]
			var b strings.Builder
			b.WriteString(`INSERT INTO command_results (command_id, dev, status, updated_at) VALUES `)
			vals := make([]any, 0, 4*len(batch))
			for i, d := range batch {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?, ?)")
				vals = append(vals, c.ID, d, fleet.CommandPending, issued)
			}
			b.WriteString(` ON CONFLICT (command_id, dev) DO NOTHING`)
			if _, err := t.exec(b.String(), vals...); err != nil {
				return fmt.Errorf("results: %w", err)
			}
		}
		return nil
	})
}

const commandColumns = `c.id, c.type, c.target, c.args, c.issued_at, c.expires_at, c.created_by, c.payload`

func scanCommand(sc interface{ Scan(...any) error }) (fleet.Command, error) {
	var c fleet.Command
	var args sql.NullString
	var issued, expires string
	if err := sc.Scan(&c.ID, &c.Type, &c.Target, &args, &issued, &expires, &c.CreatedBy, &c.Payload); err != nil {
		return c, err
	}
	if args.Valid {
		c.Args = json.RawMessage(args.String)
	}
	var err error
	if c.IssuedAt, err = parseTime(issued); err != nil {
		return c, err
	}
	c.ExpiresAt, err = parseTime(expires)
	return c, err
}

// PendingFor returns the unexpired commands dev has not answered finally (pending, or accepted and not
// yet done), oldest first, after adding a pending result for every unexpired fleet command it has none for.
func (s *Store) PendingFor(ctx context.Context, dev string, now time.Time) ([]fleet.Command, error) {
	var out []fleet.Command
	at := formatTime(now)
	err := s.write(ctx, "pending commands of "+dev, func(t *tx) error {
		out = nil
		if _, err := t.exec(`INSERT INTO command_results (command_id, dev, status, updated_at)
SELECT id, CAST(? AS TEXT), 'pending', CAST(? AS TEXT) FROM commands WHERE target = '*' AND expires_at > ?
ON CONFLICT (command_id, dev) DO NOTHING`, dev, at, at); err != nil {
			return fmt.Errorf("add fleet commands: %w", err)
		}
		rows, err := t.query(`SELECT `+commandColumns+` FROM commands c
JOIN command_results r ON r.command_id = c.id
WHERE r.dev = ? AND r.status IN ('pending', 'accepted') AND c.expires_at > ?
ORDER BY c.issued_at, c.id`, dev, at)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanCommand(rows)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	return out, err
}

// Command returns a command and its result at every target, ordered by device.
func (s *Store) Command(ctx context.Context, id string) (fleet.Command, []fleet.CommandResult, error) {
	var c fleet.Command
	var results []fleet.CommandResult
	err := s.read(ctx, "command "+id, func(t *tx) error {
		var err error
		c, err = scanCommand(t.queryRow(`SELECT `+commandColumns+` FROM commands c WHERE c.id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fleet.ErrNotFound
		}
		if err != nil {
			return err
		}
		rows, err := t.query(`SELECT command_id, dev, status, reason, result, duplicate, updated_at
FROM command_results WHERE command_id = ? ORDER BY dev`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r fleet.CommandResult
			var result sql.NullString
			var updated string
			if err := rows.Scan(&r.CommandID, &r.Dev, &r.Status, &r.Reason, &result, &r.Duplicate, &updated); err != nil {
				return err
			}
			if result.Valid {
				r.Result = json.RawMessage(result.String)
			}
			if r.UpdatedAt, err = parseTime(updated); err != nil {
				return err
			}
			results = append(results, r)
		}
		return rows.Err()
	})
	if err != nil {
		return fleet.Command{}, nil, err
	}
	return c, results, nil
}

// Commands lists commands, newest first, with their results counted by status.
func (s *Store) Commands(ctx context.Context, offset, limit int) ([]fleet.CommandSummary, int, error) {
	offset, limit = pageLimit(offset, limit)
	var out []fleet.CommandSummary
	var total int
	err := s.read(ctx, "commands", func(t *tx) error {
		if err := t.queryRow(`SELECT count(*) FROM commands`).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+commandColumns+` FROM commands c ORDER BY c.issued_at DESC, c.id DESC LIMIT ? OFFSET ?`,
			limit, offset)
		if err != nil {
			return err
		}
		index := map[string]int{}
		for rows.Next() {
			c, err := scanCommand(rows)
			if err != nil {
				rows.Close()
				return err
			}
			index[c.ID] = len(out)
			out = append(out, fleet.CommandSummary{Command: c, Results: map[string]int{}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		ids := make([]any, len(out))
		for i, c := range out {
			ids[i] = c.ID
		}
		rows, err = t.query(`SELECT command_id, status, count(*) FROM command_results
WHERE command_id IN (`+placeholders(len(ids))+`) GROUP BY command_id, status`, ids...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, status string
			var n int
			if err := rows.Scan(&id, &status, &n); err != nil {
				return err
			}
			sum := &out[index[id]]
			sum.Results[status] = n
			sum.Total += n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// ExpireCommands marks timed_out every result still pending or accepted of a command that expired at or
// before now (a command is valid strictly before its expiry, as the agent judges it).
func (s *Store) ExpireCommands(ctx context.Context, now time.Time) (int, error) {
	var n int64
	at := formatTime(now)
	err := s.write(ctx, "expire commands", func(t *tx) error {
		var err error
		n, err = t.exec(`UPDATE command_results SET status = 'timed_out', updated_at = ?
WHERE status IN ('pending', 'accepted') AND command_id IN (SELECT id FROM commands WHERE expires_at <= ?)`, at, at)
		return err
	})
	return int(n), err
}

// PutBundle keeps a bundle. A revision names its content: putting the same one again is a no-op, and
// other content under a stored revision is refused (devices may be pulling its chunks).
func (s *Store) PutBundle(ctx context.Context, b fleet.Bundle) error {
	if b.Revision == "" {
		return errors.New("fleet store: put bundle: empty revision")
	}
	data := b.Data
	if data == nil {
		data = []byte{}
	}
	return s.write(ctx, "put bundle "+b.Revision, func(t *tx) error {
		n, err := t.exec(`INSERT INTO bundles (revision, sha256, size, chunk_sha256, data, created_at)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (revision) DO NOTHING`,
			b.Revision, b.SHA256, b.Size, jsonList(b.ChunkSHA256), data, formatTime(b.CreatedAt))
		if err != nil || n > 0 {
			return err
		}
		var sum string
		if err := t.queryRow(`SELECT sha256 FROM bundles WHERE revision = ?`, b.Revision).Scan(&sum); err != nil {
			return err
		}
		if sum != b.SHA256 {
			return fmt.Errorf("revision %s is stored with sha256 %s, not %s", b.Revision, sum, b.SHA256)
		}
		return nil
	})
}

// Bundle returns a bundle by revision.
func (s *Store) Bundle(ctx context.Context, revision string) (fleet.Bundle, error) {
	var b fleet.Bundle
	err := s.read(ctx, "bundle "+revision, func(t *tx) error {
		var chunks, created string
		err := t.queryRow(`SELECT revision, sha256, size, chunk_sha256, data, created_at FROM bundles WHERE revision = ?`,
			revision).Scan(&b.Revision, &b.SHA256, &b.Size, &chunks, &b.Data, &created)
		if errors.Is(err, sql.ErrNoRows) {
			return fleet.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(chunks), &b.ChunkSHA256); err != nil {
			return fmt.Errorf("chunk hashes: %w", err)
		}
		b.CreatedAt, err = parseTime(created)
		return err
	})
	if err != nil {
		return fleet.Bundle{}, err
	}
	return b, nil
}

// FilingRecords returns the filing tracker's records, oldest first (by date, then as added).
func (s *Store) FilingRecords(ctx context.Context) ([]fleet.FilingRecord, error) {
	var out []fleet.FilingRecord
	err := s.read(ctx, "filing records", func(t *tx) error {
		rows, err := t.query(`SELECT kind, on_date, reference, note, created_at FROM filing_records ORDER BY on_date, id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r fleet.FilingRecord
			var created string
			if err := rows.Scan(&r.Kind, &r.Date, &r.Reference, &r.Note, &created); err != nil {
				return err
			}
			if r.CreatedAt, err = parseTime(created); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// AddFilingRecord adds a record. Its date must be YYYY-MM-DD: records are ordered by it.
func (s *Store) AddFilingRecord(ctx context.Context, r fleet.FilingRecord) error {
	if _, err := time.Parse(time.DateOnly, r.Date); err != nil {
		return fmt.Errorf("fleet store: add filing record: date %q is not YYYY-MM-DD", r.Date)
	}
	if r.Kind == "" {
		return errors.New("fleet store: add filing record: empty kind")
	}
	return s.write(ctx, "add filing record", func(t *tx) error {
		_, err := t.exec(`INSERT INTO filing_records (kind, on_date, reference, note, created_at) VALUES (?, ?, ?, ?, ?)`,
			r.Kind, r.Date, r.Reference, r.Note, formatTime(r.CreatedAt))
		return err
	})
}
