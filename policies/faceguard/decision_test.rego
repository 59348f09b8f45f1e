# The shape of the decision (DESIGN §6), the catalog and the data the pack ships with.
package faceguard_test

import data.faceguard

many_problems := {
	"fr": {"mode": "identify_1toN"},
	"location": {"category": "hotel_guest_room"},
	"notice": {"retention_days": 0},
	"subjects": {"without_consent": 1, "beyond_retention": 1, "withdrawn_pending": 1, "withdrawn_oldest_s": 10},
	"raw_images": {"count": 1, "oldest_age_s": 99, "consented": 0},
	"security": {"audit_log": false},
	"egress": [{"dest": "cloud.example.com:443", "internet": true, "data": "template", "consent": "none"}],
	"alternatives": {"refuse_option_shown": false},
}

test_decision_has_exactly_four_keys if {
	every patch in [{}, many_problems] {
		d := decide(patch)
		{k | some k, _ in d} == {"status", "violations", "actions", "counts"}
	}
}

test_violation_has_exactly_five_keys if {
	d := decide(many_problems)
	count(d.violations) > 0
	every v in d.violations {
		{k | some k, _ in v} == {"control", "severity", "articles", "message", "facts"}
		{k | some k, _ in v.message} == {"zh", "en"}
	}
}

test_violations_ordered_by_severity_then_control if {
	d := decide(many_problems)
	ids(d) == [
		"FRM-08-LOCAL-STORAGE", "FRM-13-PRIVATE-SPACE",
		"FRM-06-CONSENT", "FRM-08-RAW-IMAGES", "FRM-10-ALTERNATIVE", "FRM-14-SECURITY",
		"FRM-05-NOTICE", "FRM-08-RETENTION",
		"FRM-04-MINIMISATION",
	]
}

test_one_violation_per_control if {
	d := decide(object.union(many_problems, {"notice": {"shown_before_capture": false, "fields": []}}))
	count(ids(d)) == count({id | some id in ids(d)})
}

test_actions_in_canonical_order if {
	d := decide(many_problems)
	d.actions == [
		"disable_face_recognition", "enable_alternatives", "block_face_data_egress", "delete_raw_images",
		"purge_withdrawn_subjects", "purge_expired_subjects", "quarantine_unconsented_subjects", "block_enrolment",
	]
}

test_actions_are_deduplicated if {
	# the private space and the missing refuse option both ask for alternatives
	d := decide({"location": {"category": "public_bath"}, "alternatives": {"healthy": [], "refuse_option_shown": false}})
	d.actions == ["disable_face_recognition", "enable_alternatives"]
}

test_counts_match_violations if {
	d := decide(many_problems)
	d.counts == {"critical": 2, "high": 4, "medium": 2, "low": 1}
	d.status == "non_compliant"
}

test_counts_always_have_every_severity if {
	decide({}).counts == {"critical": 0, "high": 0, "medium": 0, "low": 0}
	decide({"security": {"audit_log": false}}).counts == {"critical": 0, "high": 1, "medium": 0, "low": 0}
}

