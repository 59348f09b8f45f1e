package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
)

// words are the fixed parts of the text report in both languages.
var words = map[string]map[string]string{
	"zh": {
		"title": "faceguard 合规检查", "policy": "策略", "collected": "采集时间",
		"critical": "严重", "high": "高", "medium": "中", "low": "低",
		"facts": "依据事实", "agent": "代理将执行", "unknown": "无法采集的事实",
		"also": "代理还将执行", "compliant": "合规：未发现违规。",
		"summary": "不合规：严重 %d 项，高 %d 项，中 %d 项，低 %d 项；代理将执行 %d 项措施。",
		"fixhint": "请按上述说明整改后重新运行检查。",
	},
	"en": {
		"title": "faceguard check", "policy": "policy", "collected": "collected",
		"critical": "CRITICAL", "high": "HIGH", "medium": "MEDIUM", "low": "LOW",
		"facts": "facts", "agent": "agent will", "unknown": "facts that could not be gathered",
		"also": "the agent will also", "compliant": "COMPLIANT: no violations.",
		"summary": "NON-COMPLIANT: %d critical, %d high, %d medium, %d low · %d actions",
		"fixhint": "Fix the items above and run the check again.",
	},
}

// writeReport prints what an installer reads at a glance: each failed control with severity, articles,
// message and what the agent would do, then a one-line summary.
func writeReport(w io.Writer, lang string, f *device.Facts, d device.Decision, eng *engine.Engine) {
	t := words[lang]
	catalog := eng.Catalog()
	category := f.Location.Category
	if name, ok := eng.Categories()[category]; ok {
		category = name.In(lang)
	}
	fmt.Fprintf(w, "%s · %s · %s · %s · %s %s\n", t["title"], f.Device.ID, f.Device.Kind, category,
		t["policy"], eng.Info().Revision)
	fmt.Fprintf(w, "%s %s\n\n", t["collected"], f.CollectedAt.Format(time.RFC3339))

	if len(f.Unknown) > 0 {
		fmt.Fprintf(w, "! %s:\n", t["unknown"])
		for _, u := range f.Unknown {
			fmt.Fprintf(w, "    %s — %s: %s\n", u.Fact, u.Source, u.Reason)
		}
		fmt.Fprintln(w)
	}

	explained := map[string]bool{}
	for _, v := range d.Violations {
		title := v.Control
		if c, ok := catalog[v.Control]; ok && c.Title.In(lang) != "" {
			title = v.Control + "  " + c.Title.In(lang)
		}
		fmt.Fprintf(w, "✗ %s %s  [%s]\n", padWidth(t[v.Severity], 8), title, strings.Join(v.Articles, ", "))
		fmt.Fprintf(w, "    %s\n", v.Message.In(lang))
		if len(v.Facts) > 0 {
			fmt.Fprintf(w, "    %s: %s\n", t["facts"], strings.Join(v.Facts, ", "))
		}
		if c, ok := catalog[v.Control]; ok && c.Action != nil && slices.Contains(d.Actions, *c.Action) {
			fmt.Fprintf(w, "    %s: %s\n", t["agent"], device.ActionText(*c.Action).In(lang))
			explained[*c.Action] = true
		}
		fmt.Fprintln(w)
	}
	// Actions that no failed control above explains: alternatives kept on beside face off, a withdrawal
	// purged before its deadline.
	for _, a := range d.Actions {
		if !explained[a] {
			fmt.Fprintf(w, "→ %s: %s\n", t["also"], device.ActionText(a).In(lang))
		}
	}
	if len(d.Actions) > len(explained) {
		fmt.Fprintln(w)
	}

	if d.Status == device.StatusCompliant {
		fmt.Fprintln(w, "✓", t["compliant"])
		return
	}
	c := d.Counts
	fmt.Fprintf(w, t["summary"]+"\n", c.Critical, c.High, c.Medium, c.Low, len(d.Actions))
	fmt.Fprintln(w, t["fixhint"])
}

// padWidth pads s with spaces to a display width of n columns, counting a CJK character as two, so
// the columns line up in a terminal in either language.
func padWidth(s string, n int) string {
	w := 0
	for _, r := range s {
		if unicode.Is(unicode.Han, r) || (r >= 0xFF00 && r <= 0xFFEF) || (r >= 0x3000 && r <= 0x303F) {
			w += 2
		} else {
			w++
		}
	}
	if w >= n {
		return s
	}
	return s + strings.Repeat(" ", n-w)
}
