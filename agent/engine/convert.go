package engine

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/faceguard/faceguard/device"
)

// factsToAST converts facts straight to OPA's value type. It is the hot path's input conversion: building
// the AST directly skips a JSON round trip per evaluation. TestFactsToASTMatchesJSON keeps it equal to the
// JSON encoding of the same facts.
func factsToAST(f *device.Facts) ast.Value {
	str := ast.StringTerm
	num := func(n int) *ast.Term { return ast.InternedTerm(n) }
	boolean := ast.InternedTerm[bool]
	ts := func(t time.Time) *ast.Term { return str(t.Format(time.RFC3339Nano)) }
	optTS := func(t *time.Time) *ast.Term {
		if t == nil {
			return ast.NullTerm()
		}
		return ts(*t)
	}
	optStr := func(s *string) *ast.Term {
		if s == nil {
			return ast.NullTerm()
		}
		return str(*s)
	}
	strs := func(ss []string) *ast.Term {
		terms := make([]*ast.Term, len(ss))
		for i, s := range ss {
			terms[i] = str(s)
		}
		return ast.ArrayTerm(terms...)
	}
	obj := func(items ...[2]*ast.Term) *ast.Term { return ast.ObjectTerm(items...) }
	kv := func(k string, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{keyTerm(k), v} }

	egress := make([]*ast.Term, len(f.Egress))
	for i, e := range f.Egress {
		egress[i] = obj(kv("dest", str(e.Dest)), kv("internet", boolean(e.Internet)), kv("data", str(e.Data)),
			kv("consent", str(e.Consent)))
	}
	items := [][2]*ast.Term{
		kv("schema", str(f.Schema)),
		kv("collected_at", ts(f.CollectedAt)),
		kv("device", obj(kv("id", str(f.Device.ID)), kv("kind", str(f.Device.Kind)), kv("stage", str(f.Device.Stage)))),
		kv("fr", obj(kv("enabled", boolean(f.FR.Enabled)), kv("mode", str(f.FR.Mode)), kv("purpose", str(f.FR.Purpose)))),
		kv("location", obj(
			kv("category", str(f.Location.Category)),
			kv("public_place", boolean(f.Location.PublicPlace)),
			kv("private_space", boolean(f.Location.PrivateSpace)),
			kv("necessity_ref", optStr(f.Location.NecessityRef)),
			kv("capture_zone_defined", boolean(f.Location.CaptureZoneDefined)))),
		kv("signage", obj(kv("present", boolean(f.Signage.Present)), kv("evidence", str(f.Signage.Evidence)),
			kv("verified_at", optTS(f.Signage.VerifiedAt)))),
		kv("notice", obj(kv("shown_before_capture", boolean(f.Notice.ShownBeforeCapture)),
			kv("fields", strs(f.Notice.Fields)), kv("retention_days", num(f.Notice.RetentionDays)))),
		kv("alternatives", obj(kv("configured", strs(f.Alternatives.Configured)),
			kv("healthy", strs(f.Alternatives.Healthy)),
			kv("refuse_option_shown", boolean(f.Alternatives.RefuseOptionShown)))),
		kv("prompts", strs(f.Prompts)),
		kv("subjects", obj(
			kv("count", num(f.Subjects.Count)),
			kv("without_consent", num(f.Subjects.WithoutConsent)),
			kv("withdrawn_pending", num(f.Subjects.WithdrawnPending)),
			kv("withdrawn_oldest_s", num(f.Subjects.WithdrawnOldestS)),
			kv("minors_without_guardian", num(f.Subjects.MinorsWithoutGuardian)),
			kv("beyond_retention", num(f.Subjects.BeyondRetention)),
			kv("stored_off_device", num(f.Subjects.StoredOffDevice)))),
		kv("raw_images", obj(kv("count", num(f.RawImages.Count)), kv("oldest_age_s", num(f.RawImages.OldestAgeS)),
			kv("consented", num(f.RawImages.Consented)))),
		kv("egress", ast.ArrayTerm(egress...)),
		kv("security", obj(
			kv("storage_encrypted", boolean(f.Security.StorageEncrypted)),
			kv("transport_tls", boolean(f.Security.TransportTLS)),
			kv("audit_log", boolean(f.Security.AuditLog)),
			kv("access_control", boolean(f.Security.AccessControl)),
			kv("intrusion_detection", boolean(f.Security.IntrusionDetection)),
			kv("default_credentials", boolean(f.Security.DefaultCredentials)))),
		kv("pia", obj(kv("ref", optStr(f.PIA.Ref)), kv("completed_at", optTS(f.PIA.CompletedAt)),
			kv("purpose", optStr(f.PIA.Purpose)))),
	}
	if len(f.Unknown) > 0 {
		unknown := make([]*ast.Term, len(f.Unknown))
		for i, u := range f.Unknown {
			unknown[i] = obj(kv("fact", str(u.Fact)), kv("source", str(u.Source)), kv("reason", str(u.Reason)))
		}
		items = append(items, kv("unknown", ast.ArrayTerm(unknown...)))
	}
	return ast.NewObject(items...)
}

