// Package fleet is the operator's side: the controller that ingests what devices report, keeps the fleet
// state, sends signed commands, tracks the filing threshold, and serves the dashboard and its JSON API.
//
// The controller never holds a face image, a template or a subject reference: devices report counts,
// hashes and HyperLogLog sketches of keyed subject hashes, and commands name subjects by keyed hash.
package fleet

import (
	"encoding/json"
	"time"

	"github.com/faceguard/faceguard/wire"
)

// Device is what the fleet knows of one device: its latest birth, state and compliance summary.
type Device struct {
	ID       string `json:"id"`
	Site     string `json:"site"`
	SiteName string `json:"site_name"`
	Kind     string `json:"kind"`
	Category string `json:"category"`
	Model    string `json:"model"`
	Firmware string `json:"firmware"`
	Agent    string `json:"agent"`
	Policy   string `json:"policy"` // active policy revision
	Config   int    `json:"config_version"`

	State        string    `json:"state"` // online | offline | "" (never seen)
	StateReason  string    `json:"state_reason,omitempty"`
	StateSession uint64    `json:"state_session"`
	LastSeen     time.Time `json:"last_seen"`
	BirthSession uint64    `json:"birth_session"`

	Status      string            `json:"status"` // compliant | non_compliant | error | "" (no summary yet)
	EvaluatedAt time.Time         `json:"evaluated_at"`
	Counts      wire.Counts       `json:"counts"`
	Failing     []wire.Failing    `json:"failing"`
	Actions     []string          `json:"actions"`
	Unknown     []string          `json:"unknown"`
	Fault       string            `json:"fault,omitempty"`
	FailSafe    bool              `json:"fail_safe"`
	Control     wire.ControlState `json:"control"`

	// Audit is the head of the device's audit chain as last reported: the fleet's anchor.
	Audit wire.AuditHead `json:"audit"`
	// AuditRegressed is set when a device reported a head behind one it reported before in the same
	// chain: its record was cut short or rewritten.
	AuditRegressed *time.Time `json:"audit_regressed,omitempty"`

	Subjects int `json:"subjects"` // enrolled persons on the device, from its last sketch message
}

// Critical reports whether the device has a critical violation open.
func (d *Device) Critical() bool { return d.Counts.Critical > 0 }

// ComplianceRecord is one compliance summary in a device's history.
type ComplianceRecord struct {
	Dev         string         `json:"dev"`
	Session     uint64         `json:"session"`
	Seq         uint64         `json:"seq"`
	EvaluatedAt time.Time      `json:"evaluated_at"`
	Status      string         `json:"status"`
	Counts      wire.Counts    `json:"counts"`
	Failing     []wire.Failing `json:"failing"`
	Actions     []string       `json:"actions"`
	Fault       string         `json:"fault,omitempty"`
	Policy      string         `json:"policy"`
}

// Event is one device event as stored: violations opened and closed, actions, receipts, faults.
type Event struct {
	ID         int64      `json:"id"`
	Dev        string     `json:"dev"`
	Session    uint64     `json:"session"`
	Seq        uint64     `json:"seq"`
	EventID    string     `json:"event_id"`
	Kind       string     `json:"kind"`
	At         time.Time  `json:"at"`
	Control    string     `json:"control,omitempty"`
	Severity   string     `json:"severity,omitempty"`
	Articles   []string   `json:"articles,omitempty"`
	Message    *wire.Text `json:"message,omitempty"`
	Action     string     `json:"action,omitempty"`
	Count      int        `json:"count,omitempty"`
	Receipts   []string   `json:"receipts,omitempty"`
	Detail     string     `json:"detail,omitempty"`
	ReceivedAt time.Time  `json:"received_at"`
}

// Violation is an open violation on a device.
type Violation struct {
	Dev      string    `json:"dev"`
	Site     string    `json:"site"`
	SiteName string    `json:"site_name"`
	Control  string    `json:"control"`
	Severity string    `json:"severity"`
	Articles []string  `json:"articles"`
	Message  wire.Text `json:"message"`
	OpenedAt time.Time `json:"opened_at"`
	EventID  string    `json:"event_id,omitempty"`
}

// Command is a signed command the controller sent, to one device or to the fleet.
type Command struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Target    string          `json:"target"` // a device id, or "*" for the fleet
	Args      json.RawMessage `json:"args,omitempty"`
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	CreatedBy string          `json:"created_by,omitempty"`
	// Payload is the signed message as published (wire.SignedCommand), re-sent as it is to a target
	// device. For a fleet command it is the broadcast copy.
	Payload []byte `json:"-"`
}

// Statuses of a command at one device. pending: sent, no answer yet; timed_out: expired unanswered.
const (
	CommandPending  = "pending"
	CommandTimedOut = "timed_out"
)

// CommandResult is where a command stands at one device.
type CommandResult struct {
	CommandID string          `json:"command_id"`
	Dev       string          `json:"dev"`
	Status    string          `json:"status"` // pending | accepted | succeeded | failed | rejected | timed_out
	Reason    string          `json:"reason,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Duplicate bool            `json:"duplicate,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Final reports whether nothing more is expected from the device for this command.
func (r *CommandResult) Final() bool {
	return r.Status != CommandPending && r.Status != wire.ResultAccepted
}

// CommandSummary counts a command's results by status.
type CommandSummary struct {
	Command
	Results map[string]int `json:"results"` // status → devices
	Total   int            `json:"total"`
}

// Bundle is a signed policy bundle the controller offers devices.
type Bundle struct {
	Revision    string    `json:"revision"`
	SHA256      string    `json:"sha256"`
	Size        int       `json:"size"`
	ChunkSHA256 []string  `json:"chunk_sha256"`
	Data        []byte    `json:"-"`
	CreatedAt   time.Time `json:"created_at"`
}

// Sketch is one device's HyperLogLog sketch of keyed subject hashes (the filing tracker's input).
type Sketch struct {
	Dev       string    `json:"dev"`
	Count     int       `json:"count"`
	Data      []byte    `json:"-"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SiteSummary counts a site's devices for the dashboard.
type SiteSummary struct {
	Site         string `json:"site"`
	SiteName     string `json:"site_name"`
	Devices      int    `json:"devices"`
	Compliant    int    `json:"compliant"`
	NonCompliant int    `json:"non_compliant"`
	Critical     int    `json:"critical"`
	Offline      int    `json:"offline"`
	FailSafe     int    `json:"fail_safe"`
}

// Overview is the fleet at a glance: totals and one row per site.
type Overview struct {
	Total SiteSummary   `json:"total"`
	Sites []SiteSummary `json:"sites"`
}

// DeviceQuery selects devices for a page of the dashboard or the API.
type DeviceQuery struct {
	Site   string // exact site id; "" for all
	Search string // substring of the device id or site name
	Status string // compliant | non_compliant | critical | offline | error; "" for all
	Offset int
	Limit  int // 0 means 50
}

// ViolationQuery selects open violations.
type ViolationQuery struct {
	Dev      string // exact device id; "" for all
	Site     string
	Search   string // substring of the device id
	Control  string
	Severity string
	Offset   int
	Limit    int // 0 means 50
}

// FilingRecord is one dated fact of the filing tracker (a threshold crossed, a filing made, a material
// change, face recognition stopped), kept by the operator or the tracker.
type FilingRecord struct {
	Kind      string    `json:"kind"` // threshold_crossed | filed | material_change | fr_stopped | cancelled
	Date      string    `json:"date"` // YYYY-MM-DD, the date in China (UTC+8)
	Reference string    `json:"reference,omitempty"`
	Note      string    `json:"note,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}
