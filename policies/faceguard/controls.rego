# The reasons each control fires, one partial rule per reason.
#
# A reason is {control, message: {zh, en}, facts}: decision.rego drops the reasons that read an unknown fact group,
# groups the rest by control, joins their messages and takes severity, articles and action from the
# catalog. So facts must name every fact a reason reads (its group is the part before the first dot).
#
# Performance: each body starts with equalities on input against constants (input.fr.enabled == true,
# input.security.audit_log == false, ...), which OPA's rule index uses to skip the rule without evaluating
# it, so a passing document visits few rules; numbers are formatted only in the head, after the body held.
# Bodies guard the builtins that would raise a type error (the agent evaluates with strict builtin errors).
# Field values are taken to have the types of facts.schema.json (the agent validates facts against it).
package faceguard

# ---------------------------------------------------------------- FRM-13-PRIVATE-SPACE (Art. 13)

_raw_reason contains {
	"control": "FRM-13-PRIVATE-SPACE",
	"message": {
		"zh": sprintf("设备安装在%s（%s），属于公共场所内的私密空间，禁止在此使用人脸识别：代理将关闭人脸识别并开启其他通行方式，请拆除或移走该设备", [label.zh, cat]),
		"en": sprintf("face recognition is enabled in a %s (%s), a private space where it is prohibited: the agent switches face recognition off and keeps other ways through on; remove or relocate the device", [label.en, cat]),
	},
	"facts": ["fr.enabled", "location.category"],
} if {
	input.fr.enabled == true
	input.location.category in data.faceguard.config.private_categories
	not _unknown.location
	cat := input.location.category
	label := data.faceguard.vocab.categories[cat]
}

_raw_reason contains {
	"control": "FRM-13-PRIVATE-SPACE",
	"message": {
		"zh": "安装人员已将该位置标记为私密空间，禁止在此使用人脸识别：代理将关闭人脸识别并开启其他通行方式，请拆除或移走该设备",
		"en": "the installer marked this location as a private space, where face recognition is prohibited: the agent switches face recognition off and keeps other ways through on; remove or relocate the device",
	},
	"facts": ["fr.enabled", "location.private_space"],
} if {
	input.location.private_space == true
	input.fr.enabled == true
	not _private_category
}

# In a known private space with the face-recognition state unknown, switching it off is harmless and is
# the safe side: the violation fires from the location alone, with its action.
_raw_reason contains {
	"control": "FRM-13-PRIVATE-SPACE",
	"message": {
		"zh": "设备位于私密空间，且无法确认人脸识别是否开启：为安全起见，代理将关闭人脸识别并开启其他通行方式；请拆除或移走该设备",
		"en": "the device is in a private space and whether face recognition is on cannot be confirmed: to be safe the agent switches it off and keeps other ways through on; remove or relocate the device",
	},
	"facts": [f],
} if {
	_unknown.fr
	some f in _private_facts
}

_private_facts contains "location.category" if _private_category

_private_facts contains "location.private_space" if {
	_private_flag
	not _private_category
}

# ---------------------------------------------------------------- FRM-13-SIGNAGE (Art. 13; PIPL Art. 26)

_raw_reason contains {
	"control": "FRM-13-SIGNAGE",
	"message": {
		"zh": "在公共场所启用人脸识别，但未设置显著提示标识：请张贴标识并记录核验证据",
		"en": "face recognition is enabled in a public place without a conspicuous sign: put up a sign and record the verification evidence",
	},
	"facts": ["fr.enabled", "location.public_place", "signage.present"],
} if {
	input.signage.present == false
	input.location.public_place == true
	input.fr.enabled == true
}

_raw_reason contains {
	"control": "FRM-13-SIGNAGE",
	"message": {
		"zh": "已报告设置提示标识，但没有核验证据：请以拍照审计、安装人员确认或传感器检测核验并记录",
		"en": "a sign is reported but there is no evidence for it: verify it by photo audit, installer attestation or sensor and record the evidence",
	},
	"facts": ["fr.enabled", "location.public_place", "signage.evidence"],
} if {
	input.signage.evidence == "none"
	input.signage.present == true
	input.location.public_place == true
	input.fr.enabled == true
}

