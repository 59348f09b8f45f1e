package dashboard

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/policies"
	"github.com/faceguard/faceguard/wire"
)

// get fetches a page; header pairs are added to the request.
func get(t *testing.T, c *http.Client, url string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// page fetches a page that must answer 200.
func page(t *testing.T, url string, header ...string) string {
	t.Helper()
	code, body, _ := get(t, nil, url, header...)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", url, code, body)
	}
	return body
}

func mustContain(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("the page lacks %q", w)
		}
	}
}

func mustNotContain(t *testing.T, body string, unwanted ...string) {
	t.Helper()
	for _, w := range unwanted {
		if strings.Contains(body, w) {
			t.Errorf("the page has %q", w)
		}
	}
}

// rows counts the table rows of a class.
func rows(body, class string) int { return strings.Count(body, `<tr class="`+class+`"`) }

func TestOverview(t *testing.T) {
	srv, _ := newTestServer(t, Options{Connected: func() bool { return true }, Title: "某物业 faceguard"})
	body := page(t, srv.URL+"/")
	mustContain(t, body,
		`<html lang="zh-CN">`, "设备总览", "某物业 faceguard", `id="broker" class="broker connected"`, "消息代理已连接",
		`id="total-devices">126<`, `id="total-compliant">123<`, `id="total-non_compliant">2<`,
		`id="total-critical">1<`, `id="total-offline">1<`, `id="total-fail_safe">1<`,
		`data-site="sh-hotel"`, "上海外滩酒店", `data-site="bj-bank"`, "北京朝阳支行", `data-site="gz-estate"`,
		// every number links to the devices it counts
		`href="/devices?site=sh-hotel&amp;status=critical">1</a>`,
		`href="/devices?site=bj-bank&amp;status=error">1</a>`,
		`href="/devices?site=gz-estate">120</a>`,
		`href="/devices?status=offline"`,
		"有 1 台设备存在严重违规")
	if n := rows(body, "site"); n != 3 {
		t.Errorf("%d site rows, want 3", n)
	}
	en := page(t, srv.URL+"/?lang=en")
	mustContain(t, en, `<html lang="en">`, "Fleet overview", "Non-compliant", "1 devices have a critical violation open")
	mustNotContain(t, en, "设备总览")

	srv2, _ := newTestServer(t, Options{Connected: func() bool { return false }})
	mustContain(t, page(t, srv2.URL+"/"), `class="broker disconnected"`, "消息代理未连接")
}

func TestOverviewEmptyFleet(t *testing.T) {
	srv, _ := newTestServer(t, Options{Store: openStore(t)})
	body := page(t, srv.URL+"/")
	mustContain(t, body, `id="total-devices">0<`, "还没有设备上报")
	mustNotContain(t, body, `id="broker"`) // no Connected func: no broker status
}

func TestLanguage(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	for _, tc := range []struct {
		name, path string
		header     []string
		want       string
	}{
		{"default_chinese", "/", nil, "设备总览"},
		{"accept_language_english", "/", []string{"Accept-Language", "en-GB,en;q=0.9"}, "Fleet overview"},
		{"accept_language_prefers_chinese", "/", []string{"Accept-Language", "en;q=0.5,zh-CN;q=0.9"}, "设备总览"},
		{"accept_language_neither", "/", []string{"Accept-Language", "fr-FR,de;q=0.8"}, "设备总览"},
		{"query_beats_header", "/?lang=zh", []string{"Accept-Language", "en"}, "设备总览"},
		{"cookie_beats_header", "/", []string{"Accept-Language", "zh", "Cookie", "lang=en"}, "Fleet overview"},
		{"bad_lang_ignored", "/?lang=fr", []string{"Cookie", "lang=en"}, "Fleet overview"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustContain(t, page(t, srv.URL+tc.path, tc.header...), tc.want)
		})
	}

	t.Run("switch_is_remembered", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		_, body, _ := get(t, c, srv.URL+"/violations?severity=critical")
		mustContain(t, body, `id="lang-en" href="/violations?lang=en&amp;severity=critical"`, knownMessageZH)
		_, body, h := get(t, c, srv.URL+"/violations?severity=critical&lang=en")
		mustContain(t, body, knownMessageEN, "Open violations")
		mustNotContain(t, body, knownMessageZH)
		if !strings.Contains(h.Get("Set-Cookie"), "lang=en") {
			t.Errorf("Set-Cookie %q, want lang=en", h.Get("Set-Cookie"))
		}
		_, body, _ = get(t, c, srv.URL+"/devices/"+knownDevice)
		mustContain(t, body, "Orders in force", knownMessageEN)
		_, body, _ = get(t, c, srv.URL+"/?lang=zh")
		mustContain(t, body, "设备总览")
		_, body, _ = get(t, c, srv.URL+"/commands")
		mustContain(t, body, "各设备", "命令")
	})
}

