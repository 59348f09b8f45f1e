//go:build !race

package filing

const raceEnabled = false