_raw_reason contains {
	"control": "FRM-13-SIGNAGE",
	"message": {
		"zh": "提示标识从未核验：请核验标识并记录核验时间",
		"en": "the sign has never been verified: verify it and record when",
	},
	"facts": ["fr.enabled", "location.public_place", "signage.verified_at"],
} if {
	input.signage.verified_at == null
	input.signage.present == true
	input.location.public_place == true
	input.fr.enabled == true
}

# Only a well-formed timestamp is parsed: a null verified_at has its own reason, and a parse error would
# fail the whole evaluation under strict builtin errors.
_signage_age_ns := _now_ns - time.parse_rfc3339_ns(input.signage.verified_at) if _rfc3339(input.signage.verified_at)

_raw_reason contains {
	"control": "FRM-13-SIGNAGE",
	"message": {
		"zh": sprintf("提示标识上次核验已是 %d 天前，超过 %d 天的复核期限：请重新核验并记录", [days, limit]),
		"en": sprintf("the sign was last verified %d days ago, beyond the %d-day re-verification period: verify it again and record it", [days, limit]),
	},
	"facts": ["collected_at", "fr.enabled", "location.public_place", "signage.verified_at"],
} if {
	input.signage.present == true
	input.location.public_place == true
	input.fr.enabled == true
	limit := data.faceguard.config.signage_reverify_days
	_signage_age_ns > limit * 86400000000000
	days := ceil(_signage_age_ns / 86400000000000)
}

_raw_reason contains {
	"control": "FRM-13-SIGNAGE",
	"message": {
		"zh": "提示标识的核验时间无法解析：请重新核验并记录核验时间",
		"en": "the sign's verification time is unreadable: verify it again and record when",
	},
	"facts": ["collected_at", "fr.enabled", "location.public_place", "signage.verified_at"],
} if {
	input.signage.present == true
	input.location.public_place == true
	input.fr.enabled == true
	is_string(input.signage.verified_at)
	not _signage_age_ns
}

# ---------------------------------------------------------------- FRM-13-NECESSITY (Art. 13, Art. 4)

_raw_reason contains {
	"control": "FRM-13-NECESSITY",
	"message": {
		"zh": "在公共场所启用人脸识别，但未记录维护公共安全所必需的依据：请登记必要性依据（necessity_ref），否则不应在此使用人脸识别",
		"en": "face recognition is enabled in a public place with no documented public-security necessity: record the necessity reference (necessity_ref), or do not use face recognition here",
	},
	"facts": ["fr.enabled", "location.necessity_ref", "location.public_place"],
} if {
	input.location.public_place == true
	input.fr.enabled == true
	_no_necessity_ref
}

_no_necessity_ref if input.location.necessity_ref == null

_no_necessity_ref if input.location.necessity_ref == ""

_raw_reason contains {
	"control": "FRM-13-NECESSITY",
	"message": {
		"zh": "在公共场所以营销为目的使用人脸识别，超出维护公共安全所必需的范围：请停止营销用途",
		"en": "face recognition is used for marketing in a public place, beyond what public security requires: stop the marketing use",
	},
	"facts": ["fr.enabled", "fr.purpose", "location.public_place"],
} if {
	input.fr.purpose == "marketing"
	input.location.public_place == true
	input.fr.enabled == true
}

# ---------------------------------------------------------------- FRM-13-CAPTURE-ZONE (Art. 13)

_raw_reason contains {
	"control": "FRM-13-CAPTURE-ZONE",
	"message": {
		"zh": "在公共场所启用人脸识别，但未划定图像采集区域：请合理确定采集区域并在设备上配置",
		"en": "face recognition is enabled in a public place but the capture area is not defined: define a reasonable capture area and configure it on the device",
	},
	"facts": ["fr.enabled", "location.capture_zone_defined", "location.public_place"],
} if {
	input.location.capture_zone_defined == false
	input.location.public_place == true
	input.fr.enabled == true
}

# ---------------------------------------------------------------- FRM-08-LOCAL-STORAGE (Art. 8)

# Flow data kinds: face data, and every kind the terminal can declare. Anything else (the "unknown" of an
# observed but undeclared connection, or an unrecognised value) may carry face data.
_face_data := {"template", "raw_image", "video"}

_declared_data := {"template", "raw_image", "video", "match_result", "metadata"}

_lawful_basis := {"separate", "law"}

