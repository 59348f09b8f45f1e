# One failing and one passing test (the nearest compliant variant) for every control.
package faceguard_test

import data.faceguard

# ------------------------------------------------------------------ FRM-13-PRIVATE-SPACE

test_base_is_compliant if {
	d := decide({})
	d.status == "compliant"
	d.violations == []
	d.actions == []
}

test_private_space_hotel_room_fails if {
	d := decide({"location": {"category": "hotel_guest_room"}})
	fails(d, "FRM-13-PRIVATE-SPACE", "critical", ["FRM Art. 13"], ["fr.enabled", "location.category"])
	d.actions == ["disable_face_recognition", "enable_alternatives"]
	contains(viol(d, "FRM-13-PRIVATE-SPACE").message.zh, "酒店客房")
	contains(viol(d, "FRM-13-PRIVATE-SPACE").message.en, "hotel guest room")
}

test_private_space_public_toilet_fails if {
	d := decide({"location": {"category": "public_toilet", "public_place": true, "necessity_ref": "PSB-1"}})
	fails(d, "FRM-13-PRIVATE-SPACE", "critical", ["FRM Art. 13"], ["fr.enabled", "location.category"])
	d.violations[0].control == "FRM-13-PRIVATE-SPACE"
}

test_private_space_installer_flag_fails if {
	d := decide({"location": {"category": "other", "private_space": true}})
	fails(d, "FRM-13-PRIVATE-SPACE", "critical", ["FRM Art. 13"], ["fr.enabled", "location.private_space"])
	"disable_face_recognition" in d.actions
}

test_private_space_category_and_flag_give_one_reason if {
	d := decide({"location": {"category": "public_bath", "private_space": true}})
	fails(d, "FRM-13-PRIVATE-SPACE", "critical", ["FRM Art. 13"], ["fr.enabled", "location.category"])
	not contains(viol(d, "FRM-13-PRIVATE-SPACE").message.en, "installer")
}

test_private_space_hotel_lobby_passes if {
	d := decide_public({})
	passes(d, "FRM-13-PRIVATE-SPACE")
	d.status == "compliant"
}

test_private_space_with_fr_off_passes if {
	d := decide({"location": {"category": "hotel_guest_room"}, "fr": {"enabled": false, "mode": "off"}})
	passes(d, "FRM-13-PRIVATE-SPACE")
	d.actions == []
}

# ------------------------------------------------------------------ FRM-13-SIGNAGE

test_signage_missing_in_public_fails if {
	d := decide_public({"signage": {"present": false, "evidence": "none", "verified_at": null}})
	fails(d, "FRM-13-SIGNAGE", "high", ["FRM Art. 13", "PIPL Art. 26"], ["fr.enabled", "location.public_place", "signage.present"])
	contains(viol(d, "FRM-13-SIGNAGE").message.zh, "显著提示标识")
	d.actions == []
}

test_signage_without_evidence_fails if {
	d := decide_public({"signage": {"evidence": "none"}})
	fails(d, "FRM-13-SIGNAGE", "high", ["FRM Art. 13", "PIPL Art. 26"], ["fr.enabled", "location.public_place", "signage.evidence"])
}

test_signage_never_verified_fails if {
	d := decide_public({"signage": {"verified_at": null}})
	fails(d, "FRM-13-SIGNAGE", "high", ["FRM Art. 13", "PIPL Art. 26"], ["fr.enabled", "location.public_place", "signage.verified_at"])
}

test_signage_verified_181_days_ago_fails if {
	d := decide_public({"signage": {"verified_at": "2026-05-27T10:00:00+08:00"}})
	fails(d, "FRM-13-SIGNAGE", "high", ["FRM Art. 13", "PIPL Art. 26"], ["collected_at", "fr.enabled", "location.public_place", "signage.verified_at"])
	contains(viol(d, "FRM-13-SIGNAGE").message.zh, "181 天")
	contains(viol(d, "FRM-13-SIGNAGE").message.en, "181 days ago, beyond the 180-day")
}

