# Shared facts: computed once per evaluation and read by every control.
#
# Unknown facts are never read as compliant. A fact group is unknown when the agent lists it in
# input.unknown, when it is missing or of the wrong JSON type, or (for location) when its category is not
# in the vocabulary. The values of an unknown group are placeholders: no rule below reads them.
package faceguard

# _group_issues: why a group is unknown, as {fact, source, reason}.
_group_issues contains {"fact": u.fact, "source": object.get(u, "source", ""), "reason": object.get(u, "reason", "")} if {
	some u in input.unknown
}

_group_issues contains {"fact": g, "source": "input", "reason": "missing or malformed"} if {
	some g, t in _group_types
	not type_name(input[g]) == t
}

_group_issues contains {"fact": "location", "source": "location.category", "reason": reason} if {
	is_object(input.location)
	not data.faceguard.vocab.categories[input.location.category]
	reason := sprintf("unknown category %v", [object.get(input.location, "category", null)])
}

# _unknown is the set of unknown fact groups. The first branch is the fast path of a complete document.
_unknown := set() if {
	_none_declared
	data.faceguard.vocab.categories[input.location.category]
	_shape_ok
} else := {i.fact | some i in _group_issues}

_none_declared if not input.unknown

_none_declared if input.unknown == []

_shape_ok if {
	is_object(input.device)
	is_object(input.fr)
	is_object(input.location)
	is_object(input.signage)
	is_object(input.notice)
	is_object(input.alternatives)
	is_array(input.prompts)
	is_object(input.subjects)
	is_object(input.raw_images)
	is_array(input.egress)
	is_object(input.security)
	is_object(input.pia)
}

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
_now_ns := time.parse_rfc3339_ns(input.collected_at)

# A gate is open when its condition holds or its facts are unknown.
_gate_open("fr") if _unknown.fr

_gate_open("fr") if _fr_on

_gate_open("public") if _unknown.location

_gate_open("public") if _public

_gate_open("rnd_lab") if _unknown.device

_gate_open("rnd_lab") if {
	not _unknown.device
	input.device.stage == "rnd_lab"
}