# Fast path: no flow is marked as going to the internet.
# Fast path: most terminals have no flow marked as going to the internet.
_egress_internet if {
	some e in input.egress
	e.internet == true
}

_egress_face_flows := {[e.dest, e.data] |
	some e in input.egress
	e.internet == true
	e.data in _face_data
	not _lawful(e)
}

_egress_undeclared := {e.dest |
	some e in input.egress
	e.internet == true
	not _declared(e)
	not _lawful(e)
}

# Functions, so that a flow without the field counts as not lawful and not declared.
_lawful(e) if e.consent in _lawful_basis

_declared(e) if e.data in _declared_data

_raw_reason contains {
	"control": "FRM-08-LOCAL-STORAGE",
	"message": {
		"zh": sprintf("人脸数据在未取得单独同意且无法律依据的情况下经互联网传出：%s；已阻断该传输，请停止外传或取得单独同意", [concat("、", [sprintf("%v（%v）", f) | some f in flows])]),
		"en": sprintf("face data leaves the device over the internet without separate consent or a legal basis: %s; the flow is blocked, stop it or obtain separate consent", [concat(", ", [sprintf("%v (%v)", f) | some f in flows])]),
	},
	"facts": ["egress"],
} if {
	_egress_internet
	not _unknown.egress
	flows := _egress_face_flows
	count(flows) > 0
}

_raw_reason contains {
	"control": "FRM-08-LOCAL-STORAGE",
	"message": {
		"zh": sprintf("发现未申报的互联网连接（%s），可能传输人脸数据：已阻断，请查明该连接并在终端状态中申报", [concat("、", dests)]),
		"en": sprintf("an undeclared internet connection to %s may carry face data: it is blocked; identify it and declare it in the terminal status", [concat(", ", dests)]),
	},
	"facts": ["egress"],
} if {
	_egress_internet
	not _unknown.egress
	count(_egress_undeclared) > 0
	dests := sort(_egress_undeclared)
}

# ---------------------------------------------------------------- FRM-08-RAW-IMAGES (Art. 8, Art. 4)

_raw_reason contains {
	"control": "FRM-08-RAW-IMAGES",
	"message": {
		"zh": sprintf("未经单独同意的原始人脸图像最久已保存 %d 秒，超过 %d 秒的上限：正在删除，请将终端设为识别后立即删除原始图像", [input.raw_images.oldest_age_s, data.faceguard.config.raw_image_max_s]),
		"en": sprintf("a raw face capture without separate consent is %d s old, over the %d s limit: deleting; set the terminal to delete raw captures right after recognition", [input.raw_images.oldest_age_s, data.faceguard.config.raw_image_max_s]),
	},
	"facts": ["raw_images.oldest_age_s"],
} if {
	input.raw_images.oldest_age_s > data.faceguard.config.raw_image_max_s
}

# ---------------------------------------------------------------- subject counts (Arts. 6, 7, 8)

# Each rule is one comparison when it does not fire; the counts are read again in the head.

_raw_reason contains {
	"control": "FRM-08-LOCAL-STORAGE",
	"message": {
		"zh": sprintf("有 %d 个人脸模板存储在设备之外：人脸信息应存储于人脸识别设备内，请删除设备外的副本", [input.subjects.stored_off_device]),
		"en": sprintf("%d face template(s) stored outside the device: face information must stay in the recognition device; delete the copies kept elsewhere", [input.subjects.stored_off_device]),
	},
	"facts": ["subjects.stored_off_device"],
} if {
	input.subjects.stored_off_device > 0
}

_raw_reason contains {
	"control": "FRM-08-RETENTION",
	"message": {
		"zh": sprintf("有 %d 个人脸模板已超过保存期限：正在清除，请在告知的保存期限届满后及时删除", [input.subjects.beyond_retention]),
		"en": sprintf("%d face template(s) past their retention period: purging; delete templates when the stated retention period ends", [input.subjects.beyond_retention]),
	},
	"facts": ["subjects.beyond_retention"],
} if {
	input.subjects.beyond_retention > 0
}

_raw_reason contains {
	"control": "FRM-06-CONSENT",
	"message": {
		"zh": sprintf("有 %d 个人脸模板没有有效的单独同意：已隔离（不参与比对），请取得本人单独同意或删除", [input.subjects.without_consent]),
		"en": sprintf("%d face template(s) without valid separate consent: quarantined (not used for matching); obtain the person's separate consent or delete them", [input.subjects.without_consent]),
	},
	"facts": ["subjects.without_consent"],
} if {
	input.subjects.without_consent > 0
}

