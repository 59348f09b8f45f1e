package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/faceguard/faceguard/wire"
)

// envelope is a message's (dev, session, seq), checked and converted for the database.
type envelope struct {
	dev          string
	session, seq int64
}

// A message the store cannot take as it is wraps wire.ErrMessage: the controller drops it as malformed
// (and acknowledges it) instead of having the broker deliver it again and again.
func checkEnvelope(e wire.Envelope) (envelope, error) {
	if e.Dev == "" {
		return envelope{}, fmt.Errorf("%w: no device", wire.ErrMessage)
	}
	session, err := i64("session", e.Session)
	if err != nil {
		return envelope{}, err
	}
	seq, err := i64("seq", e.Seq)
	if err != nil {
		return envelope{}, err
	}
	return envelope{dev: e.Dev, session: session, seq: seq}, nil
}

// jsonList encodes a list as a JSON array, [] for nil: a device without a summary shows empty lists.
func jsonList[T any](v []T) string {
	if len(v) == 0 {
		return "[]"
	}
	b, err := json.Marshal(v)
	if err != nil { // lists of strings and plain structs
		panic(err)
	}
	return string(b)
}

func jsonValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// lastSeen moves devices.last_seen forward to excluded.last_seen, never back: two controllers stamp the
// same message at slightly different times, and deliveries are not ordered across topics.
const lastSeen = `last_seen = CASE WHEN devices.last_seen IS NULL OR devices.last_seen < excluded.last_seen
	THEN excluded.last_seen ELSE devices.last_seen END`

// touchDevice makes sure the device has a row (a message may come before its birth) and moves its
// last_seen forward.
func touchDevice(t *tx, dev string, receivedAt time.Time) error {
	_, err := t.exec(`INSERT INTO devices (id, last_seen) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET `+lastSeen, dev, formatTime(receivedAt))
	return err
}

// ApplyBirth records a device's birth if it is newer, by (session, seq), than the one stored.
func (s *Store) ApplyBirth(ctx context.Context, b wire.Birth, receivedAt time.Time) (bool, error) {
	env, err := checkEnvelope(b.Envelope)
	if err != nil {
		return false, fmt.Errorf("fleet store: apply birth: %w", err)
	}
	var applied bool
	err = s.write(ctx, "apply birth of "+env.dev, func(t *tx) error {
		n, err := t.exec(`INSERT INTO devices (id, site, site_name, kind, category, model, firmware, agent, policy,
	config_version, capabilities, birth_session, birth_seq, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	site = excluded.site, site_name = excluded.site_name, kind = excluded.kind, category = excluded.category,
	model = excluded.model, firmware = excluded.firmware, agent = excluded.agent, policy = excluded.policy,
	config_version = excluded.config_version, capabilities = excluded.capabilities,
	birth_session = excluded.birth_session, birth_seq = excluded.birth_seq, `+lastSeen+`
WHERE devices.birth_session IS NULL
	OR (excluded.birth_session, excluded.birth_seq) > (devices.birth_session, devices.birth_seq)`,
			env.dev, b.Site, b.SiteName, b.Kind, b.Category, b.Model, b.Firmware, b.Agent, b.Bundle.Revision,
			b.ConfigVersion, jsonList(b.Capabilities), env.session, env.seq, formatTime(receivedAt))
		applied = n > 0
		if err != nil || !applied {
			return err
		}
		_, err = t.exec(`UPDATE violations SET site = ? WHERE dev = ? AND site <> ?`, b.Site, env.dev, b.Site)
		return err
	})
	return applied && err == nil, err
}

