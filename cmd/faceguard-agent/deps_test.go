package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// deniedImports are what the device binary must never link, each with why. A prefix denies the package
// and everything under it. The binary runs on a terminal with a memory budget (DESIGN §11: ≤ 35 MB
// stripped, RSS ≤ 40 MB) and every package in it is attack surface on a device in a public place, so
// operator-side and test-side code stays out (the operator's tool, cmd/faceguard, carries it).
var deniedImports = map[string]string{
	"github.com/mochi-mqtt/server":                       "the embedded MQTT broker: a terminal is a client of the fleet's broker, never a broker",
	"github.com/faceguard/faceguard/internal/broker":     "our wrapper of the embedded broker (demo and tests)",
	"github.com/faceguard/faceguard/fleet":               "the fleet controller, its stores, report and dashboard: they run at the operator (fleet/filing is allowed below)",
	"github.com/faceguard/faceguard/sim":                 "the simulator of terminals and faults",
	"github.com/faceguard/faceguard/internal/testbroker": "test helper: brokers started for tests",
	"github.com/faceguard/faceguard/internal/testpg":     "test helper: a PostgreSQL started for tests",
	"github.com/faceguard/faceguard/internal/testpki":    "test helper: throwaway certificates",
	"github.com/faceguard/faceguard/internal/netfault":   "fault-injection proxy of the tests and the simulator",
	"github.com/faceguard/faceguard/internal/benchdoc":   "development tool: writes BENCHMARKS.md",
	"github.com/faceguard/faceguard/internal/benchrun":   "development tool: runs the benchmarks",
	"github.com/jackc/pgx":                               "PostgreSQL driver of the shared fleet store; the terminal keeps SQLite",
	"github.com/chromedp":                                "drives a browser in the dashboard's tests",
	"github.com/prometheus":                              "metrics exposition of the controller; a terminal serves no metrics endpoint",
	"github.com/open-policy-agent/opa/v1/server":         "OPA's REST server: the agent embeds the evaluator and serves only its own local API",
	"github.com/open-policy-agent/opa/v1/runtime":        "OPA's runtime (the sidecar)",
	"github.com/open-policy-agent/opa/v1/plugins":        "OPA's plugin manager: bundle download, decision logs and status are the agent's own, over MQTT",
	"github.com/open-policy-agent/opa/v1/sdk":            "OPA's SDK, which brings the plugin manager",
	"github.com/open-policy-agent/opa/cmd":               "the OPA command line",
	"github.com/open-policy-agent/opa/v1/storage/disk":   "OPA's disk store (badger): the pack's data is small and in memory",
	"github.com/dgraph-io/badger":                        "OPA's disk store",
	"github.com/tetratelabs/wazero":                      "Wasm runtime: the pack is evaluated by topdown, Wasm is not built in",
	"go.opentelemetry.io":                                "tracing and OTLP export of OPA's server",
	"google.golang.org/grpc":                             "gRPC, only for OTLP export",
	"github.com/spf13/cobra":                             "command-line framework of OPA's CLI; the agent parses its flags with the standard library",
	"golang.org/x/perf":                                  "benchstat, a development tool",
	"testing":                                            "test code leaking into the binary",
	"net/http/httptest":                                  "test code leaking into the binary",
	"net/http/pprof":                                     "profiling endpoints would expose the process on a device",
}

// allowedImports are exceptions under a denied prefix.
var allowedImports = map[string]string{
	"github.com/faceguard/faceguard/fleet/filing": "the device builds its gallery's HyperLogLog sketch with it (the controller merges them); it imports only wire and the sketch",
}

// TestDeviceBinaryImports fails if the device binary's import graph, for each architecture a terminal
// runs, reaches a denied package; it names the chain of imports that does.
func TestDeviceBinaryImports(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run("linux_"+arch, func(t *testing.T) {
			imports := importGraph(t, arch, ".")
			if _, ok := imports["github.com/faceguard/faceguard/agent/engine"]; !ok {
				t.Fatalf("the import graph does not hold the engine; go list gave %d packages", len(imports))
			}
			if _, ok := imports["github.com/mattn/go-sqlite3"]; !ok {
				t.Fatal("the import graph does not hold SQLite: listed without cgo?")
			}
			for pkg := range imports {
				if why, denied := denied(pkg); denied {
					t.Errorf("the device binary imports %s (%s), through:\n  %s", pkg, why, strings.Join(importChain(imports, "github.com/faceguard/faceguard/cmd/faceguard-agent", pkg), "\n  → "))
				}
			}
		})
	}
}

// TestDeniedImportsCatchTheOperatorTool checks the check: the operator's tool links the broker, the
// controller and the dashboard, and the deny list must see them there, with a chain from its main.
func TestDeniedImportsCatchTheOperatorTool(t *testing.T) {
	imports := importGraph(t, "amd64", "../faceguard")
	for _, pkg := range []string{"github.com/mochi-mqtt/server/v2", "github.com/faceguard/faceguard/fleet/dashboard", "github.com/jackc/pgx/v5"} {
		if _, ok := imports[pkg]; !ok {
			t.Fatalf("the operator tool no longer imports %s; pick another witness", pkg)
		}
		if _, denied := denied(pkg); !denied {
			t.Errorf("%s is not denied", pkg)
		}
	}
	if chain := importChain(imports, "github.com/faceguard/faceguard/cmd/faceguard", "github.com/faceguard/faceguard/fleet/dashboard"); len(chain) < 2 {
		t.Errorf("no import chain to the dashboard: %v", chain)
	}
	if _, denied := denied("github.com/faceguard/faceguard/fleet/filing"); denied {
		t.Error("fleet/filing, which the device needs, is denied")
	}
}

func denied(pkg string) (string, bool) {
	if _, ok := allowedImports[pkg]; ok {
		return "", false
	}
	for prefix, why := range deniedImports {
		if pkg == prefix || strings.HasPrefix(pkg, prefix+"/") {
			return why, true
		}
	}
	return "", false
}

// importGraph lists the device binary's packages, each with its direct imports, as linux/arch with cgo
// (SQLite needs it, and the packages a build includes depend on it).
func importGraph(t *testing.T, arch, dir string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, dir)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	graph := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		graph[f[0]] = f[1:]
	}
	return graph
}

// importChain is a shortest chain of imports from root to pkg.
func importChain(graph map[string][]string, root, pkg string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == pkg {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append(chain, p)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, next := range graph[p] {
			if _, seen := prev[next]; !seen {
				prev[next] = p
				queue = append(queue, next)
			}
		}
	}
	return []string{pkg}
}
