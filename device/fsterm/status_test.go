package fsterm

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
)

// goodStatus is a complete status.json; the cases below break one thing each.
const goodStatus = `{
  "schema": "faceguard.terminal-status/v1",
  "updated_at": "2026-11-24T09:58:30+08:00",
  "model": "FRT-900",
  "firmware": "4.2.1",
  "fr": {"enabled": true, "mode": "verify_1to1", "purpose": "access_control"},
  "alternatives": {"configured": ["ic_card", "pin"], "healthy": ["ic_card"], "refuse_option_shown": true},
  "prompts": ["请刷脸或刷卡通行 / Face or card to enter"],
  "egress": [
    {"dest": "door-controller.lan:8443", "internet": false, "data": "match_result", "consent": "none",
     "remote": "10.0.0.5:8443"},
    {"dest": "backup.example:443", "internet": true, "data": "metadata", "consent": "none", "remote": "[2001:db8::5]:443"},
    {"dest": "audit log server", "internet": false, "data": "metadata", "consent": "law"}
  ],
  "security": {"storage_encrypted": true, "transport_tls": true, "audit_log": true, "access_control": true,
               "intrusion_detection": true, "default_credentials": false},
  "control_generation": 12
}`

// editStatus returns goodStatus with one top-level key replaced by raw JSON, or deleted when raw is "".
func editStatus(t testing.TB, key, raw string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(goodStatus), &m); err != nil {
		t.Fatal(err)
	}
	if raw == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(raw)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func collectStatusFrom(t *testing.T, content *string, maxAge time.Duration) (device.Facts, statusResult) {
	t.Helper()
	root := t.TempDir()
	path := filepath.Join(root, StatusPath)
	if content != nil {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := placeholderFacts(testNow)
	res := collectStatus(path, nil, testNow, maxAge, &f)
	mustValidate(t, f)
	return f, res
}

func TestCollectStatusGood(t *testing.T) {
	f, res := collectStatusFrom(t, ptr(goodStatus), 15*time.Minute)
	if len(f.Unknown) != 0 {
		t.Fatalf("unknown: %v", f.Unknown)
	}
	if f.FR != (device.FR{Enabled: true, Mode: "verify_1to1", Purpose: "access_control"}) {
		t.Errorf("fr = %+v", f.FR)
	}
	if strings.Join(f.Alternatives.Configured, ",") != "ic_card,pin" || strings.Join(f.Alternatives.Healthy, ",") != "ic_card" || !f.Alternatives.RefuseOptionShown {
		t.Errorf("alternatives = %+v", f.Alternatives)
	}
	if len(f.Prompts) != 1 || len(f.Egress) != 3 || f.Egress[1] != (device.Egress{Dest: "backup.example:443", Internet: true, Data: "metadata", Consent: "none"}) {
		t.Errorf("prompts %v egress %+v", f.Prompts, f.Egress)
	}
	if f.Security != (device.Security{StorageEncrypted: true, TransportTLS: true, AuditLog: true, AccessControl: true, IntrusionDetection: true}) {
		t.Errorf("security = %+v", f.Security)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:8443"), netip.MustParseAddrPort("[2001:db8::5]:443")}
	if fmt.Sprint(res.declaredRemotes) != fmt.Sprint(want) {
		t.Errorf("declared remotes = %v, want %v", res.declaredRemotes, want)
	}
	if res.model != "FRT-900" || res.firmware != "4.2.1" || res.controlGeneration == nil || *res.controlGeneration != 12 {
		t.Errorf("result = %+v", res)
	}
}

// TestCollectStatusBroken breaks status.json one way at a time and checks exactly which groups become
// unknown, with which reason, and that the other groups still come through.
func TestCollectStatusBroken(t *testing.T) {
	all := statusGroups
	egressItem := func(item string) string {
		return editStatus(t, "egress", `[`+item+`]`)
	}
	tests := []struct {
		name       string
		content    *string
		wantGroups []string
		wantReason string
	}{
		{"missing", nil, all, "missing"},
		{"empty", ptr(""), all, "json: line 1, column 1: unexpected end of JSON input"},
		{"not_json", ptr("{\n  \"schema\": \"faceguard.terminal-status/v1\",\n  oops\n}"), all, "json: line 3, column 3: invalid character 'o'"},
		{"truncated", ptr(goodStatus[:200]), all, "unexpected end of JSON input"},
		{"array", ptr("[]"), all, "not a JSON object"},
		{"trailing_data", ptr(goodStatus + "{}"), all, "invalid character '{' after top-level value"},
		{"unknown_top_level_key", ptr(editStatus(t, "faces", "[]")), all, `unknown key "faces"`},
		{"repeated_top_level_key", ptr(strings.Replace(goodStatus, `"model": "FRT-900",`, `"fr": {}, "model": "FRT-900",`, 1)), all, `key "fr" repeated`},
		{"no_schema", ptr(editStatus(t, "schema", "")), all, "schema: missing"},
		{"wrong_schema", ptr(editStatus(t, "schema", `"faceguard.terminal-status/v2"`)), all, `schema: want faceguard.terminal-status/v1, got "faceguard.terminal-status/v2"`},
		{"no_updated_at", ptr(editStatus(t, "updated_at", "")), all, "updated_at: missing"},
		{"bad_updated_at", ptr(editStatus(t, "updated_at", `"yesterday"`)), all, `updated_at: "yesterday" is not an RFC 3339 time`},
		{"model_wrong_type", ptr(editStatus(t, "model", `900`)), all, "model: want string, got number"},
		{"negative_generation", ptr(editStatus(t, "control_generation", `-1`)), all, "control_generation: -1 is negative"},
		{"fractional_generation", ptr(editStatus(t, "control_generation", `1.5`)), all, "control_generation: want integer, got number 1.5"},
		{"stale", ptr(editStatus(t, "updated_at", `"2026-11-24T07:59:59+08:00"`)), all, "stale: updated 2h0m1s ago, limit 15m0s"},
		{"stale_in_another_zone", ptr(editStatus(t, "updated_at", `"2026-11-24T01:30:00Z"`)), all, "stale: updated 30m0s ago, limit 15m0s"},
		{"in_the_future", ptr(editStatus(t, "updated_at", `"2026-11-24T11:00:00+08:00"`)), all, "updated_at is 1h0m0s in the future, limit 15m0s"},

		{"no_fr", ptr(editStatus(t, "fr", "")), []string{device.GroupFR}, "fr: missing"},
		{"fr_null", ptr(editStatus(t, "fr", "null")), []string{device.GroupFR}, "fr: not a JSON object"},
		{"fr_enabled_string", ptr(editStatus(t, "fr", `{"enabled": "yes", "mode": "verify_1to1", "purpose": "access_control"}`)),
			[]string{device.GroupFR}, "fr.enabled: want boolean, got string"},
		{"fr_enabled_null", ptr(editStatus(t, "fr", `{"enabled": null, "mode": "verify_1to1", "purpose": "access_control"}`)),
			[]string{device.GroupFR}, "fr.enabled: missing"},
		{"fr_bad_mode", ptr(editStatus(t, "fr", `{"enabled": true, "mode": "verify", "purpose": "access_control"}`)),
			[]string{device.GroupFR}, `fr.mode: "verify" is not one of verify_1to1, identify_1toN, off`},
		{"fr_bad_purpose", ptr(editStatus(t, "fr", `{"enabled": true, "mode": "off", "purpose": "fun"}`)),
			[]string{device.GroupFR}, `fr.purpose: "fun" is not one of`},
		{"fr_unknown_key", ptr(editStatus(t, "fr", `{"enabled": true, "mode": "off", "purpose": "other", "threshold": 0.8}`)),
			[]string{device.GroupFR}, `fr: unknown key "threshold"`},
		{"fr_key_in_another_case", ptr(editStatus(t, "fr", `{"Enabled": true, "mode": "off", "purpose": "other"}`)),
			[]string{device.GroupFR}, `fr: unknown key "Enabled"`},
		{"fr_repeated_key", ptr(editStatus(t, "fr", `{"enabled": true, "enabled": false, "mode": "off", "purpose": "other"}`)),
			[]string{device.GroupFR}, `fr: key "enabled" repeated`},

		{"alternatives_unknown_kind", ptr(editStatus(t, "alternatives", `{"configured": ["palm"], "healthy": [], "refuse_option_shown": true}`)),
			[]string{device.GroupAlternatives}, `alternatives.configured[0]: "palm" is not one of`},
		{"alternatives_repeated", ptr(editStatus(t, "alternatives", `{"configured": ["pin", "pin"], "healthy": [], "refuse_option_shown": true}`)),
			[]string{device.GroupAlternatives}, `alternatives.configured[1]: "pin" repeated`},
		{"alternatives_no_healthy", ptr(editStatus(t, "alternatives", `{"configured": ["pin"], "refuse_option_shown": true}`)),
			[]string{device.GroupAlternatives}, "alternatives.healthy: missing"},

		{"no_prompts", ptr(editStatus(t, "prompts", "")), []string{device.GroupPrompts}, "prompts: missing"},
		{"prompts_not_a_list", ptr(editStatus(t, "prompts", `"刷脸"`)), []string{device.GroupPrompts}, "prompts: want array, got string"},
		{"too_many_prompts", ptr(editStatus(t, "prompts", `[`+strings.Repeat(`"x",`, 256)+`"x"]`)),
			[]string{device.GroupPrompts}, "prompts: 257 entries, the limit is 256"},
		{"prompt_too_long", ptr(editStatus(t, "prompts", `["`+strings.Repeat("刷", 1025)+`"]`)),
			[]string{device.GroupPrompts}, "prompts[0]: longer than 1024 characters"},

		{"no_egress", ptr(editStatus(t, "egress", "")), []string{device.GroupEgress}, "egress: missing"},
		{"egress_no_consent", ptr(egressItem(`{"dest": "x", "internet": true, "data": "template"}`)),
			[]string{device.GroupEgress}, "egress[0].consent: missing"},
		{"egress_data_unknown", ptr(egressItem(`{"dest": "x", "internet": true, "data": "unknown", "consent": "none"}`)),
			[]string{device.GroupEgress}, `egress[0].data: "unknown" is not one of template, raw_image, video, match_result, metadata`},
		{"egress_bad_consent", ptr(egressItem(`{"dest": "x", "internet": true, "data": "video", "consent": "implied"}`)),
			[]string{device.GroupEgress}, `egress[0].consent: "implied" is not one of separate, law, none`},
		{"egress_empty_dest", ptr(egressItem(`{"dest": "", "internet": true, "data": "video", "consent": "none"}`)),
			[]string{device.GroupEgress}, "egress[0].dest: want 1 to 512 characters"},
		{"egress_remote_without_port", ptr(egressItem(`{"dest": "x", "internet": true, "data": "video", "consent": "none", "remote": "198.51.100.1"}`)),
			[]string{device.GroupEgress}, `egress[0].remote: "198.51.100.1" is not ip:port`},
		{"egress_remote_hostname", ptr(egressItem(`{"dest": "x", "internet": true, "data": "video", "consent": "none", "remote": "cloud.example:443"}`)),
			[]string{device.GroupEgress}, `egress[0].remote: "cloud.example:443" is not ip:port`},
		{"egress_item_unknown_key", ptr(egressItem(`{"dest": "x", "internet": true, "data": "video", "consent": "none", "port": 443}`)),
			[]string{device.GroupEgress}, `egress[0]: unknown key "port"`},
		{"egress_too_many", ptr(editStatus(t, "egress", `[`+strings.TrimSuffix(strings.Repeat(`{"dest": "x", "internet": false, "data": "metadata", "consent": "none"},`, 961), ",")+`]`)),
			[]string{device.GroupEgress}, "egress: 961 entries, the limit is 960"},

		{"security_missing_default_credentials", ptr(editStatus(t, "security", `{"storage_encrypted": true, "transport_tls": true, "audit_log": true, "access_control": true, "intrusion_detection": true}`)),
			[]string{device.GroupSecurity}, "security.default_credentials: missing"},
		{"security_number", ptr(editStatus(t, "security", `{"storage_encrypted": 1, "transport_tls": true, "audit_log": true, "access_control": true, "intrusion_detection": true, "default_credentials": false}`)),
			[]string{device.GroupSecurity}, "security.storage_encrypted: want boolean, got number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, res := collectStatusFrom(t, tt.content, 15*time.Minute)
			got := unknownGroups(f)
			if len(got) != len(tt.wantGroups) {
				t.Errorf("unknown = %v, want groups %v", f.Unknown, tt.wantGroups)
			}
			for _, g := range tt.wantGroups {
				if len(got[g]) != 1 || !strings.HasPrefix(got[g][0], StatusPath+": ") || !strings.Contains(got[g][0], tt.wantReason) {
					t.Errorf("%s: %v, want a reason containing %q", g, got[g], tt.wantReason)
				}
			}
			// The groups that were not broken come through.
			if !f.IsUnknown(device.GroupFR) && f.FR.Mode != "verify_1to1" {
				t.Errorf("fr not read: %+v", f.FR)
			}
			if !f.IsUnknown(device.GroupSecurity) && !f.Security.StorageEncrypted {
				t.Errorf("security not read: %+v", f.Security)
			}
			if f.IsUnknown(device.GroupEgress) && len(f.Egress) != 0 {
				t.Errorf("egress of a broken section used: %+v", f.Egress)
			}
			if f.IsUnknown(device.GroupEgress) && len(tt.wantGroups) == 1 && len(res.declaredRemotes) != 0 {
				t.Errorf("remotes of a broken egress section used: %v", res.declaredRemotes)
			}
		})
	}
}

func TestCollectStatusOptionalKeys(t *testing.T) {
	content := editStatus(t, "model", "")
	content = strings.Replace(content, `"firmware":"4.2.1",`, `"firmware":null,`, 1)
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(content), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "control_generation")
	b, _ := json.Marshal(m)
	content = string(b)
	f, res := collectStatusFrom(t, &content, 0)
	if len(f.Unknown) != 0 {
		t.Fatalf("unknown: %v", f.Unknown)
	}
	if res.model != "" || res.firmware != "" || res.controlGeneration != nil {
		t.Errorf("result = %+v", res)
	}
}
