package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// A rule of the pack that reads only data has one value per policy. The author marks such a rule
//
//	# METADATA
//	# custom:
//	#   per_policy: true
//
// and the engine evaluates it once, when the policy is compiled; the decision's queries then take its
// value (`data.faceguard.findings with data.faceguard._coercion_pattern as "…"`), so an evaluation does
// not build it again. It is OPA's own `with`: the answer is the one the rule would give. The engine
// checks that a marked rule reads no input and calls no nondeterministic builtin, itself or through any
// rule it depends on; one that does keeps being evaluated as usual, and the activation says so.

// perPolicyKey is the custom annotation that marks a rule.
const perPolicyKey = "per_policy"

// constant is a per-policy rule's value.
type constant struct {
	ref   ast.Ref
	value *ast.Term
}

// perPolicyConstants evaluates the marked rules of a compiled policy. notes names the marked rules that
// do not qualify, and why.
func perPolicyConstants(ctx context.Context, compiler *ast.Compiler, prepare func(string) (rego.PreparedEvalQuery, error)) (
	consts []constant, notes []string, err error) {
	marked := map[string]ast.Ref{}
	var rules []*ast.Rule
	for _, name := range slices.Sorted(maps.Keys(compiler.Modules)) {
		for _, r := range compiler.Modules[name].Rules {
			if isMarkedPerPolicy(r) {
				ref := r.Ref()
				marked[ref.String()] = ref
				rules = append(rules, r)
			}
		}
	}
	refused := map[string]string{}
	withData := rulesWithData(compiler)
	for _, r := range rules {
		key := r.Ref().String()
		if refused[key] != "" {
			continue
		}
		if withData != "" {
			refused[key] = withData
			continue
		}
		// Every rule that defines the document counts, marked or not (a default beside conditional ones).
		for _, def := range compiler.GetRules(r.Ref()) {
			if why := perPolicyRefusal(compiler, def); why != "" {
				refused[key] = why
				break
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(marked)) {
		if why := refused[key]; why != "" {
			notes = append(notes, fmt.Sprintf("%s is marked %s but %s: it is evaluated every time", key, perPolicyKey, why))
			continue
		}
		pq, err := prepare(key)
		if err != nil {
			return nil, nil, err
		}
		rs, err := pq.Eval(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", key, err)
		}
		if len(rs) == 0 || len(rs[0].Expressions) == 0 {
			continue // undefined: nothing to give the queries
		}
		v, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", key, err)
		}
		consts = append(consts, constant{ref: marked[key], value: ast.NewTerm(v)})
	}
	return consts, notes, nil
}

func isMarkedPerPolicy(r *ast.Rule) bool {
	for _, a := range r.Annotations {
		if v, ok := a.Custom[perPolicyKey].(bool); ok && v {
			return true
		}
	}
	return false
}

// perPolicyRefusal says why a marked rule cannot have one value per policy, or "" when it can: it must
// be a complete rule without arguments at a ground path, and neither it nor any rule it depends on may
// read input or call a nondeterministic builtin.
func perPolicyRefusal(compiler *ast.Compiler, r *ast.Rule) string {
	if len(r.Head.Args) > 0 || r.Head.RuleKind() != ast.SingleValue || !r.Ref().IsGround() {
		return "it is not a complete rule at a fixed path"
	}
	seen := map[*ast.Rule]bool{}
	queue := []*ast.Rule{r}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		if seen[x] {
			continue
		}
		seen[x] = true
		if readsInput(x) { // the walks take in the rule's else branches
			return fmt.Sprintf("%s reads input", x.Ref())
		}
		if callsNondeterministic(x) {
			return fmt.Sprintf("%s calls a nondeterministic builtin", x.Ref())
		}
		for dep := range compiler.Graph.Dependencies(x) {
			if d, ok := dep.(*ast.Rule); ok {
				queue = append(queue, d)
			}
		}
	}
	return ""
}

// rulesWithData names a rule that evaluates something with data replaced (`with data.… as …`), or "": a
// marked rule evaluated under it could give another value than the one computed once.
func rulesWithData(compiler *ast.Compiler) string {
	for _, name := range slices.Sorted(maps.Keys(compiler.Modules)) {
		for _, r := range compiler.Modules[name].Rules {
			found := false
			ast.WalkExprs(r, func(e *ast.Expr) bool {
				for _, w := range e.With {
					if ref, ok := w.Target.Value.(ast.Ref); ok && ref.HasPrefix(ast.DefaultRootRef) {
						found = true
					}
				}
				return found
			})
			if found {
				return fmt.Sprintf("%s evaluates with data replaced", r.Ref())
			}
		}
	}
	return ""
}

func readsInput(x any) bool {
	found := false
	ast.WalkRefs(x, func(ref ast.Ref) bool {
		if ref.HasPrefix(ast.InputRootRef) {
			found = true
		}
		return found
	})
	return found
}

// callsNondeterministic: x calls a builtin whose answer may change between two calls (time.now_ns,
// rand.*, …), as an expression or inside a term.
func callsNondeterministic(x any) bool {
	found := false
	check := func(op ast.Ref) {
		if b, ok := ast.BuiltinMap[op.String()]; ok && b.Nondeterministic {
			found = true
		}
	}
	ast.WalkExprs(x, func(e *ast.Expr) bool {
		if e.IsCall() {
			check(e.Operator())
		}
		return false
	})
	ast.WalkTerms(x, func(t *ast.Term) bool {
		if c, isCall := t.Value.(ast.Call); isCall && len(c) > 0 {
			if r, isRef := c[0].Value.(ast.Ref); isRef {
				check(r)
			}
		}
		return false
	})
	return found
}

// withConstants is the query `ref` taking the per-policy values.
func withConstants(ref string, consts []constant) (ast.Body, error) {
	r, err := ast.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	expr := ast.NewExpr(ast.NewTerm(r))
	for _, c := range consts {
		expr.With = append(expr.With, &ast.With{Target: ast.NewTerm(c.ref), Value: c.value})
	}
	return ast.NewBody(expr), nil
}
