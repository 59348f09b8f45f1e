package fsterm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/faceguard/faceguard/device"
)

// StatusSchema is the value status.json must carry in its schema key.
const StatusSchema = "faceguard.terminal-status/v1"

// maxStatusBytes bounds status.json. A real one is a few kilobytes; the terminal rewrites it on every
// change, so a runaway file is a bug to report, not a document to parse.
const maxStatusBytes = 1 << 20

// Limits of the facts schema on what status.json carries.
const (
	maxPrompts   = 256
	maxPromptLen = 1024
	maxDestLen   = 512
)

// statusGroups are the fact groups status.json gives, in the order they are reported.
var statusGroups = []string{device.GroupFR, device.GroupAlternatives, device.GroupPrompts, device.GroupEgress, device.GroupSecurity}

// Enumerations of the facts schema that status.json values must belong to.
var (
	alternativeKinds = []string{"ic_card", "pin", "qr_code", "id_card", "staff_desk", "intercom"}
	// Only the kinds a terminal can declare: "unknown" is what the probe writes for a flow nobody declared.
	declaredDataKinds = []string{device.EgressTemplate, device.EgressRawImage, device.EgressVideo, device.EgressMatchResult, device.EgressMetadata}
	consentBases      = []string{device.ConsentSeparate, device.ConsentLaw, device.ConsentNone}
)

// statusResult is what the rest of Facts needs from status.json besides the facts themselves.
type statusResult struct {
	model, firmware   string
	controlGeneration *int64
	// declaredRemotes are the egress[].remote values, so the probe does not report declared flows again.
	declaredRemotes []netip.AddrPort
}

// collectStatus reads status.json into f. A file that cannot be read, is refused as a whole, or is stale
// makes every group it gives unknown; a broken section makes only its own group unknown.
func collectStatus(path string, last *lastParse[*statusDoc], now time.Time, maxAge time.Duration, f *device.Facts) statusResult {
	data, err := readFile(path, maxStatusBytes)
	if err != nil {
		markAll(f, statusGroups, StatusPath, err)
		return statusResult{}
	}
	doc, err := last.parse(data, parseStatus)
	if err != nil {
		markAll(f, statusGroups, StatusPath, err)
		return statusResult{}
	}
	res := statusResult{
		model:             doc.model,
		firmware:          doc.firmware,
		controlGeneration: doc.controlGeneration,
		declaredRemotes:   doc.declaredRemotes,
	}
	if err := checkFresh(doc.updatedAt, now, maxAge); err != nil {
		// The last declared remotes still keep declared flows out of the probe's list, which is shown
		// even while the group is unknown.
		markAll(f, statusGroups, StatusPath, err)
		return res
	}
	doc.apply(f)
	return res
}

// checkFresh refuses a status.json the terminal software stopped rewriting. A time far in the future is
// refused too: it would otherwise keep a dead terminal fresh for ever.
func checkFresh(updated, now time.Time, maxAge time.Duration) error {
	if maxAge <= 0 {
		return nil
	}
	age := now.Sub(updated)
	if age > maxAge {
		return fmt.Errorf("stale: updated %s ago, limit %s", age.Truncate(time.Second), maxAge)
	}
	if -age > maxAge {
		return fmt.Errorf("updated_at is %s in the future, limit %s", (-age).Truncate(time.Second), maxAge)
	}
	return nil
}

func markAll(f *device.Facts, groups []string, source string, err error) {
	for _, g := range groups {
		markUnknown(f, g, source, err)
	}
}

// statusDoc is a parsed status.json: the valid sections, and for each group that was not, the reason.
type statusDoc struct {
	updatedAt         time.Time
	model, firmware   string
	controlGeneration *int64
	declaredRemotes   []netip.AddrPort

	fr           device.FR
	alternatives device.Alternatives
	prompts      []string
	egress       []device.Egress
	security     device.Security
	errs         map[string]error
}

