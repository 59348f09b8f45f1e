//go:build race

package filing

// raceEnabled shortens the slow measurements under the race detector, which makes them ten times slower
// and has nothing to find in single-goroutine arithmetic.
const raceEnabled = true