_raw_reason contains {
	"control": "FRM-06-WITHDRAWAL",
	"message": {
		"zh": sprintf("有 %d 名已撤回同意的人员仍在人脸库中，最早的撤回已过去 %d 秒，超过 %d 秒的处理期限：正在清除", [input.subjects.withdrawn_pending, input.subjects.withdrawn_oldest_s, data.faceguard.config.withdrawal_purge_max_s]),
		"en": sprintf("%d subject(s) who withdrew consent still enrolled; the oldest withdrawal was %d s ago, over the %d s limit: purging", [input.subjects.withdrawn_pending, input.subjects.withdrawn_oldest_s, data.faceguard.config.withdrawal_purge_max_s]),
	},
	"facts": ["subjects.withdrawn_oldest_s", "subjects.withdrawn_pending"],
} if {
	input.subjects.withdrawn_pending > 0
	input.subjects.withdrawn_oldest_s > data.faceguard.config.withdrawal_purge_max_s
}

_raw_reason contains {
	"control": "FRM-07-MINORS",
	"message": {
		"zh": sprintf("有 %d 名不满十四周岁的人员没有监护人同意记录：已隔离，请取得其父母或其他监护人的同意", [input.subjects.minors_without_guardian]),
		"en": sprintf("%d subject(s) under 14 without guardian consent on record: quarantined; obtain the consent of a parent or guardian", [input.subjects.minors_without_guardian]),
	},
	"facts": ["subjects.minors_without_guardian"],
} if {
	input.subjects.minors_without_guardian > 0
}

# ---------------------------------------------------------------- FRM-10-ALTERNATIVE (Art. 10)

_raw_reason contains {
	"control": "FRM-10-ALTERNATIVE",
	"message": {
		"zh": sprintf("启用了人脸识别，但没有通过自检的非人脸通行方式（已配置 %d 种）：正在启用其他方式，请检修刷卡、密码等通行方式", [n]),
		"en": sprintf("face recognition is enabled but no non-face way through passed its self-test (%d configured): enabling alternatives; repair the card, PIN or other ways through", [n]),
	},
	"facts": ["alternatives.configured", "alternatives.healthy", "fr.enabled"],
} if {
	input.alternatives.healthy == []
	input.fr.enabled == true
	n := count(input.alternatives.configured)
}

_raw_reason contains {
	"control": "FRM-10-ALTERNATIVE",
	"message": {
		"zh": "界面没有提供“不使用人脸识别”的选项：请在屏幕上显示可拒绝刷脸并改用其他方式的选项",
		"en": "the screen offers no way to refuse face recognition: show an option to decline and use another way through",
	},
	"facts": ["alternatives.refuse_option_shown", "fr.enabled"],
} if {
	input.alternatives.refuse_option_shown == false
	input.fr.enabled == true
}

# ---------------------------------------------------------------- FRM-12-NO-COERCION (Art. 12)

# One regular expression over all phrases clears a passing document in a single match (OPA caches the
# compiled expression), and only a match pays for finding which phrases matched, by the rule: the
# lower-cased prompts contain the lower-cased phrase. Each phrase is quoted as literal text (\Q...\E),
# so a phrase can never make the pattern invalid. The common case, phrases written in lower case (as
# shipped), is matched case-sensitively against the lower-cased prompts: exactly the rule above, and far
# cheaper than (?i). Any other phrase list is matched case-insensitively, with every "\E" spliced out of
# the quotes. The pattern and its case read only data: the agent computes them once per policy (they
# are marked per_policy, docs/performance.md).
_coercion_found if {
	_coercion_phrases_lower == true
	regex.match(_coercion_pattern, lower(concat("\n", input.prompts)))
}

_coercion_found if {
	_coercion_phrases_lower == false
	regex.match(_coercion_pattern, concat("\n", input.prompts))
}

# METADATA
# custom:
#   per_policy: true
_coercion_phrases_lower if {
	joined := concat("", data.faceguard.config.coercion_phrases)
	lower(joined) == joined

	# "\E" anywhere in the joined phrases (also across two of them) takes the careful road.
	not contains(joined, "\\E")
} else := false

