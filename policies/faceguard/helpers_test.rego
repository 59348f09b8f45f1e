# Shared test inputs and assertions. Every test patches one compliant base document.
package faceguard_test

import data.faceguard

# A compliant residential gate: not a public place, every duty met.
base := {
	"schema": "faceguard.facts/v1",
	"collected_at": "2026-11-24T10:00:00+08:00",
	"device": {"id": "gate-01", "kind": "door_terminal", "stage": "production"},
	"fr": {"enabled": true, "mode": "verify_1to1", "purpose": "access_control"},
	"location": {
		"category": "residential_gate", "public_place": false, "private_space": false,
		"necessity_ref": null, "capture_zone_defined": true,
	},
	"signage": {"present": true, "evidence": "photo_audit", "verified_at": "2026-10-01T09:00:00+08:00"},
	"notice": {
		"shown_before_capture": true,
		"fields": ["processor_contact", "purpose", "method", "retention_period", "impact", "rights"],
		"retention_days": 365,
	},
	"alternatives": {"configured": ["ic_card", "pin"], "healthy": ["ic_card", "pin"], "refuse_option_shown": true},
	"prompts": ["请刷脸或刷卡通行"],
	"subjects": {
		"count": 120, "without_consent": 0, "withdrawn_pending": 0, "withdrawn_oldest_s": 0,
		"minors_without_guardian": 0, "beyond_retention": 0, "stored_off_device": 0,
	},
	"raw_images": {"count": 0, "oldest_age_s": 0, "consented": 0},
	"egress": [{"dest": "10.0.0.5:8443", "internet": false, "data": "match_result", "consent": "none"}],
	"security": {
		"storage_encrypted": true, "transport_tls": true, "audit_log": true, "access_control": true,
		"intrusion_detection": true, "default_credentials": false,
	},
	"pia": {"ref": "PIA-2026-007", "completed_at": "2026-05-20T00:00:00+08:00", "purpose": "access_control"},
}

# The same gate as a compliant public place (a hotel lobby with a documented necessity).
public := {"location": {"category": "hotel_lobby", "public_place": true, "necessity_ref": "PSB-2026-017"}}

# mk merges a patch into the base: objects merge key by key, arrays and scalars replace.
mk(patch) := object.union(base, patch)

# mk_public merges a patch into the public-place variant.
mk_public(patch) := object.union(mk(public), patch)

decide(patch) := d if {
	d := faceguard.decision with input as mk(patch)
}

decide_public(patch) := d if {
	d := faceguard.decision with input as mk_public(patch)
}

# viol is the violation of control id in decision d.
viol(d, id) := v if {
	some v in d.violations
	v.control == id
}

ids(d) := [v.control | some v in d.violations]

# fails holds when d has exactly one violation of id with this severity, articles and facts, and a
# message in both languages.
fails(d, id, severity, articles, facts) if {
	d.status == "non_compliant"
	count([v | some v in d.violations; v.control == id]) == 1
	v := viol(d, id)
	v.severity == severity
	v.articles == articles
	v.facts == facts
	v.message.zh != ""
	v.message.en != ""
}

# passes holds when control id has no violation in d.
passes(d, id) if not viol(d, id)

# unknown_entry is one input.unknown item.
unknown_entry(fact, source, reason) := {"fact": fact, "source": source, "reason": reason}

# never_locks_out: face recognition never goes off without the alternatives going on.
never_locks_out(d) if not "disable_face_recognition" in d.actions

never_locks_out(d) if {
	"disable_face_recognition" in d.actions
	"enable_alternatives" in d.actions
}
