# data.faceguard.match: may this face match be used right now.
package faceguard_test

import data.faceguard

match_ok := {
	"subject": {
		"found": true, "consent": "separate", "withdrawn": false, "age_band": "adult",
		"guardian_consent": false, "quarantined": false,
	},
	"terminal": {"face_recognition_allowed": true},
}

match_with(patch) := m if {
	m := faceguard.match with input as object.union(match_ok, patch)
}

denied(m, reasons) if {
	m.allow == false
	m.reasons == reasons
	m.message.zh != ""
	m.message.en != ""
	contains(m.message.zh, "请使用其他方式通行")
	contains(m.message.en, "another way through")
}

test_match_consented_adult_allowed if {
	m := match_with({})
	m.allow == true
	m.reasons == []
	m.message == {"zh": "验证通过", "en": "verified"}
}

test_match_under_14_with_guardian_allowed if {
	m := match_with({"subject": {"age_band": "under_14", "consent": "guardian", "guardian_consent": true}})
	m.allow == true
}

test_match_consent_under_law_allowed if {
	match_with({"subject": {"consent": "law"}}).allow == true
}

test_match_unknown_age_band_allowed if {
	match_with({"subject": {"age_band": "unknown"}}).allow == true
}

test_match_subject_not_found_denied if {
	denied(match_with({"subject": {"found": false}}), ["subject_not_found"])
}

test_match_no_consent_denied if {
	m := match_with({"subject": {"consent": "none"}})
	denied(m, ["no_consent"])
	contains(m.message.zh, "同意")
}

test_match_consent_withdrawn_denied if {
	m := match_with({"subject": {"withdrawn": true}})
	denied(m, ["consent_withdrawn"])
	contains(m.message.en, "withdrawn")
}

test_match_minor_without_guardian_denied if {
	m := match_with({"subject": {"age_band": "under_14", "guardian_consent": false}})
	denied(m, ["minor_without_guardian"])
	contains(m.message.zh, "监护人")
}

test_match_quarantined_denied if {
	denied(match_with({"subject": {"quarantined": true}}), ["quarantined"])
}

test_match_face_recognition_off_denied if {
	m := match_with({"terminal": {"face_recognition_allowed": false}})
	denied(m, ["face_recognition_off"])
	contains(m.message.zh, "此处暂不使用人脸识别")
}

test_match_several_reasons_sorted_first_one_speaks if {
	m := match_with({"subject": {"found": false, "withdrawn": true}, "terminal": {"face_recognition_allowed": false}})
	denied(m, ["consent_withdrawn", "face_recognition_off", "subject_not_found"])
	m.message == faceguard._match_text.consent_withdrawn
}

test_match_empty_input_denied if {
	m := faceguard.match with input as {}
	m.allow == false
	"subject_not_found" in m.reasons
	"face_recognition_off" in m.reasons
	count(m.reasons) == 6
}

test_match_found_must_be_exactly_true if {
	denied(match_with({"subject": {"found": "true"}}), ["subject_not_found"])
	denied(match_with({"subject": {"found": 1}}), ["subject_not_found"])
}

test_match_malformed_consent_denied if {
	denied(match_with({"subject": {"consent": "SEPARATE"}}), ["no_consent"])
	denied(match_with({"subject": {"consent": null}}), ["no_consent"])
}

test_match_missing_withdrawn_denied if {
	m := faceguard.match with input as {
		"subject": object.remove(match_ok.subject, ["withdrawn"]),
		"terminal": match_ok.terminal,
	}
	denied(m, ["consent_withdrawn"])
}

test_match_malformed_age_band_denied if {
	denied(match_with({"subject": {"age_band": "child"}}), ["minor_without_guardian"])
	denied(match_with({"subject": {"age_band": "under_14", "guardian_consent": "yes"}}), ["minor_without_guardian"])
}

test_match_missing_quarantined_denied if {
	m := faceguard.match with input as {
		"subject": object.remove(match_ok.subject, ["quarantined"]),
		"terminal": match_ok.terminal,
	}
	denied(m, ["quarantined"])
}

test_match_missing_terminal_denied if {
	m := faceguard.match with input as {"subject": match_ok.subject}
	denied(m, ["face_recognition_off"])
}

test_match_output_has_exactly_three_keys if {
	every m in [match_with({}), match_with({"subject": {"found": false}})] {
		{k | some k, _ in m} == {"allow", "reasons", "message"}
	}
}

test_match_missing_consent_denied if {
	m := faceguard.match with input as {
		"subject": object.remove(match_ok.subject, ["consent"]),
		"terminal": match_ok.terminal,
	}
	denied(m, ["no_consent"])
}

test_match_missing_age_band_denied if {
	m := faceguard.match with input as {
		"subject": object.remove(match_ok.subject, ["age_band"]),
		"terminal": match_ok.terminal,
	}
	denied(m, ["minor_without_guardian"])
}

test_match_teenager_allowed if {
	match_with({"subject": {"age_band": "14_17"}}).allow == true
}

test_match_denied_teenager_is_not_a_minor_without_guardian if {
	denied(match_with({"subject": {"found": false, "age_band": "14_17"}}), ["subject_not_found"])
}

test_match_denied_unknown_age_is_not_a_minor_without_guardian if {
	denied(match_with({"subject": {"quarantined": true, "age_band": "unknown"}}), ["quarantined"])
}

# The match rules count consent as the facts do (docs/terminal.md): guardian consent needs a guardian on
# record, and an under-14 enrolled under a law needs none.
test_match_guardian_basis_without_guardian_on_record_denied if {
	denied(match_with({"subject": {"consent": "guardian", "guardian_consent": false}}), ["no_consent"])
}

test_match_under_14_under_law_allowed if {
	match_with({"subject": {"age_band": "under_14", "consent": "law"}}).allow == true
}

test_match_under_14_separate_consent_denied if {
	denied(match_with({"subject": {"age_band": "under_14", "consent": "separate"}}), ["minor_without_guardian"])
}