func TestViolations(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	body := page(t, srv.URL+"/violations")
	mustContain(t, body, "未关闭的违规", "共 2 项未关闭的违规",
		`<tr class="violation" data-control="`+knownControl+`" data-device="`+knownDevice+`" data-severity="critical">`,
		knownMessageZH, "禁止在公共场所内的私密空间安装使用人脸识别设备", `class="badge sev-critical"`, ">严重<",
		"FRM Art. 13", "上海外滩酒店", `href="/devices/room-1208"`,
		`data-control="FRM-13-SIGNAGE" data-device="teller-01"`, "公共场所未设置显著提示标识", ">高<",
		"2025-09-01 08:10:00") // opened 00:10 UTC, shown in China time
	// The closed violation is gone.
	mustNotContain(t, body, `data-control="FRM-10-ALTERNATIVE"`, knownMessageEN)
	// Critical first.
	if strings.Index(body, knownControl) > strings.Index(body, `data-control="FRM-13-SIGNAGE"`) {
		t.Error("the critical violation is not listed first")
	}

	en := page(t, srv.URL+"/violations?lang=en")
	mustContain(t, en, knownMessageEN, "No face recognition inside private spaces", ">critical<", "2 open violations")
	mustNotContain(t, en, knownMessageZH)

	for _, tc := range []struct {
		name, query string
		want        []string
		rows        int
	}{
		{"severity", "severity=high", []string{`data-device="teller-01"`}, 1},
		{"control", "control=" + knownControl, []string{`data-device="room-1208"`}, 1},
		{"site", "site=bj-bank", []string{`data-device="teller-01"`}, 1},
		{"search", "q=room", []string{`data-device="room-1208"`, "搜索“room”"}, 1},
		{"nothing", "q=nobody", []string{"没有符合条件的违规"}, 0},
		{"unknown_control", "control=FRM-99-NEW", []string{`<option value="FRM-99-NEW" selected>`}, 0},
		{"page_past_the_end", "page=9", []string{"此页没有内容"}, 0},
		{"page_not_a_number", "page=abc", []string{knownMessageZH}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := page(t, srv.URL+"/violations?"+tc.query)
			mustContain(t, body, tc.want...)
			if n := rows(body, "violation"); n != tc.rows {
				t.Errorf("%d rows, want %d", n, tc.rows)
			}
		})
	}
}

func TestBadParameters(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	long := strings.Repeat("x", maxQueryLen+1)
	for _, tc := range []struct {
		name, path string
		want       string
	}{
		{"violation_severity", "/violations?severity=urgent", "参数 severity 的值“urgent”无效"},
		{"violation_search_too_long", "/violations?q=" + long, "参数 q 过长"},
		{"device_status", "/devices?status=broken", "参数 status 的值“broken”无效"},
		{"device_status_english", "/devices?status=broken&lang=en", "The parameter status cannot be “broken”"},
		{"device_site_too_long", "/devices?site=" + long, "参数 site 过长"},
		{"command_status", "/commands/cmd-reeval-1?status=maybe", "参数 status 的值“maybe”无效"},
		{"escaped", "/devices?status=%3Cscript%3E", "&lt;script&gt;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := get(t, nil, srv.URL+tc.path)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", code)
			}
			mustContain(t, body, tc.want)
			mustNotContain(t, body, "<script>")
		})
	}
}

