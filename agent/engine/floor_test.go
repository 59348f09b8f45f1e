package engine

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/policies"
)

// floor is the pack's decision written by hand in plain Go over the typed facts: the fastest this
// decision can be, the floor the benchmarks compare the policy engine with (BENCHMARKS.md). It is test
// code and never ships: a terminal must be judged by the signed, reviewable policy, not by a copy.
//
// It covers complete documents (no unknown fact group), which is what the benchmarks evaluate; the
// "cannot be verified" handling of unknown groups is not reproduced. TestDecisionPathsAgree keeps it in
// step with the pack on the benchmark documents.
type floor struct {
	catalog          map[string]Control
	rawImageMaxS     int
	withdrawalMaxS   int
	signageDays      int64
	private          map[string]bool
	phrases          []string // lower-cased, non-empty
	rawPhrases       []string
	noticeFields     []string
	categories       map[string]device.Text
	noticeLabels     map[string]device.Text
	severityRank     map[string]int
	actionRank       map[string]int
	lawful, declared map[string]bool
	faceData         map[string]bool
}

// newFloor reads the pack's data (data.json) and catalog once, as the engine does when it compiles.
func newFloor(t testing.TB, e *Engine) *floor {
	t.Helper()
	raw, err := fs.ReadFile(policies.Pack(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Faceguard struct {
			Config struct {
				RawImageMaxS         int      `json:"raw_image_max_s"`
				WithdrawalPurgeMaxS  int      `json:"withdrawal_purge_max_s"`
				SignageReverifyDays  int64    `json:"signage_reverify_days"`
				PrivateCategories    []string `json:"private_categories"`
				CoercionPhrases      []string `json:"coercion_phrases"`
				RequiredNoticeFields []string `json:"required_notice_fields"`
			} `json:"config"`
			Vocab struct {
				Categories   map[string]device.Text `json:"categories"`
				NoticeFields map[string]device.Text `json:"notice_fields"`
			} `json:"vocab"`
		} `json:"faceguard"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	c := data.Faceguard.Config
	fl := &floor{
		catalog:        e.Catalog(),
		rawImageMaxS:   c.RawImageMaxS,
		withdrawalMaxS: c.WithdrawalPurgeMaxS,
		signageDays:    c.SignageReverifyDays,
		private:        map[string]bool{},
		noticeFields:   c.RequiredNoticeFields,
		categories:     data.Faceguard.Vocab.Categories,
		noticeLabels:   data.Faceguard.Vocab.NoticeFields,
		severityRank:   map[string]int{"critical": 0, "high": 1, "medium": 2, "low": 3},
		actionRank:     map[string]int{},
		lawful:         map[string]bool{device.ConsentSeparate: true, device.ConsentLaw: true},
		declared: map[string]bool{device.EgressTemplate: true, device.EgressRawImage: true, device.EgressVideo: true,
			device.EgressMatchResult: true, device.EgressMetadata: true},
		faceData: map[string]bool{device.EgressTemplate: true, device.EgressRawImage: true, device.EgressVideo: true},
	}
	for _, p := range c.PrivateCategories {
		fl.private[p] = true
	}
	for _, p := range c.CoercionPhrases {
		if p != "" {
			fl.phrases = append(fl.phrases, strings.ToLower(p))
			fl.rawPhrases = append(fl.rawPhrases, p)
		}
	}
	for i, a := range []string{"disable_face_recognition", "enable_alternatives", "block_face_data_egress",
		"delete_raw_images", "purge_withdrawn_subjects", "purge_expired_subjects", "quarantine_unconsented_subjects",
		"quarantine_minors_without_guardian", "block_enrolment"} {
		fl.actionRank[a] = i
	}
	return fl
}

// reason is one cause of a control failing, as in controls.rego.
type reason struct {
	control string
	msg     device.Text
	facts   []string
}

// decide is data.faceguard.decision for a complete facts document.
func (fl *floor) decide(f *device.Facts) device.Decision {
	fr := f.FR.Enabled
	public := f.Location.PublicPlace
	privateCategory := fl.private[f.Location.Category]
	privateFlag := f.Location.PrivateSpace
	if f.Device.Stage == device.StageRnDLab && !public && !privateCategory && !privateFlag {
		return cleanDecision() // the research exclusion (Art. 2)
	}
	var rs []reason
	add := func(control string, zh, en string, facts ...string) {
		rs = append(rs, reason{control: control, msg: device.Text{ZH: zh, EN: en}, facts: facts})
	}

	// FRM-13-PRIVATE-SPACE
	if fr && privateCategory {
		cat := f.Location.Category
		label := fl.categories[cat]
		add("FRM-13-PRIVATE-SPACE",
			fmt.Sprintf("设备安装在%s（%s），属于公共场所内的私密空间，禁止在此使用人脸识别：代理将关闭人脸识别并开启其他通行方式，请拆除或移走该设备", label.ZH, cat),
			fmt.Sprintf("face recognition is enabled in a %s (%s), a private space where it is prohibited: the agent switches face recognition off and keeps other ways through on; remove or relocate the device", label.EN, cat),
			"fr.enabled", "location.category")
	} else if fr && privateFlag {
		add("FRM-13-PRIVATE-SPACE",
			"安装人员已将该位置标记为私密空间，禁止在此使用人脸识别：代理将关闭人脸识别并开启其他通行方式，请拆除或移走该设备",
			"the installer marked this location as a private space, where face recognition is prohibited: the agent switches face recognition off and keeps other ways through on; remove or relocate the device",
			"fr.enabled", "location.private_space")
	}

	if fr && public {
		// FRM-13-SIGNAGE
		s := f.Signage
		if !s.Present {
			add("FRM-13-SIGNAGE", "在公共场所启用人脸识别，但未设置显著提示标识：请张贴标识并记录核验证据",
				"face recognition is enabled in a public place without a conspicuous sign: put up a sign and record the verification evidence",
				"fr.enabled", "location.public_place", "signage.present")
		} else {
			if s.Evidence == "none" {
				add("FRM-13-SIGNAGE", "已报告设置提示标识，但没有核验证据：请以拍照审计、安装人员确认或传感器检测核验并记录",
					"a sign is reported but there is no evidence for it: verify it by photo audit, installer attestation or sensor and record the evidence",
					"fr.enabled", "location.public_place", "signage.evidence")
			}
			if s.VerifiedAt == nil {
				add("FRM-13-SIGNAGE", "提示标识从未核验：请核验标识并记录核验时间", "the sign has never been verified: verify it and record when",
					"fr.enabled", "location.public_place", "signage.verified_at")
			} else if age := f.CollectedAt.Sub(*s.VerifiedAt); age > time.Duration(fl.signageDays)*24*time.Hour {
				days := (age + 24*time.Hour - 1) / (24 * time.Hour)
				add("FRM-13-SIGNAGE",
					fmt.Sprintf("提示标识上次核验已是 %d 天前，超过 %d 天的复核期限：请重新核验并记录", days, fl.signageDays),
					fmt.Sprintf("the sign was last verified %d days ago, beyond the %d-day re-verification period: verify it again and record it", days, fl.signageDays),
					"collected_at", "fr.enabled", "location.public_place", "signage.verified_at")
			}
		}
		// FRM-13-NECESSITY
		if f.Location.NecessityRef == nil || *f.Location.NecessityRef == "" {
			add("FRM-13-NECESSITY", "在公共场所启用人脸识别，但未记录维护公共安全所必需的依据：请登记必要性依据（necessity_ref），否则不应在此使用人脸识别",
				"face recognition is enabled in a public place with no documented public-security necessity: record the necessity reference (necessity_ref), or do not use face recognition here",
				"fr.enabled", "location.necessity_ref", "location.public_place")
		}
		if f.FR.Purpose == "marketing" {
			add("FRM-13-NECESSITY", "在公共场所以营销为目的使用人脸识别，超出维护公共安全所必需的范围：请停止营销用途",
				"face recognition is used for marketing in a public place, beyond what public security requires: stop the marketing use",
				"fr.enabled", "fr.purpose", "location.public_place")
		}
		// FRM-13-CAPTURE-ZONE
		if !f.Location.CaptureZoneDefined {
			add("FRM-13-CAPTURE-ZONE", "在公共场所启用人脸识别，但未划定图像采集区域：请合理确定采集区域并在设备上配置",
				"face recognition is enabled in a public place but the capture area is not defined: define a reasonable capture area and configure it on the device",
				"fr.enabled", "location.capture_zone_defined", "location.public_place")
		}
	}

	// FRM-08-LOCAL-STORAGE: flows over the internet
	var flows [][2]string
	var undeclared []string
	for _, e := range f.Egress {
		if !e.Internet || fl.lawful[e.Consent] {
			continue
		}
		if fl.faceData[e.Data] {
			flows = append(flows, [2]string{e.Dest, e.Data})
		}
		if !fl.declared[e.Data] {
			undeclared = append(undeclared, e.Dest)
		}
	}
	if len(flows) > 0 {
		slices.SortFunc(flows, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
		flows = slices.Compact(flows)
		zh, en := make([]string, len(flows)), make([]string, len(flows))
		for i, fw := range flows {
			zh[i], en[i] = fmt.Sprintf("%s（%s）", fw[0], fw[1]), fmt.Sprintf("%s (%s)", fw[0], fw[1])
		}
		add("FRM-08-LOCAL-STORAGE",
			fmt.Sprintf("人脸数据在未取得单独同意且无法律依据的情况下经互联网传出：%s；已阻断该传输，请停止外传或取得单独同意", strings.Join(zh, "、")),
			fmt.Sprintf("face data leaves the device over the internet without separate consent or a legal basis: %s; the flow is blocked, stop it or obtain separate consent", strings.Join(en, ", ")),
			"egress")
	}
	if len(undeclared) > 0 {
		slices.Sort(undeclared)
		undeclared = slices.Compact(undeclared)
		add("FRM-08-LOCAL-STORAGE",
			fmt.Sprintf("发现未申报的互联网连接（%s），可能传输人脸数据：已阻断，请查明该连接并在终端状态中申报", strings.Join(undeclared, "、")),
			fmt.Sprintf("an undeclared internet connection to %s may carry face data: it is blocked; identify it and declare it in the terminal status", strings.Join(undeclared, ", ")),
			"egress")
	}

	// FRM-08-RAW-IMAGES
	if age := f.RawImages.OldestAgeS; age > fl.rawImageMaxS {
		add("FRM-08-RAW-IMAGES",
			fmt.Sprintf("未经单独同意的原始人脸图像最久已保存 %d 秒，超过 %d 秒的上限：正在删除，请将终端设为识别后立即删除原始图像", age, fl.rawImageMaxS),
			fmt.Sprintf("a raw face capture without separate consent is %d s old, over the %d s limit: deleting; set the terminal to delete raw captures right after recognition", age, fl.rawImageMaxS),
			"raw_images.oldest_age_s")
	}

	// The subject counts (Arts. 6, 7, 8)
	sub := f.Subjects
	if n := sub.StoredOffDevice; n > 0 {
		add("FRM-08-LOCAL-STORAGE",
			fmt.Sprintf("有 %d 个人脸模板存储在设备之外：人脸信息应存储于人脸识别设备内，请删除设备外的副本", n),
			fmt.Sprintf("%d face template(s) stored outside the device: face information must stay in the recognition device; delete the copies kept elsewhere", n),
			"subjects.stored_off_device")
	}
	if n := sub.BeyondRetention; n > 0 {
		add("FRM-08-RETENTION",
			fmt.Sprintf("有 %d 个人脸模板已超过保存期限：正在清除，请在告知的保存期限届满后及时删除", n),
			fmt.Sprintf("%d face template(s) past their retention period: purging; delete templates when the stated retention period ends", n),
			"subjects.beyond_retention")
	}
	if n := sub.WithoutConsent; n > 0 {
		add("FRM-06-CONSENT",
			fmt.Sprintf("有 %d 个人脸模板没有有效的单独同意：已隔离（不参与比对），请取得本人单独同意或删除", n),
			fmt.Sprintf("%d face template(s) without valid separate consent: quarantined (not used for matching); obtain the person's separate consent or delete them", n),
			"subjects.without_consent")
	}
	if n, age := sub.WithdrawnPending, sub.WithdrawnOldestS; n > 0 && age > fl.withdrawalMaxS {
		add("FRM-06-WITHDRAWAL",
			fmt.Sprintf("有 %d 名已撤回同意的人员仍在人脸库中，最早的撤回已过去 %d 秒，超过 %d 秒的处理期限：正在清除", n, age, fl.withdrawalMaxS),
			fmt.Sprintf("%d subject(s) who withdrew consent still enrolled; the oldest withdrawal was %d s ago, over the %d s limit: purging", n, age, fl.withdrawalMaxS),
			"subjects.withdrawn_oldest_s", "subjects.withdrawn_pending")
	}
	if n := sub.MinorsWithoutGuardian; n > 0 {
		add("FRM-07-MINORS",
			fmt.Sprintf("有 %d 名不满十四周岁的人员没有监护人同意记录：已隔离，请取得其父母或其他监护人的同意", n),
			fmt.Sprintf("%d subject(s) under 14 without guardian consent on record: quarantined; obtain the consent of a parent or guardian", n),
			"subjects.minors_without_guardian")
	}

	if fr {
		// FRM-10-ALTERNATIVE
		if len(f.Alternatives.Healthy) == 0 {
			n := len(f.Alternatives.Configured)
			add("FRM-10-ALTERNATIVE",
				fmt.Sprintf("启用了人脸识别，但没有通过自检的非人脸通行方式（已配置 %d 种）：正在启用其他方式，请检修刷卡、密码等通行方式", n),
				fmt.Sprintf("face recognition is enabled but no non-face way through passed its self-test (%d configured): enabling alternatives; repair the card, PIN or other ways through", n),
				"alternatives.configured", "alternatives.healthy", "fr.enabled")
		}
		if !f.Alternatives.RefuseOptionShown {
			add("FRM-10-ALTERNATIVE", "界面没有提供“不使用人脸识别”的选项：请在屏幕上显示可拒绝刷脸并改用其他方式的选项",
				"the screen offers no way to refuse face recognition: show an option to decline and use another way through",
				"alternatives.refuse_option_shown", "fr.enabled")
		}
		// FRM-12-NO-COERCION
		if len(f.Prompts) > 0 {
			text := strings.ToLower(strings.Join(f.Prompts, "\n"))
			var matches []string
			for i, p := range fl.phrases {
				if strings.Contains(text, p) {
					matches = append(matches, fl.rawPhrases[i])
				}
			}
			if len(matches) > 0 {
				slices.Sort(matches)
				matches = slices.Compact(matches)
				zh, en := make([]string, len(matches)), make([]string, len(matches))
				for i, m := range matches {
					zh[i], en[i] = "“"+m+"”", fmt.Sprintf("%q", m)
				}
				add("FRM-12-NO-COERCION",
					fmt.Sprintf("终端提示语把刷脸作为唯一方式（%s）：请删除此类表述，并提示可以使用其他方式", strings.Join(zh, "、")),
					fmt.Sprintf("a prompt makes face recognition the only way (%s): remove such wording and tell people other ways are available", strings.Join(en, ", ")),
					"fr.enabled", "prompts")
			}
		}
		// FRM-05-NOTICE
		n := f.Notice
		if !n.ShownBeforeCapture {
			add("FRM-05-NOTICE", "采集人脸前未向本人展示告知内容：请在采集前以显著方式、清晰易懂的语言展示告知",
				"the notice is not shown before faces are captured: show it prominently, in plain language, before capture",
				"fr.enabled", "notice.shown_before_capture")
		}
		if !slices.Equal(n.Fields, fl.noticeFields) {
			var zh, en []string
			for _, want := range fl.noticeFields {
				if !slices.Contains(n.Fields, want) {
					l, ok := fl.noticeLabels[want]
					if !ok {
						l = device.Text{ZH: want, EN: want}
					}
					zh = append(zh, fmt.Sprintf("%s（%s）", l.ZH, want))
					en = append(en, fmt.Sprintf("%s (%s)", l.EN, want))
				}
			}
			if len(zh) > 0 {
				add("FRM-05-NOTICE", fmt.Sprintf("告知内容缺少：%s：请补全后再录入人脸", strings.Join(zh, "、")),
					fmt.Sprintf("the notice does not state: %s: complete it before enrolling faces", strings.Join(en, ", ")),
					"fr.enabled", "notice.fields")
			}
		}
		if n.RetentionDays == 0 {
			add("FRM-05-NOTICE", "告知中未写明保存期限（retention_days 为 0）：请写明人脸信息的保存期限",
				"the notice states no retention period (retention_days is 0): state how long face data is kept",
				"fr.enabled", "notice.retention_days")
		}
	}

	// FRM-14-SECURITY
	sec := f.Security
	if !sec.StorageEncrypted {
		add("FRM-14-SECURITY", "人脸数据存储未加密：请启用存储加密", "face data is stored unencrypted: enable storage encryption", "security.storage_encrypted")
	}
	if !sec.TransportTLS {
		add("FRM-14-SECURITY", "数据传输未使用 TLS 加密：请启用 TLS", "data is transmitted without TLS: enable TLS", "security.transport_tls")
	}
	if !sec.AuditLog {
		add("FRM-14-SECURITY", "未开启安全审计日志：请开启审计日志", "security audit logging is off: turn it on", "security.audit_log")
	}
	if !sec.AccessControl {
		add("FRM-14-SECURITY", "未启用访问控制：请配置账号与权限管理", "access control is not enforced: configure accounts and authorisation", "security.access_control")
	}
	if sec.DefaultCredentials {
		add("FRM-14-SECURITY", "出厂默认口令仍可登录：请立即修改", "factory default credentials still work: change them now", "security.default_credentials")
	}

	if fr {
		// FRM-09-PIA
		p := f.PIA
		if p.Ref == nil || *p.Ref == "" {
			add("FRM-09-PIA", "没有覆盖本设备的个人信息保护影响评估：请在处理前完成评估并登记评估编号",
				"no personal-information impact assessment covers this device: complete one before processing and record its reference",
				"fr.enabled", "pia.ref")
		} else {
			if p.CompletedAt == nil {
				add("FRM-09-PIA", "影响评估未记录完成时间：请完成评估并记录完成日期",
					"the impact assessment has no completion date: complete it and record the date", "fr.enabled", "pia.completed_at")
			}
			if p.Purpose == nil || *p.Purpose != f.FR.Purpose {
				zh, en := "未填写", "(not stated)"
				if p.Purpose != nil {
					zh, en = *p.Purpose, *p.Purpose
				}
				add("FRM-09-PIA",
					fmt.Sprintf("影响评估针对的目的（%s）与实际用途（%s）不一致：请按实际用途重新评估", zh, f.FR.Purpose),
					fmt.Sprintf("the impact assessment covers purpose %s but the device is used for %s: assess the actual purpose again", en, f.FR.Purpose),
					"fr.enabled", "fr.purpose", "pia.purpose")
			}
		}
		// FRM-04-MINIMISATION
		if f.FR.Mode == "identify_1toN" && f.FR.Purpose == "access_control" {
			add("FRM-04-MINIMISATION", "门禁场景使用 1:N 人脸辨识，而 1:1 验证即可满足目的：请改用 1:1 验证（如刷卡加人脸比对）",
				"1:N identification is used for access control, where 1:1 verification would do: switch to 1:1 verification (e.g. card plus face)",
				"fr.enabled", "fr.mode", "fr.purpose")
		}
	}

	// FRM-02-SCOPE
	if f.Device.Stage == device.StageRnDLab {
		facts := []string{"device.stage"}
		if public {
			facts = append(facts, "location.public_place")
		}
		if privateCategory {
			facts = append(facts, "location.category")
		}
		if privateFlag {
			facts = append(facts, "location.private_space")
		}
		slices.Sort(facts)
		add("FRM-02-SCOPE", "设备标记为研发/算法训练用途（rnd_lab），但安装在公共场所或私密空间：研发排除不适用于实际部署，各项要求照常适用；请更正设备阶段或移走设备",
			"the device claims the research exclusion (rnd_lab) but is installed in a public place or a private space: the exclusion does not cover deployments and every control applies; correct the device stage or move the device",
			facts...)
	}

	if len(rs) == 0 && sub.WithdrawnPending == 0 {
		return cleanDecision()
	}
	return fl.assemble(rs, sub.WithdrawnPending > 0)
}

// assemble groups reasons into one violation per control, ordered by severity then id, with the
// actions in canonical order and the counts.
func (fl *floor) assemble(rs []reason, withdrawnPending bool) device.Decision {
	d := device.Decision{Status: device.StatusCompliant, Violations: []device.Violation{}, Actions: []string{}}
	slices.SortStableFunc(rs, func(a, b reason) int {
		if r := fl.severityRank[fl.catalog[a.control].Severity] - fl.severityRank[fl.catalog[b.control].Severity]; r != 0 {
			return r
		}
		return strings.Compare(a.control, b.control)
	})
	actions := map[string]bool{}
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].control == rs[i].control {
			j++
		}
		c := fl.catalog[rs[i].control]
		v := device.Violation{Control: rs[i].control, Severity: c.Severity, Articles: c.Articles, Message: rs[i].msg, Facts: rs[i].facts}
		if j-i > 1 {
			zh, en, facts := make([]string, 0, j-i), make([]string, 0, j-i), []string{}
			for _, r := range rs[i:j] {
				zh, en, facts = append(zh, r.msg.ZH), append(en, r.msg.EN), append(facts, r.facts...)
			}
			slices.Sort(facts)
			v.Message, v.Facts = device.Text{ZH: strings.Join(zh, "；"), EN: strings.Join(en, "; ")}, slices.Compact(facts)
		}
		d.Violations = append(d.Violations, v)
		d.Counts.Add(c.Severity)
		if c.Action != nil {
			actions[*c.Action] = true
		}
		i = j
	}
	if withdrawnPending {
		actions["purge_withdrawn_subjects"] = true
	}
	if actions["disable_face_recognition"] {
		actions["enable_alternatives"] = true
	}
	for a := range actions {
		d.Actions = append(d.Actions, a)
	}
	slices.SortFunc(d.Actions, func(a, b string) int { return fl.actionRank[a] - fl.actionRank[b] })
	if len(d.Violations) > 0 {
		d.Status = device.StatusNonCompliant
	}
	return d
}

func cleanDecision() device.Decision {
	return device.Decision{Status: device.StatusCompliant, Violations: []device.Violation{}, Actions: []string{}}
}