# METADATA
# custom:
#   per_policy: true
_coercion_pattern := concat("", ["\\Q", concat("\\E|\\Q", data.faceguard.config.coercion_phrases), "\\E"]) if {
	_coercion_phrases_lower == true
} else := concat("", [
	"(?i)\\Q", replace(
		replace(concat("\u0000", data.faceguard.config.coercion_phrases), "\\E", "\\E\\\\E\\Q"),
		"\u0000", "\\E|\\Q",
	),
	"\\E",
])

_coercion_matches := {p |
	text := lower(concat("\n", input.prompts))
	some p in data.faceguard.config.coercion_phrases
	p != ""
	contains(text, lower(p))
}

_raw_reason contains {
	"control": "FRM-12-NO-COERCION",
	"message": {
		"zh": sprintf("终端提示语把刷脸作为唯一方式（%s）：请删除此类表述，并提示可以使用其他方式", [concat("、", [sprintf("“%s”", [p]) | some p in matches])]),
		"en": sprintf("a prompt makes face recognition the only way (%s): remove such wording and tell people other ways are available", [concat(", ", [sprintf("%q", [p]) | some p in matches])]),
	},
	"facts": ["fr.enabled", "prompts"],
} if {
	input.fr.enabled == true
	input.prompts != []
	_coercion_found
	not _unknown.prompts
	matches := _coercion_matches
	count(matches) > 0
}

# ---------------------------------------------------------------- FRM-05-NOTICE (Art. 5; PIPL Art. 17)

_raw_reason contains {
	"control": "FRM-05-NOTICE",
	"message": {
		"zh": "采集人脸前未向本人展示告知内容：请在采集前以显著方式、清晰易懂的语言展示告知",
		"en": "the notice is not shown before faces are captured: show it prominently, in plain language, before capture",
	},
	"facts": ["fr.enabled", "notice.shown_before_capture"],
} if {
	input.notice.shown_before_capture == false
	input.fr.enabled == true
}

# Missing fields in the configured order. The reason below first checks the fast path, the fields listed
# exactly as configured, so this only runs for a notice that differs.
_notice_missing := [f | some f in data.faceguard.config.required_notice_fields; missing[f]] if {
	missing := {f | some f in data.faceguard.config.required_notice_fields} - {f | some f in input.notice.fields}
}

_raw_reason contains {
	"control": "FRM-05-NOTICE",
	"message": {
		"zh": sprintf("告知内容缺少：%s：请补全后再录入人脸", [concat("、", [sprintf("%s（%s）", [_notice_label(f).zh, f]) | some f in missing])]),
		"en": sprintf("the notice does not state: %s: complete it before enrolling faces", [concat(", ", [sprintf("%s (%s)", [_notice_label(f).en, f]) | some f in missing])]),
	},
	"facts": ["fr.enabled", "notice.fields"],
} if {
	input.fr.enabled == true
	input.notice.fields != data.faceguard.config.required_notice_fields
	missing := _notice_missing
	count(missing) > 0
}

_notice_label(f) := object.get(data.faceguard.vocab, ["notice_fields", f], {"zh": f, "en": f})

_raw_reason contains {
	"control": "FRM-05-NOTICE",
	"message": {
		"zh": "告知中未写明保存期限（retention_days 为 0）：请写明人脸信息的保存期限",
		"en": "the notice states no retention period (retention_days is 0): state how long face data is kept",
	},
	"facts": ["fr.enabled", "notice.retention_days"],
} if {
	input.notice.retention_days == 0
	input.fr.enabled == true
}

# ---------------------------------------------------------------- FRM-14-SECURITY (Art. 14; PIPL Art. 51)
# intrusion_detection is gathered but not judged.

_raw_reason contains {
	"control": "FRM-14-SECURITY",
	"message": {
		"zh": "人脸数据存储未加密：请启用存储加密",
		"en": "face data is stored unencrypted: enable storage encryption",
	},
	"facts": ["security.storage_encrypted"],
} if {
	input.security.storage_encrypted == false
}

_raw_reason contains {
	"control": "FRM-14-SECURITY",
	"message": {
		"zh": "数据传输未使用 TLS 加密：请启用 TLS",
		"en": "data is transmitted without TLS: enable TLS",
	},
	"facts": ["security.transport_tls"],
} if {
	input.security.transport_tls == false
}

