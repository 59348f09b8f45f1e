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

# The reasons from known facts: a reason that read a fact of an unknown group is dropped.
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
_unknown_reason contains {"control": id, "zh": zh, "en": en, "facts": groups} if {
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

# Under the research exclusion nothing applies; otherwise every reason counts.
_reasons := set() if _excluded

else := _reason if count(_unknown) == 0

else := _reason | _unknown_reason

_failing := {r.control | some r in _reasons}

# Violations ordered by severity, then control id. The common case, one reason per failing control,
# maps reasons to violations in one pass; otherwise the reasons of each control are gathered (the inner
# comprehension refers to _reasons directly and filters on the outer id, so OPA can index it).
_violations := [{
	"control": r.control,
	"severity": key[2].severity,
	"articles": key[2].articles,
	"message": {"zh": r.zh, "en": r.en},
	"facts": r.facts,
} |
	some key in sort([[ranks[c.severity], r.control, c, r] | some r in rs; c := cs[r.control]])
	r := key[3]
] if {
	rs := _reasons
	count(rs) == count(_failing)
	cs := controls
	ranks := _severity_rank
} else := [_violation(id, controls[id], rs) |
	some key in sort([[_severity_rank[controls[i].severity], i] | some i in _failing])
	id := key[1]
	rs := [r | some r in _reasons; r.control == id]
]

# One violation per control. A single reason is used as it is (its facts are written sorted); several
# are joined in one order for both languages, with their facts unioned and sorted.
_violation(id, c, rs) := {
	"control": id,
	"severity": c.severity,
	"articles": c.articles,
	"message": {"zh": rs[0].zh, "en": rs[0].en},
	"facts": rs[0].facts,
} if count(rs) == 1

_violation(id, c, rs) := {
	"control": id,
	"severity": c.severity,
	"articles": c.articles,
	"message": {
		"zh": concat("；", [r.zh | some r in rs]),
		"en": concat("; ", [r.en | some r in rs]),
	},
	"facts": sort({f | some r in rs; some f in r.facts}),
} if count(rs) > 1

# Actions come only from reasons on known facts (a control that cannot be verified takes none).
_base_actions contains a if {
	not _excluded
	cs := controls
	some r in _reason
	a := cs[r.control].action
	is_string(a)
}

# The duty to purge a withdrawn subject starts at once, before the deadline makes it a violation.
_base_actions contains "purge_withdrawn_subjects" if {
	not _excluded
	not _unknown.subjects
	input.subjects.withdrawn_pending > 0
}

# Never lock a person out: whenever face recognition goes off, the other ways through go on.
_action_set := _base_actions | {"enable_alternatives" | "disable_face_recognition" in _base_actions}

_actions := [key[1] | some key in sort([[ranks[a], a] | some a in _action_set])] if ranks := _action_rank

_counts := object.union(_clean.counts, {s: count([1 | some v in vs; v.severity == s]) |
	some s in {v.severity | some v in vs}
}) if vs := _violations

_status := "compliant" if count(_violations) == 0

else := "non_compliant"