// keyTerms are the object keys of the facts and match documents (and those decodeFindings looks up),
// built once: a key of every object of
// every evaluation would otherwise be two allocations (a tenth of a decision's, and their collection).
// OPA never changes a term it is given.
var keyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range strings.Fields(`schema collected_at device id kind stage fr enabled mode purpose location
		category public_place private_space necessity_ref capture_zone_defined signage present evidence
		verified_at notice shown_before_capture fields retention_days alternatives configured healthy
		refuse_option_shown prompts subjects count without_consent withdrawn_pending withdrawn_oldest_s
		minors_without_guardian beyond_retention stored_off_device raw_images oldest_age_s consented egress
		dest internet data consent security storage_encrypted transport_tls audit_log access_control
		intrusion_detection default_credentials pia ref completed_at unknown fact source reason
		subject found withdrawn age_band guardian_consent quarantined terminal face_recognition_allowed
		reasons unverifiable purge_withdrawn control message zh en`) {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func keyTerm(k string) *ast.Term {
	if t, ok := keyTerms[k]; ok {
		return t
	}
	return ast.StringTerm(k)
}

func matchToAST(in *device.MatchInput) ast.Value {
	str := ast.StringTerm
	boolean := ast.InternedTerm[bool]
	kv := func(k string, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{keyTerm(k), v} }
	s := in.Subject
	return ast.NewObject(
		kv("subject", ast.ObjectTerm(
			kv("found", boolean(s.Found)),
			kv("consent", str(s.Consent)),
			kv("withdrawn", boolean(s.Withdrawn)),
			kv("age_band", str(s.AgeBand)),
			kv("guardian_consent", boolean(s.GuardianConsent)),
			kv("quarantined", boolean(s.Quarantined)))),
		kv("terminal", ast.ObjectTerm(kv("face_recognition_allowed", boolean(in.Terminal.FaceRecognitionAllowed)))),
	)
}

// decodeDecision reads the policy's answer without a JSON round trip, and refuses anything that is not
// the contract's shape: a malformed answer must fail safe, not pass as "compliant".
func decodeDecision(v any) (device.Decision, error) {
	var d device.Decision
	m, ok := v.(map[string]any)
	if !ok {
		return d, fmt.Errorf("%w: decision is %T, not an object", ErrUndefined, v)
	}
	d.Status, _ = m["status"].(string)
	if d.Status != device.StatusCompliant && d.Status != device.StatusNonCompliant {
		return d, fmt.Errorf("%w: decision status %q", ErrUndefined, m["status"])
	}
	vs, ok := m["violations"].([]any)
	if !ok {
		return d, fmt.Errorf("%w: decision violations is %T", ErrUndefined, m["violations"])
	}
	d.Violations = make([]device.Violation, 0, len(vs))
	for _, raw := range vs {
		vm, ok := raw.(map[string]any)
		if !ok {
			return d, fmt.Errorf("%w: violation is %T", ErrUndefined, raw)
		}
		var viol device.Violation
		viol.Control, _ = vm["control"].(string)
		viol.Severity, _ = vm["severity"].(string)
		viol.Articles = stringList(vm["articles"])
		viol.Facts = stringList(vm["facts"])
		viol.Message = text(vm["message"])
		if viol.Control == "" || viol.Severity == "" {
			return d, fmt.Errorf("%w: violation without control or severity", ErrUndefined)
		}
		d.Violations = append(d.Violations, viol)
	}
	if _, ok := m["actions"].([]any); !ok {
		return d, fmt.Errorf("%w: decision actions is %T", ErrUndefined, m["actions"])
	}
	d.Actions = stringList(m["actions"])
	c, _ := m["counts"].(map[string]any)
	d.Counts.Critical, _ = asInt(c["critical"])
	d.Counts.High, _ = asInt(c["high"])
	d.Counts.Medium, _ = asInt(c["medium"])
	d.Counts.Low, _ = asInt(c["low"])
	if (d.Status == device.StatusCompliant) != (len(d.Violations) == 0) {
		return d, fmt.Errorf("%w: status %s with %d violations", ErrUndefined, d.Status, len(d.Violations))
	}
	return d, nil
}

func decodeMatch(v any) (device.MatchResult, error) {
	var r device.MatchResult
	m, ok := v.(map[string]any)
	if !ok {
		return r, fmt.Errorf("%w: match is %T, not an object", ErrUndefined, v)
	}
	allow, ok := m["allow"].(bool)
	if !ok {
		return r, fmt.Errorf("%w: match allow is %T", ErrUndefined, m["allow"])
	}
	r.Allow = allow
	r.Reasons = stringList(m["reasons"])
	r.Message = text(m["message"])
	if r.Allow && len(r.Reasons) > 0 {
		return r, fmt.Errorf("%w: match allows with reasons %v", ErrUndefined, r.Reasons)
	}
	return r, nil
}

func stringList(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func text(v any) device.Text {
	m, _ := v.(map[string]any)
	zh, _ := m["zh"].(string)
	en, _ := m["en"].(string)
	return device.Text{ZH: zh, EN: en}
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	}
	return 0, false
}

// remarshal copies a generic policy value into a Go type through JSON. Only used at activation.
func remarshal(v any, into any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}
