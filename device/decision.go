package device

// Decision is what the policy says about a terminal: data.faceguard.decision (DESIGN §6, contract).
type Decision struct {
	Status     string      `json:"status"`
	Violations []Violation `json:"violations"`
	Actions    []string    `json:"actions"`
	Counts     Counts      `json:"counts"`
}

// Decision statuses.
const (
	StatusCompliant    = "compliant"
	StatusNonCompliant = "non_compliant"
)

// Violation is one failed control.
type Violation struct {
	Control  string   `json:"control"`
	Severity string   `json:"severity"`
	Articles []string `json:"articles"`
	Message  Text     `json:"message"`
	Facts    []string `json:"facts"`
}

// Text is a message in both languages the product speaks.
type Text struct {
	ZH string `json:"zh"`
	EN string `json:"en"`
}

// In returns the text in lang ("zh" or "en"); anything else gets English.
func (t Text) In(lang string) string {
	if lang == "zh" {
		return t.ZH
	}
	return t.EN
}

// Counts are violations by severity.
type Counts struct {
	Critical int `json:"critical"`
	High     int `json:"high"`
	Medium   int `json:"medium"`
	Low      int `json:"low"`
}

// Add counts one violation of severity; a severity outside the four counts nowhere.
func (c *Counts) Add(severity string) {
	switch severity {
	case SeverityCritical:
		c.Critical++
	case SeverityHigh:
		c.High++
	case SeverityMedium:
		c.Medium++
	case SeverityLow:
		c.Low++
	}
}

// Severities, most severe first.
const (
	SeverityCritical = "critical"
	SeverityHigh     = "high"
	SeverityMedium   = "medium"
	SeverityLow      = "low"
)

// Actions the policy can order (DESIGN §6), in the order the agent applies them: turning alternatives on
// comes right after turning face recognition off, so a person always has a way through.
const (
	ActionDisableFaceRecognition          = "disable_face_recognition"
	ActionEnableAlternatives              = "enable_alternatives"
	ActionBlockFaceDataEgress             = "block_face_data_egress"
	ActionDeleteRawImages                 = "delete_raw_images"
	ActionPurgeWithdrawnSubjects          = "purge_withdrawn_subjects"
	ActionPurgeExpiredSubjects            = "purge_expired_subjects"
	ActionQuarantineUnconsentedSubjects   = "quarantine_unconsented_subjects"
	ActionQuarantineMinorsWithoutGuardian = "quarantine_minors_without_guardian"
	ActionBlockEnrolment                  = "block_enrolment"
)

// Actions lists every action in application order, each with what it does in words for reports.
var Actions = []struct {
	Name string
	Text Text
}{
	{ActionDisableFaceRecognition, Text{"关闭人脸识别（保留其他通行方式）", "turn face recognition off (other ways through stay on)"}},
	{ActionEnableAlternatives, Text{"开启刷卡、密码等替代通行方式", "turn the non-face ways through on"}},
	{ActionBlockFaceDataEgress, Text{"阻止人脸数据传出设备", "block face data from leaving the device"}},
	{ActionDeleteRawImages, Text{"删除超期的原始人脸图像", "delete raw captures past their limit"}},
	{ActionPurgeWithdrawnSubjects, Text{"删除已撤回同意者的人脸信息并出具删除凭证", "purge subjects who withdrew consent, with a deletion receipt"}},
	{ActionPurgeExpiredSubjects, Text{"删除超过保存期限的人脸信息", "purge subjects kept beyond retention"}},
	{ActionQuarantineUnconsentedSubjects, Text{"隔离未取得单独同意的人脸模板（不再用于比对）", "quarantine templates without separate consent (no longer matched)"}},
	{ActionQuarantineMinorsWithoutGuardian, Text{"隔离无监护人同意的未满十四周岁者模板", "quarantine under-14 subjects without guardian consent"}},
	{ActionBlockEnrolment, Text{"暂停新的人脸录入", "block new enrolments"}},
}

// ActionText describes an action for a report; an action this version does not know is shown by name.
func ActionText(name string) Text {
	for _, a := range Actions {
		if a.Name == name {
			return a.Text
		}
	}
	return Text{ZH: name, EN: name}
}