// ApplyState records online or offline if it is newer than the state stored, with the exception for the
// last will: the broker publishes it after everything else of its session, with the seq the agent set
// when it connected (0), so an offline "lwt" of the current session applies whatever its seq, once. Its
// seq is not stored over a higher one: an online of that session delivered late stays stale, and only a
// later online (a reconnect without a restart, with a higher seq) brings the device back.
func (s *Store) ApplyState(ctx context.Context, st wire.State, receivedAt time.Time) (bool, error) {
	env, err := checkEnvelope(st.Envelope)
	if err != nil {
		return false, fmt.Errorf("fleet store: apply state: %w", err)
	}
	var applied bool
	err = s.write(ctx, "apply state of "+env.dev, func(t *tx) error {
		n, err := t.exec(`INSERT INTO devices (id, state, state_reason, state_session, state_seq, last_seen)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	state = excluded.state, state_reason = excluded.state_reason, state_session = excluded.state_session,
	state_seq = CASE WHEN devices.state_session = excluded.state_session AND devices.state_seq > excluded.state_seq
		THEN devices.state_seq ELSE excluded.state_seq END,
	`+lastSeen+`
WHERE devices.state_session IS NULL
	OR (excluded.state_session, excluded.state_seq) > (devices.state_session, devices.state_seq)
	OR (excluded.state_session = devices.state_session
		AND excluded.state = 'offline' AND excluded.state_reason = 'lwt'
		AND NOT (devices.state = 'offline' AND devices.state_reason = 'lwt'))`,
			env.dev, st.State, st.Reason, env.session, env.seq, formatTime(receivedAt))
		applied = n > 0
		return err
	})
	return applied && err == nil, err
}

// Severity ranks order open violations, most severe first.
func severityRank(s string) int {
	switch s {
	case "critical":
		return 0
	case "high":
		return 1
	case "medium":
		return 2
	case "low":
		return 3
	}
	return 4
}

