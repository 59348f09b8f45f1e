package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/policies"
)

// TestAssemblyAgreesWithThePack: the decision the agent assembles in Go from data.faceguard.findings is
// the pack's data.faceguard.decision, on documents crossed over from the example terminals' facts (most
// non-compliant in several ways at once, a third with unknown groups, some under the research exclusion).
// Every kind of findings the assembly treats differently must occur, or the test proves too little.
func TestAssemblyAgreesWithThePack(t *testing.T) {
	ctx := context.Background()
	g := newEngine(t, Options{}).active.Load()
	if g.assembly == nil {
		t.Fatal("the built-in pack is not assembled in Go")
	}
	docs := exampleFactsDocuments(t)
	r := rand.New(rand.NewPCG(11, 13))
	n := 4000
	if testing.Short() {
		n = 400
	}
	seen := map[string]int{}
	for i := range n {
		doc := crossOver(r, docs)
		if r.IntN(8) == 0 { // the research exclusion, or a lab terminal that does not get it
			dev := map[string]any{"id": "lab-1", "kind": "camera", "stage": "rnd_lab"}
			doc["device"] = dev
		}
		in, err := ast.InterfaceToValue(doc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := g.decideInRego(ctx, in)
		if err != nil {
			// A crossed-over document can hold a placeholder (null) of a broken example without its
			// unknown entry: the agent never evaluates such a document (it fails the schema).
			if _, ferr := g.evalFindings(ctx, in); ferr == nil {
				if _, gerr := g.decide(ctx, in); gerr == nil {
					seen["rego_error_only"]++
				}
			}
			continue
		}
		v, err := g.evalFindings(ctx, in)
		if err != nil {
			t.Fatalf("document %d: findings: %v (the pack's decision answered)", i, err)
		}
		f, ok := decodeFindings(v)
		if !ok {
			t.Fatalf("document %d: findings of the built-in pack not decoded: %v", i, v)
		}
		got, ok := g.assembly.decide(&f)
		if !ok {
			t.Fatalf("document %d: the assembly gave up on the built-in pack's findings", i)
		}
		requireSameDecision(t, fmt.Sprintf("document %d", i), doc, got, want)
		seen["compared"]++
		switch {
		case len(f.reasons)+len(f.unverifiable) == 0 && !f.purge:
			seen["clean"]++
		case len(f.reasons)+len(f.unverifiable) == 0:
			seen["purge_only"]++
		}
		if len(f.unverifiable) > 0 {
			seen["unverifiable"]++
		}
		controls := map[string]int{}
		for _, r := range f.reasons {
			controls[r.control]++
		}
		for _, c := range controls {
			if c > 1 {
				seen["several_reasons_one_control"]++
				break
			}
		}
		if dev, _ := doc["device"].(map[string]any); dev["stage"] == "rnd_lab" && want.Status == device.StatusCompliant {
			seen["excluded"]++
		}
		if len(want.Violations) >= 3 {
			seen["three_or_more_violations"]++
		}
	}
	t.Logf("%v", seen)
	if seen["rego_error_only"] > 0 {
		t.Errorf("%d documents failed in the pack's decision but not in the Go assembly", seen["rego_error_only"])
	}
	for _, kind := range []string{"clean", "unverifiable", "several_reasons_one_control", "excluded",
		"three_or_more_violations"} {
		if seen[kind] == 0 {
			t.Errorf("no document of kind %s among %d: the test proves too little", kind, seen["compared"])
		}
	}
	if seen["compared"] < n/2 {
		t.Errorf("only %d documents of %d compared", seen["compared"], n)
	}
}

// TestBundleAssemblyRules: a bundle that changes a rule of the assembly (here the violations of the
// common case carry their English message in capitals) is decided by its own decision.rego; one that
// only reformats decision.rego or comments on it keeps the Go assembly; findings of another shape are
// handed to the pack's decision.
func TestBundleAssemblyRules(t *testing.T) {
	ctx := context.Background()
	key := ecKey(t)
	decision, err := fs.ReadFile(policies.Pack(), "faceguard/decision.rego")
	if err != nil {
		t.Fatal(err)
	}
	findingsSrc, err := fs.ReadFile(policies.Pack(), "faceguard/findings.rego")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(src []byte, old, new string) string {
		t.Helper()
		if !strings.Contains(string(src), old) {
			t.Fatalf("the pack does not hold %q the way this test expects", old)
		}
		return strings.Replace(string(src), old, new, 1)
	}
	f := typicalFacts(t)

	shouted := edit(decision, "\t\"message\": r.message,\n\t\"facts\": r.facts,\n}] |",
		"\t\"message\": {\"zh\": r.message.zh, \"en\": upper(r.message.en)},\n\t\"facts\": r.facts,\n}] |")
	e := newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "2", map[string]string{"faceguard/decision.rego": shouted})); err != nil {
		t.Fatal(err)
	}
	if e.active.Load().assembly != nil {
		t.Fatal("a bundle with its own assembly rules is assembled in Go")
	}
	d, err := e.Decide(ctx, &f)
	if err != nil || len(d.Violations) == 0 {
		t.Fatalf("decide: %+v, %v", d, err)
	}
	for _, v := range d.Violations {
		if v.Message.EN != strings.ToUpper(v.Message.EN) {
			t.Errorf("%s: %q is not the bundle's decision", v.Control, v.Message.EN)
		}
	}

	reformatted := "# A comment the built-in pack does not have.\n\n" + edit(decision, "_clean := {", "# Nothing to report.\n_clean := {")
	e = newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "2", map[string]string{"faceguard/decision.rego": reformatted})); err != nil {
		t.Fatal(err)
	}
	if e.active.Load().assembly == nil {
		t.Fatal("comments in decision.rego cost the Go assembly")
	}

	noted := edit(findingsSrc, `"purge_withdrawn": _purge_now,`, `"purge_withdrawn": _purge_now, "note": "more to say",`)
	e = newEngine(t, Options{VerificationKey: key.pub})
	if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "2", map[string]string{"faceguard/findings.rego": noted})); err != nil {
		t.Fatal(err)
	}
	g := e.active.Load()
	in := factsToAST(&f)
	want, err := g.decideInRego(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := g.decide(ctx, in); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("findings with a key more: %+v, %v; the pack decides %+v", got, err, want)
	}
}

