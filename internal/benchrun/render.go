package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// doc accumulates the generated Markdown; a missing figure is shown as "—" so a benchmark that was not
// run (or renamed) is visible, never silently dropped.
type doc struct {
	r *results
	b strings.Builder
}

func (d *doc) p(format string, args ...any) { fmt.Fprintf(&d.b, format+"\n", args...) }

// ns is a time figure in nanoseconds: ns/op as is, the percentile metrics (µs) converted.
func (d *doc) ns(pkg, name, unit string) (float64, bool) {
	v, ok := d.r.get(pkg, name, unit)
	if strings.HasSuffix(unit, "-µs") {
		v *= 1e3
	}
	if strings.HasSuffix(unit, "-ms") {
		v *= 1e6
	}
	return v, ok
}

// nsOrNaN is ns with NaN for a missing figure, which a verdict reports as not measured.
func (d *doc) nsOrNaN(pkg, name, unit string) float64 {
	if v, ok := d.ns(pkg, name, unit); ok {
		return v
	}
	return math.NaN()
}

func (d *doc) dur(pkg, name, unit string) string {
	v, ok := d.ns(pkg, name, unit)
	if !ok {
		return "—"
	}
	return fmtDur(v)
}

// pct is "p50 / p99" of a benchmark that records them.
func (d *doc) pct(pkg, name string) string {
	return d.dur(pkg, name, "p50-µs") + " / " + d.dur(pkg, name, "p99-µs")
}

func (d *doc) num(pkg, name, unit string) string {
	v, ok := d.r.get(pkg, name, unit)
	if !ok {
		return "—"
	}
	return fmtNum(v)
}

// ratio is a / b of two figures of the same run.
func (d *doc) ratio(pkgA, a, pkgB, b, unit string) (float64, string) {
	x, ok1 := d.ns(pkgA, a, unit)
	y, ok2 := d.ns(pkgB, b, unit)
	if !ok1 || !ok2 || y == 0 {
		return math.NaN(), "—"
	}
	return x / y, fmtRatio(x / y)
}

// fmtDur writes a duration with three significant digits in a readable unit.
func fmtDur(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "—"
	case ns < 1e3:
		return sig(ns) + " ns"
	case ns < 1e6:
		return sig(ns/1e3) + " µs"
	case ns < 1e9:
		return sig(ns/1e6) + " ms"
	}
	return sig(ns/1e9) + " s"
}

