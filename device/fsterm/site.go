package fsterm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/faceguard/faceguard/device"
)

// SiteSchema is the value site.yaml must carry in its schema key.
const SiteSchema = "faceguard.site/v1"

// maxSiteBytes bounds site.yaml: a real one is under a kilobyte.
const maxSiteBytes = 1 << 20

// siteGroups are the fact groups site.yaml gives, in the order they are reported.
var siteGroups = []string{device.GroupDevice, device.GroupLocation, device.GroupSignage, device.GroupNotice, device.GroupPIA}

// Enumerations of the facts schema that site.yaml values must belong to.
var (
	deviceKinds      = []string{device.KindDoorTerminal, device.KindCamera, device.KindTurnstile, device.KindKiosk, device.KindOther}
	deviceStages     = []string{device.StageProduction, device.StagePilot, device.StageRnDLab}
	signageEvidences = []string{"photo_audit", "installer_attestation", "sensor", "none"}
	noticeFields     = []string{"processor_contact", "purpose", "method", "retention_period", "impact", "rights"}
	frModes          = []string{"verify_1to1", "identify_1toN", "off"}
	frPurposes       = []string{"access_control", "attendance", "payment", "public_security", "identity_verification", "marketing", "other"}
)

// siteResult is what the rest of Facts needs from site.yaml besides the facts themselves.
type siteResult struct {
	known       bool // the file was accepted as a whole, so allowed is the installer's allow-list
	noticeKnown bool // notice.retention_days can be used for the gallery's retention count
	siteID      string
	siteName    string
	deviceID    string
	allowed     allowList
}

// collectSite reads site.yaml into f, parsed through last (nil: parsed anew). A file that cannot be read
// or is refused as a whole makes every group it gives unknown; a broken section makes only its own
// group unknown.
func collectSite(path string, last *lastParse[*siteDoc], f *device.Facts) siteResult {
	data, err := readFile(path, maxSiteBytes)
	if err == nil {
		var doc *siteDoc
		doc, err = last.parse(data, parseSite)
		if err == nil {
			return doc.apply(f)
		}
	}
	for _, g := range siteGroups {
		markUnknown(f, g, SitePath, err)
	}
	return siteResult{}
}

// siteDoc is a parsed site.yaml: the values of the sections that were valid, and for each fact group
// that was not, the reason.
type siteDoc struct {
	siteID, siteName string
	allowed          allowList
	device           device.Device
	location         device.Location
	signage          device.Signage
	notice           device.Notice
	pia              device.PIA
	errs             map[string]error
}

// apply copies the valid sections into f and marks the others unknown. The document may be a kept
// parse: f gets copies of its lists, which the gathering goes on to change.
func (d *siteDoc) apply(f *device.Facts) siteResult {
	res := siteResult{known: true, siteID: d.siteID, siteName: d.siteName, allowed: d.allowed}
	for _, g := range siteGroups {
		if err := d.errs[g]; err != nil {
			markUnknown(f, g, SitePath, err)
			continue
		}
		switch g {
		case device.GroupDevice:
			f.Device.Kind, f.Device.Stage = d.device.Kind, d.device.Stage
			res.deviceID = d.device.ID
		case device.GroupLocation:
			f.Location = d.location
		case device.GroupSignage:
			f.Signage = d.signage
		case device.GroupNotice:
			f.Notice = d.notice
			f.Notice.Fields = slices.Clone(d.notice.Fields)
			res.noticeKnown = true
		case device.GroupPIA:
			f.PIA = d.pia
		}
	}
	return res
}

// siteFile is the top level of site.yaml. Sections stay nodes so that each is decoded on its own and a
// broken one does not take the others down; KnownFields refuses an unknown top-level key.
type siteFile struct {
	Schema   yaml.Node `yaml:"schema"`
	Site     yaml.Node `yaml:"site"`
	Device   yaml.Node `yaml:"device"`
	Location yaml.Node `yaml:"location"`
	Signage  yaml.Node `yaml:"signage"`
	Notice   yaml.Node `yaml:"notice"`
	PIA      yaml.Node `yaml:"pia"`
	Network  yaml.Node `yaml:"network"`
}

