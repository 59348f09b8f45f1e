package dashboard

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/faceguard/faceguard/policies"
	"github.com/faceguard/faceguard/wire"
)

// The two languages. Chinese is the default: the operators are Chinese-speaking, the Measures are Chinese.
const (
	langZH = "zh"
	langEN = "en"
)

// langCookie remembers the language a person chose with the switch.
const langCookie = "lang"

// chinaTime is UTC+8: every time on the dashboard is China time (the tz database may be absent).
var chinaTime = time.FixedZone("UTC+8", 8*3600)

// chooseLang picks the page's language: ?lang= (remembered in a cookie), then the cookie, then the
// browser's Accept-Language, then Chinese. Any other value of ?lang= is ignored.
func chooseLang(w http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == langZH || l == langEN {
		http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600,
			HttpOnly: true, SameSite: http.SameSiteLaxMode})
		return l
	}
	if c, err := r.Cookie(langCookie); err == nil && (c.Value == langZH || c.Value == langEN) {
		return c.Value
	}
	return acceptLanguage(r.Header.Get("Accept-Language"))
}

// acceptLanguage returns zh or en, whichever the header prefers (by q, then by order); zh when it
// names neither.
func acceptLanguage(header string) string {
	best, bestQ := langZH, -1.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if primary != langZH && primary != langEN {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			q = f
		}
		if q > bestQ && q > 0 {
			best, bestQ = primary, q
		}
	}
	return best
}

func htmlLang(lang string) string {
	if lang == langEN {
		return "en"
	}
	return "zh-CN"
}

// tr looks a label up; with args, the label is a fmt format. A missing key shows itself, so it is
// seen (and TestLabelsComplete fails) rather than leaving a hole in the page.
func tr(lang, key string, args ...any) string {
	l, ok := labels[key]
	if !ok {
		return "{" + key + "}"
	}
	s := l.zh
	if lang == langEN {
		s = l.en
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// text picks the language of a bilingual message, falling back to the other one.
func text(lang string, t wire.Text) string {
	if lang == langEN && t.EN != "" || t.ZH == "" {
		return t.EN
	}
	return t.ZH
}

// label is one entry of the dictionaries: zh and en.
type label struct{ zh, en string }

// labelOf looks an id up in a vocabulary; an id the vocabulary does not know is shown as it is.
func labelOf(vocab map[string]label, lang, id string) string {
	l, ok := vocab[id]
	if !ok {
		return id
	}
	if lang == langEN {
		return l.en
	}
	return l.zh
}

// funcs are the template functions of one language.
func funcs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":      func(key string, args ...any) string { return tr(lang, key, args...) },
		"zh":     func() bool { return lang == langZH },
		"msg":    func(t any) string { return msgOf(lang, t) },
		"date":   formatDate,
		"ago":    func(now, t time.Time) string { return ago(lang, now, t) },
		"iso":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"num":    groupDigits,
		"status": func(s string) string { return labelOf(statusLabels, lang, s) },
		"state":  func(s string) string { return labelOf(stateLabels, lang, s) },
		"sev":    func(s string) string { return labelOf(severityLabels, lang, s) },
		"action": func(s string) string { return labelOf(actionLabels, lang, s) },
		"kind":   func(s string) string { return labelOf(eventLabels, lang, s) },
		"result": func(s string) string { return labelOf(resultLabels, lang, s) },
		"cmd":    func(s string) string { return labelOf(commandLabels, lang, s) },
		"band":   func(s string) string { return labelOf(bandLabels, lang, s) },
		"fstate": func(s string) string { return labelOf(filingStateLabels, lang, s) },
		"record": func(s string) string { return labelOf(recordLabels, lang, s) },
		"cat":    func(s string) string { return labelOf(categoryLabels, lang, s) },
		"title":  func(id string) string { return controlTitle(lang, id) },
		"join":   func(ss []string) string { return strings.Join(ss, ", ") },
		"link":   link,
		"pct":    func(n, of int) int { return percent(n, of) },
		"add":    func(a, b int) int { return a + b },
		"neg":    func(n int) int { return -n },
		"mul100": func(f float64) float64 { return f * 100 },
		"deref":  func(t *time.Time) time.Time { return *t },
		"devurl": func(id string) string { return "/devices/" + url.PathEscape(id) },
		"apiurl": func(id string) string { return "/api/devices/" + url.PathEscape(id) },
		"cmdurl": func(id string) string { return "/commands/" + url.PathEscape(id) },
		"countCell": func(site, status string, n int) countCell {
			return countCell{Site: site, Status: status, N: n}
		},
	}
}

// countCell is one number of the overview's site table, linking to the devices it counts.
type countCell struct {
	Site, Status string
	N            int
}

// msgOf renders a wire.Text or *wire.Text (an event's message may be absent).
func msgOf(lang string, t any) string {
	switch t := t.(type) {
	case wire.Text:
		return text(lang, t)
	case *wire.Text:
		if t == nil {
			return ""
		}
		return text(lang, *t)
	}
	return fmt.Sprint(t)
}