func TestDecodeFindingsRefusesOtherShapes(t *testing.T) {
	reason := func() map[string]any {
		return map[string]any{"control": "FRM-14-SECURITY", "message": map[string]any{"zh": "中", "en": "en"},
			"facts": []any{"security.audit_log"}}
	}
	ok := func() map[string]any {
		return map[string]any{"reasons": []any{reason()}, "unverifiable": []any{}, "purge_withdrawn": false}
	}
	// asTerm is a document as OPA gives it, the two lists as sets (asArrays keeps them arrays).
	asTerm := func(m map[string]any, asArrays bool) *ast.Term {
		v, err := ast.InterfaceToValue(m)
		if err != nil {
			t.Fatal(err)
		}
		obj := v.(ast.Object)
		for _, k := range []string{"reasons", "unverifiable"} {
			arr, isArr := obj.Get(ast.StringTerm(k)).Value.(*ast.Array)
			if !isArr || asArrays {
				continue
			}
			set := ast.NewSet()
			arr.Foreach(func(x *ast.Term) { set.Add(x) })
			obj.Insert(ast.StringTerm(k), ast.NewTerm(set))
		}
		return ast.NewTerm(obj)
	}
	if _, good := decodeFindings(asTerm(ok(), false)); !good {
		t.Fatal("the findings of findings.rego are refused")
	}
	if _, good := decodeFindings(asTerm(ok(), true)); good {
		t.Error("reasons as an array, not a set: decoded")
	}
	for name, change := range map[string]func(m map[string]any){
		"not an object":       nil,
		"a key more":          func(m map[string]any) { m["note"] = "x" },
		"purge not a boolean": func(m map[string]any) { m["purge_withdrawn"] = 1 },
		"reasons not a list":  func(m map[string]any) { m["reasons"] = map[string]any{} },
		"reason without control": func(m map[string]any) {
			r := reason()
			delete(r, "control")
			r["x"] = 1
			m["reasons"] = []any{r}
		},
		"message in one language": func(m map[string]any) {
			r := reason()
			r["message"] = map[string]any{"zh": "中"}
			m["unverifiable"] = []any{r}
		},
		"a fact not a string": func(m map[string]any) {
			r := reason()
			r["facts"] = []any{1}
			m["reasons"] = []any{r}
		},
	} {
		var v any = ast.StringTerm("findings")
		if change != nil {
			m := ok()
			change(m)
			v = asTerm(m, false)
		}
		if _, good := decodeFindings(v); good {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestAssemblyOnInventedFindings: the Go assembly and decision.rego, given the same findings (the pack's
// decision evaluated `with data.faceguard.findings as` them), decide alike, on findings no document of the
// built-in controls would give: several reasons of one control with equal messages or facts in another
// order, the same reason among both lists, controls of every severity, unverifiable controls with reasons
// of known facts beside them.
func TestAssemblyOnInventedFindings(t *testing.T) {
	ctx := context.Background()
	g := newEngine(t, Options{}).active.Load()
	pack := prepareBuiltin(t, "data.faceguard.decision with data.faceguard.findings as input")
	controls := slices.Sorted(maps.Keys(g.catalog))
	messages := []device.Text{{ZH: "甲", EN: "a"}, {ZH: "乙", EN: "a"}, {ZH: "甲", EN: "b"}, {ZH: "丙", EN: "c; d"}}
	facts := [][]string{{}, {"fr.enabled"}, {"fr.enabled", "location.category"}, {"location.category", "fr.enabled"},
		{"subjects.count"}}
	r := rand.New(rand.NewPCG(3, 5))
	reason := func() finding {
		return finding{control: controls[r.IntN(len(controls))], message: messages[r.IntN(len(messages))],
			facts: facts[r.IntN(len(facts))]}
	}
	toDoc := func(list []finding) []any {
		out := []any{}
		for _, f := range list {
			fs := make([]any, len(f.facts))
			for i, x := range f.facts {
				fs[i] = x
			}
			out = append(out, map[string]any{"control": f.control, "message": map[string]any{"zh": f.message.ZH, "en": f.message.EN}, "facts": fs})
		}
		return out
	}
	n := 2000
	if testing.Short() {
		n = 200
	}
	for i := range n {
		var f findings
		for range r.IntN(8) {
			f.reasons = append(f.reasons, reason())
		}
		for range r.IntN(3) {
			f.unverifiable = append(f.unverifiable, reason())
		}
		if len(f.reasons) > 0 && r.IntN(4) == 0 {
			f.unverifiable = append(f.unverifiable, f.reasons[0])
		}
		f.purge = r.IntN(3) == 0
		// As sets: the pack's findings never hold one reason twice in a list.
		f.reasons = slices.CompactFunc(sortedFindings(f.reasons), func(a, b finding) bool { return a.same(&b) })
		f.unverifiable = slices.CompactFunc(sortedFindings(f.unverifiable), func(a, b finding) bool { return a.same(&b) })
		doc := map[string]any{"reasons": toDoc(f.reasons), "unverifiable": toDoc(f.unverifiable), "purge_withdrawn": f.purge}
		in, err := ast.InterfaceToValue(doc)
		if err != nil {
			t.Fatal(err)
		}
		obj := in.(ast.Object) // the lists are sets in the pack
		for _, k := range []string{"reasons", "unverifiable"} {
			set := ast.NewSet()
			obj.Get(ast.StringTerm(k)).Value.(*ast.Array).Foreach(func(x *ast.Term) { set.Add(x) })
			obj.Insert(ast.StringTerm(k), ast.NewTerm(set))
		}
		v, err := evalOne(ctx, pack, in)
		if err != nil {
			t.Fatalf("findings %d: the pack: %v", i, err)
		}
		want, err := decodeDecision(v)
		if err != nil {
			t.Fatalf("findings %d: %v", i, err)
		}
		got, ok := g.assembly.decide(&f)
		if !ok {
			t.Fatalf("findings %d: the assembly gave up", i)
		}
		requireSameDecision(t, fmt.Sprintf("findings %d", i), doc, got, want)
	}
}

func sortedFindings(list []finding) []finding {
	return slices.SortedFunc(slices.Values(list), func(a, b finding) int {
		return cmp.Or(strings.Compare(a.control, b.control), strings.Compare(a.message.EN, b.message.EN),
			strings.Compare(a.message.ZH, b.message.ZH), slices.Compare(a.facts, b.facts))
	})
}

// TestAssemblyRefusesWhatItCannotMirror: bundles whose assembly rules read as the built-in ones but mean
// something else once compiled, or whose catalog the Go assembly would read otherwise than decision.rego,
// are decided by their own data.faceguard.decision.
func TestAssemblyRefusesWhatItCannotMirror(t *testing.T) {
	ctx := context.Background()
	key := ecKey(t)
	decision, _ := fs.ReadFile(policies.Pack(), "faceguard/decision.rego")
	catalog, _ := fs.ReadFile(policies.Pack(), "faceguard/catalog.rego")
	edit := func(src []byte, old, new string) string {
		t.Helper()
		if !strings.Contains(string(src), old) {
			t.Fatalf("the pack does not hold %q the way this test expects", old)
		}
		return strings.Replace(string(src), old, new, 1)
	}
	for name, files := range map[string]map[string]string{
		"an import alias for findings": {
			"faceguard/decision.rego": edit(decision, "package faceguard\n", "package faceguard\n\nimport data.faceguard.other.f as findings\n"),
			"faceguard/other.rego":    "package faceguard.other\n\nf := object.union(data.faceguard.findings, {\"purge_withdrawn\": false})\n",
		},
		"a package rule named like a builtin": {
			"faceguard/shadow.rego": "package faceguard\n\nconcat(_, _) := \"9\"\n",
		},
		"a catalog that reads input": {
			"faceguard/catalog.rego": edit(catalog, "controls := {", "controls := object.union(_catalog, {k: {\"fr_on\": input.fr.enabled} | some k, _ in _catalog})\n\n_catalog := {"),
		},
		"a control without articles": {
			"faceguard/catalog.rego": edit(catalog, "\t\t\"articles\": [\"FRM Art. 4\"],\n", ""),
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, Options{VerificationKey: key.pub})
			if _, err := e.ActivateBundle(ctx, signedBundle(t, key, "2", files)); err != nil {
				t.Fatal(err)
			}
			g := e.active.Load()
			if g.assembly != nil {
				t.Fatalf("assembled in Go; notes %v", g.notes)
			}
			if len(g.notes) == 0 {
				t.Error("no note says why the decision is assembled in Rego")
			}
			f := typicalFacts(t)
			f.FR.Mode = "identify_1toN" // FRM-04-MINIMISATION fires too
			in := factsToAST(&f)
			want, werr := g.decideInRego(ctx, in)
			got, gerr := g.decide(ctx, in)
			if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
				t.Fatalf("decide %+v %v; the pack %+v %v", got, gerr, want, werr)
			}
		})
	}
}

// requireSameDecision stops the test when the Go assembly's decision on doc is not the pack's.
func requireSameDecision(t *testing.T, what string, doc any, got, want device.Decision) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		j, _ := json.Marshal(doc)
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("%s: the Go assembly differs from the pack\n%s\nGo   %s\npack %s", what, j, gj, wj)
	}
}
