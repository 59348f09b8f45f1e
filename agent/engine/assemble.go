package engine

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/faceguard/faceguard/device"
)

// The decision in two steps. The pack's controls are judged in Rego: data.faceguard.findings is every
// reason from known facts, every control that cannot be verified, and whether a withdrawn subject is to
// be purged now (policies/faceguard/findings.rego). Turning those into the contract's decision (DESIGN §6:
// one violation per control with the catalog's severity and articles, ordered; actions in canonical order
// with the alternatives kept on; counts) is the rules of decision.rego, and half of the time of a decision
// with violations when OPA interprets them (docs/performance.md). The agent assembles it here instead,
// while the active pack's assembly rules are the built-in ones: a bundle that changes them is decided by
// its own data.faceguard.decision. TestAssemblyAgreesWithThePack keeps the two equal.

// finding is one reason of data.faceguard.findings.
type finding struct {
	control string
	message device.Text
	facts   []string
}

func (r *finding) same(o *finding) bool {
	return r.control == o.control && r.message == o.message && slices.Equal(r.facts, o.facts)
}

type findings struct {
	reasons      []finding // from known facts: each takes its control's action
	unverifiable []finding // controls that cannot be verified: no action
	purge        bool      // a withdrawn subject is to be purged now
}

// assembly is what the Go assembly reads of a generation: its catalog and the ranks of decision.rego.
type assembly struct {
	catalog      map[string]Control
	severityRank map[string]string // severity → its place in the order, "0" first
	actionRank   map[string]int    // action → its place in the canonical order
}

// decide assembles the decision as decision.rego does. ok is false for findings it cannot place (a reason
// of a control the catalog does not have, or of a severity without a rank): the pack's own decision then
// decides, whatever it makes of them.
func (a *assembly) decide(f *findings) (d device.Decision, ok bool) {
	d = device.Decision{Status: device.StatusCompliant, Violations: []device.Violation{}, Actions: []string{}}
	type group struct {
		rank    string
		control string
		entry   Control
		reasons []*finding
	}
	var groups []*group
	byControl := map[string]*group{}
	add := func(r *finding) bool {
		g := byControl[r.control]
		if g == nil {
			c, found := a.catalog[r.control]
			rank, ranked := a.severityRank[c.Severity]
			if !found || !ranked {
				return false
			}
			g = &group{rank: rank, control: r.control, entry: c}
			byControl[r.control] = g
			groups = append(groups, g)
		}
		// The pack unites the two lists as sets: a reason in both counts once.
		if !slices.ContainsFunc(g.reasons, func(x *finding) bool { return x.same(r) }) {
			g.reasons = append(g.reasons, r)
		}
		return true
	}
	for _, list := range [][]finding{f.reasons, f.unverifiable} {
		for i := range list {
			if !add(&list[i]) {
				return d, false
			}
		}
	}
	slices.SortFunc(groups, func(x, y *group) int {
		return cmp.Or(strings.Compare(x.rank, y.rank), strings.Compare(x.control, y.control))
	})
	// As in decision.rego: when every control has one reason, each violation takes its reason's message
	// and facts as they are; when any control has several, every violation is joined (its facts sorted).
	several := slices.ContainsFunc(groups, func(g *group) bool { return len(g.reasons) > 1 })
	for _, g := range groups {
		v := device.Violation{Control: g.control, Severity: g.entry.Severity, Articles: nonNil(g.entry.Articles)}
		if !several {
			v.Message, v.Facts = g.reasons[0].message, nonNil(g.reasons[0].facts)
		} else {
			v.Message, v.Facts = joinReasons(g.reasons)
		}
		d.Violations = append(d.Violations, v)
		d.Counts.Add(v.Severity)
	}
	if len(d.Violations) > 0 {
		d.Status = device.StatusNonCompliant
	}

	actions := map[string]bool{}
	for _, r := range f.reasons {
		if act := a.catalog[r.control].Action; act != nil {
			actions[*act] = true
		}
	}
	if f.purge {
		actions[device.ActionPurgeWithdrawnSubjects] = true
	}
	// Never lock a person out: whenever face recognition goes off, the other ways through go on.
	if actions[device.ActionDisableFaceRecognition] {
		actions[device.ActionEnableAlternatives] = true
	}
	for act := range actions {
		if _, ranked := a.actionRank[act]; ranked { // an action without a rank adds nothing, as in Rego
			d.Actions = append(d.Actions, act)
		}
	}
	slices.SortFunc(d.Actions, func(x, y string) int {
		return cmp.Or(cmp.Compare(a.actionRank[x], a.actionRank[y]), strings.Compare(x, y))
	})
	return d, true
}

