package engine

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/policies"
)

// TestPerPolicyRules: the built-in pack's marked rules are computed once and given to the decision's
// queries; a bundle that changes the data they read gets them computed again from its data; a marked
// rule that reads input, or depends on one that does, or calls a nondeterministic builtin, is evaluated
// as usual and named in the notes.
func TestPerPolicyRules(t *testing.T) {
	ctx := context.Background()
	g := newEngine(t, Options{}).active.Load()
	got := map[string]string{}
	for _, c := range g.constants {
		got[c.ref.String()] = c.value.String()
		if s, ok := c.value.Value.(ast.String); ok {
			got[c.ref.String()] = string(s)
		}
	}
	if got["data.faceguard._coercion_phrases_lower"] != "true" || !strings.Contains(got["data.faceguard._coercion_pattern"], `\Q必须刷脸\E`) {
		t.Fatalf("the built-in pack's per-policy values: %v", got)
	}
	if len(g.notes) > 0 {
		t.Fatalf("the built-in pack's marked rules do not all qualify: %v", g.notes)
	}

	// New phrases, one in capitals (the case-insensitive road), reach the pattern through the bundle's data.
	key := ecKey(t)
	data, _ := fs.ReadFile(policies.Pack(), "data.json")
	edited := strings.Replace(string(data), `"coercion_phrases": [`, `"coercion_phrases": ["ONLY BY FACE", `, 1)
	if edited == string(data) {
		t.Fatal("data.json does not hold coercion_phrases the way this test expects")
	}
	e := newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "2", map[string]string{"data.json": edited})); err != nil {
		t.Fatal(err)
	}
	f := compliantFacts(t)
	f.Prompts = []string{"Entry only by face"}
	d, err := e.Decide(ctx, &f)
	if err != nil {
		t.Fatal(err)
	}
	if !hasViolation(d, "FRM-12-NO-COERCION") {
		t.Fatalf("a bundle's new phrase is not matched: %+v", d.Violations)
	}

	// Marked rules that do not qualify.
	marked := "# METADATA\n# custom:\n#   per_policy: true\n"
	extra := "package faceguard\n\n" +
		marked + "_reads_input := input.fr.enabled\n\n" +
		"_first_prompt := input.prompts[0]\n\n" +
		marked + "_reads_input_below := count(_first_prompt)\n\n" +
		marked + "_clock := time.now_ns()\n\n" +
		marked + "_partial contains 1\n\n" +
		marked + "default _defaulted := \"static\"\n\n" +
		"_defaulted := \"dynamic\" if input.fr.enabled\n"
	e = newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "3", map[string]string{"faceguard/extra.rego": extra})); err != nil {
		t.Fatal(err)
	}
	g = e.active.Load()
	notes := strings.Join(g.notes, "\n")
	for _, want := range []string{
		"data.faceguard._reads_input is marked per_policy but data.faceguard._reads_input reads input",
		"data.faceguard._reads_input_below is marked per_policy but data.faceguard._first_prompt reads input",
		"data.faceguard._clock is marked per_policy but data.faceguard._clock calls a nondeterministic builtin",
		"data.faceguard._partial is marked per_policy but it is not a complete rule at a fixed path",
		"data.faceguard._defaulted is marked per_policy but data.faceguard._defaulted reads input",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if len(g.constants) != 2 {
		t.Errorf("per-policy values %v: only the pack's two qualify", g.constants)
	}
	if _, err := e.Decide(ctx, &f); err != nil {
		t.Fatal(err)
	}

	// A rule that evaluates with data replaced could see another value of a marked rule: none is
	// computed once.
	withData := "package faceguard\n\n_other_pattern := p if {\n\tp := _coercion_pattern with data.faceguard.config.coercion_phrases as [\"x\"]\n}\n"
	e = newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "3", map[string]string{"faceguard/with.rego": withData})); err != nil {
		t.Fatal(err)
	}
	if g = e.active.Load(); len(g.constants) != 0 || !strings.Contains(strings.Join(g.notes, "\n"), "evaluates with data replaced") {
		t.Errorf("with data replaced in a rule: constants %v, notes %v", g.constants, g.notes)
	}
}

func hasViolation(d device.Decision, control string) bool {
	for _, v := range d.Violations {
		if v.Control == control {
			return true
		}
	}
	return false
}