// ApplyCompliance records a summary: always a row of history (once per (dev, session, seq), so a summary
// delivered late still completes the history), and, if it is newer than the device's summary, the summary
// itself, the audit anchor and the open violations reconciled with its failing controls.
//
// Reconciling is ordered like the events: a control's row changes only if the summary is newer than the
// last transition of that (dev, control), so a summary evaluated before a violation_closed (or opened)
// event does not undo it when it is delivered after it.
func (s *Store) ApplyCompliance(ctx context.Context, c wire.Compliance, receivedAt time.Time) (bool, error) {
	env, err := checkEnvelope(c.Envelope)
	if err != nil {
		return false, fmt.Errorf("fleet store: apply compliance: %w", err)
	}
	auditSeq, err := i64("audit seq", c.Audit.Seq)
	if err != nil {
		return false, fmt.Errorf("fleet store: apply compliance of %s: %w", env.dev, err)
	}
	// One row per control: a list naming a control twice would make PostgreSQL's multi-row upsert touch a
	// row twice.
	var failing []wire.Failing
	seen := map[string]bool{}
	for _, f := range c.Failing {
		if !seen[f.Control] {
			seen[f.Control] = true
			failing = append(failing, f)
		}
	}
	received := formatTime(receivedAt)
	openedAt := c.EvaluatedAt
	if openedAt.IsZero() {
		openedAt = receivedAt
	}
	var applied bool
	err = s.write(ctx, "apply compliance of "+env.dev, func(t *tx) error {
		// First the device row: it is the lock that orders everything else of this device.
		n, err := t.exec(`INSERT INTO devices (id, policy, comp_session, comp_seq, status, evaluated_at,
	critical, high, medium, low, failing, actions, unknown, fault, fail_safe, control, audit_seq, audit_hash, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	policy = CASE WHEN devices.policy = '' THEN excluded.policy ELSE devices.policy END,
	comp_session = excluded.comp_session, comp_seq = excluded.comp_seq, status = excluded.status,
	evaluated_at = excluded.evaluated_at, critical = excluded.critical, high = excluded.high,
	medium = excluded.medium, low = excluded.low, failing = excluded.failing, actions = excluded.actions,
	unknown = excluded.unknown, fault = excluded.fault, fail_safe = excluded.fail_safe, control = excluded.control,
	audit_seq = excluded.audit_seq, audit_hash = excluded.audit_hash,
	audit_regressed = CASE WHEN devices.audit_regressed IS NULL AND devices.comp_session IS NOT NULL
		AND (excluded.audit_seq < devices.audit_seq
			OR (excluded.audit_seq = devices.audit_seq AND excluded.audit_hash <> devices.audit_hash))
		THEN ? ELSE devices.audit_regressed END,
	`+lastSeen+`
WHERE devices.comp_session IS NULL
	OR (excluded.comp_session, excluded.comp_seq) > (devices.comp_session, devices.comp_seq)`,
			env.dev, c.Policy.Revision, env.session, env.seq, c.Status, nullTime(c.EvaluatedAt),
			c.Counts.Critical, c.Counts.High, c.Counts.Medium, c.Counts.Low,
			jsonList(c.Failing), jsonList(c.Actions), jsonList(c.Unknown), c.Fault, c.FailSafe, jsonValue(c.Control),
			auditSeq, c.Audit.Hash, received, received)
		if err != nil {
			return err
		}
		applied = n > 0
		if _, err := t.exec(`INSERT INTO history (dev, session, seq, evaluated_at, status, critical, high, medium, low,
	failing, actions, fault, policy, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dev, session, seq) DO NOTHING`,
			env.dev, env.session, env.seq, formatTime(c.EvaluatedAt), c.Status,
			c.Counts.Critical, c.Counts.High, c.Counts.Medium, c.Counts.Low,
			jsonList(c.Failing), jsonList(c.Actions), c.Fault, c.Policy.Revision, received); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if !applied {
			return nil
		}
		// Close what is no longer failing.
		q := `UPDATE violations SET closed_at = ?, t_session = ?, t_seq = ?
WHERE dev = ? AND closed_at IS NULL AND (t_session, t_seq) < (?, ?)`
		args := []any{formatTime(openedAt), env.session, env.seq, env.dev, env.session, env.seq}
		if len(failing) > 0 {
			q += ` AND control NOT IN (` + placeholders(len(failing)) + `)`
			for _, f := range failing {
				args = append(args, f.Control)
			}
		}
		if _, err := t.exec(q, args...); err != nil {
			return fmt.Errorf("close violations: %w", err)
		}
		if len(failing) == 0 {
			return nil
		}
		// Open what is failing without an open row, with no message (the violation_opened event brings
		// it); refresh the severity and transition of what is open.
		var b strings.Builder
		b.WriteString(`INSERT INTO violations (dev, control, site, severity, sev_rank, articles, message_zh, message_en,
	opened_at, event_id, closed_at, t_session, t_seq) VALUES `)
		args = args[:0]
		for i, f := range failing {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(`(?, ?, (SELECT site FROM devices WHERE id = ?), ?, ?, '[]', '', '', ?, '', NULL, ?, ?)`)
			args = append(args, env.dev, f.Control, env.dev, f.Severity, severityRank(f.Severity), formatTime(openedAt), env.session, env.seq)
		}
		b.WriteString(`
ON CONFLICT (dev, control) DO UPDATE SET
	severity = excluded.severity, sev_rank = excluded.sev_rank,
	articles = CASE WHEN violations.closed_at IS NULL THEN violations.articles ELSE excluded.articles END,
	message_zh = CASE WHEN violations.closed_at IS NULL THEN violations.message_zh ELSE excluded.message_zh END,
	message_en = CASE WHEN violations.closed_at IS NULL THEN violations.message_en ELSE excluded.message_en END,
	opened_at = CASE WHEN violations.closed_at IS NULL THEN violations.opened_at ELSE excluded.opened_at END,
	event_id = CASE WHEN violations.closed_at IS NULL THEN violations.event_id ELSE excluded.event_id END,
	closed_at = NULL, t_session = excluded.t_session, t_seq = excluded.t_seq
WHERE (violations.t_session, violations.t_seq) < (excluded.t_session, excluded.t_seq)`)
		if _, err := t.exec(b.String(), args...); err != nil {
			return fmt.Errorf("open violations: %w", err)
		}
		return nil
	})
	return applied && err == nil, err
}

