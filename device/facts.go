// Package device holds the facts contract (faceguard.facts/v1, DESIGN §4) and the Terminal seam between
// the agent and a terminal. Facts are aggregates only: no person's identity, template or image may ever
// appear in them, because facts are recorded, reported and shown to operators.
package device

import (
	"encoding/json"
	"time"
)

// FactsSchema is the value of Facts.Schema for this version of the contract.
const FactsSchema = "faceguard.facts/v1"

// Facts is the input of every policy evaluation. Field names and JSON tags are the contract of
// policies/facts.schema.json; a test keeps the two in step.
type Facts struct {
	Schema       string       `json:"schema"`
	CollectedAt  time.Time    `json:"collected_at"`
	Device       Device       `json:"device"`
	FR           FR           `json:"fr"`
	Location     Location     `json:"location"`
	Signage      Signage      `json:"signage"`
	Notice       Notice       `json:"notice"`
	Alternatives Alternatives `json:"alternatives"`
	Prompts      []string     `json:"prompts"`
	Subjects     Subjects     `json:"subjects"`
	RawImages    RawImages    `json:"raw_images"`
	Egress       []Egress     `json:"egress"`
	Security     Security     `json:"security"`
	PIA          PIA          `json:"pia"`
	// Unknown lists the fact groups that could not be gathered. Their values above are placeholders that
	// the policy must not read; every control that depends on them reports "cannot be verified" instead
	// of passing. Optional: an absent list means every group was gathered.
	Unknown []Unknown `json:"unknown,omitempty"`
}

// Device identifies the terminal.
type Device struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Stage string `json:"stage"`
}

// Device kinds and stages.
const (
	KindDoorTerminal = "door_terminal"
	KindCamera       = "camera"
	KindTurnstile    = "turnstile"
	KindKiosk        = "kiosk"
	KindOther        = "other"

	StageProduction = "production"
	StagePilot      = "pilot"
	StageRnDLab     = "rnd_lab"
)

// FR is the face-recognition configuration of the terminal software itself, not counting an override
// the agent has ordered in control.json: a terminal in a hotel room stays "enabled" here while the agent
// keeps it switched off, so the violation stays visible until a person removes the device.
type FR struct {
	Enabled bool   `json:"enabled"`
	Mode    string `json:"mode"`
	Purpose string `json:"purpose"`
}

// Location is installer-attested (site.yaml).
type Location struct {
	Category           string  `json:"category"`
	PublicPlace        bool    `json:"public_place"`
	PrivateSpace       bool    `json:"private_space"`
	NecessityRef       *string `json:"necessity_ref"`
	CaptureZoneDefined bool    `json:"capture_zone_defined"`
}

// Signage is the conspicuous sign of Art. 13.
type Signage struct {
	Present    bool       `json:"present"`
	Evidence   string     `json:"evidence"`
	VerifiedAt *time.Time `json:"verified_at"`
}

// Notice is what the terminal tells a person before enrolment (Art. 5).
type Notice struct {
	ShownBeforeCapture bool     `json:"shown_before_capture"`
	Fields             []string `json:"fields"`
	RetentionDays      int      `json:"retention_days"`
}

// Alternatives are the non-face ways through (Art. 10).
type Alternatives struct {
	Configured        []string `json:"configured"`
	Healthy           []string `json:"healthy"`
	RefuseOptionShown bool     `json:"refuse_option_shown"`
}

// Subjects aggregates the gallery. Counts only, never a subject reference.
type Subjects struct {
	Count                 int `json:"count"`
	WithoutConsent        int `json:"without_consent"`
	WithdrawnPending      int `json:"withdrawn_pending"`
	WithdrawnOldestS      int `json:"withdrawn_oldest_s"`
	MinorsWithoutGuardian int `json:"minors_without_guardian"`
	BeyondRetention       int `json:"beyond_retention"`
	StoredOffDevice       int `json:"stored_off_device"`
}

// RawImages aggregates the raw capture spool.
type RawImages struct {
	Count      int `json:"count"`
	OldestAgeS int `json:"oldest_age_s"`
	Consented  int `json:"consented"`
}

// Egress is one flow leaving the device, declared by the terminal or observed in proc/net/tcp.
type Egress struct {
	Dest     string `json:"dest"`
	Internet bool   `json:"internet"`
	Data     string `json:"data"`
	Consent  string `json:"consent"`
}

// Egress data kinds and consent bases. EgressUnknown marks a connection the agent observed but the
// terminal did not declare: what it carries is unknown, so it is treated as if it could carry face data.
const (
	EgressTemplate    = "template"
	EgressRawImage    = "raw_image"
	EgressVideo       = "video"
	EgressMatchResult = "match_result"
	EgressMetadata    = "metadata"
	EgressUnknown     = "unknown"

	ConsentSeparate = "separate"
	ConsentLaw      = "law"
	ConsentNone     = "none"
)

// Security is the Art. 14 posture.
type Security struct {
	StorageEncrypted   bool `json:"storage_encrypted"`
	TransportTLS       bool `json:"transport_tls"`
	AuditLog           bool `json:"audit_log"`
	AccessControl      bool `json:"access_control"`
	IntrusionDetection bool `json:"intrusion_detection"`
	DefaultCredentials bool `json:"default_credentials"`
}

// PIA is the personal-information impact assessment covering the device (Art. 9).
type PIA struct {
	Ref         *string    `json:"ref"`
	CompletedAt *time.Time `json:"completed_at"`
	Purpose     *string    `json:"purpose"`
}

// Unknown records one fact group that could not be gathered and why. Reason names a file and a parse
// or read error; it never carries file contents.
type Unknown struct {
	Fact   string `json:"fact"`
	Source string `json:"source"`
	Reason string `json:"reason"`
}

// Fact groups, the values of Unknown.Fact.
const (
	GroupDevice       = "device"
	GroupFR           = "fr"
	GroupLocation     = "location"
	GroupSignage      = "signage"
	GroupNotice       = "notice"
	GroupAlternatives = "alternatives"
	GroupPrompts      = "prompts"
	GroupSubjects     = "subjects"
	GroupRawImages    = "raw_images"
	GroupEgress       = "egress"
	GroupSecurity     = "security"
	GroupPIA          = "pia"
)

// IsUnknown reports whether group could not be gathered.
func (f *Facts) IsUnknown(group string) bool {
	for _, u := range f.Unknown {
		if u.Fact == group {
			return true
		}
	}
	return false
}

// MarkUnknown records that group could not be gathered from source.
func (f *Facts) MarkUnknown(group, source string, err error) {
	f.Unknown = append(f.Unknown, Unknown{Fact: group, Source: source, Reason: err.Error()})
}

// MarshalJSON writes absent lists as [] rather than null, so what the agent gathers always satisfies the
// schema, which requires the lists.
func (f Facts) MarshalJSON() ([]byte, error) {
	type plain Facts // no methods: avoids recursion
	p := plain(f)
	p.Prompts = orEmpty(p.Prompts)
	p.Egress = orEmpty(p.Egress)
	p.Notice.Fields = orEmpty(p.Notice.Fields)
	p.Alternatives.Configured = orEmpty(p.Alternatives.Configured)
	p.Alternatives.Healthy = orEmpty(p.Alternatives.Healthy)
	return json.Marshal(p)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
