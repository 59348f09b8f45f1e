# The match decision: may this face match be used right now (DESIGN §7, the hot path).
#
# Every field must hold exactly its good value; a missing or malformed field denies with the reason of
# that field. Kept tiny on purpose: equalities on input (which OPA's rule index resolves), constant
# lookups, no comprehension, no sprintf.
package faceguard

# The first branch is the fast path of an allowed match: one rule whose equalities the index resolves.
match := _match_allowed if {
	input.subject.found == true
	input.subject.withdrawn == false
	input.subject.quarantined == false
	input.terminal.face_recognition_allowed == true
	_match_consent_valid
	_match_age_ok
} else := {
	"allow": count(_match_deny) == 0,
	"reasons": _match_reasons,
	"message": _match_message,
}

_match_allowed := {"allow": true, "reasons": [], "message": _match_text.allowed}

# Age is fine for an adult, a teenager or an unknown band, and for a child with a guardian's consent or
# enrolled under a law (Art. 7 asks for the guardian only where consent is the basis). The same rules
# count minors_without_guardian in the facts (docs/terminal.md).
_match_age_ok if input.subject.age_band == "adult"

_match_age_ok if input.subject.age_band == "14_17"

_match_age_ok if input.subject.age_band == "unknown"

_match_age_ok if {
	input.subject.age_band == "under_14"
	input.subject.guardian_consent == true
}

_match_age_ok if {
	input.subject.age_band == "under_14"
	input.subject.consent == "law"
}

_match_deny contains "subject_not_found" if not input.subject.found == true

_match_deny contains "no_consent" if not _match_consent_valid

_match_deny contains "consent_withdrawn" if not input.subject.withdrawn == false

_match_deny contains "minor_without_guardian" if {
	input.subject.age_band == "under_14"
	not input.subject.guardian_consent == true
	not input.subject.consent == "law"
}

_match_deny contains "minor_without_guardian" if not _match_age_band_valid

# Valid values, as rules of plain equalities: "not set[input.x]" would not fire for a missing field,
# because OPA evaluates the nested reference outside the negation.
_match_consent_valid if input.subject.consent == "separate"

# Guardian consent counts only with a guardian on record (guardian_consent), as in the facts.
_match_consent_valid if {
	input.subject.consent == "guardian"
	input.subject.guardian_consent == true
}

_match_consent_valid if input.subject.consent == "law"

_match_age_band_valid if input.subject.age_band == "adult"

_match_age_band_valid if input.subject.age_band == "14_17"

_match_age_band_valid if input.subject.age_band == "under_14"

_match_age_band_valid if input.subject.age_band == "unknown"

_match_deny contains "quarantined" if not input.subject.quarantined == false

_match_deny contains "face_recognition_off" if not input.terminal.face_recognition_allowed == true

_match_reasons := sort(_match_deny)

# The slow path only runs when some reason denies (the fast path takes every allowed match), so the
# message is the first reason's. Were there none, match would be undefined, which the engine reads as "no".
_match_message := _match_text[_match_reasons[0]]

_match_text := {
	"allowed": {"zh": "验证通过", "en": "verified"},
	"subject_not_found": {
		"zh": "未能识别您的身份：请使用其他方式通行（刷卡、密码或人工）",
		"en": "face not recognised: please use another way through (card, PIN or staff)",
	},
	"no_consent": {
		"zh": "没有您同意使用人脸识别的记录：请使用其他方式通行（刷卡、密码或人工）",
		"en": "no consent to face recognition on record: please use another way through (card, PIN or staff)",
	},
	"consent_withdrawn": {
		"zh": "您已撤回人脸识别同意：请使用其他方式通行（刷卡、密码或人工）",
		"en": "you have withdrawn consent to face recognition: please use another way through (card, PIN or staff)",
	},
	"minor_without_guardian": {
		"zh": "未满十四周岁使用人脸识别需监护人同意：请使用其他方式通行（刷卡、密码或人工）",
		"en": "face recognition for a child under 14 needs a guardian's consent: please use another way through (card, PIN or staff)",
	},
	"quarantined": {
		"zh": "您的人脸信息暂停使用：请使用其他方式通行（刷卡、密码或人工）",
		"en": "your face data is suspended: please use another way through (card, PIN or staff)",
	},
	"face_recognition_off": {
		"zh": "此处暂不使用人脸识别：请使用其他方式通行（刷卡、密码或人工）",
		"en": "face recognition is not used here right now: please use another way through (card, PIN or staff)",
	},
}
