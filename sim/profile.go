package sim

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/faceguard/faceguard/device"
)

// Defaults of a Profile's zero values.
const (
	DefaultKind             = device.KindDoorTerminal
	DefaultCategory         = "residential_gate"
	DefaultPurpose          = "access_control"
	DefaultModel            = "SIM-900"
	DefaultFirmware         = "1.0.0-sim"
	DefaultAdults           = 8
	DefaultRecognitionEvery = 20 * time.Second
	DefaultStatusEvery      = 5 * time.Second
	DefaultControlPollEvery = time.Second
	DefaultWithdrawnAge     = 2 * time.Hour
	DefaultRetentionDays    = 365
)

// Profile is one simulated terminal: where it is, what it is, and what is wrong with it. The zero value of
// every field but ID and Site is a sensible default, so Profile{ID: "gate-01", Site: "garden-court"} is
// a compliant residential gate: a door terminal in 1:1 verification for access control, with a card
// reader and PIN pad that work, a notice, an impact assessment, eight consenting adults enrolled, no raw
// captures kept and nothing sent to the internet.
type Profile struct {
	ID       string // device id, [a-z0-9-]{1,64}, unique in the fleet
	Site     string // site id, [a-z0-9-]{1,64}
	SiteName string // free text; default: Site
	Kind     string // door_terminal (default) | camera | turnstile | kiosk | other
	// Category is a category of the policy vocabulary; default residential_gate, or hotel_guest_room for
	// a HotelRoom.
	Category string
	// PublicPlace: a public place (公共场所). The terminal then also has a conspicuous sign (verified a
	// month ago), a documented necessity and a defined capture zone, as a lawful public deployment does.
	PublicPlace bool
	Purpose     string // fr.purpose; default access_control. The impact assessment covers the same purpose.
	Model       string // default DefaultModel
	Firmware    string // default DefaultFirmware

	// Faults. Each makes the terminal break one control of the pack.

	// HotelRoom: installed in a hotel guest room (category hotel_guest_room), a private space where face
	// recognition is prohibited (FRM-13-PRIVATE-SPACE). The agent switches face recognition off; the
	// terminal's own configuration keeps it on, so the violation stays until someone removes the device.
	HotelRoom bool
	// SignRemoved: a public place (PublicPlace is implied) whose sign is missing (FRM-13-SIGNAGE).
	SignRemoved bool
	// RawCaptures: the terminal keeps a placeholder raw capture of every recognition instead of deleting
	// it (FRM-08-RAW-IMAGES once one reaches raw_image_max_s); the agent deletes them.
	RawCaptures bool
	// RawBacklog: captures already in the spool at start, an hour old (a backlog left by the firmware).
	RawBacklog int
	// TemplateUpload: the terminal declares a template upload to an internet address without consent and
	// has an established connection to it (FRM-08-LOCAL-STORAGE). When control.json blocks face-data
	// egress it stops uploading for good: the flow leaves status.json and the connection proc/net/tcp.
	TemplateUpload bool
	// FaceOnly: a card reader is configured but not healthy and no "not by face" option is shown
	// (FRM-10-ALTERNATIVE). When control.json requires the alternatives on, the card reader comes on and
	// the refuse option is shown, for good.
	FaceOnly bool
	// MinorWithoutGuardian: an under-14 enrolled with separate consent but no guardian's (FRM-07-MINORS).
	// The agent quarantines the template; it stays quarantined until a guardian consents.
	MinorWithoutGuardian bool
	// UnconsentedSubject: an adult enrolled with consent basis none (FRM-06-CONSENT).
	UnconsentedSubject bool
	// WithdrawnSubject: the first enrolled adult withdraws consent, at start or WithdrawAfter later
	// (FRM-06-WITHDRAWAL once the withdrawal is older than withdrawal_purge_max_s). The agent purges the
	// subject and reports a receipt.
	WithdrawnSubject bool
	WithdrawAfter    time.Duration // 0: the withdrawal is in the gallery from the start
	// WithdrawnAge dates the withdrawal this long before it is written (taken at the front desk, synced
	// late). Default DefaultWithdrawnAge, past the policy's one-hour purge limit, so the agent purges at
	// once; a tiny positive value makes the agent wait the policy's full limit.
	WithdrawnAge time.Duration
	// CoercivePrompt: the screen says face is the only way through (FRM-12-NO-COERCION).
	CoercivePrompt bool
	// NoticeIncomplete: the notice leaves out the impact and the rights (FRM-05-NOTICE); the agent blocks
	// enrolment and the terminal refuses new enrolments.
	NoticeIncomplete bool
	// DefaultCredentials: the factory credentials still work (FRM-14-SECURITY).
	DefaultCredentials bool

	// Subjects and behaviour.

	// Adults enrolled at start with separate consent; 0 means DefaultAdults, a negative number none.
	Adults int
	// Residents are subject references enrolled (adults, separate consent) besides the device's own: the
	// same person on several doors of a site, counted once by the filing tracker and forgotten on every
	// door by one fleet-wide forget-subject.
	Residents []string
	// RecognitionEvery is the mean time between two recognitions; 0 means DefaultRecognitionEvery, a
	// negative value none.
	RecognitionEvery time.Duration
	// EnrolEvery is the mean time between two enrolments of a new consenting adult; 0: none.
	EnrolEvery time.Duration
	// StatusEvery: status.json is rewritten with a fresh updated_at at least this often (and at once on
	// every change of state); 0 means DefaultStatusEvery.
	StatusEvery time.Duration
	// ControlPollEvery: how often the terminal looks for a new control.json; 0 means
	// DefaultControlPollEvery.
	ControlPollEvery time.Duration
}