test_signage_verified_one_second_past_180_days_fails if {
	d := decide_public({"signage": {"verified_at": "2026-05-28T09:59:59+08:00"}})
	contains(viol(d, "FRM-13-SIGNAGE").message.en, "181 days ago")
}

test_signage_verified_exactly_180_days_ago_passes if {
	passes(decide_public({"signage": {"verified_at": "2026-05-28T10:00:00+08:00"}}), "FRM-13-SIGNAGE")
}

test_signage_verified_179_days_ago_passes if {
	d := decide_public({"signage": {"verified_at": "2026-05-29T10:00:00+08:00"}})
	passes(d, "FRM-13-SIGNAGE")
	d.status == "compliant"
}

test_signage_reverify_days_from_config if {
	d := faceguard.decision with input as mk_public({"signage": {"verified_at": "2026-05-29T10:00:00+08:00"}})
		with data.faceguard.config.signage_reverify_days as 90
	contains(viol(d, "FRM-13-SIGNAGE").message.en, "beyond the 90-day")
}

test_signage_unreadable_verification_time_fails if {
	d := decide_public({"signage": {"verified_at": "last spring"}})
	fails(d, "FRM-13-SIGNAGE", "high", ["FRM Art. 13", "PIPL Art. 26"], ["collected_at", "fr.enabled", "location.public_place", "signage.verified_at"])
	contains(viol(d, "FRM-13-SIGNAGE").message.en, "unreadable")
}

test_signage_no_evidence_and_stale_joined if {
	d := decide_public({"signage": {"present": true, "evidence": "none", "verified_at": "2026-01-01T00:00:00+08:00"}})
	v := viol(d, "FRM-13-SIGNAGE")
	contains(v.message.zh, "；")
	contains(v.message.en, "; ")
	v.facts == ["collected_at", "fr.enabled", "location.public_place", "signage.evidence", "signage.verified_at"]
}

test_signage_not_required_outside_public_places_passes if {
	passes(decide({"signage": {"present": false, "evidence": "none", "verified_at": null}}), "FRM-13-SIGNAGE")
}

# ------------------------------------------------------------------ FRM-13-NECESSITY

test_necessity_missing_in_public_fails if {
	d := decide_public({"location": {"necessity_ref": null}})
	fails(d, "FRM-13-NECESSITY", "high", ["FRM Art. 13", "FRM Art. 4"], ["fr.enabled", "location.necessity_ref", "location.public_place"])
	d.actions == []
}

test_necessity_empty_reference_fails if {
	d := decide_public({"location": {"necessity_ref": ""}})
	fails(d, "FRM-13-NECESSITY", "high", ["FRM Art. 13", "FRM Art. 4"], ["fr.enabled", "location.necessity_ref", "location.public_place"])
}

test_necessity_marketing_in_public_fails if {
	d := decide_public({"fr": {"purpose": "marketing"}, "pia": {"purpose": "marketing"}})
	fails(d, "FRM-13-NECESSITY", "high", ["FRM Art. 13", "FRM Art. 4"], ["fr.enabled", "fr.purpose", "location.public_place"])
	contains(viol(d, "FRM-13-NECESSITY").message.zh, "营销")
}

test_necessity_documented_passes if {
	passes(decide_public({}), "FRM-13-NECESSITY")
}

test_necessity_marketing_outside_public_places_passes if {
	passes(decide({"fr": {"purpose": "marketing"}, "pia": {"purpose": "marketing"}}), "FRM-13-NECESSITY")
}

# ------------------------------------------------------------------ FRM-13-CAPTURE-ZONE

test_capture_zone_undefined_in_public_fails if {
	d := decide_public({"location": {"capture_zone_defined": false}})
	fails(d, "FRM-13-CAPTURE-ZONE", "medium", ["FRM Art. 13"], ["fr.enabled", "location.capture_zone_defined", "location.public_place"])
	d.actions == []
}

test_capture_zone_defined_passes if {
	passes(decide_public({"location": {"capture_zone_defined": true}}), "FRM-13-CAPTURE-ZONE")
}

