# METADATA
# title: faceguard control catalog
# description: |
#   The controls of the pack for 《人脸识别技术应用安全管理办法》 (FRM, in force 2025-06-01).
#   Control metadata lives here once; the rules in controls.rego only produce reasons and
#   decision.rego looks severity, articles and action up here. Ids are a contract (DESIGN §6).
package faceguard

# controls is the catalog: id -> severity, articles, the enforcement action (or null),
# the fact groups the control reads, and a bilingual title.
controls := {
	"FRM-13-PRIVATE-SPACE": {
		"severity": "critical",
		"articles": ["FRM Art. 13"],
		"action": "disable_face_recognition",
		"facts": ["fr", "location"],
		"title": {"zh": "禁止在公共场所内的私密空间安装使用人脸识别设备", "en": "No face recognition inside private spaces"},
	},
	"FRM-13-SIGNAGE": {
		"severity": "high",
		"articles": ["FRM Art. 13", "PIPL Art. 26"],
		"action": null,
		"facts": ["fr", "location", "signage"],
		"title": {"zh": "公共场所设置显著提示标识", "en": "Conspicuous signs in public places"},
	},
	"FRM-13-NECESSITY": {
		"severity": "high",
		"articles": ["FRM Art. 13", "FRM Art. 4"],
		"action": null,
		"facts": ["fr", "location"],
		"title": {"zh": "公共场所仅为维护公共安全所必需", "en": "Public-place use only where public security requires it"},
	},
	"FRM-13-CAPTURE-ZONE": {
		"severity": "medium",
		"articles": ["FRM Art. 13"],
		"action": null,
		"facts": ["fr", "location"],
		"title": {"zh": "合理确定图像采集区域", "en": "Capture area defined"},
	},
	"FRM-08-LOCAL-STORAGE": {
		"severity": "critical",
		"articles": ["FRM Art. 8"],
		"action": "block_face_data_egress",
		"facts": ["subjects", "egress"],
		"title": {"zh": "人脸信息存储于设备内，不经互联网对外传输", "en": "Face data stays on the device"},
	},
	"FRM-08-RAW-IMAGES": {
		"severity": "high",
		"articles": ["FRM Art. 8", "FRM Art. 4"],
		"action": "delete_raw_images",
		"facts": ["raw_images"],
		"title": {"zh": "原始人脸图像用后即删", "en": "Raw captures deleted after use"},
	},
	"FRM-08-RETENTION": {
		"severity": "medium",
		"articles": ["FRM Art. 8", "PIPL Art. 19"],
		"action": "purge_expired_subjects",
		"facts": ["subjects"],
		"title": {"zh": "保存期限为实现目的所必需的最短时间", "en": "Shortest necessary retention"},
	},
	"FRM-06-CONSENT": {
		"severity": "high",
		"articles": ["FRM Art. 6", "PIPL Art. 29"],
		"action": "quarantine_unconsented_subjects",
		"facts": ["subjects"],
		"title": {"zh": "取得个人单独同意", "en": "Separate consent for every template"},
	},
	"FRM-06-WITHDRAWAL": {
		"severity": "high",
		"articles": ["FRM Art. 6", "PIPL Art. 47"],
		"action": "purge_withdrawn_subjects",
		"facts": ["subjects"],
		"title": {"zh": "及时处理撤回同意", "en": "Withdrawal of consent honoured promptly"},
	},
	"FRM-07-MINORS": {
		"severity": "high",
		"articles": ["FRM Art. 7", "PIPL Art. 31"],
		"action": "quarantine_minors_without_guardian",
		"facts": ["subjects"],
		"title": {"zh": "不满十四周岁须取得监护人同意", "en": "Guardian consent for under-14s"},
	},
	"FRM-10-ALTERNATIVE": {
		"severity": "high",
		"articles": ["FRM Art. 10"],
		"action": "enable_alternatives",
		"facts": ["fr", "alternatives"],
		"title": {"zh": "人脸识别不得作为唯一验证方式", "en": "Face recognition is not the only way"},
	},
	"FRM-12-NO-COERCION": {
		"severity": "medium",
		"articles": ["FRM Art. 12"],
		"action": null,
		"facts": ["fr", "prompts"],
		"title": {"zh": "不得误导、欺诈、胁迫个人接受人脸识别", "en": "No coercive face-recognition prompts"},
	},
	"FRM-05-NOTICE": {
		"severity": "medium",
		"articles": ["FRM Art. 5", "PIPL Art. 17"],
		"action": "block_enrolment",
		"facts": ["fr", "notice"],
		"title": {"zh": "处理前以显著方式告知", "en": "Complete notice before capture"},
	},
	"FRM-14-SECURITY": {
		"severity": "high",
		"articles": ["FRM Art. 14", "PIPL Art. 51"],
		"action": null,
		"facts": ["security"],
		"title": {"zh": "采取数据加密、安全审计、访问控制等安全措施", "en": "Security measures in place"},
	},
	"FRM-09-PIA": {
		"severity": "medium",
		"articles": ["FRM Art. 9", "PIPL Art. 55"],
		"action": null,
		"facts": ["fr", "pia"],
		"title": {"zh": "事前进行个人信息保护影响评估", "en": "Impact assessment covers this use"},
	},
	"FRM-04-MINIMISATION": {
		"severity": "low",
		"articles": ["FRM Art. 4"],
		"action": null,
		"facts": ["fr"],
		"title": {"zh": "采用对个人权益影响最小的方式", "en": "Least intrusive recognition mode"},
	},
	"FRM-02-SCOPE": {
		"severity": "high",
		"articles": ["FRM Art. 2"],
		"action": null,
		"facts": ["device", "location"],
		"title": {"zh": "研发排除不适用于实际部署", "en": "Research exclusion does not cover deployments"},
	},
}

# _gates lists, per control, the conditions under which it can apply at all. A gate whose facts are
# unknown counts as open, so a control that might apply reports "cannot be verified" instead of passing.
_gates := {
	"FRM-13-PRIVATE-SPACE": ["fr", "private"],
	"FRM-13-SIGNAGE": ["fr", "public"],
	"FRM-13-NECESSITY": ["fr", "public"],
	"FRM-13-CAPTURE-ZONE": ["fr", "public"],
	"FRM-10-ALTERNATIVE": ["fr"],
	"FRM-12-NO-COERCION": ["fr"],
	"FRM-05-NOTICE": ["fr"],
	"FRM-09-PIA": ["fr"],
	"FRM-04-MINIMISATION": ["fr"],
	"FRM-02-SCOPE": ["rnd_lab"], # an unknown device claims no exclusion, so every control applies anyway
}

# The canonical order of actions in a decision (DESIGN §6, contract): action -> position.
_action_rank := {
	"disable_face_recognition": 0,
	"enable_alternatives": 1,
	"block_face_data_egress": 2,
	"delete_raw_images": 3,
	"purge_withdrawn_subjects": 4,
	"purge_expired_subjects": 5,
	"quarantine_unconsented_subjects": 6,
	"quarantine_minors_without_guardian": 7,
	"block_enrolment": 8,
}

# The order of severities in a decision (contract); labels for display are in data.faceguard.vocab.severities.
# Single digits as strings: they order the violations and are counted per severity (decision.rego).
_severity_rank := {"critical": "0", "high": "1", "medium": "2", "low": "3"}