// sig is v with three significant digits (no exponent, thousands separated).
func sig(v float64) string {
	if v == 0 {
		return "0"
	}
	decimals := max(0, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	if decimals == 0 {
		return fmtNum(math.Round(v))
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// fmtNum writes an integer-valued figure with thousands separators, anything else with three
// significant digits.
func fmtNum(v float64) string {
	if v != math.Trunc(v) || math.Abs(v) >= 1e15 {
		return sig(v)
	}
	s := strconv.FormatInt(int64(math.Abs(v)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if v < 0 {
		return "−" + string(out)
	}
	return string(out)
}

// fmtElapsed is a run's duration in minutes and seconds.
func fmtElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
}

func fmtRatio(x float64) string {
	if x >= 100 {
		return fmtNum(math.Round(x)) + "×"
	}
	if x >= 10 {
		return strconv.FormatFloat(x, 'f', 0, 64) + "×"
	}
	return strconv.FormatFloat(x, 'f', 1, 64) + "×"
}

func mb(bytes float64) float64 { return bytes / 1e6 }

// verdict compares a measured figure with a target bound.
func verdict(measured, bound float64, atMost bool) string {
	switch {
	case math.IsNaN(measured):
		return "not measured"
	case atMost && measured <= bound, !atMost && measured >= bound:
		return "met"
	}
	return "**not met**"
}

// The facts documents of the decision benchmarks, in the order shown.
var decisionDocs = []struct{ name, label string }{
	{"compliant", "compliant terminal"},
	{"typical", "typical terminal (stale sign, withdrawn subject past its deadline, stale raw capture)"},
	{"hotel_room", "hotel guest room"},
}

// render writes the body of the "benchmarks" section.
func render(r *results, e env, bins []binary, filing []filingRow) string {
	d := &doc{r: r}
	d.header(e)
	d.summary(bins)
	d.decision()
	d.engine()
	d.agentPaths()
	d.gallery()
	d.ingest()
	d.footprint(bins)
	d.record()
	d.fleetStore()
	d.dashboard()
	d.filing(filing)
	return d.b.String()
}

func (d *doc) header(e env) {
	dirty := ""
	if e.dirty {
		dirty = " with uncommitted changes"
	}
	cpu := d.r.cpu
	if cpu == "" {
		cpu = "unknown CPU"
	}
	d.p("Measured %s at commit `%s`%s, on %s × %d cores, %.0f GiB, Linux %s; %s, OPA %s. Running the benchmarks took %s (`make bench`, after its builds).",
		e.date.Format("2006-01-02 15:04 MST"), e.commit, dirty, cpu, e.cores, e.memGiB, e.kernel, e.goVersion, e.opaVersion,
		fmtElapsed(e.elapsed))
	if e.others >= 0 {
		d.p("Other work on the machine kept %.2f cores busy on average during the run.", e.others)
	}
	d.p("")
	d.p("The repeated benchmarks ran %d times each (`BENCH_COUNT`), in rounds (every suite once, then again), so that a slow", e.count)
	d.p("spell of the machine does not take all of one benchmark's runs: every figure is the median of its runs, and a p50 or p99 is")
	d.p("the percentile of the per-iteration durations within one run (median over the runs). A comparison is a ratio of two")
	d.p("figures of this same run. The raw output is `testdata/bench/baseline.txt`, which `make bench-check` compares with.")
	d.p("")
}

func (d *doc) summary(bins []binary) {
	d.p("## Summary against the targets (DESIGN §11)")
	d.p("")
	d.p("| what | target | measured | |")
	d.p("|---|---|---|---|")
	for _, doc := range decisionDocs {
		v := d.nsOrNaN(pkgEngine, "DecisionPaths/embedded/"+doc.name, "p50-µs")
		d.p("| full-pack decision, prepared, in process — %s | p50 ≤ 100 µs | p50 %s | %s |", doc.name, fmtDur(v), verdict(v, 100e3, true))
	}
	minRatio, parts := math.Inf(1), []string{}
	for _, doc := range decisionDocs {
		x, s := d.ratio(pkgEngine, "DecisionPaths/server/"+doc.name, pkgEngine, "DecisionPaths/embedded/"+doc.name, "p50-µs")
		if math.IsNaN(x) {
			minRatio = math.NaN()
		} else if x < minRatio {
			minRatio = x
		}
		parts = append(parts, doc.name+" "+s)
	}
	d.p("| the same decision vs an OPA sidecar on loopback (p50 ÷ p50) | ≥ 5× faster | %s | %s |", strings.Join(parts, ", "), verdict(minRatio, 5, false))
	parts = parts[:0]
	for _, doc := range decisionDocs {
		parts = append(parts, doc.name+" "+fmtDur(d.nsOrNaN(pkgEngine, "DecisionPaths/rego/"+doc.name, "p50-µs")))
	}
	d.p("| the same, assembled in Rego too (a bundle with its own `decision.rego`) | — | p50 %s | |", strings.Join(parts, ", "))
	for _, m := range []struct{ label, pkg, name string }{
		{"`match` in process, fixture gallery (5 subjects)", pkgAgent, "MatchInProcess/gallery_0_extra"},
		{"`match` in process, 10,000-subject gallery", pkgAgent, "MatchInProcess/gallery_10000_extra"},
		{"`match` in process, 100,000-subject gallery", pkgAgent, "GallerySize/subjects_100000/match"},
	} {
		v := d.nsOrNaN(m.pkg, m.name, "p99-µs")
		d.p("| %s | p99 ≤ 50 µs | p99 %s | %s |", m.label, fmtDur(v), verdict(v, 50e3, true))
	}
	v := d.nsOrNaN(pkgAgent, "MatchOverSocket", "p99-µs")
	d.p("| `match` over the Unix socket | p99 ≤ 300 µs | p99 %s | %s |", fmtDur(v), verdict(v, 300e3, true))
	v = d.nsOrNaN(pkgAgent, "RawCaptureDeletion", "p99-µs")
	d.p("| raw capture past `raw_image_max_s` → deleted | p99 ≤ 1 s | p99 %s | %s |", fmtDur(v), verdict(v, 1e9, true))
	for _, b := range bins {
		d.p("| device binary, stripped, %s | ≤ 35 MB | %.1f MB | %s |", b.arch, mb(float64(b.size)), verdict(mb(float64(b.size)), 35, true))
	}
	for _, v := range footprintVariants {
		rss, ok := d.r.get(pkgFootprint, "AgentFootprint/"+v.name, "rss-steady-MB") // the benchmark's MB are MiB
		rssText := "—"
		if ok {
			rss = rss * (1 << 20) / 1e6
			rssText = fmt.Sprintf("%.1f MB", rss)
		} else {
			rss = math.NaN()
		}
		d.p("| agent RSS at steady state, 10,000 subjects, pack loaded — %s | ≤ 40 MB | %s | %s |", v.short, rssText, verdict(rss, 40, true))
	}
	for _, m := range []struct{ label, name string }{
		{"10,000 devices connected, each one event within 10 s: publish → stored", "ControllerIngest/devices_10000/steady"},
		{"10,000 devices connected, all at once (burst): publish → stored", "ControllerIngest/devices_10000/burst"},
	} {
		v := d.nsOrNaN(pkgFleet, m.name, "p99-µs")
		d.p("| fleet: %s | p99 ≤ 2 s | p99 %s | %s |", m.label, fmtDur(v), verdict(v, 2e9, true))
	}
	d.p("| fleet-wide `forget-subject`, faults (broker restart, network cut, `kill -9`) | DESIGN §11 | see “Fleet at scale” below (`make soak`) | |")
	d.p("")
}

func (d *doc) decision() {
	d.p("## Policy decision five ways (`agent/engine`)")
	d.p("")
	d.p("`go test -run '^$' -bench 'BenchmarkDecisionPaths' -benchmem ./agent/engine/` (`make bench` runs the `eval` path with `-benchtime 20x`)")
	d.p("")
	d.p("The same decision, `data.faceguard.decision`, on the same facts, taken five ways: **embedded** is the agent's engine")
	d.p("(prepared query, facts converted straight to OPA's value type: the pack's `findings` evaluated by OPA, the decision")
	d.p("assembled from them in Go as `decision.rego` does, `agent/engine/assemble.go`); **rego** is the same engine evaluating")
	d.p("`data.faceguard.decision` whole, as it does for a bundle that changes the assembly rules; **server** is what one would build instead, the pinned")
	d.p("OPA as a sidecar (`opa run --server` with the pack and data.json) asked on 127.0.0.1 with `POST /v1/data/faceguard/decision`,")
	d.p("keep-alive, the facts marshalled to JSON and the answer decoded; **eval** is `opa eval` as a subprocess per decision;")
	d.p("**Go** is the floor, the pack's controls written by hand in Go over the typed facts (`agent/engine/floor_test.go`,")
	d.p("test code only). `TestDecisionPathsAgree` checks that all five take the same decision on these documents, and")
	d.p("`TestAssemblyAgreesWithThePack` that the Go assembly is the pack's on thousands of crossed-over documents.")
	d.p("")
	d.p("| document | embedded p50 / p99 | rego p50 / p99 | server p50 / p99 | eval p50 / p99 | Go p50 / p99 | server ÷ embedded | server ÷ rego | eval ÷ embedded | embedded ÷ Go |")
	d.p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, doc := range decisionDocs {
		n := func(path string) string { return "DecisionPaths/" + path + "/" + doc.name }
		_, rs := d.ratio(pkgEngine, n("server"), pkgEngine, n("embedded"), "p50-µs")
		_, rr := d.ratio(pkgEngine, n("server"), pkgEngine, n("rego"), "p50-µs")
		_, re := d.ratio(pkgEngine, n("eval"), pkgEngine, n("embedded"), "p50-µs")
		_, rg := d.ratio(pkgEngine, n("embedded"), pkgEngine, n("go"), "p50-µs")
		d.p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", doc.label, d.pct(pkgEngine, n("embedded")), d.pct(pkgEngine, n("rego")),
			d.pct(pkgEngine, n("server")), d.pct(pkgEngine, n("eval")), d.pct(pkgEngine, n("go")), rs, rr, re, rg)
	}
	d.p("")
	d.p("| path | document | mean | B/op | allocs/op |")
	d.p("|---|---|---:|---:|---:|")
	for _, path := range []string{"embedded", "rego", "server", "eval", "go"} {
		for _, doc := range decisionDocs {
			n := "DecisionPaths/" + path + "/" + doc.name
			d.p("| %s | %s | %s | %s | %s |", path, doc.name, d.dur(pkgEngine, n, "ns/op"), d.num(pkgEngine, n, "B/op"), d.num(pkgEngine, n, "allocs/op"))
		}
	}
	d.p("")
	d.p("For the server and eval paths, B/op and allocs/op are the client's only (marshalling, HTTP, decoding): the work")
	d.p("of the other process is not counted. The sidecar and the benchmark share the machine's two cores.")
	d.p("")
}

func (d *doc) engine() {
	d.p("## Engine (`agent/engine`)")
	d.p("")
	d.p("`go test -run '^$' -bench '^Benchmark(Match|MatchLive|DecideParallel|ActivateBundle)$' -benchmem ./agent/engine/`")
	d.p("")
	d.p("| benchmark | mean | B/op | allocs/op |")
	d.p("|---|---:|---:|---:|")
	for _, b := range []struct{ name, label string }{
		{"Match", "`Match`, answered from the policy's table"},
		{"MatchLive/allowed", "`match` policy evaluated, allowed"},
		{"MatchLive/denied", "`match` policy evaluated, denied"},
		{"DecideParallel", "typical decision from both cores at once (wall time per decision)"},
		{"ActivateBundle", "bundle swap: verify, read, compile, canary, match table"},
	} {
		d.p("| %s | %s | %s | %s |", b.label, d.dur(pkgEngine, b.name, "ns/op"), d.num(pkgEngine, b.name, "B/op"), d.num(pkgEngine, b.name, "allocs/op"))
	}
	d.p("")
	d.p("Every evaluation runs with no metrics, no instrumentation and an external cancel (no goroutine per evaluation).")
	d.p("The `match` input space is finite (512 combinations), so when a generation is compiled the policy is evaluated on")
	d.p("all of it and `Match` answers from that table; a pack that calls a nondeterministic builtin gets no table and is")
	d.p("evaluated live (`MatchLive`).")
	d.p("")
}

func (d *doc) agentPaths() {
	d.p("## Agent hot paths (`agent`)")
	d.p("")
	d.p("`go test -run '^$' -bench '^BenchmarkMatch(InProcess|OverSocket)$' -benchmem ./agent/`  ")
	d.p("`go test -run '^$' -bench '^BenchmarkRawCaptureDeletion$' -benchtime 40x ./agent/`")
	d.p("")
	d.p("| benchmark | mean | p50 | p99 |")
	d.p("|---|---:|---:|---:|")
	for _, b := range []struct{ name, label string }{
		{"MatchInProcess/gallery_0_extra", "`match` in process, fixture gallery (5 subjects): lookup, control state, policy"},
		{"MatchInProcess/gallery_10000_extra", "`match` in process, 10,000 more subjects"},
		{"MatchOverSocket", "`match` over the Unix socket (HTTP, client in the same process)"},
		{"RawCaptureDeletion", "raw capture reaching `raw_image_max_s` → file gone"},
	} {
		mean := d.dur(pkgAgent, b.name, "ns/op")
		if b.name == "RawCaptureDeletion" {
			mean = "—" // an iteration includes the wait for the capture to expire
		}
		d.p("| %s | %s | %s | %s |", b.label, mean, d.dur(pkgAgent, b.name, "p50-µs"), d.dur(pkgAgent, b.name, "p99-µs"))
	}
	d.p("")
	d.p("The in-process `match` is the gallery lookup (one indexed SQLite query; the agent adds an index on")
	d.p("`consents(subject_ref)` to a gallery that lacks one) plus the policy table. A raw capture is written with a")
	d.p("modification time that puts its expiry 300 ms ahead: the agent notices it (fsnotify), sets a timer for the exact")
	d.p("moment, and deletes it; the figure is the time from expiry to the file's removal.")
	d.p("")
}

func (d *doc) gallery() {
	d.p("## Gallery size (`agent`)")
	d.p("")
	d.p("`go test -run '^$' -bench '^BenchmarkGallerySize$' -benchmem ./agent/`")
	d.p("")
	d.p("A real agent on the residential gate whose `gallery.db` holds N subjects. *decide* gathers the facts from the")
	d.p("terminal (the files read; the gallery's count kept from the last evaluation, since nothing was written to it) and")
	d.p("takes the full-pack decision, as each evaluation of the agent does before recording it; *recount* is the same just")
	d.p("after the terminal software committed a write to the gallery, which is then counted again, subject by subject;")
	d.p("*match* is the agent's `match` for one subject after another across the gallery.")
	d.p("")
	d.p("| subjects | decide p50 / p99 | decide B/op | recount p50 / p99 | recount B/op | match p50 / p99 |")
	d.p("|---:|---:|---:|---:|---:|---:|")
	sizes := []int{100, 1000, 10_000, 100_000}
	for _, n := range sizes {
		base := fmt.Sprintf("GallerySize/subjects_%d/", n)
		d.p("| %s | %s | %s | %s | %s | %s |", fmtNum(float64(n)), d.pct(pkgAgent, base+"decide"), d.num(pkgAgent, base+"decide", "B/op"),
			d.pct(pkgAgent, base+"recount"), d.num(pkgAgent, base+"recount", "B/op"), d.pct(pkgAgent, base+"match"))
	}
	small, ok1 := d.ns(pkgAgent, "GallerySize/subjects_100/recount", "p50-µs")
	large, ok2 := d.ns(pkgAgent, "GallerySize/subjects_100000/recount", "p50-µs")
	if ok1 && ok2 {
		d.p("")
		d.p("Counting the gallery grows linearly with it: about %s per subject (p50, 100 → 100,000 subjects). The agent",
			fmtDur((large-small)/(100_000-100)))
		d.p("counts again only when SQLite's `data_version` says another connection committed to the file; otherwise it keeps")
		d.p("the last count and recomputes only what depends on the time. The decision itself does not depend on the gallery")
		d.p("(the facts carry counts only). `match` stays one indexed lookup.")
	}
	d.p("")
}

func (d *doc) ingest() {
	d.p("## Controller ingest (`fleet`)")
	d.p("")
	d.p("`go test -run '^$' -bench '^BenchmarkControllerIngest$' -benchtime 2x ./fleet/`")
	d.p("")
	d.p("Mosquitto, one controller on SQLite (on disk, `synchronous=FULL`), and N simulated devices, each its own MQTT")
	d.p("connection, publishing violation events at QoS 1; a message counts as stored once the store has committed it.")
	d.p("*burst*: every device publishes at the same moment (a policy change, a broker coming back), so msgs/s is the")
	d.p("controller's ingest rate and the latencies are those of a full queue; *steady*: every device publishes one event")
	d.p("within 10 s, spread evenly. Two rounds of N events each.")
	d.p("")
	d.p("| devices | burst: ingest rate | burst: publish → stored p50 / p99 | steady: offered | steady: publish → stored p50 / p99 |")
	d.p("|---:|---:|---:|---:|---:|")
	for _, n := range []int{1000, 10_000} {
		base := fmt.Sprintf("ControllerIngest/devices_%d/", n)
		d.p("| %s | %s msgs/s | %s | %s msgs/s | %s |", fmtNum(float64(n)), d.num(pkgFleet, base+"burst", "msgs/s"),
			d.pct(pkgFleet, base+"burst"), fmtNum(float64(n)/10), d.pct(pkgFleet, base+"steady"))
	}
	d.p("")
}

func (d *doc) footprint(bins []binary) {
	d.p("## Footprint (`cmd/faceguard-agent`)")
	d.p("")
	d.p("`make build cross` (stripped: `-trimpath -ldflags \"-s -w\"`; linux/arm64 with cgo through Debian's")
	d.p("`aarch64-linux-gnu-gcc`, `make deps-cross`), then")
	d.p("`go test -run '^$' -bench '^BenchmarkAgentFootprint$' -benchtime 1x ./cmd/faceguard-agent/`")
	d.p("")
	d.p("| binary | size | file(1) |")
	d.p("|---|---:|---|")
	for _, b := range bins {
		d.p("| `%s` (%s) | %.1f MB (%.1f MiB) | %s |", b.path, b.arch, mb(float64(b.size)), float64(b.size)/(1<<20), b.file)
	}
	d.p("")
	d.p("| agent process, linux/amd64, 10,000 subjects, evaluating every second, connected: VmRSS | %s | %s |",
		footprintVariants[0].long, footprintVariants[1].long)
	d.p("|---|---:|---:|")
	for _, m := range []struct{ unit, label string }{{"rss-steady-MB", "steady state (median of a sample a second over the last 20 of 30 s)"}, {"rss-peak-MB", "peak over 30 s"},
		{"rss-anon-MB", "of the steady state: the agent's own memory (RssAnon: heap, stacks, SQLite caches)"},
		{"rss-file-MB", "of the steady state: pages of the binary (RssFile)"}} {
		var cells [2]string
		for i, fv := range footprintVariants {
			cells[i] = "—"
			if v, ok := d.r.get(pkgFootprint, "AgentFootprint/"+fv.name, m.unit); ok {
				cells[i] = fmt.Sprintf("%.1f MB (%.1f MiB)", v*(1<<20)/1e6, v)
			}
		}
		d.p("| %s | %s | %s |", m.label, cells[0], cells[1])
	}
	d.p("")
	d.p("The agent counts the gallery again only when another connection has committed to it (SQLite's `data_version`);")
	d.p("on a quiet terminal it keeps the last count, on a busy one each evaluation walks the 10,000 subjects.")
	d.p("")
	d.p("OPA is most of the binary, and the binary's own pages are a large part of the resident memory: how large")
	d.p("depends on the kernel, and this machine's maps the page cache of an ext4 file in large folios (smaps_rollup")
	d.p("shows some 14 MB of the binary PMD-mapped), so touching one page of a region brings the whole region in. What keeps")
	d.p("the rest small: one store and compiler per policy generation instead of one per prepared query, SQLite page")
	d.p("caches of 512 KiB per connection with one warm gallery connection, the gallery's count kept until it is written")
	d.p("to, one malloc arena for SQLite, and `GOGC=50` in the daemon unless `GOGC` is set (a terminal evaluates a few")
	d.p("times a minute). `TestDeviceBinaryImports` keeps the broker, the controller, the dashboard and the other")
	d.p("operator-side packages out of the device binary. `docs/performance.md` has the breakdown and what was tried.")
	d.p("")
}

// footprintVariants are the sub-benchmarks of BenchmarkAgentFootprint.
var footprintVariants = [2]struct{ name, short, long string }{
	{"quiet", "gallery unchanged", "quiet: nothing writes to the gallery"},
	{"matching", "busy gate (10 recognitions/s)", "matching: the terminal records 10 recognitions a second"},
}

func (d *doc) record() {
	d.p("## Local record (`agent/store`)")
	d.p("")
	d.p("`go test -run '^$' -bench '^Benchmark(Append|TxEvaluation)$' -benchmem ./agent/store/` — `synchronous=FULL`: the fsync dominates.")
	d.p("")
	d.p("| benchmark | mean | allocs/op |")
	d.p("|---|---:|---:|")
	d.p("| one audit row, one transaction | %s | %s |", d.dur(pkgStore, "Append", "ns/op"), d.num(pkgStore, "Append", "allocs/op"))
	d.p("| one evaluation's record (evaluation, 3 audit rows, 2 outbox rows) | %s | %s |", d.dur(pkgStore, "TxEvaluation", "ns/op"), d.num(pkgStore, "TxEvaluation", "allocs/op"))
	d.p("")
}

func (d *doc) fleetStore() {
	d.p("## Fleet store (`fleet/store/sqlstore`)")
	d.p("")
	d.p("`go test -run '^$' -bench . -benchmem ./fleet/store/sqlstore/` — SQLite commits with `synchronous=FULL` on this")
	d.p("machine's disk; the test PostgreSQL runs with fsync off, so its write figures are optimistic.")
	d.p("")
	d.p("| operation | SQLite | PostgreSQL |")
	d.p("|---|---:|---:|")
	row := func(label, name string) { // name has a %s for the backend
		d.p("| %s | %s | %s |", label, d.dur(pkgSQLStore, fmt.Sprintf(name, "sqlite"), "ns/op"),
			d.dur(pkgSQLStore, fmt.Sprintf(name, "postgres"), "ns/op"))
	}
	row("ApplyCompliance, one writer (a violation opened and one closed each time)", "ApplyCompliance/%s")
	row("ApplyCompliance, concurrent writers (per op)", "ApplyComplianceParallel/%s")
	row("AddEvent", "AddEvent/%s")
	for _, q := range []struct{ name, label string }{
		{"Overview", "Overview"}, {"DevicesFirstPage", "Devices, first page"}, {"DevicesLastPage", "Devices, last page"},
		{"DevicesSite", "Devices of one site"}, {"DevicesCritical", "Devices with a critical violation"},
		{"DevicesSearch", "Devices, search"}, {"OpenViolationsFirstPage", "OpenViolations, first page"}, {"Device", "Device"},
	} {
		row(q.label+", 10,000 devices", "Fleet10k/%s/"+q.name)
	}
	d.p("")
}

func (d *doc) dashboard() {
	d.p("## Dashboard (`fleet/dashboard`)")
	d.p("")
	d.p("`go test -run '^$' -bench '^BenchmarkPages$' -benchmem ./fleet/dashboard/` — a real SQLite store with 10,000 devices")
	d.p("at 200 sites and their open violations.")
	d.p("")
	d.p("| page | p50 | p99 | size |")
	d.p("|---|---:|---:|---:|")
	for _, p := range []struct{ name, label string }{
		{"overview", "`/`"}, {"devices", "`/devices`"}, {"devices_search_page_10", "`/devices?q=…&page=10`"},
		{"devices_critical", "`/devices` with a critical violation"}, {"violations", "`/violations`"},
		{"violations_high_page_20", "`/violations`, high, page 20"}, {"device", "`/devices/{id}`"},
	} {
		n := "Pages/" + p.name
		size := "—"
		if v, ok := d.r.get(pkgDashboard, n, "KiB"); ok {
			size = fmt.Sprintf("%.0f KiB", v)
		}
		d.p("| %s | %s | %s | %s |", p.label, d.dur(pkgDashboard, n, "p50-ms"), d.dur(pkgDashboard, n, "p99-ms"), size)
	}
	d.p("")
}

func (d *doc) filing(rows []filingRow) {
	d.p("## Filing tracker (`fleet/filing`)")
	d.p("")
	d.p("Error of the distinct count merged from the devices' HyperLogLog sketches (precision 14), devices with overlapping")
	d.p("galleries (a main entrance holding about half of everyone, each person on 1–5 doors):")
	d.p("`go test -run '^TestMergedEstimateError$' -v ./fleet/filing/`")
	d.p("")
	d.p("| persons | devices | trials | mean error | mean \\|error\\| | RMS | worst | standard error | mean device sketch |")
	d.p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		d.p("| %s | %d | %d | %+.3f %% | %.3f %% | %.3f %% | %.3f %% | %.3f %% | %s B |", fmtNum(float64(r.persons)), r.devices, r.trials,
			r.mean, r.meanAbs, r.rms, r.worst, r.se, fmtNum(float64(r.sketchBytes)))
	}
	if len(rows) == 0 {
		d.p("| — | | | | | | | | |")
	}
	d.p("")
	d.p("Merging sketches (`go test -run '^$' -bench '^BenchmarkMerge$' ./fleet/filing/`): 10,000 devices of 500 persons each in %s,",
		d.dur(pkgFiling, "Merge/10000_devices_500_persons", "ns/op"))
	d.p("1,000 dense sketches (20,000 persons each) in %s; the controller keeps the result for 10 s. The dashboard shows the",
		d.dur(pkgFiling, "Merge/1000_devices_20000_persons", "ns/op"))
	d.p("count with ± two standard errors; the warning band starts when count + 2σ reaches 80,000.")
}