var idPattern = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

var categoryPattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

var purposes = []string{"access_control", "attendance", "payment", "public_security", "identity_verification", "marketing", "other"}

var kinds = []string{device.KindDoorTerminal, device.KindCamera, device.KindTurnstile, device.KindKiosk, device.KindOther}

// normalized fills in the defaults and checks the profile.
func (p Profile) normalized() (Profile, error) {
	if !idPattern.MatchString(p.ID) {
		return p, fmt.Errorf("sim: profile id %q does not match [a-z0-9-]{1,64}", p.ID)
	}
	if !idPattern.MatchString(p.Site) {
		return p, fmt.Errorf("sim: profile %s: site %q does not match [a-z0-9-]{1,64}", p.ID, p.Site)
	}
	if p.SiteName == "" {
		p.SiteName = p.Site
	}
	if p.Kind == "" {
		p.Kind = DefaultKind
	}
	if !slices.Contains(kinds, p.Kind) {
		return p, fmt.Errorf("sim: profile %s: kind %q is not one of %v", p.ID, p.Kind, kinds)
	}
	switch {
	case p.HotelRoom:
		p.Category = "hotel_guest_room"
	case p.Category == "":
		p.Category = DefaultCategory
	}
	if !categoryPattern.MatchString(p.Category) {
		return p, fmt.Errorf("sim: profile %s: category %q does not match [a-z0-9_]{1,64}", p.ID, p.Category)
	}
	if p.SignRemoved {
		p.PublicPlace = true
	}
	if p.Purpose == "" {
		p.Purpose = DefaultPurpose
	}
	if !slices.Contains(purposes, p.Purpose) {
		return p, fmt.Errorf("sim: profile %s: purpose %q is not one of %v", p.ID, p.Purpose, purposes)
	}
	if p.Model == "" {
		p.Model = DefaultModel
	}
	if p.Firmware == "" {
		p.Firmware = DefaultFirmware
	}
	switch {
	case p.Adults == 0:
		p.Adults = DefaultAdults
	case p.Adults < 0:
		p.Adults = 0
	}
	if p.WithdrawnSubject && p.Adults == 0 {
		p.Adults = 1 // someone has to withdraw
	}
	if p.WithdrawnAge <= 0 {
		p.WithdrawnAge = DefaultWithdrawnAge
	}
	if p.RecognitionEvery == 0 {
		p.RecognitionEvery = DefaultRecognitionEvery
	}
	if p.StatusEvery <= 0 {
		p.StatusEvery = DefaultStatusEvery
	}
	if p.ControlPollEvery <= 0 {
		p.ControlPollEvery = DefaultControlPollEvery
	}
	if p.RawBacklog < 0 || p.WithdrawAfter < 0 || p.EnrolEvery < 0 {
		return p, fmt.Errorf("sim: profile %s: RawBacklog, WithdrawAfter and EnrolEvery cannot be negative", p.ID)
	}
	return p, nil
}

