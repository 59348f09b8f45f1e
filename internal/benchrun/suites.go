package main

// suite is one `go test -bench` invocation.
type suite struct {
	name      string // for progress and -only
	pkg       string
	bench     string // the -bench regexp
	benchtime string // "" is go test's default (1s)
	repeated  bool   // run -count times (the count flag); otherwise once
	guard     bool   // make bench-check compares it with the baseline
}

// Packages the figures come from.
const (
	pkgEngine    = "github.com/faceguard/faceguard/agent/engine"
	pkgAgent     = "github.com/faceguard/faceguard/agent"
	pkgStore     = "github.com/faceguard/faceguard/agent/store"
	pkgFootprint = "github.com/faceguard/faceguard/cmd/faceguard-agent"
	pkgFleet     = "github.com/faceguard/faceguard/fleet"
	pkgSQLStore  = "github.com/faceguard/faceguard/fleet/store/sqlstore"
	pkgDashboard = "github.com/faceguard/faceguard/fleet/dashboard"
	pkgFiling    = "github.com/faceguard/faceguard/fleet/filing"
)

// suites are run in this order. The guarded ones are this project's own hot paths, repeated so that
// benchstat can tell a change from noise; the OPA sidecar and subprocess are OPA's speed, not ours,
// and the long fleet-side runs are measured once.
var suites = []suite{
	{name: "decision", pkg: pkgEngine, bench: `^BenchmarkDecisionPaths$/^(embedded|rego|server|go)$`, repeated: true, guard: true},
	// A subprocess per decision takes tens of milliseconds: a fixed number of decisions.
	{name: "decision-eval", pkg: pkgEngine, bench: `^BenchmarkDecisionPaths$/^eval$`, benchtime: "20x", repeated: true},
	{name: "engine", pkg: pkgEngine, bench: `^Benchmark(Match|MatchLive|DecideParallel|ActivateBundle)$`, repeated: true, guard: true},
	{name: "match", pkg: pkgAgent, bench: `^BenchmarkMatch(InProcess|OverSocket)$`, repeated: true, guard: true},
	// Each deletion waits about 300 ms for the capture to expire.
	{name: "raw-deletion", pkg: pkgAgent, bench: `^BenchmarkRawCaptureDeletion$`, benchtime: "40x", repeated: true, guard: true},
	{name: "gallery", pkg: pkgAgent, bench: `^BenchmarkGallerySize$`, repeated: true, guard: true},
	// Samples a running agent for 30 s.
	{name: "footprint", pkg: pkgFootprint, bench: `^BenchmarkAgentFootprint$`, benchtime: "1x"},
	// Two rounds of one event from every device; the steady rounds take 10 s each.
	{name: "ingest", pkg: pkgFleet, bench: `^BenchmarkControllerIngest$`, benchtime: "2x"},
	{name: "record", pkg: pkgStore, bench: `^Benchmark(Append|TxEvaluation)$`},
	{name: "fleet-store", pkg: pkgSQLStore, bench: `.`},
	{name: "dashboard", pkg: pkgDashboard, bench: `^BenchmarkPages$`},
	{name: "filing", pkg: pkgFiling, bench: `^BenchmarkMerge$`},
}