test_capture_zone_outside_public_places_passes if {
	passes(decide({"location": {"capture_zone_defined": false}}), "FRM-13-CAPTURE-ZONE")
}

# ------------------------------------------------------------------ FRM-08-LOCAL-STORAGE

test_local_storage_templates_off_device_fails if {
	d := decide({"subjects": {"stored_off_device": 7}})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["subjects.stored_off_device"])
	d.actions == ["block_face_data_egress"]
	contains(viol(d, "FRM-08-LOCAL-STORAGE").message.zh, "7 个人脸模板")
}

test_local_storage_templates_to_cloud_fails if {
	d := decide({"egress": [
		{"dest": "10.0.0.5:8443", "internet": false, "data": "match_result", "consent": "none"},
		{"dest": "cloud.example.com:443", "internet": true, "data": "template", "consent": "none"},
	]})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["egress"])
	d.actions == ["block_face_data_egress"]
	contains(viol(d, "FRM-08-LOCAL-STORAGE").message.en, "cloud.example.com:443 (template)")
	not contains(viol(d, "FRM-08-LOCAL-STORAGE").message.en, "10.0.0.5")
}

test_local_storage_video_without_consent_fails if {
	d := decide({"egress": [{"dest": "vms.example.net:554", "internet": true, "data": "video", "consent": "none"}]})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["egress"])
}

test_local_storage_undeclared_connection_fails if {
	d := decide({"egress": [{"dest": "203.0.113.9:8080", "internet": true, "data": "unknown", "consent": "none"}]})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["egress"])
	contains(viol(d, "FRM-08-LOCAL-STORAGE").message.en, "undeclared internet connection to 203.0.113.9:8080 may carry face data")
	contains(viol(d, "FRM-08-LOCAL-STORAGE").message.zh, "未申报")
	d.actions == ["block_face_data_egress"]
}

test_local_storage_all_reasons_in_one_violation if {
	d := decide({
		"subjects": {"stored_off_device": 2},
		"egress": [
			{"dest": "cloud.example.com:443", "internet": true, "data": "raw_image", "consent": "none"},
			{"dest": "203.0.113.9:8080", "internet": true, "data": "unknown", "consent": "none"},
		],
	})
	fails(d, "FRM-08-LOCAL-STORAGE", "critical", ["FRM Art. 8"], ["egress", "subjects.stored_off_device"])
	count(split(viol(d, "FRM-08-LOCAL-STORAGE").message.en, "; ")) >= 3
}

test_local_storage_templates_with_separate_consent_pass if {
	d := decide({"egress": [{"dest": "cloud.example.com:443", "internet": true, "data": "template", "consent": "separate"}]})
	passes(d, "FRM-08-LOCAL-STORAGE")
	d.status == "compliant"
}

test_local_storage_video_under_law_passes if {
	passes(decide({"egress": [{"dest": "psb.example.gov.cn:554", "internet": true, "data": "video", "consent": "law"}]}), "FRM-08-LOCAL-STORAGE")
}

test_local_storage_metadata_to_internet_passes if {
	passes(decide({"egress": [{"dest": "mqtt.example.com:8883", "internet": true, "data": "metadata", "consent": "none"}]}), "FRM-08-LOCAL-STORAGE")
}

test_local_storage_templates_on_lan_pass if {
	passes(decide({"egress": [{"dest": "10.0.0.9:443", "internet": false, "data": "template", "consent": "none"}]}), "FRM-08-LOCAL-STORAGE")
}

test_local_storage_no_egress_passes if {
	passes(decide({"egress": []}), "FRM-08-LOCAL-STORAGE")
}

# ------------------------------------------------------------------ FRM-08-RAW-IMAGES

test_raw_images_one_second_over_limit_fails if {
	d := decide({"raw_images": {"count": 2, "oldest_age_s": 11, "consented": 0}})
	fails(d, "FRM-08-RAW-IMAGES", "high", ["FRM Art. 8", "FRM Art. 4"], ["raw_images.oldest_age_s"])
	d.actions == ["delete_raw_images"]
	contains(viol(d, "FRM-08-RAW-IMAGES").message.en, "11 s old, over the 10 s limit")
	contains(viol(d, "FRM-08-RAW-IMAGES").message.zh, "11 秒")
}