// TestOddParameters sends what a mistyped or hostile URL carries: never a 500.
func TestOddParameters(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	odd := []string{"q=%00", "q=%FF%FE", "q=%25", "q=_", "site=%27%3B--", "site=nowhere", "page=99999999999999999999",
		"page=1e3", "page=%20", "control=%3Cx%3E", "lang=%3Cen%3E", "q=" + strings.Repeat("%E4%BA%BA", maxQueryLen)}
	for _, path := range []string{"/", "/devices", "/violations", "/commands", "/commands/cmd-reeval-1", "/filing", "/devices/" + knownDevice} {
		for _, q := range odd {
			code, body, _ := get(t, nil, srv.URL+path+"?"+q)
			if code != http.StatusOK && code != http.StatusBadRequest {
				t.Errorf("%s?%s: %d\n%s", path, q, code, body)
			}
		}
	}
	code, _, _ := get(t, nil, srv.URL+"/devices/%00")
	if code != http.StatusNotFound {
		t.Errorf("/devices/%%00: %d, want 404", code)
	}
}

func TestDevices(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	body := page(t, srv.URL+"/devices")
	mustContain(t, body, "共 126 台设备", "第 1 页，共 3 页", `href="/devices?page=2"`, `href="/devices/atm-07"`,
		"北京朝阳支行", "银行网点", "在线", "离线")
	if n := rows(body, "device"); n != pageSize {
		t.Errorf("%d rows on page 1, want %d", n, pageSize)
	}

	for _, tc := range []struct {
		name, query string
		want        []string
		rows        int
	}{
		{"site_page_1", "site=gz-estate", []string{"共 120 台设备", "广州天河花园", `data-device="gz-door-000"`, "第 1 页，共 3 页"}, 50},
		{"site_page_3", "site=gz-estate&page=3", []string{`data-device="gz-door-119"`, `href="/devices?page=2&amp;site=gz-estate"`}, 20},
		{"search_id", "q=room-1208", []string{`data-device="room-1208"`, "酒店客房"}, 1},
		{"search_site_name", "q=朝阳", []string{`data-device="teller-01"`, `data-device="gate-01"`, `data-device="atm-07"`}, 3},
		{"critical", "status=critical", []string{`data-device="room-1208"`}, 1},
		{"offline", "status=offline", []string{`data-device="lobby-02"`}, 1},
		{"fail_safe", "status=error", []string{`data-device="gate-01"`, "故障保护"}, 1},
		{"compliant_at_site", "status=compliant&site=bj-bank", []string{`data-device="atm-07"`, "审计链倒退"}, 1},
		{"nothing", "q=nobody", []string{"没有符合条件的设备"}, 0},
		{"past_the_end", "page=40", []string{"此页没有内容", `href="/devices"`}, 0},
		{"bad_page_is_page_1", "page=-3", []string{"第 1 页，共 3 页"}, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := page(t, srv.URL+"/devices?"+tc.query)
			mustContain(t, body, tc.want...)
			if n := rows(body, "device"); n != tc.rows {
				t.Errorf("%d rows, want %d", n, tc.rows)
			}
		})
	}
}