// Sites of the demo fleet.
const (
	DemoResidentialSite = "garden-court"
	DemoHotelSite       = "lakeside-hotel"
)

// DemoResidents are residents of Garden Court enrolled at each of its doors: `faceguard fleet forget
// --subject resident-0001` against the demo gets a receipt from every door that held them.
var DemoResidents = []string{"resident-0001", "resident-0002", "resident-0003"}

// DemoProfiles is a small mixed fleet for the demo: a dozen terminals at a residential compound and a
// hotel, half of them with a fault, so that an operator watching the dashboard sees the agents find each
// one and, where the policy lets them, fix it: the guest-room camera gets face recognition switched off
// (and stays a violation until it is removed), the piled-up raw captures disappear, the withdrawn subject
// is purged with a receipt, the template upload stops, the face-only door gets its card reader back, the
// minor is quarantined (until a guardian consents), and the missing sign and the coercive prompt stay
// reported for a person to fix.
func DemoProfiles() []Profile {
	const gc, gcName = DemoResidentialSite, "花园小区 / Garden Court"
	const lh, lhName = DemoHotelSite, "湖畔酒店 / Lakeside Hotel"
	return []Profile{
		// Garden Court: gates and doors of a residential compound.
		{ID: "gc-gate-north", Site: gc, SiteName: gcName, Residents: DemoResidents},
		{ID: "gc-gate-south", Site: gc, SiteName: gcName, Residents: DemoResidents, EnrolEvery: 2 * time.Minute},
		{ID: "gc-door-b2", Site: gc, SiteName: gcName, Residents: DemoResidents, FaceOnly: true},
		{ID: "gc-gate-east", Site: gc, SiteName: gcName, Residents: DemoResidents, MinorWithoutGuardian: true},
		{ID: "gc-gate-west", Site: gc, SiteName: gcName, Residents: DemoResidents, WithdrawnSubject: true, WithdrawAfter: 20 * time.Second},
		{ID: "gc-garage", Site: gc, SiteName: gcName, Kind: device.KindCamera, Category: "parking",
			RawCaptures: true, RawBacklog: 6, RecognitionEvery: 15 * time.Second},

		// Lakeside Hotel: a public place, with one camera where no camera may be.
		{ID: "lh-lobby-kiosk-1", Site: lh, SiteName: lhName, Kind: device.KindKiosk, Category: "hotel_lobby",
			PublicPlace: true, Purpose: "identity_verification", TemplateUpload: true},
		{ID: "lh-lobby-kiosk-2", Site: lh, SiteName: lhName, Kind: device.KindKiosk, Category: "hotel_lobby",
			PublicPlace: true, Purpose: "identity_verification"},
		{ID: "lh-lobby-cam", Site: lh, SiteName: lhName, Kind: device.KindCamera, Category: "hotel_lobby",
			SignRemoved: true, Purpose: "identity_verification"},
		{ID: "lh-room-1208", Site: lh, SiteName: lhName, Kind: device.KindCamera, HotelRoom: true,
			PublicPlace: true, Purpose: "identity_verification"},
		{ID: "lh-staff-turnstile", Site: lh, SiteName: lhName, Kind: device.KindTurnstile, Category: "building_entrance",
			CoercivePrompt: true, Purpose: "attendance"},
		{ID: "lh-staff-door", Site: lh, SiteName: lhName, Category: "building_entrance"},
	}
}
