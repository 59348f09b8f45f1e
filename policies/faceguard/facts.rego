# Shared facts: computed once per evaluation and read by every control.
#
# Unknown facts are never read as compliant. A fact group is unknown when the agent lists it in
# input.unknown, or (for location) when its category is not in the vocabulary. The values of an unknown
# group are placeholders: the shared values below check the set before reading a group, and decision.rego
# drops every reason that read an unknown group. Groups are otherwise taken to be present and typed as
# facts.schema.json says: the agent validates every document against it (device.ParseFacts) or builds it
# from typed Go values, and the pack does not pay to check that again on every evaluation.
package faceguard

# _group_issues: why a group is unknown, as {fact, source, reason}.
_group_issues contains {"fact": u.fact, "source": object.get(u, "source", ""), "reason": object.get(u, "reason", "")} if {
	some u in input.unknown
	is_object(u)
}

_group_issues contains {"fact": "location", "source": "location.category", "reason": reason} if {
	not _category_known
	reason := sprintf("unknown category %v", [object.get(object.get(input, "location", {}), "category", null)])
}

# A rule, not "not categories[input.location.category]": a negated lookup on a missing field would not fire.
_category_known if data.faceguard.vocab.categories[input.location.category]

# _unknown is the set of unknown fact groups. The first branch is the fast path of a complete document.
_unknown := set() if {
	not input.unknown
	_category_known
} else := {i.fact | some i in _group_issues}

# Face recognition is on, from known facts.
_fr_on if {
	input.fr.enabled == true
	not _unknown.fr
}

# A public place, from known facts.
_public if {
	input.location.public_place == true
	not _unknown.location
}

# A private space: a private category of the vocabulary, or the installer's flag.
_private_category if {
	not _unknown.location
	input.location.category in data.faceguard.config.private_categories
}

_private_flag if {
	input.location.private_space == true
	not _unknown.location
}

_private if _private_category

_private if _private_flag

# Research exclusion (Art. 2): only for a terminal that is known to be in the lab, at a location known
# to be neither public nor private. An unknown device or location can never claim it.
_excluded if {
	not _unknown.device
	input.device.stage == "rnd_lab"
	not _unknown.location
	not _public
	not _private
}

# "now" is when the facts were gathered, never the evaluation clock.
_now_ns := time.parse_rfc3339_ns(input.collected_at) if _rfc3339(input.collected_at)

# _rfc3339 holds for a string that time.parse_rfc3339_ns can read, checked first so that a bad value
# never raises an error (the agent evaluates with strict builtin errors).
_rfc3339(s) if {
	is_string(s)
	regex.match(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$`, s)
}

# A gate is open when its condition holds or its facts are unknown.
_gate_open("fr") if _unknown.fr

_gate_open("fr") if _fr_on

_gate_open("public") if _unknown.location

_gate_open("public") if _public

_gate_open("private") if _unknown.location

_gate_open("private") if _private

_gate_open("rnd_lab") if {
	not _unknown.device
	input.device.stage == "rnd_lab"
}
