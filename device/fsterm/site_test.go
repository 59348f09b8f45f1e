package fsterm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
)

// goodSite is a complete site.yaml; the cases below break one thing each.
const goodSite = `schema: faceguard.site/v1
site:
  id: garden-court
  name: 花园小区 / Garden Court
device:
  id: gate-01
  kind: door_terminal
  stage: production
location:
  category: residential_gate
  public_place: false
  private_space: false
  necessity_ref: null
  capture_zone_defined: true
signage:
  present: true
  evidence: photo_audit
  verified_at: 2026-10-01T09:00:00+08:00
notice:
  shown_before_capture: true
  fields: [processor_contact, purpose, method, retention_period, impact, rights]
  retention_days: 365
pia:
  ref: PIA-2026-007
  completed_at: "2026-05-20T00:00:00+08:00"
  purpose: access_control
network:
  allowed_remotes:
    - 203.0.113.10:8883
    - 10.9.0.0/16
    - "[2001:db8::10]:443"
`

// collectSiteFrom writes content (nil: no file) to site.yaml under a new root and collects it.
func collectSiteFrom(t *testing.T, content *string) (device.Facts, siteResult) {
	t.Helper()
	root := t.TempDir()
	path := filepath.Join(root, SitePath)
	if content != nil {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := placeholderFacts(testNow)
	res := collectSite(path, nil, &f)
	mustValidate(t, f)
	return f, res
}

func ptr[T any](v T) *T { return &v }

func TestCollectSiteGood(t *testing.T) {
	f, res := collectSiteFrom(t, ptr(goodSite))
	if len(f.Unknown) != 0 {
		t.Fatalf("unknown: %v", f.Unknown)
	}
	if !res.known || !res.noticeKnown || res.siteID != "garden-court" || res.siteName != "花园小区 / Garden Court" || res.deviceID != "gate-01" {
		t.Errorf("result = %+v", res)
	}
	if f.Device.Kind != "door_terminal" || f.Device.Stage != "production" {
		t.Errorf("device = %+v", f.Device)
	}
	if f.Location != (device.Location{Category: "residential_gate", CaptureZoneDefined: true}) {
		t.Errorf("location = %+v", f.Location)
	}
	verified := time.Date(2026, 10, 1, 9, 0, 0, 0, time.FixedZone("", 8*3600))
	if !f.Signage.Present || f.Signage.Evidence != "photo_audit" || f.Signage.VerifiedAt == nil || !f.Signage.VerifiedAt.Equal(verified) {
		t.Errorf("signage = %+v", f.Signage)
	}
	if !f.Notice.ShownBeforeCapture || len(f.Notice.Fields) != 6 || f.Notice.RetentionDays != 365 {
		t.Errorf("notice = %+v", f.Notice)
	}
	if f.PIA.Ref == nil || *f.PIA.Ref != "PIA-2026-007" || f.PIA.CompletedAt == nil || f.PIA.Purpose == nil || *f.PIA.Purpose != "access_control" {
		t.Errorf("pia = %+v", f.PIA)
	}
	if len(res.allowed.addrPorts) != 2 || len(res.allowed.prefixes) != 1 {
		t.Errorf("allowed = %+v", res.allowed)
	}
}

// TestCollectSiteWithoutNetwork: the network section is optional; without it nothing is allowed.
func TestCollectSiteWithoutNetwork(t *testing.T) {
	f, res := collectSiteFrom(t, ptr(goodSite[:strings.Index(goodSite, "network:")]))
	if len(f.Unknown) != 0 || !res.known {
		t.Fatalf("unknown: %v, known %v", f.Unknown, res.known)
	}
	if len(res.allowed.addrPorts) != 0 || len(res.allowed.prefixes) != 0 {
		t.Errorf("allowed = %+v, want nothing", res.allowed)
	}
}

// TestCollectSiteBroken breaks site.yaml one way at a time and checks exactly which groups become
// unknown, with which reason, and that the other groups still come through.
func TestCollectSiteBroken(t *testing.T) {
	all := siteGroups
	tests := []struct {
		name       string
		content    *string
		wantGroups []string
		wantReason string
	}{
		{"missing", nil, all, "missing"},
		{"empty", ptr(""), all, "empty"},
		{"not_yaml", ptr("schema: faceguard.site/v1\nsite: [\n"), all, "yaml: line 2: did not find expected node content"},
		{"bad_indentation", ptr(strings.Replace(goodSite, "  stage: production", "   stage: production", 1)), all, "yaml: line 8: mapping values are not allowed"},
		{"not_a_mapping", ptr("- schema\n"), all, "yaml: line 1: cannot unmarshal !!seq into a mapping"},
		{"unknown_top_level_key", ptr(goodSite + "colour: red\n"), all, "yaml: line 32: field colour not found"},
		{"repeated_top_level_key", ptr(goodSite + "pia:\n  ref: null\n"), all, `mapping key "pia" already defined`},
		{"two_documents", ptr(goodSite + "---\nschema: faceguard.site/v1\n"), all, "more than one YAML document"},
		{"no_schema", ptr(strings.Replace(goodSite, "schema: faceguard.site/v1\n", "", 1)), all, "schema: missing"},
		{"wrong_schema", ptr(strings.Replace(goodSite, "faceguard.site/v1", "faceguard.site/v2", 1)), all, `schema: want faceguard.site/v1, got "faceguard.site/v2"`},
		{"no_site", ptr(strings.Replace(goodSite, "site:\n  id: garden-court\n  name: 花园小区 / Garden Court\n", "", 1)), all, "section site missing"},
		{"bad_site_id", ptr(strings.Replace(goodSite, "id: garden-court", "id: Garden Court", 1)), all, `site.id: "Garden Court" does not match`},
		{"unknown_site_key", ptr(strings.Replace(goodSite, "  name: 花园", "  nmae: 花园", 1)), all, `line 4: field "nmae" not found in site`},
		{"bad_allowed_remote", ptr(strings.Replace(goodSite, "10.9.0.0/16", "10.9.0.0/33", 1)), all, `network.allowed_remotes: entry 1: "10.9.0.0/33" is not a CIDR`},
		{"hostname_allowed_remote", ptr(strings.Replace(goodSite, "10.9.0.0/16", "broker.example:8883", 1)), all, "is not ip, ip:port or a CIDR"},

		{"no_device", ptr(strings.Replace(goodSite, "device:\n  id: gate-01\n  kind: door_terminal\n  stage: production\n", "", 1)),
			[]string{device.GroupDevice}, "section device missing"},
		{"bad_device_kind", ptr(strings.Replace(goodSite, "kind: door_terminal", "kind: toaster", 1)),
			[]string{device.GroupDevice}, `device.kind: "toaster" is not one of door_terminal, camera, turnstile, kiosk, other`},
		{"bad_device_id", ptr(strings.Replace(goodSite, "id: gate-01", "id: GATE_01", 1)),
			[]string{device.GroupDevice}, `device.id: "GATE_01" does not match`},
		{"device_not_a_mapping", ptr(strings.Replace(goodSite, "device:\n  id: gate-01\n  kind: door_terminal\n  stage: production\n", "device: gate-01\n", 1)),
			[]string{device.GroupDevice}, "line 5: device: want a mapping"},

		{"location_missing_public_place", ptr(strings.Replace(goodSite, "  public_place: false\n", "", 1)),
			[]string{device.GroupLocation}, "location.public_place: missing"},
		{"location_null_private_space", ptr(strings.Replace(goodSite, "private_space: false", "private_space:", 1)),
			[]string{device.GroupLocation}, "location.private_space: missing"},
		{"location_wrong_type", ptr(strings.Replace(goodSite, "public_place: false", "public_place: sometimes", 1)),
			[]string{device.GroupLocation}, "location: yaml: line 11: cannot unmarshal !!str `sometimes` into bool"},
		{"location_unknown_key", ptr(strings.Replace(goodSite, "  capture_zone_defined: true\n", "  capture_zone_defined: true\n  indoor: true\n", 1)),
			[]string{device.GroupLocation}, `line 15: field "indoor" not found in location`},
		{"location_repeated_key", ptr(strings.Replace(goodSite, "  capture_zone_defined: true\n", "  capture_zone_defined: true\n  public_place: true\n", 1)),
			[]string{device.GroupLocation}, "line 15: location.public_place repeated"},
		{"location_bad_category", ptr(strings.Replace(goodSite, "category: residential_gate", "category: Residential Gate", 1)),
			[]string{device.GroupLocation}, `location.category: "Residential Gate" does not match`},

		{"signage_bad_evidence", ptr(strings.Replace(goodSite, "evidence: photo_audit", "evidence: hearsay", 1)),
			[]string{device.GroupSignage}, `signage.evidence: "hearsay" is not one of`},
		{"signage_date_only", ptr(strings.Replace(goodSite, "verified_at: 2026-10-01T09:00:00+08:00", "verified_at: 2026-10-01", 1)),
			[]string{device.GroupSignage}, `line 18: "2026-10-01" is not an RFC 3339 time`},
		{"signage_no_offset", ptr(strings.Replace(goodSite, "verified_at: 2026-10-01T09:00:00+08:00", "verified_at: 2026-10-01T09:00:00", 1)),
			[]string{device.GroupSignage}, "is not an RFC 3339 time"},

		{"notice_unknown_field", ptr(strings.Replace(goodSite, "impact, rights]", "impact, rights, price]", 1)),
			[]string{device.GroupNotice}, `notice.fields[6]: "price" is not one of`},
		{"notice_repeated_field", ptr(strings.Replace(goodSite, "impact, rights]", "impact, rights, purpose]", 1)),
			[]string{device.GroupNotice}, `notice.fields[6]: "purpose" repeated`},
		{"notice_negative_retention", ptr(strings.Replace(goodSite, "retention_days: 365", "retention_days: -1", 1)),
			[]string{device.GroupNotice}, "notice.retention_days: -1 is outside 0..1000000000"},
		{"notice_fractional_retention", ptr(strings.Replace(goodSite, "retention_days: 365", "retention_days: 36.5", 1)),
			[]string{device.GroupNotice}, "line 22: want a whole number"},
		{"notice_missing_fields", ptr(strings.Replace(goodSite, "  fields: [processor_contact, purpose, method, retention_period, impact, rights]\n", "", 1)),
			[]string{device.GroupNotice}, "notice.fields: missing"},

		{"no_pia", ptr(strings.Replace(goodSite, "pia:\n  ref: PIA-2026-007\n  completed_at: \"2026-05-20T00:00:00+08:00\"\n  purpose: access_control\n", "", 1)),
			[]string{device.GroupPIA}, "section pia missing"},
		{"pia_purpose_typo", ptr(strings.Replace(goodSite, "purpose: access_control", "purpose: acess_control", 1)),
			[]string{device.GroupPIA}, `pia.purpose: "acess_control" is not one of`},

		{"two_sections_broken", ptr(strings.Replace(strings.Replace(goodSite, "evidence: photo_audit", "evidence: maybe", 1), "kind: door_terminal", "kind: x", 1)),
			[]string{device.GroupDevice, device.GroupSignage}, "is not one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, res := collectSiteFrom(t, tt.content)
			got := unknownGroups(f)
			if len(got) != len(tt.wantGroups) {
				t.Errorf("unknown = %v, want groups %v", f.Unknown, tt.wantGroups)
			}
			for _, g := range tt.wantGroups {
				if len(got[g]) != 1 || !strings.HasPrefix(got[g][0], SitePath+": ") || !strings.Contains(got[g][0], tt.wantReason) {
					t.Errorf("%s: %v, want a reason containing %q", g, got[g], tt.wantReason)
				}
			}
			wholeFile := len(tt.wantGroups) == len(all)
			if res.known == wholeFile {
				t.Errorf("known = %v for a file refused as a whole: %v", res.known, wholeFile)
			}
			// The groups that were not broken come through.
			if !f.IsUnknown(device.GroupLocation) && f.Location.Category != "residential_gate" {
				t.Errorf("location not read: %+v", f.Location)
			}
			if !f.IsUnknown(device.GroupNotice) && f.Notice.RetentionDays != 365 {
				t.Errorf("notice not read: %+v", f.Notice)
			}
			if !f.IsUnknown(device.GroupNotice) != res.noticeKnown {
				t.Errorf("noticeKnown = %v", res.noticeKnown)
			}
			if f.IsUnknown(device.GroupDevice) && res.deviceID != "" {
				t.Errorf("device id %q taken from a broken section", res.deviceID)
			}
		})
	}
}