func TestDevicePage(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	body := page(t, srv.URL+"/devices/"+knownDevice)
	mustContain(t, body,
		`data-device="room-1208"`, "上海外滩酒店", "酒店客房", "FG-T200", "3.4.1", "0.9.0", "rev-2025-08", "不合规",
		// the orders in force
		`<li id="order-fr" data-allowed="false"><span>人脸识别</span><span class="badge no">已关闭</span>`,
		`<li id="order-enrolment" data-allowed="true">`,
		`<li id="order-egress" data-allowed="false">`,
		`<li id="order-alternatives" data-allowed="true"><span>替代验证方式（刷卡、密码、人工）</span><span class="badge yes">强制启用</span>`,
		`id="order-quarantined" data-count="2"`,
		// compliance now
		`class="failing" data-control="FRM-13-PRIVATE-SPACE"`, `data-action="disable_face_recognition">关闭人脸识别`,
		// open violation with its message
		`<tr class="violation" data-control="FRM-13-PRIVATE-SPACE" data-device="room-1208"`, knownMessageZH,
		// actions, receipts, faults, the timeline
		`<tr class="event-action" data-action="enable_alternatives">`, "启用替代验证方式",
		`<code class="receipt-hash">`+knownReceipt+`</code>`, "删除原始人脸图像",
		"camera: read frame: timeout", `data-kind="violation_closed"`, "违规已消除",
		// audit chain
		`id="audit" data-regressed="false"`, "c0ffee60", "完整，仅增长",
		// enrolled persons
		">35<")
	if n := rows(body, "history"); n != 3 {
		t.Errorf("%d history rows, want 3", n)
	}
	mustNotContain(t, body, `id="fail-safe"`, `data-control="FRM-10-ALTERNATIVE" data-device`)

	en := page(t, srv.URL+"/devices/"+knownDevice+"?lang=en")
	mustContain(t, en, `<span>Face recognition</span><span class="badge no">off</span>`, knownMessageEN,
		"disable face recognition", "Deletion receipts", "hotel guest room", "Orders in force")

	t.Run("fail_safe", func(t *testing.T) {
		body := page(t, srv.URL+"/devices/gate-01")
		mustContain(t, body, `id="fail-safe"`, "policy bundle signature invalid", `class="unknown-group">subjects<`, "故障保护")
	})
	t.Run("audit_regressed", func(t *testing.T) {
		body := page(t, srv.URL+"/devices/atm-07?lang=en")
		mustContain(t, body, `id="audit" data-regressed="true"`, "Audit chain regressed", "dd050")
	})
	t.Run("never_evaluated", func(t *testing.T) {
		st := openStore(t)
		s := newSeeder(t, st)
		s.birth("new-01", "sh-hotel", "上海外滩酒店", "hotel_lobby", testNow)
		srv, _ := newTestServer(t, Options{Store: st})
		body := page(t, srv.URL+"/devices/new-01")
		mustContain(t, body, "设备尚未上报评估结果，指令未知", "尚未评估", "设备尚未上报审计链")
		mustNotContain(t, body, `id="order-fr"`)
	})
	t.Run("unknown_device", func(t *testing.T) {
		for lang, want := range map[string]string{"zh": "没有编号为“no-such-dev”的设备", "en": "There is no device “no-such-dev”."} {
			code, body, _ := get(t, nil, srv.URL+"/devices/no-such-dev?lang="+lang)
			if code != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404", lang, code)
			}
			mustContain(t, body, want)
		}
	})
}