// apply copies the valid sections into f and marks the others unknown. The document may be a kept
// parse: f gets copies of its lists, which the gathering goes on to change (observed flows are appended).
func (d *statusDoc) apply(f *device.Facts) {
	for _, g := range statusGroups {
		if err := d.errs[g]; err != nil {
			markUnknown(f, g, StatusPath, err)
			continue
		}
		switch g {
		case device.GroupFR:
			f.FR = d.fr
		case device.GroupAlternatives:
			f.Alternatives = d.alternatives
			f.Alternatives.Configured = slices.Clone(d.alternatives.Configured)
			f.Alternatives.Healthy = slices.Clone(d.alternatives.Healthy)
		case device.GroupPrompts:
			f.Prompts = slices.Clone(d.prompts)
		case device.GroupEgress:
			f.Egress = slices.Clone(d.egress)
		case device.GroupSecurity:
			f.Security = d.security
		}
	}
}

// Sections of status.json. Required values are pointers so that a missing or null one is told apart
// from false: a missing default_credentials must not read as "factory credentials changed".
type (
	statusFR struct {
		Enabled *bool   `json:"enabled"`
		Mode    *string `json:"mode"`
		Purpose *string `json:"purpose"`
	}
	statusAlternatives struct {
		Configured        *[]string `json:"configured"`
		Healthy           *[]string `json:"healthy"`
		RefuseOptionShown *bool     `json:"refuse_option_shown"`
	}
	statusEgress struct {
		Dest     *string `json:"dest"`
		Internet *bool   `json:"internet"`
		Data     *string `json:"data"`
		Consent  *string `json:"consent"`
		Remote   *string `json:"remote"`
	}
	statusSecurity struct {
		StorageEncrypted   *bool `json:"storage_encrypted"`
		TransportTLS       *bool `json:"transport_tls"`
		AuditLog           *bool `json:"audit_log"`
		AccessControl      *bool `json:"access_control"`
		IntrusionDetection *bool `json:"intrusion_detection"`
		DefaultCredentials *bool `json:"default_credentials"`
	}
)

// statusKeys are the top-level keys of status.json; any other refuses the file.
var statusKeys = map[string]bool{
	"schema": true, "updated_at": true, "model": true, "firmware": true, "fr": true, "alternatives": true,
	"prompts": true, "egress": true, "security": true, "control_generation": true,
}

// parseStatus parses status.json. The error refuses the whole file: not a JSON object, an unknown or
// repeated top-level key, a wrong schema, a missing or invalid updated_at, or an invalid value of the
// keys that are not facts (model, firmware, control_generation).
func parseStatus(data []byte) (*statusDoc, error) {
	top, err := jsonObject(data)
	if err != nil {
		return nil, err
	}
	for k := range top {
		if !statusKeys[k] {
			return nil, fmt.Errorf("unknown key %s", quote(k))
		}
	}

	var schema string
	if err := decodeValue(top["schema"], "schema", &schema, true); err != nil {
		return nil, err
	}
	if schema != StatusSchema {
		return nil, fmt.Errorf("schema: want %s, got %s", StatusSchema, quote(schema))
	}
	var updated string
	if err := decodeValue(top["updated_at"], "updated_at", &updated, true); err != nil {
		return nil, err
	}
	doc := &statusDoc{errs: map[string]error{}}
	if doc.updatedAt, err = time.Parse(time.RFC3339, updated); err != nil {
		return nil, fmt.Errorf("updated_at: %s is not an RFC 3339 time", quote(updated))
	}
	if err := decodeValue(top["model"], "model", &doc.model, false); err != nil {
		return nil, err
	}
	if err := decodeValue(top["firmware"], "firmware", &doc.firmware, false); err != nil {
		return nil, err
	}
	var gen *int64
	if err := decodeValue(top["control_generation"], "control_generation", &gen, false); err != nil {
		return nil, err
	}
	if gen != nil && *gen < 0 {
		return nil, fmt.Errorf("control_generation: %d is negative", *gen)
	}
	doc.controlGeneration = gen

	doc.errs[device.GroupFR] = doc.parseFR(top["fr"])
	doc.errs[device.GroupAlternatives] = doc.parseAlternatives(top["alternatives"])
	doc.errs[device.GroupPrompts] = doc.parsePrompts(top["prompts"])
	doc.errs[device.GroupEgress] = doc.parseEgress(top["egress"])
	doc.errs[device.GroupSecurity] = doc.parseSecurity(top["security"])
	return doc, nil
}