// Sections of site.yaml. Required values are pointers so that a missing or null one is told apart from
// false or zero: a missing public_place must not read as "not a public place".
type (
	siteSection struct {
		ID   *string `yaml:"id"`
		Name *string `yaml:"name"`
	}
	networkSection struct {
		AllowedRemotes []string `yaml:"allowed_remotes"`
	}
	deviceSection struct {
		ID    *string `yaml:"id"`
		Kind  *string `yaml:"kind"`
		Stage *string `yaml:"stage"`
	}
	locationSection struct {
		Category           *string `yaml:"category"`
		PublicPlace        *bool   `yaml:"public_place"`
		PrivateSpace       *bool   `yaml:"private_space"`
		NecessityRef       *string `yaml:"necessity_ref"`
		CaptureZoneDefined *bool   `yaml:"capture_zone_defined"`
	}
	signageSection struct {
		Present    *bool      `yaml:"present"`
		Evidence   *string    `yaml:"evidence"`
		VerifiedAt *timestamp `yaml:"verified_at"`
	}
	noticeSection struct {
		ShownBeforeCapture *bool        `yaml:"shown_before_capture"`
		Fields             *[]string    `yaml:"fields"`
		RetentionDays      *wholeNumber `yaml:"retention_days"`
	}
	piaSection struct {
		Ref         *string    `yaml:"ref"`
		CompletedAt *timestamp `yaml:"completed_at"`
		Purpose     *string    `yaml:"purpose"`
	}
)

// parseSite parses site.yaml. The error refuses the whole file: not YAML, an unknown top-level key, a
// wrong schema, or a broken site or network section (they are not facts, so there is no group to mark).
func parseSite(data []byte) (*siteDoc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var top siteFile
	if err := dec.Decode(&top); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty")
		}
		return nil, yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}

	var schema string
	if err := decodeScalar(&top.Schema, "schema", &schema); err != nil {
		return nil, err
	}
	if schema != SiteSchema {
		return nil, fmt.Errorf("schema: want %s, got %s", SiteSchema, quote(schema))
	}

	doc := &siteDoc{errs: map[string]error{}}
	var site siteSection
	if err := decodeSection(&top.Site, "site", &site); err != nil {
		return nil, err
	}
	if site.ID == nil {
		return nil, errors.New("site.id: missing")
	}
	if !idPattern.MatchString(*site.ID) {
		return nil, fmt.Errorf("site.id: %s does not match [a-z0-9-]{1,64}", quote(*site.ID))
	}
	doc.siteID = *site.ID
	if site.Name != nil {
		doc.siteName = *site.Name
	}

	// network is optional: a site with nothing to allow has no allow-list.
	var network networkSection
	if top.Network.Kind != 0 {
		if err := decodeSection(&top.Network, "network", &network); err != nil {
			return nil, err
		}
	}
	allowed, err := parseAllowList(network.AllowedRemotes)
	if err != nil {
		return nil, fmt.Errorf("network.allowed_remotes: %w", err)
	}
	doc.allowed = allowed

	doc.errs[device.GroupDevice] = doc.parseDevice(&top.Device)
	doc.errs[device.GroupLocation] = doc.parseLocation(&top.Location)
	doc.errs[device.GroupSignage] = doc.parseSignage(&top.Signage)
	doc.errs[device.GroupNotice] = doc.parseNotice(&top.Notice)
	doc.errs[device.GroupPIA] = doc.parsePIA(&top.PIA)
	return doc, nil
}