func TestCommands(t *testing.T) {
	srv, _ := newTestServer(t, Options{})
	body := page(t, srv.URL+"/commands")
	mustContain(t, body, "共 2 条命令",
		`<tr class="command" data-command="cmd-forget-1" data-done="true">`, "删除指定人员",
		`<tr class="command" data-command="cmd-reeval-1" data-done="false">`, "重新评估", "全部设备",
		`data-status="succeeded"><a href="/commands/cmd-reeval-1?status=succeeded">120</a>`,
		`data-status="failed"><a href="/commands/cmd-reeval-1?status=failed">1</a>`,
		`data-status="pending"><a href="/commands/cmd-reeval-1?status=pending">5</a>`)
	if strings.Index(body, "cmd-forget-1") > strings.Index(body, "cmd-reeval-1") {
		t.Error("commands are not newest first")
	}

	detail := page(t, srv.URL+"/commands/cmd-reeval-1")
	mustContain(t, detail, "命令 cmd-reeval-1", "进行中", "第 1 页，共 3 页", `data-device="atm-07" data-status="pending"`)
	var order []string
	for _, m := range regexp.MustCompile(`<tr class="result" data-device="[^"]*" data-status="([a-z_]+)"`).FindAllStringSubmatch(detail, -1) {
		if len(order) == 0 || order[len(order)-1] != m[1] {
			order = append(order, m[1])
		}
	}
	if strings.Join(order, ",") != "failed,pending,succeeded" {
		t.Errorf("results in the order %v, want failures first, then pending, then successes", order)
	}
	if n := rows(detail, "result"); n != pageSize {
		t.Errorf("%d result rows, want %d", n, pageSize)
	}
	failed := page(t, srv.URL+"/commands/cmd-reeval-1?status=failed&lang=en")
	mustContain(t, failed, `data-device="teller-01" data-status="failed"`, "engine busy", "failed")
	if n := rows(failed, "result"); n != 1 {
		t.Errorf("%d failed rows, want 1", n)
	}
	forget := page(t, srv.URL+"/commands/cmd-forget-1")
	mustContain(t, forget, "全部完成", "rcpt-forget-77", "subject_hash", `href="/devices/room-1208"`)

	code, body, _ := get(t, nil, srv.URL+"/commands/nope?lang=en")
	if code != http.StatusNotFound {
		t.Errorf("unknown command: %d, want 404", code)
	}
	mustContain(t, body, "There is no command “nope”.")
}

func TestFiling(t *testing.T) {
	t.Run("not_configured", func(t *testing.T) {
		srv, _ := newTestServer(t, Options{})
		mustContain(t, page(t, srv.URL+"/filing"), "未配置备案跟踪", "达到门槛", "2025-08-11")
		mustContain(t, page(t, srv.URL+"/filing?lang=en"), "The filing tracker is not configured.")
	})
	t.Run("over_threshold", func(t *testing.T) {
		view := FilingView{Today: "2025-09-01", Persons: 103_512, ErrorBound: 1_700, RelativeError: 0.0081, Devices: 126,
			Band: "over", Threshold: 100_000, WarningFrom: 80_000, State: "due",
			Crossed: "2025-08-11", Due: "2025-09-22", WorkingDaysLeft: 15,
			Warnings:    []wire.Text{{ZH: "2026 年的节假日安排尚未公布", EN: "the 2026 holiday notice is not out yet"}},
			Explanation: wire.Text{ZH: "已达到 10 万人门槛，须在截止日期前备案。", EN: "The 100,000 threshold is reached: file by the due date."}}
		srv, _ := newTestServer(t, Options{Filing: func(context.Context) (FilingView, error) { return view, nil }})
		body := page(t, srv.URL+"/filing")
		mustContain(t, body, `data-band="over"`, "103,512", "± 1,700", "已达到备案门槛", "应当备案", "2025-09-22",
			"还剩 15 个工作日", "2026 年的节假日安排尚未公布", "已达到 10 万人门槛", "相对误差 0.81%", "合并自 126 台设备")
		en := page(t, srv.URL+"/filing?lang=en")
		mustContain(t, en, "threshold reached", "15 working days left", "the 2026 holiday notice is not out yet", "file by the due date")
	})
	t.Run("overdue", func(t *testing.T) {
		view := FilingView{Persons: 120_000, Band: "over", Threshold: 100_000, WarningFrom: 80_000, State: "due",
			Crossed: "2025-07-01", Due: "2025-08-12", WorkingDaysLeft: -14, Overdue: true}
		srv, _ := newTestServer(t, Options{Filing: func(context.Context) (FilingView, error) { return view, nil }})
		mustContain(t, page(t, srv.URL+"/filing"), `id="overdue"`, "已逾期 14 个工作日")
	})
	t.Run("tracker_fails", func(t *testing.T) {
		srv, _ := newTestServer(t, Options{Filing: func(context.Context) (FilingView, error) {
			return FilingView{}, errors.New("sketches: store closed")
		}})
		code, body, _ := get(t, nil, srv.URL+"/filing")
		if code != http.StatusOK {
			t.Errorf("status %d", code)
		}
		mustContain(t, body, `id="filing-error"`, "sketches: store closed")
	})
}

