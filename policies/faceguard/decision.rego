# The decision (DESIGN §6, contract): reasons grouped into at most one violation per control, the
# enforcement actions in canonical order, and counts per severity.
package faceguard

# decision is what the agent evaluates, exactly four keys. The first branch is the fast path of a
# complete, compliant document with nothing to do.
decision := _clean if {
	count(_reason) == 0
	count(_unknown) == 0
	input.subjects.withdrawn_pending == 0
} else := {
	"status": _status,
	"violations": _violations,
	"actions": _actions,
	"counts": _counts,
}

_clean := {
	"status": "compliant",
	"violations": [],
	"actions": [],
	"counts": {"critical": 0, "high": 0, "medium": 0, "low": 0},
}

# Controls that fire from known facts.
_failing_normal := {r.control | some r in _reason}

# A control with no reason from known facts but an unknown group, that could apply, cannot be verified:
# it keeps its severity and articles, takes no action, and names the unknown groups.
_unknown_reason contains {"control": id, "zh": zh, "en": en, "facts": groups} if {
	count(_unknown) > 0
	some id, c in controls
	not _failing_normal[id]
	groups := sort([g | some g in c.facts; _unknown[g]])
	count(groups) > 0
	every gate in object.get(_gates, id, []) {
		_gate_open(gate)
	}
	issues := [i | some g in groups; some i in _group_issues; i.fact == g]
	zh := concat("", [
		"无法核实：未能采集事实 ", concat("、", groups),
		"（", concat("；", [sprintf("%v：%v", [i.source, i.reason]) | some i in issues]), "）",
	])
	en := concat("", [
		"cannot be verified: facts ", concat(", ", groups),
		" could not be gathered (", concat("; ", [sprintf("%v: %v", [i.source, i.reason]) | some i in issues]), ")",
	])
}

# Under the research exclusion nothing applies; otherwise every reason counts.
_reasons := set() if _excluded

else := _reason | _unknown_reason

_failing := {r.control | some r in _reasons}

_violations := [_violation(id) |
	some key in sort([[_severity_rank[controls[cid].severity], cid] | some cid in _failing])
	id := key[1]
]

# One violation per control: messages joined in one order for both languages, facts unioned and sorted.
_violation(id) := {
	"control": id,
	"severity": c.severity,
	"articles": c.articles,
	"message": {
		"zh": concat("；", [r.zh | some r in rs]),
		"en": concat("; ", [r.en | some r in rs]),
	},
	"facts": sort({f | some r in rs; some f in r.facts}),
} if {
	c := controls[id]
	rs := [r | some r in _reasons; r.control == id]
}

# Actions come only from reasons on known facts (a control that cannot be verified takes none).
_action_set contains a if {
	not _excluded
	some id in _failing_normal
	a := controls[id].action
	is_string(a)
}

# The duty to purge a withdrawn subject starts at once, before the deadline makes it a violation.
_action_set contains "purge_withdrawn_subjects" if {
	not _excluded
	not _unknown.subjects
	input.subjects.withdrawn_pending > 0
}

# Never lock a person out: whenever face recognition goes off, the other ways through go on.
_action_set contains "enable_alternatives" if _action_set_base_disable

_action_set_base_disable if {
	not _excluded
	some id in _failing_normal
	controls[id].action == "disable_face_recognition"
}

_actions := [a | some a in _action_order; a in _action_set]

_counts := {s: count([v | some v in _violations; v.severity == s]) | some s in _severity_order}

_status := "compliant" if count(_violations) == 0

else := "non_compliant"