// formatDate is a time in China, to the second; "—" for none.
func formatDate(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(chinaTime).Format("2006-01-02 15:04:05")
}

// ago says how long before now t was, roughly: what an operator needs of "last seen".
func ago(lang string, now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return tr(lang, "ago_now")
	case d < time.Hour:
		return tr(lang, "ago_min", int(d/time.Minute))
	case d < 48*time.Hour:
		return tr(lang, "ago_hour", int(d/time.Hour))
	default:
		return tr(lang, "ago_day", int(d/(24*time.Hour)))
	}
}

// groupDigits writes 100000 as 100,000.
func groupDigits(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func percent(n, of int) int {
	if of <= 0 {
		return 0
	}
	return min(100, n*100/of)
}

// link builds path?k=v&… from pairs, leaving out empty values.
func link(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func controlTitle(lang, id string) string {
	l, ok := controlTitles[id]
	if !ok {
		return ""
	}
	if lang == langEN {
		return l.en
	}
	return l.zh
}

// controlIDs are the catalog's controls in the order of the catalog (policies/faceguard/catalog.rego).
var controlIDs = []string{
	"FRM-13-PRIVATE-SPACE", "FRM-13-SIGNAGE", "FRM-13-NECESSITY", "FRM-13-CAPTURE-ZONE",
	"FRM-08-LOCAL-STORAGE", "FRM-08-RAW-IMAGES", "FRM-08-RETENTION", "FRM-06-CONSENT", "FRM-06-WITHDRAWAL",
	"FRM-07-MINORS", "FRM-10-ALTERNATIVE", "FRM-12-NO-COERCION", "FRM-05-NOTICE", "FRM-14-SECURITY",
	"FRM-09-PIA", "FRM-04-MINIMISATION", "FRM-02-SCOPE",
}

// controlTitles are the catalog's titles, copied from policies/faceguard/catalog.rego (a test checks
// they still match). A control a newer bundle adds shows by its id alone.
var controlTitles = map[string]label{
	"FRM-13-PRIVATE-SPACE": {"禁止在公共场所内的私密空间安装使用人脸识别设备", "No face recognition inside private spaces"},
	"FRM-13-SIGNAGE":       {"公共场所设置显著提示标识", "Conspicuous signs in public places"},
	"FRM-13-NECESSITY":     {"公共场所仅为维护公共安全所必需", "Public-place use only where public security requires it"},
	"FRM-13-CAPTURE-ZONE":  {"合理确定图像采集区域", "Capture area defined"},
	"FRM-08-LOCAL-STORAGE": {"人脸信息存储于设备内，不经互联网对外传输", "Face data stays on the device"},
	"FRM-08-RAW-IMAGES":    {"原始人脸图像用后即删", "Raw captures deleted after use"},
	"FRM-08-RETENTION":     {"保存期限为实现目的所必需的最短时间", "Shortest necessary retention"},
	"FRM-06-CONSENT":       {"取得个人单独同意", "Separate consent for every template"},
	"FRM-06-WITHDRAWAL":    {"及时处理撤回同意", "Withdrawal of consent honoured promptly"},
	"FRM-07-MINORS":        {"不满十四周岁须取得监护人同意", "Guardian consent for under-14s"},
	"FRM-10-ALTERNATIVE":   {"人脸识别不得作为唯一验证方式", "Face recognition is not the only way"},
	"FRM-12-NO-COERCION":   {"不得误导、欺诈、胁迫个人接受人脸识别", "No coercive face-recognition prompts"},
	"FRM-05-NOTICE":        {"处理前以显著方式告知", "Complete notice before capture"},
	"FRM-14-SECURITY":      {"采取数据加密、安全审计、访问控制等安全措施", "Security measures in place"},
	"FRM-09-PIA":           {"事前进行个人信息保护影响评估", "Impact assessment covers this use"},
	"FRM-04-MINIMISATION":  {"采用对个人权益影响最小的方式", "Least intrusive recognition mode"},
	"FRM-02-SCOPE":         {"研发排除不适用于实际部署", "Research exclusion does not cover deployments"},
}

// severities in the catalog's order, worst first.
var severities = []string{"critical", "high", "medium", "low"}

var severityLabels = map[string]label{
	"critical": {"严重", "critical"},
	"high":     {"高", "high"},
	"medium":   {"中", "medium"},
	"low":      {"低", "low"},
}

// deviceStatuses are the filters of fleet.DeviceQuery.Status.
var deviceStatuses = []string{"compliant", "non_compliant", "critical", "offline", "error"}

var statusLabels = map[string]label{
	"compliant":     {"合规", "compliant"},
	"non_compliant": {"不合规", "non-compliant"},
	"critical":      {"有严重违规", "critical"},
	"offline":       {"离线", "offline"},
	"error":         {"故障保护", "failed safe"},
	"":              {"尚未评估", "not evaluated yet"},
}

var stateLabels = map[string]label{
	"online":  {"在线", "online"},
	"offline": {"离线", "offline"},
	"":        {"从未上线", "never seen"},
}

// actionLabels name what an agent did to its terminal (the decision's actions, and the orders that
// lift them) in words an operator and an auditor read.
var actionLabels = map[string]label{
	"disable_face_recognition":           {"关闭人脸识别", "disable face recognition"},
	"enable_alternatives":                {"启用替代验证方式", "enable alternative ways in"},
	"block_face_data_egress":             {"阻断人脸数据外传", "block face-data egress"},
	"delete_raw_images":                  {"删除原始人脸图像", "delete raw face images"},
	"purge_withdrawn_subjects":           {"删除已撤回同意者的人脸信息", "purge subjects who withdrew consent"},
	"purge_expired_subjects":             {"删除超过保存期限的人脸信息", "purge subjects past retention"},
	"quarantine_unconsented_subjects":    {"隔离未取得单独同意的人脸信息", "quarantine subjects without separate consent"},
	"quarantine_minors_without_guardian": {"隔离无监护人同意的未成年人人脸信息", "quarantine minors without guardian consent"},
	"block_enrolment":                    {"暂停人脸录入", "block enrolment"},
	"restore_face_recognition":           {"恢复人脸识别", "restore face recognition"},
	"release_alternatives":               {"解除替代验证方式的强制启用", "release alternative ways in"},
	"allow_face_data_egress":             {"恢复人脸数据外传", "allow face-data egress"},
	"allow_enrolment":                    {"恢复人脸录入", "allow enrolment"},
	"forget_subject":                     {"删除指定人员的人脸信息", "forget a subject"},
}

var eventLabels = map[string]label{
	wire.EventViolationOpened: {"出现违规", "violation opened"},
	wire.EventViolationClosed: {"违规已消除", "violation closed"},
	wire.EventAction:          {"采取措施", "action taken"},
	wire.EventReceipt:         {"删除凭证", "deletion receipt"},
	wire.EventFault:           {"故障", "fault"},
	wire.EventBundle:          {"策略包", "policy bundle"},
}

// commandStatuses are a command's statuses at a device, in the order they are shown.
var commandStatuses = []string{"pending", wire.ResultAccepted, wire.ResultSucceeded, wire.ResultFailed, wire.ResultRejected, "timed_out"}

var resultLabels = map[string]label{
	"pending":            {"等待中", "pending"},
	wire.ResultAccepted:  {"已接受", "accepted"},
	wire.ResultSucceeded: {"已完成", "succeeded"},
	wire.ResultFailed:    {"失败", "failed"},
	wire.ResultRejected:  {"已拒绝", "rejected"},
	"timed_out":          {"超时", "timed out"},
	"done":               {"全部完成", "done"},
	"in_progress":        {"进行中", "in progress"},
	"duplicate":          {"重复", "duplicate"},
}

var commandLabels = map[string]label{
	wire.CmdReevaluate:    {"重新评估", "re-evaluate"},
	wire.CmdForgetSubject: {"删除指定人员", "forget a subject"},
	wire.CmdRebirth:       {"重新上报", "re-announce"},
	wire.CmdBundleOffer:   {"下发策略包", "offer a policy bundle"},
	wire.CmdConfig:        {"修改配置", "change configuration"},
}

var bandLabels = map[string]label{
	"below":   {"低于预警线", "below the warning band"},
	"warning": {"预警区间", "warning band"},
	"over":    {"已达到备案门槛", "threshold reached"},
}

var filingStateLabels = map[string]label{
	"not_required": {"无需备案", "no filing needed"},
	"due":          {"应当备案", "filing due"},
	"filed":        {"已备案", "filed"},
	"change_due":   {"应当办理变更", "update due"},
	"cancel_due":   {"应当注销备案", "cancellation due"},
	"cancelled":    {"已注销", "cancelled"},
}

var recordLabels = map[string]label{
	"threshold_crossed": {"达到门槛", "threshold crossed"},
	"filed":             {"备案", "filed"},
	"material_change":   {"重大变更", "material change"},
	"fr_stopped":        {"停止使用人脸识别", "face recognition stopped"},
	"cancelled":         {"注销备案", "cancelled"},
}

// categoryLabels are the location categories of the built-in policy data (vocab.categories): the
// words the policy's own messages use.
var categoryLabels = loadCategories()

func loadCategories() map[string]label {
	out := map[string]label{}
	b, err := fs.ReadFile(policies.Pack(), "data.json")
	if err != nil {
		return out
	}
	var d struct {
		Faceguard struct {
			Vocab struct {
				Categories map[string]wire.Text `json:"categories"`
			} `json:"vocab"`
		} `json:"faceguard"`
	}
	if json.Unmarshal(b, &d) != nil {
		return out
	}
	for k, t := range d.Faceguard.Vocab.Categories {
		out[k] = label{t.ZH, t.EN}
	}
	return out
}
