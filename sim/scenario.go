package sim

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faceguard/faceguard/device"
)

// A Scenario is a simulated fleet and what happens to it, in YAML (sim/scenarios/*.yaml are examples):
// how many terminals of which kinds, how many with which fault from the start, how they are grouped in
// sites, how people use them, how the agents are tuned, and a timeline of events — consents withdrawn,
// raw captures, enrolments, coercive prompts, network cuts, agents killed, clocks jumping.
//
//	name: mixed-fleet
//	devices: 1000
//	sites: {per_site: 50}
//	faults: {face_only: 2%, hotel_room: 5}
//	events:
//	  - {at: 30s, do: withdraw_consent, devices: 2%, count: 1}
//	  - {at: 1m, every: 10s, do: raw_captures, devices: 5%, count: 2}
//	  - {at: 2m, do: network_cut, devices: 10%, for: 60s}
//
// Durations are Go's ("90s", "1h30m", "-2h"); shares are a count ("5") or a percentage of the devices
// ("2%", "0.5%"). Unknown keys and bad values are errors that name the key.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Devices is the fleet's size when the command line does not say (faceguard sim --devices).
	Devices int `yaml:"devices"`
	// Prefix starts every device id: PREFIX-00001…; default "sim".
	Prefix string `yaml:"prefix"`
	// Duration is how long the scenario runs once the fleet is up; 0 runs until stopped.
	Duration Duration `yaml:"duration"`
	// Seed chooses which devices get which kind, fault and event; the same seed, the same choice.
	Seed uint64 `yaml:"seed"`

	Sites SiteSpec `yaml:"sites"`
	// Kinds shares the devices among terminal kinds (door_terminal, camera, turnstile, kiosk, other);
	// the devices left over are door terminals.
	Kinds map[string]Share `yaml:"kinds"`
	// Faults gives a share of the devices a fault from the start, one fault per device (see FaultNames).
	Faults   map[string]Share `yaml:"faults"`
	Terminal TerminalSpec     `yaml:"terminal"`
	Agent    AgentSpec        `yaml:"agent"`
	Connect  ConnectSpec      `yaml:"connect"`
	Events   []EventSpec      `yaml:"events"`
}

// SiteSpec groups the devices in sites.
type SiteSpec struct {
	// PerSite devices in each site (default 50), or Count sites with the devices spread evenly.
	PerSite int `yaml:"per_site"`
	Count   int `yaml:"count"`
	// Names are the sites' display names, given in turn to the sites (PREFIX-site-001…, the ids); when
	// there are more sites than names they come round again numbered ("Garden Court #2"), so that no two
	// sites of a fleet look alike on the dashboard. Default: the site id.
	Names []string `yaml:"names"`
}

// TerminalSpec is how people use the terminals.
type TerminalSpec struct {
	// Adults enrolled on each terminal at start; 0 is the profile default, -1 none.
	Adults int `yaml:"adults"`
	// Residents are subject references enrolled on every terminal besides its own people: one
	// fleet-wide forget-subject of one of them gets a receipt from every device.
	Residents        []string `yaml:"residents"`
	RecognitionEvery Duration `yaml:"recognition_every"` // mean time between two people; negative: nobody comes
	EnrolEvery       Duration `yaml:"enrol_every"`       // mean time between two enrolments; 0: none
	StatusEvery      Duration `yaml:"status_every"`
	ControlPollEvery Duration `yaml:"control_poll_every"`
	// RawBacklog is the captures a raw_captures terminal has in its spool at start; default 3.
	RawBacklog int `yaml:"raw_backlog"`
}

// AgentSpec tunes the simulated agents.
type AgentSpec struct {
	EvaluateEvery   Duration `yaml:"evaluate_every"`
	HeartbeatEvery  Duration `yaml:"heartbeat_every"`
	ReconnectJitter Duration `yaml:"reconnect_jitter"`
	StatusMaxAge    Duration `yaml:"status_max_age"`
	InboxSize       int      `yaml:"inbox_size"`
}

// ConnectSpec is how the fleet comes up.
type ConnectSpec struct {
	Concurrency  int      `yaml:"concurrency"`   // devices being brought up at once; default DefaultConnectConcurrency
	ReadyTimeout Duration `yaml:"ready_timeout"` // for one device; default DefaultReadyTimeout
}

