package engine

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/faceguard/faceguard/device"
)

// TestDocumentKeysAreShared: every object key of a converted facts or match document is one of the terms
// built once (keyTerms), so a field added to the facts without its key here is noticed.
func TestDocumentKeysAreShared(t *testing.T) {
	f := typicalFacts(t)
	f.Unknown = []device.Unknown{{Fact: "egress", Source: "var/lib/terminal/status.json", Reason: "no such file"}}
	f.Egress = []device.Egress{{Dest: "203.0.113.7:443", Internet: true, Data: "template", Consent: "none"}}
	in := device.MatchInput{Subject: device.MatchSubject{Found: true}}
	for name, doc := range map[string]ast.Value{"facts": factsToAST(&f), "match": matchToAST(&in)} {
		n := 0
		ast.WalkTerms(ast.NewTerm(doc), func(x *ast.Term) bool {
			if o, ok := x.Value.(ast.Object); ok {
				for _, k := range o.Keys() {
					n++
					s, _ := k.Value.(ast.String)
					if keyTerms[string(s)] != k {
						t.Errorf("%s: key %v is built on every conversion: add it to keyTerms", name, k)
					}
				}
			}
			return false
		})
		if n < 8 {
			t.Errorf("%s: only %d keys seen", name, n)
		}
	}
}