test_raw_images_at_limit_passes if {
	d := decide({"raw_images": {"count": 2, "oldest_age_s": 10, "consented": 0}})
	passes(d, "FRM-08-RAW-IMAGES")
	d.status == "compliant"
}

test_raw_images_limit_from_config if {
	at := {"raw_images": {"count": 1, "oldest_age_s": 60, "consented": 0}}
	over := {"raw_images": {"count": 1, "oldest_age_s": 61, "consented": 0}}
	ok := faceguard.decision with input as mk(at) with data.faceguard.config.raw_image_max_s as 60
	passes(ok, "FRM-08-RAW-IMAGES")
	d := faceguard.decision with input as mk(over) with data.faceguard.config.raw_image_max_s as 60
	contains(viol(d, "FRM-08-RAW-IMAGES").message.en, "61 s old, over the 60 s limit")
}

# ------------------------------------------------------------------ FRM-08-RETENTION

test_retention_expired_templates_fail if {
	d := decide({"subjects": {"beyond_retention": 4}})
	fails(d, "FRM-08-RETENTION", "medium", ["FRM Art. 8", "PIPL Art. 19"], ["subjects.beyond_retention"])
	d.actions == ["purge_expired_subjects"]
	contains(viol(d, "FRM-08-RETENTION").message.en, "4 face template(s)")
}

test_retention_none_expired_passes if {
	passes(decide({"subjects": {"beyond_retention": 0}}), "FRM-08-RETENTION")
}

# ------------------------------------------------------------------ FRM-06-CONSENT

test_consent_templates_without_consent_fail if {
	d := decide({"subjects": {"without_consent": 3}})
	fails(d, "FRM-06-CONSENT", "high", ["FRM Art. 6", "PIPL Art. 29"], ["subjects.without_consent"])
	d.actions == ["quarantine_unconsented_subjects"]
	contains(viol(d, "FRM-06-CONSENT").message.zh, "3 个人脸模板")
}

test_consent_all_consented_passes if {
	passes(decide({"subjects": {"without_consent": 0}}), "FRM-06-CONSENT")
}

# ------------------------------------------------------------------ FRM-06-WITHDRAWAL

test_withdrawal_past_deadline_fails if {
	d := decide({"subjects": {"withdrawn_pending": 2, "withdrawn_oldest_s": 3601}})
	fails(d, "FRM-06-WITHDRAWAL", "high", ["FRM Art. 6", "PIPL Art. 47"], ["subjects.withdrawn_oldest_s", "subjects.withdrawn_pending"])
	d.actions == ["purge_withdrawn_subjects"]
	contains(viol(d, "FRM-06-WITHDRAWAL").message.en, "3601 s ago, over the 3600 s limit")
}

test_withdrawal_at_deadline_passes if {
	d := decide({"subjects": {"withdrawn_pending": 2, "withdrawn_oldest_s": 3600}})
	passes(d, "FRM-06-WITHDRAWAL")
	d.status == "compliant"
}

test_withdrawal_deadline_from_config if {
	d := faceguard.decision with input as mk({"subjects": {"withdrawn_pending": 1, "withdrawn_oldest_s": 61}})
		with data.faceguard.config.withdrawal_purge_max_s as 60
	fails(d, "FRM-06-WITHDRAWAL", "high", ["FRM Art. 6", "PIPL Art. 47"], ["subjects.withdrawn_oldest_s", "subjects.withdrawn_pending"])
}

# ------------------------------------------------------------------ FRM-07-MINORS

test_minors_without_guardian_fail if {
	d := decide({"subjects": {"minors_without_guardian": 1}})
	fails(d, "FRM-07-MINORS", "high", ["FRM Art. 7", "PIPL Art. 31"], ["subjects.minors_without_guardian"])
	d.actions == ["quarantine_minors_without_guardian"]
	contains(viol(d, "FRM-07-MINORS").message.zh, "监护人")
}