// ApplySubjects records a device's subject sketch if it is newer than the one stored.
func (s *Store) ApplySubjects(ctx context.Context, sub wire.Subjects, receivedAt time.Time) (bool, error) {
	env, err := checkEnvelope(sub.Envelope)
	if err != nil {
		return false, fmt.Errorf("fleet store: apply subjects: %w", err)
	}
	sketch := sub.Sketch
	if sketch == nil {
		sketch = []byte{} // the drivers bind a nil slice as NULL
	}
	received := formatTime(receivedAt)
	var applied bool
	err = s.write(ctx, "apply subjects of "+env.dev, func(t *tx) error {
		n, err := t.exec(`INSERT INTO devices (id, subj_session, subj_seq, subjects, last_seen) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
	subj_session = excluded.subj_session, subj_seq = excluded.subj_seq, subjects = excluded.subjects, `+lastSeen+`
WHERE devices.subj_session IS NULL
	OR (excluded.subj_session, excluded.subj_seq) > (devices.subj_session, devices.subj_seq)`,
			env.dev, env.session, env.seq, sub.Count, received)
		if err != nil {
			return err
		}
		applied = n > 0
		if !applied {
			return nil
		}
		// The device row is locked (PostgreSQL) or the database is (SQLite): the sketch follows it.
		_, err = t.exec(`INSERT INTO sketches (dev, subjects, data, updated_at) VALUES (?, ?, ?, ?)
ON CONFLICT (dev) DO UPDATE SET subjects = excluded.subjects, data = excluded.data, updated_at = excluded.updated_at`,
			env.dev, sub.Count, sketch, received)
		return err
	})
	return applied && err == nil, err
}

// AddEvent records an event once, by (dev, session, seq), and moves the violation of (dev, control) for
// violation_opened and violation_closed if the event is newer than its last transition.
//
// One exception, which changes no state: a violation_opened older than the last transition still gives
// its message, articles, time and event id to an open row that has none — a row opened by a summary
// (evaluated after the event, and delivered first by another controller) would otherwise show no message
// until the violation closes.
func (s *Store) AddEvent(ctx context.Context, e wire.Event, receivedAt time.Time) (bool, error) {
	env, err := checkEnvelope(e.Envelope)
	if err != nil {
		return false, fmt.Errorf("fleet store: add event: %w", err)
	}
	at := e.At
	if at.IsZero() { // events are ordered by time: never by a missing one
		at = e.TS
	}
	if at.IsZero() {
		at = receivedAt
	}
	var message any
	if e.Message != nil {
		message = jsonValue(e.Message)
	}
	var added bool
	err = s.write(ctx, "add event of "+env.dev, func(t *tx) error {
		if _, err := t.exec(`INSERT INTO devices (id) VALUES (?) ON CONFLICT (id) DO NOTHING`, env.dev); err != nil {
			return err
		}
		n, err := t.exec(`INSERT INTO events (dev, session, seq, event_id, kind, at, control, severity, articles, message,
	action, action_count, receipts, detail, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dev, session, seq) DO NOTHING`,
			env.dev, env.session, env.seq, e.EventID, e.Kind, formatTime(at), e.Control, e.Severity,
			jsonList(e.Articles), message, e.Action, e.Count, jsonList(e.Receipts), e.Detail, formatTime(receivedAt))
		if err != nil {
			return err
		}
		added = n > 0
		if !added {
			return nil
		}
		if err := touchDevice(t, env.dev, receivedAt); err != nil {
			return err
		}
		if e.Control == "" {
			return nil
		}
		switch e.Kind {
		case wire.EventViolationOpened:
			var zh, en string
			if e.Message != nil {
				zh, en = e.Message.ZH, e.Message.EN
			}
			n, err := t.exec(`INSERT INTO violations (dev, control, site, severity, sev_rank, articles, message_zh, message_en,
	opened_at, event_id, closed_at, t_session, t_seq)
VALUES (?, ?, (SELECT site FROM devices WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
ON CONFLICT (dev, control) DO UPDATE SET
	severity = excluded.severity, sev_rank = excluded.sev_rank, articles = excluded.articles,
	message_zh = excluded.message_zh, message_en = excluded.message_en, opened_at = excluded.opened_at,
	event_id = excluded.event_id, closed_at = NULL, t_session = excluded.t_session, t_seq = excluded.t_seq
WHERE (violations.t_session, violations.t_seq) < (excluded.t_session, excluded.t_seq)`,
				env.dev, e.Control, env.dev, e.Severity, severityRank(e.Severity), jsonList(e.Articles), zh, en,
				formatTime(at), e.EventID, env.session, env.seq)
			if err != nil || n > 0 {
				return err
			}
			_, err = t.exec(`UPDATE violations SET articles = ?, message_zh = ?, message_en = ?, opened_at = ?, event_id = ?
WHERE dev = ? AND control = ? AND closed_at IS NULL AND event_id = '' AND (t_session, t_seq) > (?, ?)`,
				jsonList(e.Articles), zh, en, formatTime(at), e.EventID, env.dev, e.Control, env.session, env.seq)
			return err
		case wire.EventViolationClosed:
			_, err := t.exec(`INSERT INTO violations (dev, control, site, severity, sev_rank, articles, message_zh, message_en,
	opened_at, event_id, closed_at, t_session, t_seq)
VALUES (?, ?, (SELECT site FROM devices WHERE id = ?), ?, ?, '[]', '', '', ?, '', ?, ?, ?)
ON CONFLICT (dev, control) DO UPDATE SET
	closed_at = excluded.closed_at, t_session = excluded.t_session, t_seq = excluded.t_seq
WHERE (violations.t_session, violations.t_seq) < (excluded.t_session, excluded.t_seq)`,
				env.dev, e.Control, env.dev, e.Severity, severityRank(e.Severity), formatTime(at), formatTime(at), env.session, env.seq)
			return err
		}
		return nil
	})
	return added && err == nil, err
}

