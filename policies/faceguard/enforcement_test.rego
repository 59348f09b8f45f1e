# The rules of enforcement: research exclusion, fr disabled, never lock out, withdrawal at once,
# unknown facts.
package faceguard_test

import data.faceguard

# Problems for every data control at once.
data_problems := {
	"subjects": {
		"without_consent": 3, "withdrawn_pending": 1, "withdrawn_oldest_s": 7200,
		"minors_without_guardian": 1, "beyond_retention": 2, "stored_off_device": 1,
	},
	"raw_images": {"count": 5, "oldest_age_s": 600, "consented": 0},
	"security": {"storage_encrypted": false},
}

# Problems for every live-recognition control at once, in a public place.
live_problems := {
	"fr": {"mode": "identify_1toN", "purpose": "access_control"},
	"location": {"category": "public_bath", "public_place": true, "necessity_ref": null, "capture_zone_defined": false},
	"signage": {"present": false, "evidence": "none", "verified_at": null},
	"notice": {"shown_before_capture": false, "fields": [], "retention_days": 0},
	"alternatives": {"configured": [], "healthy": [], "refuse_option_shown": false},
	"prompts": ["只能刷脸"],
	"pia": {"ref": null, "completed_at": null, "purpose": null},
}

live_controls := {
	"FRM-13-PRIVATE-SPACE", "FRM-13-SIGNAGE", "FRM-13-NECESSITY", "FRM-13-CAPTURE-ZONE", "FRM-10-ALTERNATIVE",
	"FRM-12-NO-COERCION", "FRM-05-NOTICE", "FRM-09-PIA", "FRM-04-MINIMISATION",
}

data_controls := {
	"FRM-08-RAW-IMAGES", "FRM-08-LOCAL-STORAGE", "FRM-08-RETENTION", "FRM-06-CONSENT", "FRM-06-WITHDRAWAL",
	"FRM-07-MINORS", "FRM-14-SECURITY",
}

# ------------------------------------------------------------------ 1. research exclusion (Art. 2)

test_research_lab_terminal_is_out_of_scope if {
	d := decide(object.union(data_problems, {
		"device": {"stage": "rnd_lab"},
		"location": {"category": "lab"},
		"alternatives": {"healthy": [], "refuse_option_shown": false},
	}))
	d == {
		"status": "compliant", "violations": [], "actions": [],
		"counts": {"critical": 0, "high": 0, "medium": 0, "low": 0},
	}
}

test_research_claim_in_public_place_applies_every_control if {
	d := decide_public(object.union(data_problems, {"device": {"stage": "rnd_lab"}}))
	fails(d, "FRM-02-SCOPE", "high", ["FRM Art. 2"], ["device.stage", "location.public_place"])
	every id in data_controls {
		viol(d, id)
	}
	"delete_raw_images" in d.actions
	"purge_withdrawn_subjects" in d.actions
}

test_research_claim_in_private_category_applies_every_control if {
	d := decide({"device": {"stage": "rnd_lab"}, "location": {"category": "public_changing_room"}})
	{"FRM-02-SCOPE", "FRM-13-PRIVATE-SPACE"} == {id | some id in ids(d)}
	d.actions == ["disable_face_recognition", "enable_alternatives"]
}

test_pilot_stage_is_in_scope if {
	d := decide({"device": {"stage": "pilot"}, "location": {"category": "lab"}, "subjects": {"without_consent": 1}})
	ids(d) == ["FRM-06-CONSENT"]
}

# ------------------------------------------------------------------ 2. face recognition disabled

test_fr_disabled_skips_live_controls_keeps_data_controls if {
	d := decide(object.union(object.union(live_problems, data_problems), {"fr": {"enabled": false, "mode": "off"}}))
	every id in live_controls {
		passes(d, id)
	}
	every id in data_controls {
		viol(d, id)
	}
	not "disable_face_recognition" in d.actions
	not "enable_alternatives" in d.actions
	not "block_enrolment" in d.actions
}

test_fr_enabled_fires_every_live_control if {
	d := decide(live_problems)
	every id in live_controls {
		viol(d, id)
	}
}

