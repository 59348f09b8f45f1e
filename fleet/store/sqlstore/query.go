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
	"github.com/faceguard/faceguard/wire"
)

// Overview counts devices per site in the database (one grouped scan), never loading devices into Go.
func (s *Store) Overview(ctx context.Context) (fleet.Overview, error) {
	var o fleet.Overview
	err := s.read(ctx, "overview", func(t *tx) error {
		o = fleet.Overview{}
		rows, err := t.query(`SELECT site, MAX(site_name), COUNT(*),
	SUM(CASE WHEN status = 'compliant' THEN 1 ELSE 0 END),
	SUM(CASE WHEN status = 'non_compliant' THEN 1 ELSE 0 END),
	SUM(CASE WHEN critical > 0 THEN 1 ELSE 0 END),
	SUM(CASE WHEN state = 'offline' THEN 1 ELSE 0 END),
	SUM(CASE WHEN fail_safe THEN 1 ELSE 0 END)
FROM devices GROUP BY site ORDER BY site`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ss fleet.SiteSummary
			if err := rows.Scan(&ss.Site, &ss.SiteName, &ss.Devices, &ss.Compliant, &ss.NonCompliant, &ss.Critical,
				&ss.Offline, &ss.FailSafe); err != nil {
				return err
			}
			o.Sites = append(o.Sites, ss)
			o.Total.Devices += ss.Devices
			o.Total.Compliant += ss.Compliant
			o.Total.NonCompliant += ss.NonCompliant
			o.Total.Critical += ss.Critical
			o.Total.Offline += ss.Offline
			o.Total.FailSafe += ss.FailSafe
		}
		return rows.Err()
	})
	return o, err
}

const deviceColumns = `id, site, site_name, kind, category, model, firmware, agent, policy, config_version,
	state, state_reason, state_session, last_seen, birth_session,
	status, evaluated_at, critical, high, medium, low, failing, actions, unknown, fault, fail_safe, control,
	audit_seq, audit_hash, audit_regressed, subjects`

func scanDevice(sc interface{ Scan(...any) error }) (fleet.Device, error) {
	var d fleet.Device
	var stateSession, birthSession sql.NullInt64
	var lastSeen, evaluated, regressed sql.NullString
	var failing, actions, unknown, control string
	var auditSeq int64
	if err := sc.Scan(&d.ID, &d.Site, &d.SiteName, &d.Kind, &d.Category, &d.Model, &d.Firmware, &d.Agent, &d.Policy,
		&d.Config, &d.State, &d.StateReason, &stateSession, &lastSeen, &birthSession,
		&d.Status, &evaluated, &d.Counts.Critical, &d.Counts.High, &d.Counts.Medium, &d.Counts.Low,
		&failing, &actions, &unknown, &d.Fault, &d.FailSafe, &control,
		&auditSeq, &d.Audit.Hash, &regressed, &d.Subjects); err != nil {
		return d, err
	}
	d.StateSession, d.BirthSession, d.Audit.Seq = uint64(stateSession.Int64), uint64(birthSession.Int64), uint64(auditSeq)
	var err error
	if d.LastSeen, err = parseNullTime(lastSeen); err != nil {
		return d, err
	}
	if d.EvaluatedAt, err = parseNullTime(evaluated); err != nil {
		return d, err
	}
	if regressed.Valid {
		at, err := parseTime(regressed.String)
		if err != nil {
			return d, err
		}
		d.AuditRegressed = &at
	}
	for _, f := range []struct {
		src string
		dst any
	}{{failing, &d.Failing}, {actions, &d.Actions}, {unknown, &d.Unknown}, {control, &d.Control}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return d, fmt.Errorf("device %s: %w", d.ID, err)
		}
	}
	return d, nil
}