test_minors_all_with_guardian_pass if {
	passes(decide({"subjects": {"minors_without_guardian": 0}}), "FRM-07-MINORS")
}

# ------------------------------------------------------------------ FRM-10-ALTERNATIVE

test_alternative_face_only_door_fails if {
	d := decide({"alternatives": {"configured": [], "healthy": [], "refuse_option_shown": true}})
	fails(d, "FRM-10-ALTERNATIVE", "high", ["FRM Art. 10"], ["alternatives.configured", "alternatives.healthy", "fr.enabled"])
	d.actions == ["enable_alternatives"]
	contains(viol(d, "FRM-10-ALTERNATIVE").message.en, "0 configured")
}

test_alternative_card_reader_broken_fails if {
	d := decide({"alternatives": {"configured": ["ic_card"], "healthy": []}})
	contains(viol(d, "FRM-10-ALTERNATIVE").message.en, "1 configured")
	d.actions == ["enable_alternatives"]
}

test_alternative_no_refuse_option_fails if {
	d := decide({"alternatives": {"refuse_option_shown": false}})
	fails(d, "FRM-10-ALTERNATIVE", "high", ["FRM Art. 10"], ["alternatives.refuse_option_shown", "fr.enabled"])
	d.actions == ["enable_alternatives"]
}

test_alternative_one_healthy_way_passes if {
	d := decide({"alternatives": {"configured": ["ic_card", "pin"], "healthy": ["pin"]}})
	passes(d, "FRM-10-ALTERNATIVE")
	d.status == "compliant"
}

# ------------------------------------------------------------------ FRM-12-NO-COERCION

test_no_coercion_face_only_prompt_fails if {
	d := decide({"prompts": ["欢迎光临", "本门禁必须刷脸通行"]})
	fails(d, "FRM-12-NO-COERCION", "medium", ["FRM Art. 12"], ["fr.enabled", "prompts"])
	d.actions == []
	contains(viol(d, "FRM-12-NO-COERCION").message.zh, "“必须刷脸”")
}

test_no_coercion_english_any_case_fails if {
	d := decide({"prompts": ["FACE RECOGNITION REQUIRED for entry"]})
	fails(d, "FRM-12-NO-COERCION", "medium", ["FRM Art. 12"], ["fr.enabled", "prompts"])
	contains(viol(d, "FRM-12-NO-COERCION").message.en, "\"face recognition required\"")
}

test_no_coercion_quotes_every_matched_phrase if {
	d := decide({"prompts": ["仅支持刷脸", "Face only"]})
	v := viol(d, "FRM-12-NO-COERCION")
	contains(v.message.zh, "“仅支持刷脸”")
	contains(v.message.en, "\"face only\"")
}

test_no_coercion_neutral_prompts_pass if {
	d := decide({"prompts": ["请刷脸", "请正对摄像头", "Please look at the camera", "刷卡、密码或刷脸均可通行"]})
	passes(d, "FRM-12-NO-COERCION")
	d.status == "compliant"
}

test_no_coercion_no_prompts_pass if {
	passes(decide({"prompts": []}), "FRM-12-NO-COERCION")
}

test_no_coercion_phrases_are_literal_text if {
	phrases := ["a.c", "x\\E(y"]
	ok := faceguard.decision with input as mk({"prompts": ["abc"]}) with data.faceguard.config.coercion_phrases as phrases
	passes(ok, "FRM-12-NO-COERCION")
	d := faceguard.decision with input as mk({"prompts": ["A.C", "zz X\\E(Y"]}) with data.faceguard.config.coercion_phrases as phrases
	fails(d, "FRM-12-NO-COERCION", "medium", ["FRM Art. 12"], ["fr.enabled", "prompts"])
	contains(viol(d, "FRM-12-NO-COERCION").message.en, "a.c")
	contains(viol(d, "FRM-12-NO-COERCION").message.en, "x\\\\E(y")
}