func (d *siteDoc) parseDevice(n *yaml.Node) error {
	var s deviceSection
	if err := decodeSection(n, "device", &s); err != nil {
		return err
	}
	if err := required("device", map[string]bool{"id": s.ID != nil, "kind": s.Kind != nil, "stage": s.Stage != nil}); err != nil {
		return err
	}
	if !idPattern.MatchString(*s.ID) {
		return fmt.Errorf("device.id: %s does not match [a-z0-9-]{1,64}", quote(*s.ID))
	}
	if err := oneOf("device.kind", *s.Kind, deviceKinds); err != nil {
		return err
	}
	if err := oneOf("device.stage", *s.Stage, deviceStages); err != nil {
		return err
	}
	d.device = device.Device{ID: *s.ID, Kind: *s.Kind, Stage: *s.Stage}
	return nil
}

func (d *siteDoc) parseLocation(n *yaml.Node) error {
	var s locationSection
	if err := decodeSection(n, "location", &s); err != nil {
		return err
	}
	if err := required("location", map[string]bool{
		"category": s.Category != nil, "public_place": s.PublicPlace != nil,
		"private_space": s.PrivateSpace != nil, "capture_zone_defined": s.CaptureZoneDefined != nil,
	}); err != nil {
		return err
	}
	// Whether the category is in the vocabulary is the policy's call (an unknown one makes location
	// unknown there); here only its syntax is checked, so that the document validates.
	if !categoryPattern(*s.Category) {
		return fmt.Errorf("location.category: %s does not match [a-z0-9_]{1,64}", quote(*s.Category))
	}
	if err := maxRunes("location.necessity_ref", s.NecessityRef, 256); err != nil {
		return err
	}
	d.location = device.Location{
		Category:           *s.Category,
		PublicPlace:        *s.PublicPlace,
		PrivateSpace:       *s.PrivateSpace,
		NecessityRef:       s.NecessityRef,
		CaptureZoneDefined: *s.CaptureZoneDefined,
	}
	return nil
}

func (d *siteDoc) parseSignage(n *yaml.Node) error {
	var s signageSection
	if err := decodeSection(n, "signage", &s); err != nil {
		return err
	}
	if err := required("signage", map[string]bool{"present": s.Present != nil, "evidence": s.Evidence != nil}); err != nil {
		return err
	}
	if err := oneOf("signage.evidence", *s.Evidence, signageEvidences); err != nil {
		return err
	}
	d.signage = device.Signage{Present: *s.Present, Evidence: *s.Evidence, VerifiedAt: s.VerifiedAt.timePtr()}
	return nil
}

func (d *siteDoc) parseNotice(n *yaml.Node) error {
	var s noticeSection
	if err := decodeSection(n, "notice", &s); err != nil {
		return err
	}
	if err := required("notice", map[string]bool{
		"shown_before_capture": s.ShownBeforeCapture != nil, "fields": s.Fields != nil, "retention_days": s.RetentionDays != nil,
	}); err != nil {
		return err
	}
	if err := uniqueOf("notice.fields", *s.Fields, noticeFields); err != nil {
		return err
	}
	days := int64(*s.RetentionDays)
	if days < 0 || days > maxCount {
		return fmt.Errorf("notice.retention_days: %d is outside 0..%d", days, maxCount)
	}
	d.notice = device.Notice{ShownBeforeCapture: *s.ShownBeforeCapture, Fields: *s.Fields, RetentionDays: int(days)}
	return nil
}

func (d *siteDoc) parsePIA(n *yaml.Node) error {
	var s piaSection
	if err := decodeSection(n, "pia", &s); err != nil {
		return err
	}
	if err := maxRunes("pia.ref", s.Ref, 256); err != nil {
		return err
	}
	// The assessed purpose is compared with fr.purpose, so a value outside that vocabulary can only be a
	// typo: refuse it rather than report a purpose mismatch.
	if s.Purpose != nil {
		if err := oneOf("pia.purpose", *s.Purpose, frPurposes); err != nil {
			return err
		}
	}
	d.pia = device.PIA{Ref: s.Ref, CompletedAt: s.CompletedAt.timePtr(), Purpose: s.Purpose}
	return nil
}