// EventSpec is one event of the timeline, once (at) or repeated (every, until until).
type EventSpec struct {
	At    Duration `yaml:"at"`    // after the fleet is up
	Every Duration `yaml:"every"` // repeat; 0: once
	Until Duration `yaml:"until"` // last repetition no later than this; 0: until the end
	Do    string   `yaml:"do"`    // see EventNames
	// Devices is the share of the fleet it happens to, the same devices every time.
	Devices Share `yaml:"devices"`
	// Count per device: consents withdrawn, captures written, people enrolled (default 1).
	Count int `yaml:"count"`
	// For is how long it lasts: a network cut or a dead agent until restored, a coercive prompt until
	// taken off, a clock jump until set right (0: for good, where that means something).
	For Duration `yaml:"for"`
	// Spread hits the devices one after the other over this long instead of all at once.
	Spread Duration `yaml:"spread"`
	By     Duration `yaml:"by"`   // clock_jump: how far, negative backwards
	Mode   string   `yaml:"mode"` // network_cut: blackhole (default; a partition) or drop (connections reset)
}

// Events of a timeline.
const (
	EventWithdrawConsent = "withdraw_consent"
	EventRawCaptures     = "raw_captures"
	EventEnrol           = "enrol"
	EventCoercivePrompt  = "coercive_prompt"
	EventNetworkCut      = "network_cut"
	EventKillAgent       = "kill_agent"
	EventClockJump       = "clock_jump"
)

// EventNames are the events a timeline knows.
var EventNames = []string{EventWithdrawConsent, EventRawCaptures, EventEnrol, EventCoercivePrompt, EventNetworkCut,
	EventKillAgent, EventClockJump}

// faults are the faults a scenario can give devices from the start, by name.
var faults = map[string]func(p *Profile, sc *Scenario){
	"face_only":              func(p *Profile, _ *Scenario) { p.FaceOnly = true },
	"minor_without_guardian": func(p *Profile, _ *Scenario) { p.MinorWithoutGuardian = true },
	"withdrawn_subject":      func(p *Profile, _ *Scenario) { p.WithdrawnSubject = true },
	"raw_captures": func(p *Profile, sc *Scenario) {
		p.RawCaptures, p.RawBacklog = true, 3
		if sc.Terminal.RawBacklog != 0 {
			p.RawBacklog = max(sc.Terminal.RawBacklog, 0)
		}
	},
	"template_upload":     func(p *Profile, _ *Scenario) { p.TemplateUpload, p.PublicPlace, p.Category = true, true, "hotel_lobby" },
	"hotel_room":          func(p *Profile, _ *Scenario) { p.HotelRoom, p.PublicPlace = true, true },
	"coercive_prompt":     func(p *Profile, _ *Scenario) { p.CoercivePrompt = true },
	"sign_removed":        func(p *Profile, _ *Scenario) { p.SignRemoved, p.Category = true, "hotel_lobby" },
	"notice_incomplete":   func(p *Profile, _ *Scenario) { p.NoticeIncomplete = true },
	"unconsented_subject": func(p *Profile, _ *Scenario) { p.UnconsentedSubject = true },
	"default_credentials": func(p *Profile, _ *Scenario) { p.DefaultCredentials = true },
}

// FaultNames are the faults a scenario knows, sorted.
func FaultNames() []string {
	names := make([]string, 0, len(faults))
	for n := range faults {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Duration is a time.Duration written as Go writes one ("90s", "-1h").
type Duration time.Duration

// D is the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads "90s", "1h30m", "-2h", or 0.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as 90s or 1h30m")
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 90s or 1h30m", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as Go does.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Share is a number of devices ("5") or a percentage of the fleet ("2%").
type Share struct {
	N       int
	Percent float64
	IsPct   bool
}

// UnmarshalYAML reads "5", "2%" or "0.5%".
func (s *Share) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a count such as 5 or a percentage such as 2%")
	}
	v := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f < 0 || f > 100 || math.IsNaN(f) {
			return fmt.Errorf("%q is not a percentage from 0%% to 100%%", n.Value)
		}
		*s = Share{Percent: f, IsPct: true}
		return nil
	}
	c, err := strconv.Atoi(v)
	if err != nil || c < 0 {
		return fmt.Errorf("%q is not a count (5) or a percentage (2%%)", n.Value)
	}
	*s = Share{N: c}
	return nil
}

// MarshalYAML writes the share as it is read.
func (s Share) MarshalYAML() (any, error) { return s.String(), nil }