// TestCollectSiteOptional: the nullable values may be null or left out; both read as "none recorded",
// which is never the compliant reading.
func TestCollectSiteOptional(t *testing.T) {
	content := strings.NewReplacer(
		"  necessity_ref: null\n", "",
		"  verified_at: 2026-10-01T09:00:00+08:00\n", "  verified_at: null\n",
		"  ref: PIA-2026-007\n", "",
		"  completed_at: \"2026-05-20T00:00:00+08:00\"\n", "  completed_at: ~\n",
		"  purpose: access_control\n", "",
		"  name: 花园小区 / Garden Court\n", "",
		"  allowed_remotes:\n    - 203.0.113.10:8883\n    - 10.9.0.0/16\n    - \"[2001:db8::10]:443\"\n", "  allowed_remotes: []\n",
	).Replace(goodSite)
	f, res := collectSiteFrom(t, &content)
	if len(f.Unknown) != 0 {
		t.Fatalf("unknown: %v\n%s", f.Unknown, content)
	}
	if f.Location.NecessityRef != nil || f.Signage.VerifiedAt != nil || f.PIA != (device.PIA{}) || res.siteName != "" {
		t.Errorf("location %+v signage %+v pia %+v site %+v", f.Location, f.Signage, f.PIA, res)
	}
}
