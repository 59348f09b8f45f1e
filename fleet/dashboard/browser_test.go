package dashboard

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/faceguard/faceguard/wire"
)

// chromiumPath is Debian's Chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium for one test. The flags keep it off the network: this
// machine's closed network refuses the connections Chromium makes in the background, and a browser
// kept waiting on them is slow and flaky.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Debian's Chromium at %s (%v): run `make deps`", chromiumPath, err)
	}
	// Chromedp's defaults (headless, no first run, no background networking, …) and then the flags this
	// machine needs, named even where a default has them, so that they survive a change of defaults.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// A Chinese-speaking operator's browser: the dashboard follows its Accept-Language.
		chromedp.Flag("accept-lang", "zh-CN,zh"),
		chromedp.Flag("lang", "zh-CN"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return ctx
}

// TestBrowser walks the dashboard as an operator does, in a real browser: the overview, the open
// violations in Chinese, the switch to English, the device page and its orders.
func TestBrowser(t *testing.T) {
	srv, _ := newTestServer(t, Options{Connected: func() bool { return true }, Filing: func(context.Context) (FilingView, error) {
		return FilingView{Today: "2025-09-01", Persons: 86_420, ErrorBound: 1_400, RelativeError: 0.0081, Devices: 126,
			Band: "warning", Threshold: 100_000, WarningFrom: 80_000, State: "not_required",
			BandExplain: wire.Text{ZH: "估计人数加两倍标准误已超过 80,000 人预警线。", EN: "The estimate plus two standard errors is past the 80,000 warning line."},
			Explanation: wire.Text{ZH: "尚未达到 10 万人门槛，无需备案。", EN: "Under the 100,000 threshold: no filing needed."}}, nil
	}})
	ctx := newBrowser(t)
	known := `tr.violation[data-control="` + knownControl + `"][data-device="` + knownDevice + `"]`

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	attr := func(sel, name string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("%s of %s: %v", name, sel, err)
		}
		return v.Value
	}

	do("load the overview", chromedp.Navigate(srv.URL+"/"))
	total, heading := text(`#total-devices`), text(`h1`)
	// To the violations through the menu: the known one, in Chinese.
	do("open the violations", chromedp.Click(chromedp.CSS(`#nav-violations`)), chromedp.WaitVisible(chromedp.CSS(known)))
	message := text(known + ` td.message`)
	// The English switch.
	do("switch to English", chromedp.Click(chromedp.CSS(`#lang-en`)), chromedp.WaitVisible(chromedp.CSS(`html[lang="en"] `+known)))
	enMessage := text(known + ` td.message`)
	// The device page, still in English: the cookie remembers.
	do("open the device", chromedp.Click(chromedp.CSS(known+` a.device-link`)), chromedp.WaitVisible(chromedp.CSS(`#orders`)))
	fr, frAllowed := text(`#order-fr`), attr(`#order-fr`, "data-allowed")
	alternatives, lang := text(`#order-alternatives`), attr(`html`, "lang")

	if total != "126" || heading != "设备总览" {
		t.Errorf("overview: total %q, heading %q", total, heading)
	}
	if !strings.Contains(message, knownMessageZH) {
		t.Errorf("violation message %q, want the Chinese one", message)
	}
	if !strings.Contains(enMessage, knownMessageEN) {
		t.Errorf("after the switch the message is %q, want the English one", enMessage)
	}
	if lang != "en" {
		t.Errorf("the device page is in %q: the language switch was not remembered", lang)
	}
	if frAllowed != "false" || !strings.Contains(fr, "Face recognition") || !strings.Contains(fr, "off") {
		t.Errorf("face-recognition order %q (allowed %s), want off", fr, frAllowed)
	}
	if !strings.Contains(alternatives, "required on") {
		t.Errorf("alternatives order %q, want required on", alternatives)
	}

	// FG_SCREENSHOTS=dir keeps a picture of every page, to look at the dashboard as a person does.
	if dir := os.Getenv("FG_SCREENSHOTS"); dir != "" {
		for name, path := range map[string]string{"overview": "/?lang=zh", "devices": "/devices", "violations": "/violations",
			"device": "/devices/" + knownDevice, "device-en": "/devices/" + knownDevice + "?lang=en", "commands": "/commands?lang=zh",
			"command": "/commands/cmd-reeval-1", "filing": "/filing", "notfound": "/devices/nope"} {
			do("load "+path, chromedp.Navigate(srv.URL+path))
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// And the device page as printed, for an auditor's file.
		do("load the device page to print", chromedp.Navigate(srv.URL+"/devices/"+knownDevice))
		pdf, err := chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "device.pdf"), pdf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