// joinReasons makes one message of a control's several reasons, in one order for both languages (by
// their English message, then facts, then Chinese message), with their facts unioned and sorted.
func joinReasons(rs []*finding) (device.Text, []string) {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(x, y *finding) int {
		return cmp.Or(strings.Compare(x.message.EN, y.message.EN), slices.Compare(x.facts, y.facts),
			strings.Compare(x.message.ZH, y.message.ZH))
	})
	zh := make([]string, len(rs))
	en := make([]string, len(rs))
	var facts []string
	for i, r := range rs {
		zh[i], en[i] = r.message.ZH, r.message.EN
		facts = append(facts, r.facts...)
	}
	slices.Sort(facts)
	return device.Text{ZH: strings.Join(zh, "；"), EN: strings.Join(en, "; ")}, nonNil(slices.Compact(facts))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// evalFindings evaluates data.faceguard.findings and returns it as OPA's value (decodeFindings), not
// converted to Go: a set must stay distinguishable from an array.
func (g *generation) evalFindings(ctx context.Context, input ast.Value) (any, error) {
	return evalOne(ctx, g.findings, input, termResult)
}

// termResult has an evaluation return OPA's term itself instead of its conversion to Go.
var termResult = rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })

// decodeFindings reads data.faceguard.findings as evalFindings returns it. ok is false for anything but
// the exact shape of findings.rego (the reasons as sets; a bundle's findings with more to say): the
// pack's own decision then decides.
func decodeFindings(v any) (f findings, ok bool) {
	t, isTerm := v.(*ast.Term)
	if !isTerm {
		return f, false
	}
	m, isObj := t.Value.(ast.Object)
	if !isObj || m.Len() != 3 {
		return f, false
	}
	purge, isBool := valueAt(m, "purge_withdrawn").(ast.Boolean)
	if !isBool {
		return f, false
	}
	f.purge = bool(purge)
	if f.reasons, ok = decodeReasons(valueAt(m, "reasons")); !ok {
		return f, false
	}
	f.unverifiable, ok = decodeReasons(valueAt(m, "unverifiable"))
	return f, ok
}

// valueAt is the value of key in m, nil when there is none.
func valueAt(m ast.Object, key string) ast.Value {
	if t := m.Get(keyTerm(key)); t != nil {
		return t.Value
	}
	return nil
}

func decodeReasons(v ast.Value) ([]finding, bool) {
	set, ok := v.(ast.Set)
	if !ok {
		return nil, false
	}
	out := make([]finding, 0, set.Len())
	good := true
	set.Foreach(func(x *ast.Term) {
		r, ok := decodeReason(x.Value)
		good = good && ok
		out = append(out, r)
	})
	return out, good
}

func decodeReason(v ast.Value) (finding, bool) {
	var r finding
	m, ok := v.(ast.Object)
	if !ok || m.Len() != 3 {
		return r, false
	}
	control, okC := valueAt(m, "control").(ast.String)
	msg, okM := valueAt(m, "message").(ast.Object)
	facts, okF := valueAt(m, "facts").(*ast.Array)
	if !okC || !okM || !okF || control == "" || msg.Len() != 2 {
		return r, false
	}
	zh, okZ := valueAt(msg, "zh").(ast.String)
	en, okE := valueAt(msg, "en").(ast.String)
	if !okZ || !okE {
		return r, false
	}
	r.control, r.message = string(control), device.Text{ZH: string(zh), EN: string(en)}
	r.facts = make([]string, 0, facts.Len())
	for i := range facts.Len() {
		s, ok := facts.Elem(i).Value.(ast.String)
		if !ok {
			return r, false
		}
		r.facts = append(r.facts, string(s))
	}
	return r, true
}

// assemblyRules are the rules the Go assembly stands in for: every rule of the built-in decision.rego
// and the two ranks it orders by. Parsed once from the embedded pack.
var assemblyRules = sync.OnceValues(func() (map[string][]*ast.Rule, error) {
	b, err := builtinBundle()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{"_severity_rank": true, "_action_rank": true}
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "decision.rego") {
			for _, r := range m.Parsed.Rules {
				if name, ok := packRuleName(m.Parsed, r); ok {
					names[name] = true
				}
			}
		}
	}
	if len(names) < 5 {
		return nil, fmt.Errorf("the built-in pack has no decision.rego")
	}
	return rulesNamed(b, names), nil
})

// assemblesLikeBuiltin reports whether a bundle's assembly rules are exactly the built-in ones (compared
// as parsed Rego, so that comments, formatting and the files they sit in do not matter), so that the Go
// assembly decides as the bundle's decision.rego would.
func assemblesLikeBuiltin(b *bundle.Bundle) bool {
	want, err := assemblyRules()
	if err != nil {
		return false
	}
	names := map[string]bool{}
	for n := range want {
		names[n] = true
	}
	got := rulesNamed(b, names)
	for n, rules := range want {
		if !sameRules(rules, got[n]) {
			return false
		}
	}
	return true
}