// decodeScalar decodes a required top-level scalar.
func decodeScalar(n *yaml.Node, name string, out *string) error {
	if n.Kind == 0 || isNull(n) {
		return fmt.Errorf("%s: missing", name)
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %s: want a string", n.Line, name)
	}
	*out = n.Value
	return nil
}

// decodeSection decodes one section strictly. Node.Decode has no KnownFields, so unknown and repeated
// keys are refused here first, with the line, as the top-level decoder would.
func decodeSection(n *yaml.Node, name string, out any) error {
	if n.Kind == 0 {
		return fmt.Errorf("section %s missing", name)
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: want a mapping", n.Line, name)
	}
	known := fieldNames(reflect.TypeOf(out).Elem(), "yaml")
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || !known[k.Value] {
			return fmt.Errorf("line %d: field %s not found in %s", k.Line, quote(k.Value), name)
		}
		if seen[k.Value] {
			return fmt.Errorf("line %d: %s.%s repeated", k.Line, name, k.Value)
		}
		seen[k.Value] = true
	}
	if err := n.Decode(out); err != nil {
		return fmt.Errorf("%s: %w", name, yamlError(err))
	}
	return nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// fieldNames lists the keys a struct accepts, from its tags.
func fieldNames(t reflect.Type, tag string) map[string]bool {
	names := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get(tag), ",")
		names[name] = true
	}
	return names
}

// yamlError puts yaml.v3's multi-line type errors on one line, as a reason must be, and leaves out the
// Go type of the top level, which means nothing to an installer.
func yamlError(err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msg = "yaml: " + strings.Join(te.Errors, "; ")
	}
	return errors.New(strings.NewReplacer(" in type fsterm.siteFile", "", "into fsterm.siteFile", "into a mapping").Replace(msg))
}

// required names the first key that is missing or null.
func required(section string, present map[string]bool) error {
	var missing []string
	for k, ok := range present {
		if !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("%s.%s: missing", section, strings.Join(missing, ", "+section+"."))
}

func oneOf(field, v string, allowed []string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %s is not one of %s", field, quote(v), strings.Join(allowed, ", "))
}

// uniqueOf checks a list whose items come from allowed and appear once (the schema's uniqueItems).
func uniqueOf(field string, vs []string, allowed []string) error {
	seen := map[string]bool{}
	for i, v := range vs {
		if err := oneOf(fmt.Sprintf("%s[%d]", field, i), v, allowed); err != nil {
			return err
		}
		if seen[v] {
			return fmt.Errorf("%s[%d]: %s repeated", field, i, quote(v))
		}
		seen[v] = true
	}
	return nil
}

func maxRunes(field string, v *string, n int) error {
	if v != nil && utf8.RuneCountInString(*v) > n {
		return fmt.Errorf("%s: longer than %d characters", field, n)
	}
	return nil
}

// categoryPattern is the schema's ^[a-z0-9_]{1,64}$.
func categoryPattern(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// quote shows a short value from a file in a reason; long values are cut, because a reason is for
// finding the mistake, not for carrying the file.
func quote(s string) string { return fmt.Sprintf("%q", truncate(s, 40)) }

// wholeNumber is a YAML integer. yaml.v3 would put 36.5 into an int as 36; a retention is not rounded
// silently.
type wholeNumber int64

func (w *wholeNumber) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return fmt.Errorf("line %d: want a whole number", n.Line)
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("line %d: want a whole number", n.Line)
	}
	*w = wholeNumber(v)
	return nil
}

// timestamp is an RFC 3339 time in site.yaml, written bare (a YAML timestamp) or quoted. Other YAML
// timestamp forms, such as a date alone, are refused: the facts need an instant with an offset.
type timestamp struct{ time.Time }

func (t *timestamp) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want an RFC 3339 time", n.Line)
	}
	v, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %s is not an RFC 3339 time", n.Line, quote(n.Value))
	}
	t.Time = v
	return nil
}

func (t *timestamp) timePtr() *time.Time {
	if t == nil {
		return nil
	}
	v := t.Time
	return &v
}
