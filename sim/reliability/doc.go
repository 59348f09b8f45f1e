// Package reliability holds faceguard's reliability suite: real simulated terminals (sim), real agents on
// real SQLite files, a real Mosquitto process and a real fleet controller, put through the faults a fleet
// meets — the broker restarted, the network cut, an agent killed, the disk full, the clock jumping, a
// thousand devices reconnecting at once — and a fleet of a thousand (ten thousand in the soak) measured.
//
// Each test checks the same promises against ground truth, never against the code under test: every
// event a device's audit chain says its agent published reaches the controller exactly once after
// deduplication; the controller's open violations are each device's latest decision; and no terminal is
// ever left without a way through (face recognition off only with the other ways required on, and off
// only where the policy demands once the faults clear).
//
// The fleet test (TestFleetScale) runs the controller as `faceguard fleet serve`, built from the tree, in
// a process of its own, so that its CPU time and memory can be read from /proc; and the simulated devices
// in shard processes of the test binary (TestFleetScaleShard, which does nothing unless the fleet test
// starts it), a couple of thousand each, because a device holds about eight open files and a process
// may hold only so many.
//
// `go test ./sim/reliability` runs the suite scaled for CI (two cores, about a minute and a half). The
// soak runs the same tests long and large:
//
//	FACEGUARD_SOAK=1 FACEGUARD_SOAK_DURATION=30m go test ./sim/reliability -count=1 -timeout 6h -v
//
// FACEGUARD_SOAK_DURATION (default 10m) is how long each fault test keeps faulting;
// FACEGUARD_SOAK_DEVICES (default 10000) sizes the fleet test and FACEGUARD_SOAK_RECONNECT (default 1000)
// the mass reconnection. Figures are reported with t.Log (run with -v); FACEGUARD_FIGURES=FILE also
// writes the fleet test's, with the machine and the command that reproduces them, as Markdown into the
// section "fleet-scale" of FILE (internal/benchdoc; `make soak` points it at BENCHMARKS.md). No test
// asserts a time.
//
// The tests live in _test.go files only; this file is the package's documentation.
package reliability