// rulesNamed collects the rules of data.faceguard.<name> for each name, from every module of a bundle.
func rulesNamed(b *bundle.Bundle, names map[string]bool) map[string][]*ast.Rule {
	out := map[string][]*ast.Rule{}
	for _, m := range b.Modules {
		if m.Parsed == nil {
			continue
		}
		for _, r := range m.Parsed.Rules {
			if name, ok := packRuleName(m.Parsed, r); ok && names[name] {
				out[name] = append(out[name], r)
			}
		}
	}
	return out
}

// packRuleName is the first name under data.faceguard of the document a rule defines.
func packRuleName(m *ast.Module, r *ast.Rule) (string, bool) {
	path := m.Package.Path.Concat(r.Head.Ref())
	if len(path) >= 3 {
		if v, ok := path[2].Value.(ast.Var); ok { // a head names its rule as a variable
			path[2] = ast.StringTerm(string(v))
		}
	}
	return faceguardName(path)
}

// sameRules: the same rules, in any order.
func sameRules(want, got []*ast.Rule) bool {
	if len(want) != len(got) {
		return false
	}
	used := make([]bool, len(got))
next:
	for _, w := range want {
		for i, g := range got {
			if !used[i] && w.Equal(g) {
				used[i] = true
				continue next
			}
		}
		return false
	}
	return true
}

// prepareAssembly prepares the findings query and reads what the assembly needs of the generation; nil
// when the catalog (as evaluated, rawCatalog) is not in the shape the Go assembly reads.
func prepareAssembly(ctx context.Context, g *generation, rawCatalog any, prepare, prepareDecision func(string) (rego.PreparedEvalQuery, error)) (*assembly, error) {
	var err error
	if g.findings, err = prepareDecision(findingsQuery); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleIncomplete, err)
	}
	if !catalogComplete(rawCatalog) {
		return nil, nil
	}
	a := &assembly{catalog: g.catalog}
	if _, err := readDocument(ctx, prepare, "data.faceguard._severity_rank", &a.severityRank); err != nil {
		return nil, err
	}
	if _, err := readDocument(ctx, prepare, "data.faceguard._action_rank", &a.actionRank); err != nil {
		return nil, err
	}
	return a, nil
}

// catalogComplete: every control of the catalog has a severity, its articles and an action (a string or
// null). decision.rego drops a violation whose control lacks one of them (the reference is undefined);
// the Go assembly would report it, so such a catalog is assembled in Rego.
func catalogComplete(catalog any) bool {
	controls, ok := catalog.(map[string]any)
	if !ok {
		return false
	}
	for _, raw := range controls {
		c, ok := raw.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := c["severity"].(string); !ok {
			return false
		}
		articles, ok := c["articles"].([]any)
		if !ok {
			return false
		}
		for _, x := range articles {
			if _, ok := x.(string); !ok {
				return false
			}
		}
		action, present := c["action"]
		if _, isString := action.(string); !present || action != nil && !isString {
			return false
		}
	}
	return true
}

// assemblyRefusal says why the compiled policy's assembly may not be done in Go, or "" when it may. The
// assembly rules were compared as written (assemblesLikeBuiltin); compiled, every name in them is
// resolved, so an import alias (findings as another document) or a package rule named like a builtin
// (concat) shows as a reference to another document: they may read only each other, findings, the
// catalog and builtins. And the catalog, which the Go assembly reads once per policy, must read no input
// and call no nondeterministic builtin.
func assemblyRefusal(compiler *ast.Compiler) string {
	want, err := assemblyRules()
	if err != nil {
		return err.Error()
	}
	allowed := map[string]bool{"findings": true, "controls": true}
	for n := range want {
		allowed[n] = true
	}
	for _, name := range slices.Sorted(maps.Keys(compiler.Modules)) {
		m := compiler.Modules[name]
		for _, r := range m.Rules {
			if n, ok := packRuleName(m, r); !ok || want[n] == nil {
				continue
			}
			var why string
			ast.WalkRefs(r, func(ref ast.Ref) bool {
				switch {
				case ref.HasPrefix(ast.InputRootRef):
					why = fmt.Sprintf("%s reads input", r.Ref())
				case ref.HasPrefix(ast.DefaultRootRef):
					if n, ok := faceguardName(ref); !ok || !allowed[n] {
						why = fmt.Sprintf("%s reads %s", r.Ref(), ref)
					}
				}
				return why != ""
			})
			if why != "" {
				return why
			}
		}
	}
	for _, r := range compiler.GetRules(ast.MustParseRef(catalogQuery)) {
		if why := perPolicyRefusal(compiler, r); why != "" {
			return "the catalog: " + why
		}
	}
	return ""
}

// faceguardName is the name under data.faceguard a reference reads; none for data.faceguard[x].
func faceguardName(ref ast.Ref) (string, bool) {
	if len(ref) < 3 || !ref[1].Equal(ast.StringTerm("faceguard")) {
		return "", false
	}
	s, ok := ref[2].Value.(ast.String)
	return string(s), ok
}