test_status_compliant_iff_no_violations if {
	decide({}).status == "compliant"
	decide({"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 1}}).status == "compliant"
	decide({"fr": {"mode": "identify_1toN"}}).status == "non_compliant"
}

test_facts_are_sorted_and_unique if {
	d := decide(object.union(many_problems, {"notice": {"shown_before_capture": false, "fields": []}}))
	every v in d.violations {
		v.facts == sort({f | some f in v.facts})
	}
}

test_raw_image_limit_config_override if {
	p := {"raw_images": {"count": 1, "oldest_age_s": 45, "consented": 0}}
	ids(decide(p)) == ["FRM-08-RAW-IMAGES"]
	d := faceguard.decision with input as mk(p) with data.faceguard.config.raw_image_max_s as 60
	d.status == "compliant"
	d.actions == []
}

test_private_categories_config_override if {
	d := faceguard.decision with input as mk({"location": {"category": "office_entrance"}})
		with data.faceguard.config.private_categories as ["office_entrance"]
	viol(d, "FRM-13-PRIVATE-SPACE")
}

test_messages_carry_no_input_identity if {
	# facts carry aggregates only, so a message can only repeat counts, limits, categories and destinations
	d := decide(many_problems)
	every v in d.violations {
		not contains(v.message.en, "gate-01")
	}
}

# ------------------------------------------------------------------ catalog

test_catalog_lists_seventeen_controls if {
	count(faceguard.controls) == 17
}

test_catalog_entries_are_complete if {
	groups := {
		"device", "fr", "location", "signage", "notice", "alternatives", "prompts",
		"subjects", "raw_images", "egress", "security", "pia",
	}
	actions := {a | some a, _ in faceguard._action_rank}
	every c in faceguard.controls {
		{k | some k, _ in c} == {"severity", "articles", "action", "facts", "title"}
		data.faceguard.vocab.severities[c.severity]
		count(c.articles) > 0
		every g in c.facts {
			g in groups
		}
		c.title.zh != ""
		c.title.en != ""
		_valid_action(c.action, actions)
	}
}

_valid_action(null, _) := true

_valid_action(a, actions) if a in actions

test_catalog_actions_as_specified if {
	{id: c.action | some id, c in faceguard.controls; c.action != null} == {
		"FRM-13-PRIVATE-SPACE": "disable_face_recognition",
		"FRM-08-LOCAL-STORAGE": "block_face_data_egress",
		"FRM-08-RAW-IMAGES": "delete_raw_images",
		"FRM-08-RETENTION": "purge_expired_subjects",
		"FRM-06-CONSENT": "quarantine_unconsented_subjects",
		"FRM-06-WITHDRAWAL": "purge_withdrawn_subjects",
		"FRM-07-MINORS": "quarantine_minors_without_guardian",
		"FRM-10-ALTERNATIVE": "enable_alternatives",
		"FRM-05-NOTICE": "block_enrolment",
	}
}

# ------------------------------------------------------------------ data

test_data_defaults if {
	c := data.faceguard.config
	c.raw_image_max_s == 10
	c.withdrawal_purge_max_s == 3600
	c.signage_reverify_days == 180
	{x | some x in c.private_categories} == {"hotel_guest_room", "public_bath", "public_changing_room", "public_toilet"}
	c.required_notice_fields == ["processor_contact", "purpose", "method", "retention_period", "impact", "rights"]
}

test_data_vocabulary_knows_the_categories if {
	every k in [
		"residential_gate", "office_entrance", "building_entrance", "hotel_lobby", "hotel_guest_room",
		"public_bath", "public_changing_room", "public_toilet", "school_gate", "transport_hub",
		"retail_floor", "hospital", "bank_branch", "parking", "lab", "other",
	] {
		data.faceguard.vocab.categories[k].zh != ""
		data.faceguard.vocab.categories[k].en != ""
	}
	every c in data.faceguard.config.private_categories {
		data.faceguard.vocab.categories[c]
	}
	{s | some s, _ in data.faceguard.vocab.severities} == {"critical", "high", "medium", "low"}
}

test_data_coercion_phrases_skip_neutral_prompts if {
	phrases := data.faceguard.config.coercion_phrases
	every p in ["必须刷脸", "仅支持刷脸", "只能刷脸", "只支持刷脸", "刷脸后方可", "须刷脸通行", "不刷脸不能", "唯一验证方式"] {
		p in phrases
	}
	every neutral in ["请刷脸", "请正对摄像头", "look at the camera", "please look at the camera"] {
		every p in phrases {
			not contains(lower(neutral), lower(p))
		}
	}
}

# findings (findings.rego): what the decision is made of, and what the agent assembles it from.
test_findings_of_a_compliant_gate_are_empty if {
	f := faceguard.findings with input as mk({})
	f == {"reasons": set(), "unverifiable": set(), "purge_withdrawn": false}
}

test_findings_carry_reasons_unverifiable_and_purge if {
	f := faceguard.findings with input as mk({
		"security": {"audit_log": false},
		"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 10},
		"unknown": [unknown_entry("egress", "var/lib/terminal/status.json", "no such file")],
	})
	{r.control | some r in f.reasons} == {"FRM-14-SECURITY"}
	{r.control | some r in f.unverifiable} == {"FRM-08-LOCAL-STORAGE"}
	f.purge_withdrawn == true
}

test_findings_under_the_research_exclusion_are_empty if {
	f := faceguard.findings with input as mk({
		"device": {"stage": "rnd_lab"},
		"security": {"audit_log": false},
		"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 99999},
	})
	f == {"reasons": set(), "unverifiable": set(), "purge_withdrawn": false}
}

test_findings_purge_waits_for_known_subjects if {
	f := faceguard.findings with input as mk({
		"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 10},
		"unknown": [unknown_entry("subjects", "var/lib/terminal/gallery.db", "database is locked")],
	})
	f.purge_withdrawn == false
}