# ------------------------------------------------------------------ FRM-05-NOTICE

test_notice_not_shown_before_capture_fails if {
	d := decide({"notice": {"shown_before_capture": false}})
	fails(d, "FRM-05-NOTICE", "medium", ["FRM Art. 5", "PIPL Art. 17"], ["fr.enabled", "notice.shown_before_capture"])
	d.actions == ["block_enrolment"]
}

test_notice_missing_fields_named_fails if {
	d := decide({"notice": {"fields": ["purpose", "method", "processor_contact", "impact"]}})
	fails(d, "FRM-05-NOTICE", "medium", ["FRM Art. 5", "PIPL Art. 17"], ["fr.enabled", "notice.fields"])
	v := viol(d, "FRM-05-NOTICE")
	contains(v.message.zh, "保存期限（retention_period）")
	contains(v.message.zh, "rights")
	contains(v.message.en, "retention period (retention_period)")
	not contains(v.message.en, "(purpose)")

	# named in the configured order
	contains(v.message.en, "the notice does not state: retention period (retention_period), how to exercise")
}

test_notice_no_retention_period_fails if {
	d := decide({"notice": {"retention_days": 0}})
	fails(d, "FRM-05-NOTICE", "medium", ["FRM Art. 5", "PIPL Art. 17"], ["fr.enabled", "notice.retention_days"])
}

test_notice_every_reason_in_one_violation if {
	d := decide({"notice": {"shown_before_capture": false, "fields": [], "retention_days": 0}})
	fails(d, "FRM-05-NOTICE", "medium", ["FRM Art. 5", "PIPL Art. 17"], ["fr.enabled", "notice.fields", "notice.retention_days", "notice.shown_before_capture"])
	v := viol(d, "FRM-05-NOTICE")
	count(split(v.message.zh, "；")) == 3
	count(split(v.message.en, "; ")) == 3
	d.actions == ["block_enrolment"]
}

test_notice_complete_in_another_order_passes if {
	d := decide({"notice": {"fields": ["rights", "impact", "retention_period", "method", "purpose", "processor_contact"]}})
	passes(d, "FRM-05-NOTICE")
	d.status == "compliant"
}

test_notice_required_fields_from_config if {
	d := faceguard.decision with input as mk({"notice": {"fields": ["purpose"]}})
		with data.faceguard.config.required_notice_fields as ["purpose", "dpo_contact"]
	contains(viol(d, "FRM-05-NOTICE").message.en, "dpo_contact (dpo_contact)")
}

# ------------------------------------------------------------------ FRM-14-SECURITY

security_cases := {
	"storage_encrypted": false,
	"transport_tls": false,
	"audit_log": false,
	"access_control": false,
	"default_credentials": true,
}

test_security_each_missing_measure_fails if {
	every measure, bad in security_cases {
		d := decide({"security": {measure: bad}})
		fails(d, "FRM-14-SECURITY", "high", ["FRM Art. 14", "PIPL Art. 51"], [concat(".", ["security", measure])])
		d.actions == []
	}
}

test_security_default_credentials_fails if {
	d := decide({"security": {"default_credentials": true}})
	fails(d, "FRM-14-SECURITY", "high", ["FRM Art. 14", "PIPL Art. 51"], ["security.default_credentials"])
	contains(viol(d, "FRM-14-SECURITY").message.zh, "默认口令")
}

test_security_all_missing_joined if {
	d := decide({"security": {
		"storage_encrypted": false, "transport_tls": false, "audit_log": false,
		"access_control": false, "default_credentials": true,
	}})
	v := viol(d, "FRM-14-SECURITY")
	count(v.facts) == 5
	count(split(v.message.en, "; ")) == 5
}

test_security_without_intrusion_detection_passes if {
	d := decide({"security": {"intrusion_detection": false}})
	passes(d, "FRM-14-SECURITY")
	d.status == "compliant"
}

# ------------------------------------------------------------------ FRM-09-PIA

