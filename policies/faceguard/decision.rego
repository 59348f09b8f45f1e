# The decision (DESIGN §6, contract): reasons grouped into at most one violation per control, the
# enforcement actions in canonical order, and counts per severity.
#
# These rules read nothing but `findings` (findings.rego), the catalog and the two ranks. The agent
# evaluates `findings` and assembles the same decision in Go (agent/engine/assemble.go) while the rules of
# this file are the built-in ones, and evaluates `decision` itself for a bundle that changes them; a
# differential test keeps the two equal (docs/performance.md).
package faceguard

# decision is exactly four keys. The first branch is the fast path of a document with nothing to report
# and nothing to do.
decision := _clean if {
	f := findings
	count(f.reasons) == 0
	count(f.unverifiable) == 0
	f.purge_withdrawn == false
} else := _complete if {
	_complete_applies
} else := {
	"status": _status,
	"violations": _violations,
	"actions": _actions,
	"counts": _counts,
}

# The common case that is not clean: every control verifiable, at most one reason per control. Each
# reason becomes its violation in one step, keyed by [severity rank, control id, action, violation]: a
# set iterates in sorted order, so the violations come out in the contract's order, and the actions,
# keyed by their rank, too. The general branch below gives the same decision (the Rego
# tests take both), but spends about a fifth more on a typical terminal (docs/performance.md).
_complete_applies if {
	count(findings.unverifiable) == 0
	count(_vk) == count({k[1] | some k in _vk})
}

_complete := {
	"status": status,
	"violations": [k[3] | some k in _vk],
	"actions": [a[1] | some a in actions],
	"counts": {
		"critical": strings.count(ranks, "0"),
		"high": strings.count(ranks, "1"),
		"medium": strings.count(ranks, "2"),
		"low": strings.count(ranks, "3"),
	},
} if {
	ranks := concat("", [k[0] | some k in _vk])
	status := _status_of(ranks)
	ar := _action_rank
	base := {[ar[a], a] | some k in _vk; a := k[2]; a != null} | _purge_action
	actions := _with_alternatives(base)
}

_vk := {[ranks[c.severity], id, c.action, {
	"control": id,
	"severity": c.severity,
	"articles": c.articles,
	"message": r.message,
	"facts": r.facts,
}] |
	some r in findings.reasons
	id := r.control
	c := cs[id]
} if {
	cs := controls
	ranks := _severity_rank
}

_status_of("") := "compliant"

_status_of(ranks) := "non_compliant" if ranks != ""

# Never lock a person out: whenever face recognition goes off, the other ways through go on.
_with_alternatives(base) := base | {[_action_rank.enable_alternatives, "enable_alternatives"]} if {
	base[[_action_rank.disable_face_recognition, "disable_face_recognition"]]
} else := base

_clean := {
	"status": "compliant",
	"violations": [],
	"actions": [],
	"counts": {"critical": 0, "high": 0, "medium": 0, "low": 0},
}

# Every reason counts, the unverifiable ones too.
_reasons := findings.reasons | findings.unverifiable

_failing := {r.control | some r in _reasons}

# Every reason keyed by [severity rank, control id, catalog entry, reason]. A set iterates in sorted
# order, so the keyed reasons come out in the contract's order without a sort.
_keyed := {[ranks[c.severity], id, c, r] |
	some r in rs
	id := r.control
	c := cs[id]
} if {
	rs := _reasons
	cs := controls
	ranks := _severity_rank
}

# The common case, one reason per failing control: each keyed reason makes its violation. Otherwise the
# reasons of each control are joined.
_violations := [{
	"control": k[1],
	"severity": c.severity,
	"articles": c.articles,
	"message": r.message,
	"facts": r.facts,
} |
	some k in _keyed
	c := k[2]
	r := k[3]
] if {
	count(_keyed) == count(_failing)
} else := [_violation(g[1], g[2], rs) |
	some g in {[k[0], k[1], k[2]] | some k in _keyed}
	rs := [r | some r in _reasons; r.control == g[1]]
]

# One violation per control from several reasons, joined in one order for both languages (by their
# English message, then facts, then Chinese message), with their facts unioned and sorted.
_violation(id, c, reasons) := {
	"control": id,
	"severity": c.severity,
	"articles": c.articles,
	"message": {
		"zh": concat("；", [r.message.zh | some r in rs]),
		"en": concat("; ", [r.message.en | some r in rs]),
	},
	"facts": sort({f | some r in rs; some f in r.facts}),
} if {
	rs := [x[3] | some x in sort([[r.message.en, r.facts, r.message.zh, r] | some r in reasons])]
}

# Actions come only from reasons on known facts (a control that cannot be verified takes none), each
# keyed by its canonical rank so that the set iterates in the contract's order; a control without an
# action (null) has no rank and adds nothing.
_base_actions := {[ranks[a], a] | some r in findings.reasons; a := cs[r.control].action} | _purge_action if {
	cs := controls
	ranks := _action_rank
}

# The duty to purge a withdrawn subject starts at once, before the deadline makes it a violation.
_purge_action := {[_action_rank.purge_withdrawn_subjects, "purge_withdrawn_subjects"]} if {
	findings.purge_withdrawn == true
} else := set()

_actions := [k[1] | some k in _with_alternatives(_base_actions)]

# Counts per severity, every severity present. (A complete document counts in _complete, from the keys.)
_counts := object.union(_clean.counts, {s: count([1 | some v in vs; v.severity == s]) |
	some s in {v.severity | some v in vs}
}) if {
	vs := _violations
}

_status := "compliant" if count(_reasons) == 0

else := "non_compliant"