// resultStatuses are what a device may answer.
var resultStatuses = map[string]bool{
	wire.ResultAccepted: true, wire.ResultSucceeded: true, wire.ResultFailed: true, wire.ResultRejected: true,
}

// AddResult records a command result and moves the (command, device) status forward:
//   - pending or accepted takes any final answer, and an accepted newer than the one stored;
//   - timed_out (the controller's verdict, not the device's) takes a final answer that came late;
//   - a final answer of the device is never replaced.
//
// A redelivered result therefore changes nothing. A result for an unknown command, or from a device a
// single-device command was not sent to, is ignored.
func (s *Store) AddResult(ctx context.Context, r wire.Result, receivedAt time.Time) (bool, error) {
	env, err := checkEnvelope(r.Envelope)
	if err != nil {
		return false, fmt.Errorf("fleet store: add result: %w", err)
	}
	if !resultStatuses[r.Status] {
		return false, fmt.Errorf("fleet store: add result of %s for %s: %w: unknown status %q", env.dev, r.ID, wire.ErrMessage, r.Status)
	}
	var result any
	if len(r.Result) > 0 {
		result = string(r.Result)
	}
	var applied bool
	err = s.write(ctx, "add result of "+env.dev+" for "+r.ID, func(t *tx) error {
		// The WHERE of a SELECT feeding an upsert also settles SQLite's parsing ambiguity.
		n, err := t.exec(`INSERT INTO command_results (command_id, dev, status, reason, result, duplicate, res_session, res_seq, updated_at)
SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BOOLEAN), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT)
WHERE EXISTS (SELECT 1 FROM commands WHERE id = ? AND (target = '*' OR target = ?))
ON CONFLICT (command_id, dev) DO UPDATE SET
	status = excluded.status, reason = excluded.reason, result = excluded.result, duplicate = excluded.duplicate,
	res_session = excluded.res_session, res_seq = excluded.res_seq, updated_at = excluded.updated_at
WHERE (command_results.status IN ('pending', 'accepted')
		AND (excluded.status <> 'accepted' OR command_results.res_session IS NULL
			OR (excluded.res_session, excluded.res_seq) > (command_results.res_session, command_results.res_seq)))
	OR (command_results.status = 'timed_out' AND excluded.status <> 'accepted')`,
			r.ID, env.dev, r.Status, r.Reason, result, r.Duplicate, env.session, env.seq, formatTime(receivedAt),
			r.ID, env.dev)
		if err != nil {
			return err
		}
		applied = n > 0
		if !applied {
			return nil
		}
		return touchDevice(t, env.dev, receivedAt)
	})
	return applied && err == nil, err
}