_raw_reason contains {
	"control": "FRM-14-SECURITY",
	"message": {
		"zh": "未开启安全审计日志：请开启审计日志",
		"en": "security audit logging is off: turn it on",
	},
	"facts": ["security.audit_log"],
} if {
	input.security.audit_log == false
}

_raw_reason contains {
	"control": "FRM-14-SECURITY",
	"message": {
		"zh": "未启用访问控制：请配置账号与权限管理",
		"en": "access control is not enforced: configure accounts and authorisation",
	},
	"facts": ["security.access_control"],
} if {
	input.security.access_control == false
}

_raw_reason contains {
	"control": "FRM-14-SECURITY",
	"message": {
		"zh": "出厂默认口令仍可登录：请立即修改",
		"en": "factory default credentials still work: change them now",
	},
	"facts": ["security.default_credentials"],
} if {
	input.security.default_credentials == true
}

# ---------------------------------------------------------------- FRM-09-PIA (Art. 9; PIPL Art. 55)

_no_pia_ref if input.pia.ref == null

_no_pia_ref if input.pia.ref == ""

_raw_reason contains {
	"control": "FRM-09-PIA",
	"message": {
		"zh": "没有覆盖本设备的个人信息保护影响评估：请在处理前完成评估并登记评估编号",
		"en": "no personal-information impact assessment covers this device: complete one before processing and record its reference",
	},
	"facts": ["fr.enabled", "pia.ref"],
} if {
	input.fr.enabled == true
	_no_pia_ref
}

_raw_reason contains {
	"control": "FRM-09-PIA",
	"message": {
		"zh": "影响评估未记录完成时间：请完成评估并记录完成日期",
		"en": "the impact assessment has no completion date: complete it and record the date",
	},
	"facts": ["fr.enabled", "pia.completed_at"],
} if {
	input.pia.completed_at == null
	input.fr.enabled == true
	not _no_pia_ref
}

_raw_reason contains {
	"control": "FRM-09-PIA",
	"message": {
		"zh": sprintf("影响评估针对的目的（%s）与实际用途（%v）不一致：请按实际用途重新评估", [_or(input.pia.purpose, "未填写"), input.fr.purpose]),
		"en": sprintf("the impact assessment covers purpose %s but the device is used for %v: assess the actual purpose again", [_or(input.pia.purpose, "(not stated)"), input.fr.purpose]),
	},
	"facts": ["fr.enabled", "fr.purpose", "pia.purpose"],
} if {
	input.fr.enabled == true
	input.pia.purpose != input.fr.purpose
	not _no_pia_ref
}

# _or is x when it is a string, else the text d.
_or(x, _) := x if is_string(x)

_or(x, d) := d if not is_string(x)

# ---------------------------------------------------------------- FRM-04-MINIMISATION (Art. 4)

_raw_reason contains {
	"control": "FRM-04-MINIMISATION",
	"message": {
		"zh": "门禁场景使用 1:N 人脸辨识，而 1:1 验证即可满足目的：请改用 1:1 验证（如刷卡加人脸比对）",
		"en": "1:N identification is used for access control, where 1:1 verification would do: switch to 1:1 verification (e.g. card plus face)",
	},
	"facts": ["fr.enabled", "fr.mode", "fr.purpose"],
} if {
	input.fr.mode == "identify_1toN"
	input.fr.purpose == "access_control"
	input.fr.enabled == true
}

# ---------------------------------------------------------------- FRM-02-SCOPE (Art. 2)

_scope_facts contains "location.public_place" if _public

_scope_facts contains "location.category" if _private_category

_scope_facts contains "location.private_space" if _private_flag

_raw_reason contains {
	"control": "FRM-02-SCOPE",
	"message": {
		"zh": "设备标记为研发/算法训练用途（rnd_lab），但安装在公共场所或私密空间：研发排除不适用于实际部署，各项要求照常适用；请更正设备阶段或移走设备",
		"en": "the device claims the research exclusion (rnd_lab) but is installed in a public place or a private space: the exclusion does not cover deployments and every control applies; correct the device stage or move the device",
	},
	"facts": sort(_scope_facts | {"device.stage"}),
} if {
	input.device.stage == "rnd_lab"
	count(_scope_facts) > 0
}
