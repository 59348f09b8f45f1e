package engine

import (
	"context"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/faceguard/faceguard/device"
)

// The match decision is the hot path of a terminal (DESIGN §11: p99 ≤ 50 µs), and its input is a small
// finite space: found × consent × withdrawn × age band × guardian × quarantined × face recognition
// allowed = 512 combinations. When a generation is compiled, the policy itself is evaluated on every one
// of them and Match answers from that table. The answer is still the policy's: a bundle swap rebuilds the
// table, and a pack whose rules call a nondeterministic builtin (time.now_ns, rand.*, …) gets no table,
// since its answer could change between calls; Match then evaluates live.

var (
	matchConsents = []string{device.BasisSeparate, device.BasisGuardian, device.BasisLaw, device.BasisNone}
	matchAgeBands = []string{device.AgeUnder14, device.Age14to17, device.AgeAdult, device.AgeUnknown}
	matchBools    = []bool{false, true}
)

const matchTableSize = 2 * 4 * 2 * 4 * 2 * 2 * 2

// matchIndex places an input in the table; ok is false for values outside the enumerated space (they are
// evaluated live, and the policy decides what an unknown value means).
func matchIndex(in *device.MatchInput) (int, bool) {
	c := slices.Index(matchConsents, in.Subject.Consent)
	a := slices.Index(matchAgeBands, in.Subject.AgeBand)
	if c < 0 || a < 0 {
		return 0, false
	}
	i := b2i(in.Subject.Found)
	i = i*4 + c
	i = i*2 + b2i(in.Subject.Withdrawn)
	i = i*4 + a
	i = i*2 + b2i(in.Subject.GuardianConsent)
	i = i*2 + b2i(in.Subject.Quarantined)
	i = i*2 + b2i(in.Terminal.FaceRecognitionAllowed)
	return i, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// buildMatchTable evaluates the policy on every enumerated input; nil when the pack is not pure.
func (g *generation) buildMatchTable(ctx context.Context) ([]device.MatchResult, error) {
	if !pure(g.match.Modules()) {
		return nil, nil
	}
	table := make([]device.MatchResult, matchTableSize)
	for _, found := range matchBools {
		for _, consent := range matchConsents {
			for _, withdrawn := range matchBools {
				for _, age := range matchAgeBands {
					for _, guardian := range matchBools {
						for _, quarantined := range matchBools {
							for _, fr := range matchBools {
								in := device.MatchInput{
									Subject: device.MatchSubject{Found: found, Consent: consent, Withdrawn: withdrawn,
										AgeBand: age, GuardianConsent: guardian, Quarantined: quarantined},
									Terminal: device.MatchTerminal{FaceRecognitionAllowed: fr},
								}
								r, err := g.evalMatch(ctx, &in)
								if err != nil {
									return nil, err
								}
								i, _ := matchIndex(&in)
								table[i] = r
							}
						}
					}
				}
			}
		}
	}
	return table, nil
}

// pure reports whether no module calls a nondeterministic builtin.
func pure(mods map[string]*ast.Module) bool {
	for _, m := range mods {
		if callsNondeterministic(m) {
			return false
		}
	}
	return true
}
