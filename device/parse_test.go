package device

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/faceguard/faceguard/policies"
)

func validFactsJSON(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/facts/compliant_gate.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFactsAcceptsTheExample(t *testing.T) {
	f, err := ParseFacts(validFactsJSON(t))
	if err != nil {
		t.Fatalf("ParseFacts: %v", err)
	}
	if f.Device.ID != "gate-01" || !f.FR.Enabled || f.Schema != FactsSchema {
		t.Fatalf("decoded wrong: %+v", f)
	}
}

// TestParseFactsRefuses feeds broken documents and requires the error to name the field at fault.
func TestParseFactsRefuses(t *testing.T) {
	edit := func(fn func(m map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			var m map[string]any
			if err := json.Unmarshal(validFactsJSON(t), &m); err != nil {
				t.Fatal(err)
			}
			fn(m)
			b, _ := json.Marshal(m)
			return b
		}
	}
	group := func(m map[string]any, g string) map[string]any { return m[g].(map[string]any) }
	tests := []struct {
		name      string
		doc       func(t *testing.T) []byte
		wantField string
		wantText  string
	}{
		{"not_json", func(*testing.T) []byte { return []byte("{\n  \"schema\": \"faceguard.facts/v1\",\n  oops\n}") }, "", "line 3"},
		{"empty", func(*testing.T) []byte { return nil }, "", "not a JSON document"},
		{"array", func(*testing.T) []byte { return []byte("[]") }, "", "want object"},
		{"missing_fr", edit(func(m map[string]any) { delete(m, "fr") }), "", "fr"},
		{"missing_fr_enabled", edit(func(m map[string]any) { delete(group(m, "fr"), "enabled") }), "fr", "enabled"},
		{"wrong_type", edit(func(m map[string]any) { group(m, "fr")["enabled"] = "yes" }), "fr.enabled", "boolean"},
		{"unknown_field", edit(func(m map[string]any) { group(m, "signage")["colour"] = "red" }), "signage", "colour"},
		{"unknown_top_level", edit(func(m map[string]any) { m["faces"] = []any{} }), "", "faces"},
		{"bad_enum", edit(func(m map[string]any) { group(m, "device")["kind"] = "toaster" }), "device.kind", "toaster"},
		{"bad_device_id", edit(func(m map[string]any) { group(m, "device")["id"] = "Gate 01" }), "device.id", "pattern"},
		{"negative_count", edit(func(m map[string]any) { group(m, "subjects")["count"] = -1 }), "subjects.count", "minimum"},
		{"fractional_count", edit(func(m map[string]any) { group(m, "raw_images")["count"] = 1.5 }), "raw_images.count", "integer"},
		{"bad_time", edit(func(m map[string]any) { m["collected_at"] = "yesterday" }), "collected_at", "date-time"},
		{"wrong_schema", edit(func(m map[string]any) { m["schema"] = "faceguard.facts/v2" }), "schema", "faceguard.facts/v1"},
		{"bad_egress", edit(func(m map[string]any) {
			m["egress"] = []any{map[string]any{"dest": "x", "internet": true, "data": "faces", "consent": "none"}}
		}), "egress[0].data", "faces"},
		{"oversized", func(*testing.T) []byte { return []byte(`"` + strings.Repeat("x", MaxFactsBytes) + `"`) }, "", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFacts(tt.doc(t))
			if err == nil {
				t.Fatal("accepted a broken document")
			}
			if !errors.Is(err, ErrInvalidFacts) {
				t.Fatalf("error %v does not wrap ErrInvalidFacts", err)
			}
			var fe *FactsError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FactsError", err)
			}
			found := false
			for _, p := range fe.Problems {
				if p.Field == tt.wantField && strings.Contains(p.Problem, tt.wantText) {
					found = true
				}
			}
			if !found {
				t.Fatalf("error %q does not name field %q with %q", err, tt.wantField, tt.wantText)
			}
		})
	}
}

// TestSchemaMatchesGoTypes keeps policies/facts.schema.json and the Facts type in step: every property
// of the schema is a JSON field of the Go type and the other way round, at every level.
func TestSchemaMatchesGoTypes(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(policies.SchemaJSON, &schema); err != nil {
		t.Fatal(err)
	}
	defs := schema["$defs"].(map[string]any)
	var compare func(path string, sch map[string]any, typ reflect.Type)
	compare = func(path string, sch map[string]any, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
			if items, ok := sch["items"].(map[string]any); ok {
				sch = items
			}
		}
		if ref, ok := sch["$ref"].(string); ok {
			sch = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		props, ok := sch["properties"].(map[string]any)
		if !ok || typ.Kind() != reflect.Struct || typ.PkgPath() == "time" {
			return
		}
		goFields := map[string]reflect.Type{}
		for i := range typ.NumField() {
			tag := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]
			goFields[tag] = typ.Field(i).Type
		}
		var schemaNames, goNames []string
		for name := range props {
			schemaNames = append(schemaNames, name)
		}
		for name := range goFields {
			goNames = append(goNames, name)
		}
		sort.Strings(schemaNames)
		sort.Strings(goNames)
		if !reflect.DeepEqual(schemaNames, goNames) {
			t.Errorf("%s: schema has %v, Go type %s has %v", path, schemaNames, typ.Name(), goNames)
			return
		}
		for name, sub := range props {
			compare(path+"."+name, sub.(map[string]any), goFields[name])
		}
	}
	compare("facts", schema, reflect.TypeFor[Facts]())
}

// TestParseFactsRoundTrip checks that what the agent gathers always passes its own contract.
func TestParseFactsRoundTrip(t *testing.T) {
	f, err := ParseFacts(validFactsJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	f.MarkUnknown(GroupSignage, "etc/faceguard/site.yaml", errors.New("yaml: line 3: did not find expected key"))
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseFacts(b)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, b)
	}
	if !g.IsUnknown(GroupSignage) || g.IsUnknown(GroupFR) {
		t.Fatalf("unknown groups lost: %+v", g.Unknown)
	}
}