// failingStore fails every read, as a store whose database went away does.
type failingStore struct{ fleet.Store }

var errGone = errors.New("database is gone")

func (failingStore) Overview(context.Context) (fleet.Overview, error) {
	return fleet.Overview{}, errGone
}
func (failingStore) Device(context.Context, string) (fleet.Device, error) {
	return fleet.Device{}, errGone
}

func TestStoreFailure(t *testing.T) {
	srv, _ := newTestServer(t, Options{Store: failingStore{openStore(t)}})
	for _, path := range []string{"/", "/devices", "/violations", "/devices/x"} {
		code, body, _ := get(t, nil, srv.URL+path)
		if code != http.StatusInternalServerError {
			t.Errorf("%s: status %d, want 500", path, code)
		}
		mustContain(t, body, "读取设备数据失败", "database is gone")
	}
}

func TestEscaping(t *testing.T) {
	st := openStore(t)
	s := newSeeder(t, st)
	s.birth("evil-1", "s1", `<script>alert("site")</script>`, "other", testNow)
	s.open("evil-1", testNow, "FRM-05-NOTICE", "medium", []string{"FRM Art. 5"},
		`提示语 <img src=x onerror=alert(1)>`, `prompt <b>bold</b>`)
	srv, _ := newTestServer(t, Options{Store: st})
	for _, path := range []string{"/", "/devices", "/violations", "/violations?lang=en", "/devices/evil-1", "/devices?q=%3Cb%3E"} {
		body := page(t, srv.URL+path)
		mustNotContain(t, body, "<script", "<img", "<b>")
	}
}

// TestSelfContained checks every page loads nothing from elsewhere and runs no script, and sends the
// headers that say so.
func TestSelfContained(t *testing.T) {
	srv, _ := newTestServer(t, Options{Filing: func(context.Context) (FilingView, error) { return FilingView{Band: "below"}, nil }})
	external := regexp.MustCompile(`(?i)(src|href|action)="(https?:)?//`)
	for _, path := range []string{"/", "/devices", "/violations", "/devices/" + knownDevice, "/commands", "/commands/cmd-reeval-1", "/filing", "/devices/none"} {
		_, body, h := get(t, nil, srv.URL+path)
		if m := external.FindString(body); m != "" {
			t.Errorf("%s links out: %s", path, m)
		}
		mustNotContain(t, body, "<script")
		if m := regexp.MustCompile(`\{[a-z_]+\}`).FindString(body); m != "" {
			t.Errorf("%s: a label is missing: %s", path, m)
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, h.Get("Content-Security-Policy"))
		}
		if h.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", path, h.Get("Content-Type"))
		}
	}
}

