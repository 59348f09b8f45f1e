package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/wire"
)

// TestComplianceReportsQuarantinedSubjects: the summary tells the fleet how many templates the agent
// keeps out of matching (wire.ControlState.Quarantined, shown on the dashboard's device page as
// "Quarantined subjects"), as a count only.
func TestComplianceReportsQuarantinedSubjects(t *testing.T) {
	ta := startTestAgent(t, "withdrawn-and-minor")
	var ctrl struct {
		Quarantined []string `json:"quarantined_subjects"`
	}
	b, err := os.ReadFile(filepath.Join(ta.root, filepath.FromSlash(fsterm.ControlPath)))
	if err != nil || json.Unmarshal(b, &ctrl) != nil || len(ctrl.Quarantined) == 0 {
		t.Fatalf("the fixture's minor is not quarantined (%v): the test would prove nothing", err)
	}
	var last *wire.Compliance
	for _, r := range ta.newOutbox(t, agentState{}) {
		var c wire.Compliance
		if r.Topic == wire.ComplianceTopic(fuzzDev) && json.Unmarshal(r.Payload, &c) == nil {
			last = &c
		}
	}
	if last == nil {
		t.Fatal("no compliance summary queued")
	}
	if last.Control.Quarantined != len(ctrl.Quarantined) {
		t.Fatalf("the summary reports %d quarantined subjects; control.json quarantines %d", last.Control.Quarantined, len(ctrl.Quarantined))
	}
}
