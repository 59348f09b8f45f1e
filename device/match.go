package device

// MatchInput is the input of data.faceguard.match: may a face match of this subject be used right now?
// The agent fills it from the gallery and its own control state; terminal software only names the subject.
type MatchInput struct {
	Subject  MatchSubject  `json:"subject"`
	Terminal MatchTerminal `json:"terminal"`
}

// MatchSubject is what the gallery says about the matched subject. Never the subject reference itself.
type MatchSubject struct {
	Found           bool   `json:"found"`
	Consent         string `json:"consent"` // separate | guardian | law | none
	Withdrawn       bool   `json:"withdrawn"`
	AgeBand         string `json:"age_band"` // under_14 | 14_17 | adult | unknown
	GuardianConsent bool   `json:"guardian_consent"`
	Quarantined     bool   `json:"quarantined"`
}

// MatchTerminal is the terminal's state as the agent orders it.
type MatchTerminal struct {
	FaceRecognitionAllowed bool `json:"face_recognition_allowed"`
}

// MatchResult is data.faceguard.match. When Allow is false the terminal must not use the match and must
// offer another way through; Message says so to the person.
type MatchResult struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
	Message Text     `json:"message"`
}

// Age bands and consent bases of the gallery.
const (
	AgeUnder14 = "under_14"
	Age14to17  = "14_17"
	AgeAdult   = "adult"
	AgeUnknown = "unknown"

	BasisSeparate = "separate"
	BasisGuardian = "guardian"
	BasisLaw      = "law"
	BasisNone     = "none"
)

// Clone returns a copy that shares nothing with r, so a cached answer cannot be changed by a caller.
func (r MatchResult) Clone() MatchResult {
	r.Reasons = append(make([]string, 0, len(r.Reasons)), r.Reasons...)
	return r
}