// TestLabelsComplete checks every label the templates use exists, in both languages, and so does every
// vocabulary entry.
func TestLabelsComplete(t *testing.T) {
	use := regexp.MustCompile(`[{(]\s*t "([a-z_]+)"`)
	keys := map[string]bool{}
	entries, err := fs.ReadDir(templateFS, "templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(templateFS, "templates/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range use.FindAllStringSubmatch(string(b), -1) {
			keys[m[1]] = true
		}
	}
	// Keys the Go code passes to the templates or to tr.
	for _, k := range []string{"allowed", "fr_off", "blocked", "required_on", "not_required", "order_fr", "order_enrolment",
		"order_egress", "order_alternatives", "err_bad_request", "err_not_found", "err_internal", "err_store",
		"err_no_device", "err_no_command", "err_param_long", "err_param_value", "ago_now", "ago_min", "ago_hour", "ago_day"} {
		keys[k] = true
	}
	if len(keys) < 100 {
		t.Fatalf("found only %d label keys: is the pattern right?", len(keys))
	}
	for k := range keys {
		l, ok := labels[k]
		if !ok {
			t.Errorf("label %q is used but not defined", k)
			continue
		}
		if l.zh == "" || l.en == "" {
			t.Errorf("label %q lacks a language", k)
		}
	}
	for name, vocab := range map[string]map[string]label{"labels": labels, "actions": actionLabels, "events": eventLabels,
		"results": resultLabels, "commands": commandLabels, "bands": bandLabels, "filing states": filingStateLabels,
		"records": recordLabels, "severities": severityLabels, "controls": controlTitles} {
		for k, l := range vocab {
			if l.zh == "" || l.en == "" {
				t.Errorf("%s: %q lacks a language", name, k)
			}
		}
	}
	for _, a := range []string{"disable_face_recognition", "enable_alternatives", "block_face_data_egress", "delete_raw_images",
		"purge_withdrawn_subjects", "purge_expired_subjects", "quarantine_unconsented_subjects",
		"quarantine_minors_without_guardian", "block_enrolment", "restore_face_recognition", "release_alternatives",
		"allow_face_data_egress", "allow_enrolment", "forget_subject"} {
		if _, ok := actionLabels[a]; !ok {
			t.Errorf("action %q has no label", a)
		}
	}
	if actionLabels["disable_face_recognition"].zh != "关闭人脸识别" {
		t.Error("disable_face_recognition must read 关闭人脸识别")
	}
	if len(categoryLabels) < 10 || categoryLabels["hotel_guest_room"].zh != "酒店客房" {
		t.Errorf("the location categories were not read from the policy data: %v", categoryLabels)
	}
}

// TestControlTitlesMatchCatalog keeps the dashboard's copy of the control titles equal to the catalog's.
func TestControlTitlesMatchCatalog(t *testing.T) {
	b, err := fs.ReadFile(policies.Pack(), "faceguard/catalog.rego")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"(FRM-[0-9]{2}-[A-Z-]+)": \{[^}]*?"title": \{"zh": "([^"]+)", "en": "([^"]+)"\}`)
	found := re.FindAllStringSubmatch(string(b), -1)
	if len(found) != 17 {
		t.Fatalf("found %d controls in catalog.rego, want 17", len(found))
	}
	var ids []string
	for _, m := range found {
		ids = append(ids, m[1])
		got, ok := controlTitles[m[1]]
		if !ok {
			t.Errorf("control %s has no title in the dashboard", m[1])
			continue
		}
		if got.zh != m[2] || got.en != m[3] {
			t.Errorf("%s: dashboard has %q / %q, the catalog %q / %q", m[1], got.zh, got.en, m[2], m[3])
		}
	}
	if strings.Join(ids, ",") != strings.Join(controlIDs, ",") {
		t.Errorf("controlIDs %v, the catalog's order %v", controlIDs, ids)
	}
}

func TestAcceptLanguage(t *testing.T) {
	for header, want := range map[string]string{
		"":                           "zh",
		"en":                         "en",
		"en-US,en;q=0.9,zh-CN;q=0.8": "en",
		"zh-TW,zh;q=0.9,en;q=0.8":    "zh",
		"ja,en;q=0.3":                "en",
		"en;q=0":                     "zh",
		"en;q=abc":                   "zh",
		"*":                          "zh",
	} {
		if got := acceptLanguage(header); got != want {
			t.Errorf("acceptLanguage(%q) = %s, want %s", header, got, want)
		}
	}
}

// TestHandlerDirect exercises the handlers without a network, for the race detector and coverage of
// Register's routes.
func TestHandlerDirect(t *testing.T) {
	st := openStore(t)
	seedFleet(t, st)
	mux := http.NewServeMux()
	Register(mux, Options{Store: st})
	for _, path := range []string{"/", "/devices", "/violations", "/commands", "/filing", "/devices/" + knownDevice, "/commands/cmd-forget-1"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/devices", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /devices: %d, want 405", rec.Code)
	}
}
