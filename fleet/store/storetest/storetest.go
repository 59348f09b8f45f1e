// Package storetest is the contract of fleet.Store as tests: Run checks every method and rule of the
// interface against a fresh store per scenario, and RunConcurrent checks that two controllers applying the
// same messages at once through their own handles on one database end where applying them once does.
// Every implementation runs both (sqlstore does, on SQLite and on PostgreSQL).
package storetest

import (
	"testing"

	"github.com/faceguard/faceguard/fleet"
)

// A scenario runs against a fresh, empty store.
type scenario struct {
	name string
	run  func(t *testing.T, s fleet.Store)
}

// Run runs the contract. open returns a fresh, empty store, closed when its test ends.
func Run(t *testing.T, open func(t *testing.T) fleet.Store) {
	groups := []struct {
		name  string
		cases []scenario
	}{
		{"Birth", birthScenarios},
		{"State", stateScenarios},
		{"LastSeen", lastSeenScenarios},
		{"Compliance", complianceScenarios},
		{"Audit", auditScenarios},
		{"Subjects", subjectScenarios},
		{"Event", eventScenarios},
		{"Command", commandScenarios},
		{"Result", resultScenarios},
		{"Bundle", bundleScenarios},
		{"Query", queryScenarios},
		{"Filing", filingScenarios},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, sc := range g.cases {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, open(t)) })
			}
		})
	}
}