# ------------------------------------------------------------------ 3. never lock a person out

test_never_lockout_face_only_door_keeps_face_on if {
	d := decide({"alternatives": {"configured": [], "healthy": [], "refuse_option_shown": false}})
	d.actions == ["enable_alternatives"]
	never_locks_out(d)
}

test_never_lockout_missing_sign_keeps_face_on if {
	d := decide_public({"signage": {"present": false, "evidence": "none", "verified_at": null}})
	not "disable_face_recognition" in d.actions
	d.actions == []
}

test_never_lockout_private_space_turns_alternatives_on if {
	d := decide({"location": {"category": "hotel_guest_room"}, "alternatives": {"healthy": []}})
	d.actions == ["disable_face_recognition", "enable_alternatives"]
	never_locks_out(d)
}

test_never_lockout_only_private_space_disables_face if {
	every patch in [live_problems, data_problems, object.union(live_problems, {"location": {"category": "hotel_lobby"}})] {
		d := decide(patch)
		never_locks_out(d)
	}
	d := decide(object.union(live_problems, {"location": {"category": "hotel_lobby"}}))
	not "disable_face_recognition" in d.actions
	every id in {a | some a, c in faceguard.controls; c.action == "disable_face_recognition"} {
		id == "FRM-13-PRIVATE-SPACE"
	}
}

test_never_lockout_unknown_location_keeps_face_on if {
	d := decide({"unknown": [unknown_entry("location", "etc/faceguard/site.yaml", "yaml: line 3: mapping values are not allowed")]})
	viol(d, "FRM-13-PRIVATE-SPACE")
	d.actions == []
}

# ------------------------------------------------------------------ 4. withdrawal duty starts at once