test_pia_missing_fails if {
	d := decide({"pia": {"ref": null, "completed_at": null, "purpose": null}})
	fails(d, "FRM-09-PIA", "medium", ["FRM Art. 9", "PIPL Art. 55"], ["fr.enabled", "pia.ref"])
	d.actions == []
}

test_pia_empty_reference_fails if {
	fails(decide({"pia": {"ref": ""}}), "FRM-09-PIA", "medium", ["FRM Art. 9", "PIPL Art. 55"], ["fr.enabled", "pia.ref"])
}

test_pia_not_completed_fails if {
	d := decide({"pia": {"completed_at": null}})
	fails(d, "FRM-09-PIA", "medium", ["FRM Art. 9", "PIPL Art. 55"], ["fr.enabled", "pia.completed_at"])
}

test_pia_for_another_purpose_fails if {
	d := decide({"pia": {"purpose": "attendance"}})
	fails(d, "FRM-09-PIA", "medium", ["FRM Art. 9", "PIPL Art. 55"], ["fr.enabled", "fr.purpose", "pia.purpose"])
	contains(viol(d, "FRM-09-PIA").message.en, "covers purpose attendance but the device is used for access_control")
}

test_pia_for_this_purpose_passes if {
	passes(decide({"pia": {"purpose": "access_control"}}), "FRM-09-PIA")
}

# ------------------------------------------------------------------ FRM-04-MINIMISATION

test_minimisation_one_to_n_for_access_control_fails if {
	d := decide({"fr": {"mode": "identify_1toN"}})
	fails(d, "FRM-04-MINIMISATION", "low", ["FRM Art. 4"], ["fr.enabled", "fr.mode", "fr.purpose"])
	d.actions == []
	d.counts == {"critical": 0, "high": 0, "medium": 0, "low": 1}
}

test_minimisation_one_to_one_passes if {
	passes(decide({"fr": {"mode": "verify_1to1"}}), "FRM-04-MINIMISATION")
}

test_minimisation_one_to_n_for_attendance_passes if {
	passes(decide({"fr": {"mode": "identify_1toN", "purpose": "attendance"}, "pia": {"purpose": "attendance"}}), "FRM-04-MINIMISATION")
}

# ------------------------------------------------------------------ FRM-02-SCOPE

test_scope_lab_stage_in_public_place_fails if {
	d := decide_public({"device": {"stage": "rnd_lab"}})
	fails(d, "FRM-02-SCOPE", "high", ["FRM Art. 2"], ["device.stage", "location.public_place"])
	d.actions == []
}

test_scope_lab_stage_in_hotel_room_fails if {
	d := decide({"device": {"stage": "rnd_lab"}, "location": {"category": "hotel_guest_room"}})
	fails(d, "FRM-02-SCOPE", "high", ["FRM Art. 2"], ["device.stage", "location.category"])
	fails(d, "FRM-13-PRIVATE-SPACE", "critical", ["FRM Art. 13"], ["fr.enabled", "location.category"])
}

test_scope_lab_stage_in_flagged_private_space_fails if {
	d := decide({"device": {"stage": "rnd_lab"}, "location": {"category": "lab", "private_space": true}})
	fails(d, "FRM-02-SCOPE", "high", ["FRM Art. 2"], ["device.stage", "location.private_space"])
}

test_scope_lab_stage_in_lab_passes if {
	d := decide({"device": {"stage": "rnd_lab"}, "location": {"category": "lab"}})
	passes(d, "FRM-02-SCOPE")
	d.status == "compliant"
}

test_scope_production_in_public_passes if {
	passes(decide_public({}), "FRM-02-SCOPE")
}

test_pia_without_purpose_fails if {
	d := decide({"pia": {"purpose": null}})
	fails(d, "FRM-09-PIA", "medium", ["FRM Art. 9", "PIPL Art. 55"], ["fr.enabled", "fr.purpose", "pia.purpose"])
	contains(viol(d, "FRM-09-PIA").message.zh, "（未填写）")
	contains(viol(d, "FRM-09-PIA").message.en, "(not stated)")
}
