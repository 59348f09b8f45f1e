package engine

import (
	"context"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// TestDecisionBranchesAgree: decision.rego answers a complete document with at most one reason per
// control through a fast branch (_complete), and everything else through the general one. Both must give
// the same decision wherever the fast one applies. Documents are crossed over from the example terminals'
// facts (each group, or each field of a group, from a random one), so that most are non-compliant in
// several ways at once, and a third carry unknown groups.
func TestDecisionBranchesAgree(t *testing.T) {
	applies := prepareBuiltin(t, "data.faceguard._complete_applies")
	fast := prepareBuiltin(t, "data.faceguard._complete")
	general := prepareBuiltin(t, `{"status": data.faceguard._status, "violations": data.faceguard._violations,
		"actions": data.faceguard._actions, "counts": data.faceguard._counts}`)
	docs := exampleFactsDocuments(t)
	r := rand.New(rand.NewPCG(7, 9))
	ctx := context.Background()
	n := 3000
	if testing.Short() {
		n = 300
	}
	compared := 0
	for i := range n {
		doc := crossOver(r, docs)
		in, err := ast.InterfaceToValue(doc)
		if err != nil {
			t.Fatal(err)
		}
		want, err := evalOne(ctx, general, in)
		if err != nil {
			// A crossed-over document can hold a placeholder (null) of a broken example without its
			// unknown entry: the agent never evaluates such a document (it fails the schema).
			continue
		}
		if _, err := evalOne(ctx, applies, in); err == ErrUndefined {
			continue // the fast branch does not apply: unknown groups, the research exclusion, or several reasons for one control
		}
		got, err := evalOne(ctx, fast, in)
		if err != nil {
			t.Fatalf("document %d: fast branch: %v", i, err)
		}
		compared++
		if !reflect.DeepEqual(got, want) {
			j, _ := json.Marshal(doc)
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(want, "", " ")
			t.Fatalf("document %d: the branches differ\n%s\nfast    %s\ngeneral %s", i, j, g, w)
		}
	}
	if compared < n/4 {
		t.Fatalf("the fast branch applied to %d documents of %d: the test proves too little", compared, n)
	}
	t.Logf("%d of %d documents decided alike by both branches", compared, n)
}

func prepareBuiltin(t testing.TB, query string) rego.PreparedEvalQuery {
	t.Helper()
	ctx := context.Background()
	b, err := builtinBundle()
	if err != nil {
		t.Fatal(err)
	}
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	compiler := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1).WithUnsafeBuiltins(unsafeBuiltins)
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Activate(&bundle.ActivateOpts{Ctx: ctx, Store: store, Txn: txn, Compiler: compiler,
		Metrics: metrics.NoOp(), Bundles: map[string]*bundle.Bundle{"faceguard": b}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Commit(ctx, txn); err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query(query), rego.Compiler(compiler), rego.Store(store), rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return pq
}

// exampleFactsDocuments are the facts gathered from the example terminals (fsterm's golden files).
func exampleFactsDocuments(t testing.TB) []map[string]any {
	t.Helper()
	files, err := filepath.Glob("../../device/fsterm/testdata/golden/*.json")
	if err != nil || len(files) < 5 {
		t.Fatalf("example facts: %v (%d files)", err, len(files))
	}
	var docs []map[string]any
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		docs = append(docs, m)
	}
	return docs
}

// crossOver takes each group of a new document from a random example, or builds it field by field from
// several; the unknown list comes along with a third of them.
func crossOver(r *rand.Rand, docs []map[string]any) map[string]any {
	doc := map[string]any{}
	for _, k := range slices.Sorted(maps.Keys(docs[0])) {
		v := docs[0][k]
		if k == "unknown" {
			continue
		}
		src := docs[r.IntN(len(docs))][k]
		if g, ok := v.(map[string]any); ok && r.IntN(2) == 0 {
			ng := map[string]any{}
			for _, f := range slices.Sorted(maps.Keys(g)) {
				ng[f] = g[f]
				if other, ok := docs[r.IntN(len(docs))][k].(map[string]any); ok {
					if ov, ok := other[f]; ok {
						ng[f] = ov
					}
				}
			}
			src = ng
		}
		doc[k] = src
	}
	if r.IntN(3) == 0 {
		for _, d := range docs {
			if u, ok := d["unknown"]; ok {
				doc["unknown"] = u
				break
			}
		}
	}
	return doc
}