func (d *statusDoc) parseFR(raw json.RawMessage) error {
	var s statusFR
	if err := decodeObject(raw, "fr", &s); err != nil {
		return err
	}
	if err := required("fr", map[string]bool{"enabled": s.Enabled != nil, "mode": s.Mode != nil, "purpose": s.Purpose != nil}); err != nil {
		return err
	}
	if err := oneOf("fr.mode", *s.Mode, frModes); err != nil {
		return err
	}
	if err := oneOf("fr.purpose", *s.Purpose, frPurposes); err != nil {
		return err
	}
	d.fr = device.FR{Enabled: *s.Enabled, Mode: *s.Mode, Purpose: *s.Purpose}
	return nil
}

func (d *statusDoc) parseAlternatives(raw json.RawMessage) error {
	var s statusAlternatives
	if err := decodeObject(raw, "alternatives", &s); err != nil {
		return err
	}
	if err := required("alternatives", map[string]bool{
		"configured": s.Configured != nil, "healthy": s.Healthy != nil, "refuse_option_shown": s.RefuseOptionShown != nil,
	}); err != nil {
		return err
	}
	if err := uniqueOf("alternatives.configured", *s.Configured, alternativeKinds); err != nil {
		return err
	}
	if err := uniqueOf("alternatives.healthy", *s.Healthy, alternativeKinds); err != nil {
		return err
	}
	d.alternatives = device.Alternatives{Configured: *s.Configured, Healthy: *s.Healthy, RefuseOptionShown: *s.RefuseOptionShown}
	return nil
}

func (d *statusDoc) parsePrompts(raw json.RawMessage) error {
	var prompts *[]string
	if err := decodeValue(raw, "prompts", &prompts, true); err != nil {
		return err
	}
	if prompts == nil {
		return errors.New("prompts: missing")
	}
	if len(*prompts) > maxPrompts {
		return fmt.Errorf("prompts: %d entries, the limit is %d", len(*prompts), maxPrompts)
	}
	for i, p := range *prompts {
		if utf8.RuneCountInString(p) > maxPromptLen {
			return fmt.Errorf("prompts[%d]: longer than %d characters", i, maxPromptLen)
		}
	}
	d.prompts = *prompts
	return nil
}

