package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Envelope is carried by every JSON message (DESIGN §8). Session counts agent starts and is persisted;
// Seq rises within a session. (Dev, Session, Seq) identifies a message, so a receiver drops duplicates.
type Envelope struct {
	V       int       `json:"v"`
	Type    string    `json:"type"`
	Dev     string    `json:"dev"`
	Session uint64    `json:"session"`
	Seq     uint64    `json:"seq"`
	TS      time.Time `json:"ts"`
}

// Message types, the values of Envelope.Type.
const (
	TypeState      = "state"
	TypeBirth      = "birth"
	TypeCompliance = "compliance"
	TypeSubjects   = "subjects"
	TypeEvent      = "event"
	TypeResult     = "result"
	TypeBundleGet  = "bundle.get"
)

// States of a device.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// State is the retained online/offline of a device; the offline one is also its last will.
type State struct {
	Envelope
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"` // offline: "shutdown" or "lwt"
}

// Birth describes a device each time it connects.
type Birth struct {
	Envelope
	Site          string     `json:"site"`
	SiteName      string     `json:"site_name,omitempty"`
	Kind          string     `json:"kind"`
	Category      string     `json:"category"`
	Model         string     `json:"model,omitempty"`
	Firmware      string     `json:"firmware,omitempty"`
	Agent         string     `json:"agent"`
	Bundle        BundleInfo `json:"bundle"`
	ConfigVersion int        `json:"config_version"`
	Capabilities  []string   `json:"capabilities"`
}

// BundleInfo names the active policy.
type BundleInfo struct {
	Revision string `json:"revision"`
	SHA256   string `json:"sha256,omitempty"`
}

// Compliance is the retained summary of the latest decision.
type Compliance struct {
	Envelope
	Status      string       `json:"status"` // compliant | non_compliant | error (the agent failed safe)
	EvaluatedAt time.Time    `json:"evaluated_at"`
	Policy      BundleInfo   `json:"policy"`
	Counts      Counts       `json:"counts"`
	Failing     []Failing    `json:"failing"`
	Actions     []string     `json:"actions"`
	Unknown     []string     `json:"unknown,omitempty"` // fact groups that could not be gathered
	Fault       string       `json:"fault,omitempty"`   // why the agent failed safe
	FailSafe    bool         `json:"fail_safe,omitempty"`
	Control     ControlState `json:"control"`
	// Audit is the head of the device's audit chain: kept by the fleet, it is the anchor that shows a
	// chain later cut short or rewritten.
	Audit AuditHead `json:"audit"`
}

// AuditHead names the last row of an audit chain.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// StatusError is the compliance status when the agent could not evaluate and failed safe.
const StatusError = "error"

// Counts are violations by severity.
type Counts struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
}

// Failing is one failed control in a summary.
type Failing struct {
	Control  string `json:"control"`
	Severity string `json:"severity"`
}

// ControlState is what the agent orders the terminal to do, in short.
type ControlState struct {
	FaceRecognitionAllowed bool `json:"face_recognition_allowed"`
	EnrolmentAllowed       bool `json:"enrolment_allowed"`
	FaceDataEgressAllowed  bool `json:"face_data_egress_allowed"`
	AlternativesRequiredOn bool `json:"alternatives_required_on"`
	Quarantined            int  `json:"quarantined"`
}

// Subjects carries the filing tracker's input: a HyperLogLog sketch of keyed subject hashes.
type Subjects struct {
	Envelope
	Count  int    `json:"count"`
	Sketch []byte `json:"sketch"` // base64 in JSON
}

// Event kinds.
const (
	EventViolationOpened = "violation_opened"
	EventViolationClosed = "violation_closed"
	EventAction          = "action"
	EventReceipt         = "receipt"
	EventFault           = "fault"
	EventBundle          = "bundle"
)

// Event is one thing that happened on a device. EventID is stable across redelivery.
type Event struct {
	Envelope
	EventID  string    `json:"event_id"`
	Kind     string    `json:"kind"`
	At       time.Time `json:"at"`
	Control  string    `json:"control,omitempty"`
	Severity string    `json:"severity,omitempty"`
	Articles []string  `json:"articles,omitempty"`
	Message  *Text     `json:"message,omitempty"`
	Action   string    `json:"action,omitempty"`
	Count    int       `json:"count,omitempty"`
	Receipts []string  `json:"receipts,omitempty"` // receipt hashes, never what was deleted
	Detail   string    `json:"detail,omitempty"`
}

// Text is a message in Chinese and English.
type Text struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
}

// Command result statuses.
const (
	ResultAccepted  = "accepted"
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	ResultRejected  = "rejected"
)

// Result answers a command on faceguard/v1/dev/{dev}/res/{cmd_id}.
type Result struct {
	Envelope
	ID        string          `json:"id"`
	Command   string          `json:"command"`
	Status    string          `json:"status"`
	Duplicate bool            `json:"duplicate,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// Final reports whether no further result follows this one.
func (r *Result) Final() bool { return r.Status != ResultAccepted }

// BundleGet asks the controller for chunks of an offered bundle.
type BundleGet struct {
	Envelope
	Command  string `json:"command"` // the bundle-offer's id
	Revision string `json:"revision"`
	From     int    `json:"from"`
	Count    int    `json:"count"`
}

// ErrMessage is wrapped by every decoding error of this package.
var ErrMessage = errors.New("malformed message")

// Decode parses a JSON message into v after checking its size, its envelope and that it came from dev.
// The topic, not the payload, is the authority on which device sent it.
func Decode(payload []byte, dev, typ string, v interface{ envelope() *Envelope }) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessage, len(payload), MaxPayload)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMessage, err)
	}
	env := v.envelope()
	switch {
	case env.V != Version:
		return fmt.Errorf("%w: version %d, want %d", ErrMessage, env.V, Version)
	case env.Type != typ:
		return fmt.Errorf("%w: type %q, want %q", ErrMessage, env.Type, typ)
	case env.Dev != dev:
		return fmt.Errorf("%w: device %q on the topic of %q", ErrMessage, env.Dev, dev)
	case env.TS.IsZero():
		return fmt.Errorf("%w: no timestamp", ErrMessage)
	}
	return nil
}

func (e *Envelope) envelope() *Envelope { return e }