func (s Share) String() string {
	if s.IsPct {
		return strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(s.N)
}

// Of is how many of n devices the share is: a percentage is rounded, and is at least one device when it
// is above zero; a count is at most n.
func (s Share) Of(n int) int {
	if !s.IsPct {
		return min(s.N, n)
	}
	k := int(math.Round(s.Percent * float64(n) / 100))
	if k == 0 && s.Percent > 0 && n > 0 {
		k = 1
	}
	return min(k, n)
}

// IsZero reports whether the share is no device at all.
func (s Share) IsZero() bool { return s.N == 0 && s.Percent == 0 }

//go:embed scenarios/*.yaml
var builtinScenarios embed.FS

// BuiltinScenarios are the names of the scenarios shipped with the simulator (sim/scenarios/NAME.yaml).
func BuiltinScenarios() []string {
	entries, _ := fs.ReadDir(builtinScenarios, "scenarios")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	return names
}

// LoadScenario reads a scenario from a file, or a built-in one by name ("default", "soak").
func LoadScenario(nameOrPath string) (*Scenario, error) {
	data, err := os.ReadFile(nameOrPath)
	if errors.Is(err, fs.ErrNotExist) && !strings.ContainsAny(nameOrPath, `/\.`) {
		data, err = builtinScenarios.ReadFile(path.Join("scenarios", nameOrPath+".yaml"))
		if err != nil {
			return nil, fmt.Errorf("scenario %q: no such file, and not a built-in scenario (%s)", nameOrPath,
				strings.Join(BuiltinScenarios(), ", "))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	sc, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nameOrPath, err)
	}
	return sc, nil
}

// ParseScenario reads and checks a scenario. An error names the key at fault and its line.
func ParseScenario(data []byte) (*Scenario, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("scenario: empty document")
	}
	root := doc.Content[0]
	if err := checkNode(root, reflect.TypeFor[Scenario](), ""); err != nil {
		return nil, err
	}
	var sc Scenario
	if err := root.Decode(&sc); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if err := sc.validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// keyError names a key of the scenario.
func keyError(key string, n *yaml.Node, format string, args ...any) error {
	if key == "" {
		key = "the document"
	}
	return fmt.Errorf("scenario: %s (line %d): %s", key, n.Line, fmt.Sprintf(format, args...))
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	durationType    = reflect.TypeFor[Duration]()
)

// checkNode walks the document along the Go type it will be decoded into: every key must be a field of
// the struct it sits in, and every value must decode into its field's type, so that an error can name
// the key rather than a line and a Go type.
func checkNode(n *yaml.Node, t reflect.Type, key string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		v := reflect.New(t)
		if err := n.Decode(v.Interface()); err != nil {
			return keyError(key, n, "%v", err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return keyError(key, n, "want a mapping of keys (%s)", strings.Join(fieldNames(t), ", "))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, k.Value)
			sub := join(key, k.Value)
			if !ok {
				return keyError(sub, k, "unknown key %q; the keys here are %s", k.Value, strings.Join(fieldNames(t), ", "))
			}
			if err := checkNode(v, f.Type, sub); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return keyError(key, n, "want a mapping")
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkNode(n.Content[i+1], t.Elem(), join(key, n.Content[i].Value)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return keyError(key, n, "want a list")
		}
		for i, e := range n.Content {
			if err := checkNode(e, t.Elem(), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return keyError(key, n, "want a single value")
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err != nil {
		return keyError(key, n, "%q is not a valid %s", n.Value, kindName(t))
	}
	return nil
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "text"
	}
	return t.String()
}

func join(key, sub string) string {
	switch {
	case key == "":
		return sub
	case sub == "":
		return key
	}
	return key + "." + sub
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			names = append(names, tag)
		}
	}
	return names
}

var kindNames = []string{device.KindDoorTerminal, device.KindCamera, device.KindTurnstile, device.KindKiosk, device.KindOther}

// validate checks what the types cannot, naming the key.
func (sc *Scenario) validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("scenario: %s: %s", key, fmt.Sprintf(format, args...))
	}
	if sc.Devices < 0 || sc.Devices > MaxScenarioDevices {
		return bad("devices", "%d is not from 1 to %d", sc.Devices, MaxScenarioDevices)
	}
	if sc.Prefix != "" && !idPattern.MatchString(sc.Prefix+"-00001") {
		return bad("prefix", "%q makes invalid device ids (lower-case letters, digits and -)", sc.Prefix)
	}
	if sc.Duration < 0 {
		return bad("duration", "cannot be negative")
	}
	if sc.Sites.PerSite < 0 || sc.Sites.Count < 0 {
		return bad("sites", "per_site and count cannot be negative")
	}
	if sc.Sites.PerSite > 0 && sc.Sites.Count > 0 {
		return bad("sites", "give per_site or count, not both")
	}
	var pct float64
	count := 0
	for _, k := range slices.Sorted(mapKeys(sc.Kinds)) {
		if !slices.Contains(kindNames, k) {
			return bad("kinds."+k, "unknown kind; the kinds are %s", strings.Join(kindNames, ", "))
		}
		if s := sc.Kinds[k]; s.IsPct {
			pct += s.Percent
		} else {
			count += s.N
		}
	}
	if pct > 100 {
		return bad("kinds", "the percentages add up to %g%%", pct)
	}
	if sc.Devices > 0 && count > sc.Devices {
		return bad("kinds", "%d devices of given kinds, in a fleet of %d", count, sc.Devices)
	}
	pct, count = 0, 0
	for _, f := range slices.Sorted(mapKeys(sc.Faults)) {
		if _, ok := faults[f]; !ok {
			return bad("faults."+f, "unknown fault; the faults are %s", strings.Join(FaultNames(), ", "))
		}
		if s := sc.Faults[f]; s.IsPct {
			pct += s.Percent
		} else {
			count += s.N
		}
	}
	if pct > 100 {
		return bad("faults", "the percentages add up to %g%%: a device has one fault at most", pct)
	}
	if sc.Devices > 0 && count > sc.Devices {
		return bad("faults", "%d devices with a fault, in a fleet of %d", count, sc.Devices)
	}
	for i, r := range sc.Terminal.Residents {
		if r == "" || strings.ContainsAny(r, "\x00\n") {
			return bad(fmt.Sprintf("terminal.residents[%d]", i), "%q is not a subject reference", r)
		}
	}
	for key, d := range map[string]Duration{"terminal.status_every": sc.Terminal.StatusEvery,
		"terminal.control_poll_every": sc.Terminal.ControlPollEvery, "terminal.enrol_every": sc.Terminal.EnrolEvery,
		"agent.evaluate_every": sc.Agent.EvaluateEvery, "agent.heartbeat_every": sc.Agent.HeartbeatEvery,
		"agent.reconnect_jitter": sc.Agent.ReconnectJitter, "agent.status_max_age": sc.Agent.StatusMaxAge,
		"connect.ready_timeout": sc.Connect.ReadyTimeout} {
		if d < 0 {
			return bad(key, "cannot be negative")
		}
	}
	if sc.Agent.InboxSize < 0 {
		return bad("agent.inbox_size", "cannot be negative")
	}
	if sc.Connect.Concurrency < 0 {
		return bad("connect.concurrency", "cannot be negative")
	}
	proxied := 0.0
	for i := range sc.Events {
		if err := sc.Events[i].validate(fmt.Sprintf("events[%d]", i), sc.Duration.D()); err != nil {
			return err
		}
		if e := sc.Events[i]; e.Do == EventNetworkCut || e.Do == EventKillAgent {
			if e.Devices.IsPct {
				proxied += e.Devices.Percent
			}
		}
	}
	if proxied > 100 {
		return bad("events", "network cuts and agent kills take %g%% of the devices: each device can be in one of them", proxied)
	}
	return nil
}