// deviceFilter is the WHERE clause of a device query.
func deviceFilter(q fleet.DeviceQuery) (string, []any, error) {
	var where []string
	var args []any
	if q.Site != "" {
		where = append(where, "site = ?")
		args = append(args, q.Site)
	}
	if q.Search != "" {
		p := likePattern(q.Search)
		where = append(where, `(lower(id) LIKE ? ESCAPE '\' OR lower(site_name) LIKE ? ESCAPE '\')`)
		args = append(args, p, p)
	}
	switch q.Status {
	case "":
	case "compliant", "non_compliant", wire.StatusError:
		where = append(where, "status = ?")
		args = append(args, q.Status)
	case "critical":
		where = append(where, "critical > 0")
	case "offline":
		where = append(where, "state = 'offline'")
	default:
		return "", nil, fmt.Errorf("unknown status filter %q (compliant, non_compliant, critical, offline or error)", q.Status)
	}
	if len(where) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(where, " AND "), args, nil
}

// Devices returns one page of devices ordered by site then id, and how many match in all.
func (s *Store) Devices(ctx context.Context, q fleet.DeviceQuery) ([]fleet.Device, int, error) {
	offset, limit := pageLimit(q.Offset, q.Limit)
	where, args, err := deviceFilter(q)
	if err != nil {
		return nil, 0, fmt.Errorf("fleet store: devices: %w", err)
	}
	var out []fleet.Device
	var total int
	err = s.read(ctx, "devices", func(t *tx) error {
		out = nil
		if err := t.queryRow(`SELECT count(*) FROM devices`+where, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT `+deviceColumns+` FROM devices`+where+` ORDER BY site, id LIMIT ? OFFSET ?`,
			append(args, limit, offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDevice(rows)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// Device returns one device, or an error wrapping fleet.ErrNotFound.
func (s *Store) Device(ctx context.Context, id string) (fleet.Device, error) {
	var d fleet.Device
	err := s.read(ctx, "device "+id, func(t *tx) error {
		var err error
		d, err = scanDevice(t.queryRow(`SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fleet.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fleet.Device{}, err
	}
	return d, nil
}

// DeviceIDs returns every known device id, in order.
func (s *Store) DeviceIDs(ctx context.Context) ([]string, error) {
	var out []string
	err := s.read(ctx, "device ids", func(t *tx) error {
		out = nil
		rows, err := t.query(`SELECT id FROM devices ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			out = append(out, id)
		}
		return rows.Err()
	})
	return out, err
}

// OpenViolations returns one page of open violations ordered by severity (critical first), site, device
// and control, and how many match in all.
func (s *Store) OpenViolations(ctx context.Context, q fleet.ViolationQuery) ([]fleet.Violation, int, error) {
	offset, limit := pageLimit(q.Offset, q.Limit)
	where := []string{"closed_at IS NULL"}
	var args []any
	if q.Dev != "" {
		where = append(where, "dev = ?")
		args = append(args, q.Dev)
	}
	if q.Site != "" {
		where = append(where, "site = ?")
		args = append(args, q.Site)
	}
	if q.Search != "" {
		where = append(where, `lower(dev) LIKE ? ESCAPE '\'`)
		args = append(args, likePattern(q.Search))
	}
	if q.Control != "" {
		where = append(where, "control = ?")
		args = append(args, q.Control)
	}
	if q.Severity != "" {
		where = append(where, "severity = ?")
		args = append(args, q.Severity)
	}
	from := ` FROM violations WHERE ` + strings.Join(where, " AND ")
	var out []fleet.Violation
	var total int
	err := s.read(ctx, "open violations", func(t *tx) error {
		out = nil
		if err := t.queryRow(`SELECT count(*)`+from, args...).Scan(&total); err != nil {
			return err
		}
		rows, err := t.query(`SELECT dev, site, (SELECT d.site_name FROM devices d WHERE d.id = violations.dev),
  control, severity, articles, message_zh, message_en, opened_at, event_id`+
			from+` ORDER BY sev_rank, site, dev, control LIMIT ? OFFSET ?`,
			append(args, limit, offset)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v fleet.Violation
			var articles, opened string
			var siteName sql.NullString
			if err := rows.Scan(&v.Dev, &v.Site, &siteName, &v.Control, &v.Severity, &articles, &v.Message.ZH, &v.Message.EN,
				&opened, &v.EventID); err != nil {
				return err
			}
			v.SiteName = siteName.String
			if err := json.Unmarshal([]byte(articles), &v.Articles); err != nil {
				return fmt.Errorf("violation %s %s: %w", v.Dev, v.Control, err)
			}
			if v.OpenedAt, err = parseTime(opened); err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// History returns a device's compliance summaries evaluated at or after since (all when zero), newest
// first by (session, seq) — the device's own order, which a corrected clock cannot shuffle.
func (s *Store) History(ctx context.Context, dev string, since time.Time, limit int) ([]fleet.ComplianceRecord, error) {
	_, limit = pageLimit(0, limit)
	q := `SELECT dev, session, seq, evaluated_at, status, critical, high, medium, low, failing, actions, fault, policy
FROM history WHERE dev = ?`
	args := []any{dev}
	if !since.IsZero() {
		q += ` AND evaluated_at >= ?`
		args = append(args, formatTime(since))
	}
	q += ` ORDER BY session DESC, seq DESC LIMIT ?`
	args = append(args, limit)
	var out []fleet.ComplianceRecord
	err := s.read(ctx, "history of "+dev, func(t *tx) error {
		out = nil
		rows, err := t.query(q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r fleet.ComplianceRecord
			var session, seq int64
			var evaluated, failing, actions string
			if err := rows.Scan(&r.Dev, &session, &seq, &evaluated, &r.Status, &r.Counts.Critical, &r.Counts.High,
				&r.Counts.Medium, &r.Counts.Low, &failing, &actions, &r.Fault, &r.Policy); err != nil {
				return err
			}
			r.Session, r.Seq = uint64(session), uint64(seq)
			if r.EvaluatedAt, err = parseTime(evaluated); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(failing), &r.Failing); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(actions), &r.Actions); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// Events returns events of the given kinds (all when empty) at or after since (all when zero), of one
// device or of all when dev is "", newest first by the device's time of the event.
func (s *Store) Events(ctx context.Context, dev string, kinds []string, since time.Time, limit int) ([]fleet.Event, error) {
	_, limit = pageLimit(0, limit)
	var where []string
	var args []any
	if dev != "" {
		where = append(where, "dev = ?")
		args = append(args, dev)
	}
	if len(kinds) > 0 {
		where = append(where, "kind IN ("+placeholders(len(kinds))+")")
		for _, k := range kinds {
			args = append(args, k)
		}
	}
	if !since.IsZero() {
		where = append(where, "at >= ?")
		args = append(args, formatTime(since))
	}
	q := `SELECT id, dev, session, seq, event_id, kind, at, control, severity, articles, message, action, action_count,
	receipts, detail, received_at FROM events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY at DESC, id DESC LIMIT ?"
	args = append(args, limit)
	var out []fleet.Event
	err := s.read(ctx, "events", func(t *tx) error {
		out = nil
		rows, err := t.query(q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e fleet.Event
			var session, seq int64
			var at, articles, receipts, received string
			var message sql.NullString
			if err := rows.Scan(&e.ID, &e.Dev, &session, &seq, &e.EventID, &e.Kind, &at, &e.Control, &e.Severity,
				&articles, &message, &e.Action, &e.Count, &receipts, &e.Detail, &received); err != nil {
				return err
			}
			e.Session, e.Seq = uint64(session), uint64(seq)
			if e.At, err = parseTime(at); err != nil {
				return err
			}
			if e.ReceivedAt, err = parseTime(received); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(articles), &e.Articles); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(receipts), &e.Receipts); err != nil {
				return err
			}
			if message.Valid {
				e.Message = new(wire.Text)
				if err := json.Unmarshal([]byte(message.String), e.Message); err != nil {
					return err
				}
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	return out, err
}

// Sketches returns every device's latest subject sketch, by device.
func (s *Store) Sketches(ctx context.Context) ([]fleet.Sketch, error) {
	var out []fleet.Sketch
	err := s.read(ctx, "sketches", func(t *tx) error {
		out = nil
		rows, err := t.query(`SELECT dev, subjects, data, updated_at FROM sketches ORDER BY dev`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var sk fleet.Sketch
			var updated string
			if err := rows.Scan(&sk.Dev, &sk.Count, &sk.Data, &updated); err != nil {
				return err
			}
			if sk.UpdatedAt, err = parseTime(updated); err != nil {
				return err
			}
			out = append(out, sk)
		}
		return rows.Err()
	})
	return out, err
}