test_withdrawal_purge_ordered_before_deadline if {
	d := decide({"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 5}})
	d.status == "compliant"
	d.violations == []
	d.actions == ["purge_withdrawn_subjects"]
}

test_withdrawal_after_deadline_violation_and_action if {
	d := decide({"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 3601}})
	ids(d) == ["FRM-06-WITHDRAWAL"]
	d.actions == ["purge_withdrawn_subjects"]
}

test_withdrawal_nothing_pending_no_action if {
	d := decide({"subjects": {"withdrawn_pending": 0, "withdrawn_oldest_s": 99999}})
	d.actions == []
}

# ------------------------------------------------------------------ 5. unknown facts

test_unknown_subjects_cannot_be_verified if {
	d := decide({"unknown": [unknown_entry("subjects", "var/lib/terminal/gallery.db", "database is locked")]})
	d.status == "non_compliant"
	every id in {"FRM-08-RETENTION", "FRM-06-CONSENT", "FRM-06-WITHDRAWAL", "FRM-07-MINORS", "FRM-08-LOCAL-STORAGE"} {
		v := viol(d, id)
		v.facts == ["subjects"]
		v.severity == faceguard.controls[id].severity
		v.articles == faceguard.controls[id].articles
	}
	v := viol(d, "FRM-06-CONSENT")
	v.message.zh == "无法核实：未能采集事实 subjects（var/lib/terminal/gallery.db：database is locked）"
	v.message.en == "cannot be verified: facts subjects could not be gathered (var/lib/terminal/gallery.db: database is locked)"
	d.actions == []
	d.counts == {"critical": 1, "high": 3, "medium": 1, "low": 0}
}

test_unknown_subjects_placeholders_are_not_read if {
	d := decide({
		"unknown": [unknown_entry("subjects", "var/lib/terminal/gallery.db", "no such file")],
		"subjects": {"without_consent": 9, "withdrawn_pending": 9, "withdrawn_oldest_s": 99999, "stored_off_device": 9},
	})
	every v in d.violations {
		v.facts == ["subjects"]
	}
	d.actions == []
}

test_unknown_subjects_local_storage_fires_from_egress if {
	d := decide({
		"unknown": [unknown_entry("subjects", "var/lib/terminal/gallery.db", "database is locked")],
		"egress": [{"dest": "cloud.example.com:443", "internet": true, "data": "template", "consent": "none"}],
	})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["egress"])
	not startswith(viol(d, "FRM-08-LOCAL-STORAGE").message.en, "cannot be verified")
	d.actions == ["block_face_data_egress"]
	viol(d, "FRM-06-CONSENT").facts == ["subjects"]
}

test_unknown_category_is_unknown_location if {
	d := decide({"location": {"category": "hotel_rom"}})
	v := viol(d, "FRM-13-PRIVATE-SPACE")
	v.severity == "critical"
	v.facts == ["location"]
	contains(v.message.en, "unknown category hotel_rom")
	startswith(v.message.zh, "无法核实：未能采集事实 location（location.category：unknown category hotel_rom")
	every id in {"FRM-13-SIGNAGE", "FRM-13-NECESSITY", "FRM-13-CAPTURE-ZONE"} {
		viol(d, id).facts == ["location"]
	}
	passes(d, "FRM-02-SCOPE")
	d.actions == []
}

test_unknown_category_with_fr_off_passes_live_controls if {
	d := decide({"location": {"category": "hotel_rom"}, "fr": {"enabled": false, "mode": "off"}})
	d.status == "compliant"
}

test_unknown_fr_every_fr_gated_control_unverifiable if {
	d := decide({"unknown": [unknown_entry("fr", "var/lib/terminal/status.json", "unexpected end of JSON input")], "fr": {"enabled": false}})
	every id in {"FRM-10-ALTERNATIVE", "FRM-12-NO-COERCION", "FRM-05-NOTICE", "FRM-09-PIA", "FRM-04-MINIMISATION"} {
		viol(d, id).facts == ["fr"]
	}

	# an ordinary gate is no private space, nor a public place: those controls cannot apply
	every id in {"FRM-13-PRIVATE-SPACE", "FRM-13-SIGNAGE", "FRM-13-NECESSITY", "FRM-13-CAPTURE-ZONE"} {
		passes(d, id)
	}
	viol(d, "FRM-04-MINIMISATION").severity == "low"
	d.actions == []
}

test_unknown_fr_in_private_space_switches_face_off if {
	d := decide({
		"unknown": [unknown_entry("fr", "var/lib/terminal/status.json", "stale")],
		"location": {"category": "hotel_guest_room", "public_place": true},
		"fr": {"enabled": false},
	})
	v := viol(d, "FRM-13-PRIVATE-SPACE")
	v.severity == "critical"
	v.facts == ["location.category"]
	d.actions == ["disable_face_recognition", "enable_alternatives"]
}

test_unknown_fr_in_flagged_private_space_switches_face_off if {
	d := decide({"unknown": [unknown_entry("fr", "status.json", "bad")], "location": {"private_space": true}})
	viol(d, "FRM-13-PRIVATE-SPACE").facts == ["location.private_space"]
	"disable_face_recognition" in d.actions
}

test_unknown_location_with_fr_on_private_space_unverifiable if {
	d := decide({"unknown": [unknown_entry("location", "site.yaml", "bad")]})
	v := viol(d, "FRM-13-PRIVATE-SPACE")
	v.facts == ["location"]
	startswith(v.message.en, "cannot be verified")
	not "disable_face_recognition" in d.actions
}

test_unknown_fr_in_public_place_signage_unverifiable if {
	d := faceguard.decision with input as mk_public({"unknown": [unknown_entry("fr", "status.json", "bad")]})
	viol(d, "FRM-13-SIGNAGE").facts == ["fr"]
}

test_unknown_fr_does_not_hide_known_reasons if {
	d := decide({
		"unknown": [unknown_entry("fr", "status.json", "bad")],
		"alternatives": {"healthy": []},
		"subjects": {"without_consent": 2},
	})
	fails(d, "FRM-06-CONSENT", "high", ["FRM Art. 6", "PIPL Art. 29"], ["subjects.without_consent"])
	viol(d, "FRM-10-ALTERNATIVE").facts == ["fr"]
	d.actions == ["quarantine_unconsented_subjects"]
}

test_unknown_group_of_control_that_cannot_apply_is_ignored if {
	# a terminal with face recognition known to be off does not need its notice or PIA
	d := decide({
		"fr": {"enabled": false, "mode": "off"},
		"unknown": [unknown_entry("notice", "site.yaml", "bad"), unknown_entry("pia", "site.yaml", "bad")],
	})
	d.status == "compliant"
}

test_unknown_signage_outside_public_place_is_ignored if {
	d := decide({"unknown": [unknown_entry("signage", "site.yaml", "bad")]})
	d.status == "compliant"
}

test_unknown_signage_in_public_place_unverifiable if {
	d := decide_public({"unknown": [unknown_entry("signage", "site.yaml", "bad")], "signage": {"present": false}})
	v := viol(d, "FRM-13-SIGNAGE")
	v.facts == ["signage"]
	v.severity == "high"
	v.articles == ["FRM Art. 13", "PIPL Art. 26"]
}

test_unknown_security_unverifiable if {
	d := decide({"unknown": [unknown_entry("security", "status.json", "field security missing")], "security": {"audit_log": false}})
	v := viol(d, "FRM-14-SECURITY")
	v.facts == ["security"]
	startswith(v.message.en, "cannot be verified")
	ids(d) == ["FRM-14-SECURITY"]
}

test_unknown_raw_images_unverifiable if {
	d := decide({"unknown": [unknown_entry("raw_images", "var/spool/terminal/raw", "permission denied")]})
	viol(d, "FRM-08-RAW-IMAGES").facts == ["raw_images"]
	d.actions == []
}

test_unknown_egress_and_subjects_named_together if {
	d := decide({"unknown": [
		unknown_entry("subjects", "gallery.db", "locked"),
		unknown_entry("egress", "proc/net/tcp", "permission denied"),
	]})
	v := viol(d, "FRM-08-LOCAL-STORAGE")
	v.facts == ["egress", "subjects"]
	v.message.en == "cannot be verified: facts egress, subjects could not be gathered (gallery.db: locked; proc/net/tcp: permission denied)"
	v.message.zh == "无法核实：未能采集事实 egress、subjects（gallery.db：locked；proc/net/tcp：permission denied）"
}

test_unknown_groups_from_one_file_give_the_cause_once if {
	d := decide_public({"unknown": [
		unknown_entry("location", "etc/faceguard/site.yaml", "yaml: line 8"),
		unknown_entry("signage", "etc/faceguard/site.yaml", "yaml: line 8"),
	]})
	viol(d, "FRM-13-SIGNAGE").message.en == "cannot be verified: facts location, signage could not be gathered (etc/faceguard/site.yaml: yaml: line 8)"
}

test_unknown_device_cannot_claim_research_exclusion if {
	d := decide(object.union({"subjects": {"without_consent": 1}}, {
		"unknown": [unknown_entry("device", "etc/faceguard/device.yaml", "no such file")],
		"device": {"stage": "rnd_lab"},
		"location": {"category": "lab"},
	}))
	viol(d, "FRM-06-CONSENT")
	passes(d, "FRM-02-SCOPE") # no exclusion is claimed: every control applies, nothing to report on scope
	d.status == "non_compliant"
}

test_unknown_location_with_lab_stage_applies_every_control if {
	d := decide({
		"unknown": [unknown_entry("location", "site.yaml", "bad")],
		"device": {"stage": "rnd_lab"},
		"subjects": {"without_consent": 1},
	})
	viol(d, "FRM-06-CONSENT")
	viol(d, "FRM-02-SCOPE").facts == ["location"]
}

test_unknown_location_production_scope_cannot_apply if {
	d := decide({"unknown": [unknown_entry("location", "site.yaml", "bad")]})
	passes(d, "FRM-02-SCOPE")
}

test_unknown_empty_list_is_complete if {
	decide({"unknown": []}).status == "compliant"
}

test_unknown_missing_category_is_unknown_location if {
	d := faceguard.decision with input as json.remove(base, ["location/category"])
	v := viol(d, "FRM-13-PRIVATE-SPACE")
	v.facts == ["location"]
	contains(v.message.en, "unknown category null")
}

test_unknown_egress_flow_without_consent_field_is_not_lawful if {
	d := decide({"egress": [{"dest": "cloud.example.com:443", "internet": true, "data": "template"}]})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["egress"])
}