// MaxScenarioDevices bounds a scenario's fleet.
const MaxScenarioDevices = 100000

func (e *EventSpec) validate(key string, total time.Duration) error {
	bad := func(sub, format string, args ...any) error {
		return fmt.Errorf("scenario: %s: %s", join(key, sub), fmt.Sprintf(format, args...))
	}
	if !slices.Contains(EventNames, e.Do) {
		return bad("do", "%q is not an event; the events are %s", e.Do, strings.Join(EventNames, ", "))
	}
	if e.Devices.IsZero() {
		return bad("devices", "required: how many devices (5) or what share of the fleet (2%%)")
	}
	for sub, d := range map[string]Duration{"at": e.At, "every": e.Every, "until": e.Until, "for": e.For, "spread": e.Spread} {
		if d < 0 {
			return bad(sub, "cannot be negative")
		}
	}
	if e.Until > 0 && e.Every == 0 {
		return bad("until", "only with every")
	}
	if e.Until > 0 && e.Until < e.At {
		return bad("until", "%s is before at (%s)", e.Until, e.At)
	}
	if e.Count < 0 {
		return bad("count", "cannot be negative")
	}
	switch e.Do {
	case EventWithdrawConsent, EventRawCaptures, EventEnrol:
		if e.For != 0 || e.By != 0 || e.Mode != "" {
			return bad("", "%s takes count, not for, by or mode", e.Do)
		}
	case EventCoercivePrompt:
		if e.Count != 0 || e.By != 0 || e.Mode != "" {
			return bad("", "%s takes for (how long the prompt stays), not count, by or mode", e.Do)
		}
	case EventNetworkCut, EventKillAgent:
		if e.For <= 0 {
			return bad("for", "required: how long the %s lasts", strings.ReplaceAll(e.Do, "_", " "))
		}
		if e.Count != 0 || e.By != 0 || e.Spread != 0 {
			return bad("", "%s takes for (and mode for a cut), not count, by or spread: the devices go down together", e.Do)
		}
		if e.Do == EventKillAgent && e.Mode != "" {
			return bad("mode", "only for network_cut")
		}
		if e.Mode != "" && e.Mode != "blackhole" && e.Mode != "drop" {
			return bad("mode", "%q: want blackhole (a partition) or drop (connections reset)", e.Mode)
		}
	case EventClockJump:
		if e.By == 0 {
			return bad("by", "required: how far the clock jumps (-1h goes back an hour)")
		}
		if e.Count != 0 || e.Mode != "" {
			return bad("", "%s takes by and for, not count or mode", e.Do)
		}
	}
	if e.Every > 0 && e.Every <= e.For+e.Spread {
		return bad("every", "%s is not longer than for + spread (%s): the next would start before this one ends", e.Every, e.For+e.Spread)
	}
	if total > 0 && e.At.D() > total {
		return bad("at", "%s is after the end of the scenario (duration %s)", e.At, total)
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// IDPrefix starts the scenario's device ids (PREFIX-00001…): Prefix, or "sim".
func (sc *Scenario) IDPrefix() string {
	if sc.Prefix == "" {
		return "sim"
	}
	return sc.Prefix
}

// Profiles makes the n terminals of the scenario: ids PREFIX-00001…, in sites, with the kinds and faults
// shared out as the scenario says (which device gets what is chosen by the seed, the same every time).
func (sc *Scenario) Profiles(n int) []Profile {
	prefix := sc.IDPrefix()
	perSite := sc.Sites.PerSite
	switch {
	case sc.Sites.Count > 0:
		perSite = (n + sc.Sites.Count - 1) / sc.Sites.Count
	case perSite == 0:
		perSite = 50
	}
	out := make([]Profile, n)
	for i := range out {
		site := fmt.Sprintf("%s-site-%03d", prefix, i/perSite+1)
		name := site
		if names := sc.Sites.Names; len(names) > 0 {
			k := i / perSite
			name = names[k%len(names)]
			if round := k / len(names); round > 0 {
				name = fmt.Sprintf("%s #%d", name, round+1)
			}
		}
		out[i] = Profile{ID: fmt.Sprintf("%s-%05d", prefix, i+1), Site: site, SiteName: name,
			Adults: sc.Terminal.Adults, Residents: sc.Terminal.Residents,
			RecognitionEvery: sc.Terminal.RecognitionEvery.D(), EnrolEvery: sc.Terminal.EnrolEvery.D(),
			StatusEvery: sc.Terminal.StatusEvery.D(), ControlPollEvery: sc.Terminal.ControlPollEvery.D()}
	}
	assign := func(shares map[string]Share, salt uint64, apply func(p *Profile, name string)) {
		order := sc.permutation(n, salt)
		next := 0
		for _, name := range slices.Sorted(mapKeys(shares)) {
			for range shares[name].Of(n) {
				if next == len(order) {
					return
				}
				apply(&out[order[next]], name)
				next++
			}
		}
	}
	assign(sc.Kinds, 1, func(p *Profile, kind string) { p.Kind = kind })
	assign(sc.Faults, 2, func(p *Profile, fault string) { faults[fault](p, sc) })
	return out
}

// permutation is a shuffle of 0…n-1 fixed by the scenario's seed and a salt.
func (sc *Scenario) permutation(n int, salt uint64) []int {
	rng := rand.New(rand.NewPCG(sc.Seed, salt*0x9e3779b97f4a7c15+1))
	return rng.Perm(n)
}

// FleetOptions fills the fleet's timing and tuning from the scenario (the caller sets the rest).
func (sc *Scenario) FleetOptions(o *FleetOptions) {
	o.EvaluateEvery = sc.Agent.EvaluateEvery.D()
	o.HeartbeatEvery = sc.Agent.HeartbeatEvery.D()
	o.ReconnectJitter = sc.Agent.ReconnectJitter.D()
	o.StatusMaxAge = sc.Agent.StatusMaxAge.D()
	o.InboxSize = sc.Agent.InboxSize
	o.ConnectConcurrency = sc.Connect.Concurrency
	o.ReadyTimeout = sc.Connect.ReadyTimeout.D()
}