func (d *statusDoc) parseEgress(raw json.RawMessage) error {
	var items *[]json.RawMessage
	if err := decodeValue(raw, "egress", &items, true); err != nil {
		return err
	}
	if items == nil {
		return errors.New("egress: missing")
	}
	if len(*items) > maxDeclaredFlow {
		return fmt.Errorf("egress: %d entries, the limit is %d", len(*items), maxDeclaredFlow)
	}
	flows := make([]device.Egress, 0, len(*items))
	var remotes []netip.AddrPort
	for i, item := range *items {
		name := fmt.Sprintf("egress[%d]", i)
		var s statusEgress
		if err := decodeObject(item, name, &s); err != nil {
			return err
		}
		if err := required(name, map[string]bool{
			"dest": s.Dest != nil, "internet": s.Internet != nil, "data": s.Data != nil, "consent": s.Consent != nil,
		}); err != nil {
			return err
		}
		if n := utf8.RuneCountInString(*s.Dest); n == 0 || n > maxDestLen {
			return fmt.Errorf("%s.dest: want 1 to %d characters", name, maxDestLen)
		}
		if err := oneOf(name+".data", *s.Data, declaredDataKinds); err != nil {
			return err
		}
		if err := oneOf(name+".consent", *s.Consent, consentBases); err != nil {
			return err
		}
		if s.Remote != nil {
			ap, err := netip.ParseAddrPort(*s.Remote)
			if err != nil || ap.Addr().Zone() != "" {
				return fmt.Errorf("%s.remote: %s is not ip:port", name, quote(*s.Remote))
			}
			remotes = append(remotes, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		flows = append(flows, device.Egress{Dest: *s.Dest, Internet: *s.Internet, Data: *s.Data, Consent: *s.Consent})
	}
	d.egress = flows
	d.declaredRemotes = remotes
	return nil
}

func (d *statusDoc) parseSecurity(raw json.RawMessage) error {
	var s statusSecurity
	if err := decodeObject(raw, "security", &s); err != nil {
		return err
	}
	if err := required("security", map[string]bool{
		"storage_encrypted": s.StorageEncrypted != nil, "transport_tls": s.TransportTLS != nil,
		"audit_log": s.AuditLog != nil, "access_control": s.AccessControl != nil,
		"intrusion_detection": s.IntrusionDetection != nil, "default_credentials": s.DefaultCredentials != nil,
	}); err != nil {
		return err
	}
	d.security = device.Security{
		StorageEncrypted:   *s.StorageEncrypted,
		TransportTLS:       *s.TransportTLS,
		AuditLog:           *s.AuditLog,
		AccessControl:      *s.AccessControl,
		IntrusionDetection: *s.IntrusionDetection,
		DefaultCredentials: *s.DefaultCredentials,
	}
	return nil
}

// jsonObject splits a JSON object into its members, refusing repeated keys, which encoding/json would
// silently resolve to the last one.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return nil, jsonSyntaxError(data, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("json: %w", err)
		}
		key, _ := tok.(string)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("key %s repeated", quote(key))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("json: %w", err)
		}
		out[key] = raw
	}
	return out, nil
}

// jsonSyntaxError turns a syntax error offset into a line and column a person can find.
func jsonSyntaxError(data []byte, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("json: unexpected end of input")
		}
		return fmt.Errorf("json: %w", err)
	}
	// Offset counts the bytes read, the offending one included: the column is that byte's.
	line, col := 1, 1
	for _, c := range string(data[:max(0, min(int(se.Offset)-1, len(data)))]) {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("json: line %d, column %d: %s", line, col, se.Error())
}

// decodeValue decodes one member. A missing or null member is an error only when required.
func decodeValue(raw json.RawMessage, name string, out any, required bool) error {
	if raw == nil || string(raw) == "null" {
		if required {
			return fmt.Errorf("%s: missing", name)
		}
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return typeError(name, err)
	}
	return nil
}

// decodeObject decodes a section strictly: an object with no unknown, repeated or differently cased key
// (encoding/json alone matches keys case-insensitively and keeps the last of two).
func decodeObject(raw json.RawMessage, name string, out any) error {
	if raw == nil {
		return fmt.Errorf("%s: missing", name)
	}
	if _, err := jsonObjectKeys(raw, name, fieldNames(reflect.TypeOf(out).Elem(), "json")); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return typeError(name, err)
	}
	return nil
}

func jsonObjectKeys(raw json.RawMessage, name string, known map[string]bool) ([]string, error) {
	members, err := jsonObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	keys := make([]string, 0, len(members))
	for k := range members {
		if !known[k] {
			return nil, fmt.Errorf("%s: unknown key %s", name, quote(k))
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// typeError says which field has the wrong type without Go type names, which mean nothing to a vendor.
func typeError(name string, err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		field := name
		if ute.Field != "" {
			field += "." + ute.Field
		}
		return fmt.Errorf("%s: want %s, got %s", field, jsonKind(ute.Type), ute.Value)
	}
	return fmt.Errorf("%s: %w", name, err)
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Slice:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return t.Kind().String()
}
