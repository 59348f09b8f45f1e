# Findings: what a decision is made of. The controls (controls.rego) give reasons; these rules keep the
# reasons of known facts, name the controls that cannot be verified, and say whether a withdrawn subject
# is to be purged now. decision.rego assembles the decision (DESIGN §6) from `findings` alone, with the
# catalog: the agent evaluates `findings` and assembles the same decision in Go while the assembly rules
# are the built-in ones (docs/performance.md).
package faceguard

# findings is {reasons, unverifiable, purge_withdrawn}. Under the research exclusion nothing applies.
findings := {
	"reasons": _reason,
	"unverifiable": _unknown_reason,
	"purge_withdrawn": _purge_now,
} if {
	not _excluded
} else := {"reasons": set(), "unverifiable": set(), "purge_withdrawn": false}

# The reasons from known facts: a reason that read a fact of an unknown group is dropped. Each takes its
# control's action.
_reason := _raw_reason if count(_unknown) == 0

else := {r |
	some r in _raw_reason
	not _reads_unknown(r.facts)
}

_reads_unknown(facts) if {
	some f in facts
	_unknown[split(f, ".")[0]]
}

# Controls that fire from known facts.
_failing_normal := {r.control | some r in _reason}

# A control with no reason from known facts but an unknown group, that could apply, cannot be verified:
# it keeps its severity and articles, takes no action, and names the unknown groups.
_unknown_reason contains {"control": id, "message": {"zh": zh, "en": en}, "facts": groups} if {
	count(_unknown) > 0
	some id, c in controls
	not _failing_normal[id]
	groups := sort([g | some g in c.facts; _unknown[g]])
	count(groups) > 0
	every gate in object.get(_gates, id, []) {
		_gate_open(gate)
	}

	# Several groups from one broken file give one cause, said once.
	causes := sort({[i.source, i.reason] | some g in groups; some i in _group_issues; i.fact == g})
	zh := concat("", [
		"无法核实：未能采集事实 ", concat("、", groups),
		"（", concat("；", [sprintf("%v：%v", c) | some c in causes]), "）",
	])
	en := concat("", [
		"cannot be verified: facts ", concat(", ", groups),
		" could not be gathered (", concat("; ", [sprintf("%v: %v", c) | some c in causes]), ")",
	])
}

# The duty to purge a withdrawn subject starts at once, before the deadline makes it a violation.
_purge_now if {
	input.subjects.withdrawn_pending > 0
	not _unknown.subjects
} else := false
