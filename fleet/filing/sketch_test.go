package filing

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/faceguard/faceguard/wire"
)

// subjectHashes returns the keyed hashes of n persons, as the devices compute them (wire.SubjectHash).
func subjectHashes(key string, n int) []string {
	k := []byte(key)
	hs := make([]string, n)
	for i := range hs {
		hs[i] = wire.SubjectHash(k, fmt.Sprintf("s-%07d", i))
	}
	return hs
}

func sketchOf(hashes []string) *Sketch {
	s := NewSketch()
	for _, h := range hashes {
		s.Add(h)
	}
	return s
}

func mustMarshal(t testing.TB, s *Sketch) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRelativeError(t *testing.T) {
	if got := RelativeError(); math.Abs(got-0.008125) > 1e-9 {
		t.Errorf("RelativeError() = %v, want 1.04/128", got)
	}
}

func TestSketchRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 500, 5_000, 40_000} {
		s := sketchOf(subjectHashes("round-trip", n))
		data := mustMarshal(t, s)
		var back Sketch
		if err := back.UnmarshalBinary(data); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if back.Estimate() != s.Estimate() {
			t.Errorf("n=%d: estimate %d after the round trip, %d before", n, back.Estimate(), s.Estimate())
		}
		if len(data) > denseSize {
			t.Errorf("n=%d: %d bytes, more than a dense sketch", n, len(data))
		}
	}
}

func TestZeroSketch(t *testing.T) {
	var s Sketch
	if s.Estimate() != 0 {
		t.Error("a zero sketch is not empty")
	}
	s.Add(subjectHashes("zero", 1)[0])
	var back Sketch
	if err := back.UnmarshalBinary(mustMarshal(t, &s)); err != nil || back.Estimate() != 1 {
		t.Errorf("estimate %d, %v", back.Estimate(), err)
	}
}

// The same person on several devices counts once; a hash in upper case is the same person.
func TestSketchCountsPersonsOnce(t *testing.T) {
	hs := subjectHashes("dedup", 1_000)
	a, b := sketchOf(hs[:700]), sketchOf(hs[300:])
	upper := NewSketch()
	for _, h := range hs[:100] {
		upper.Add(strings.ToUpper(h))
	}
	est, err := Merge(mustMarshal(t, a), mustMarshal(t, b), mustMarshal(t, upper))
	if err != nil {
		t.Fatal(err)
	}
	if est < 990 || est > 1010 { // the sparse representation is near exact at this size
		t.Errorf("1,000 persons on overlapping devices: estimate %d", est)
	}
}

// A sparse sketch near the switch to dense encodes larger than the dense form; MarshalBinary writes the
// smaller, so no device message is larger than 16,392 bytes.
func TestMarshalNeverLargerThanDense(t *testing.T) {
	worst := 0
	s := NewSketch()
	hs := subjectHashes("size", 20_000)
	for i, h := range hs {
		s.Add(h)
		if i%500 == 0 {
			data := mustMarshal(t, s)
			worst = max(worst, len(data))
			var raw, _ = s.hll.MarshalBinary()
			if len(raw) > denseSize && len(data) != denseSize {
				t.Fatalf("%d persons: sparse %d bytes written as %d", i+1, len(raw), len(data))
			}
		}
	}
	if worst > denseSize {
		t.Errorf("largest encoding %d bytes, dense is %d", worst, denseSize)
	}
}

func TestSketchSizes(t *testing.T) {
	var line []string
	for _, n := range []int{0, 100, 1_000, 5_000, 10_000, 100_000} {
		data := mustMarshal(t, sketchOf(subjectHashes("sizes", n)))
		line = append(line, fmt.Sprintf("%d persons: %d B", n, len(data)))
	}
	t.Log("marshalled sketch sizes: " + strings.Join(line, "; "))
}

func TestUnmarshalRejectsGarbage(t *testing.T) {
	valid := mustMarshal(t, sketchOf(subjectHashes("garbage", 2_000)))
	dense := mustMarshal(t, sketchOf(subjectHashes("garbage", 30_000)))
	p16, err := hyperloglog.New16().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	badRegister := bytes.Clone(dense)
	badRegister[100] = 200
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"nil", nil, "empty"},
		{"one byte", []byte{2}, ""},
		{"text", []byte("not a sketch at all"), ""},
		{"other precision", p16, "precision 16"},
		{"truncated sparse", valid[:len(valid)-3], ""},
		{"truncated dense", dense[:len(dense)/2], ""},
		{"trailing bytes", append(bytes.Clone(valid), 0, 0, 0), ""},
		{"register out of range", badRegister, ""},
		{"unknown version", append([]byte{9}, valid[1:]...), "version"},
		{"too large", make([]byte, MaxSketchBytes+1), "limit"},
		{"tmp set count huge", binary.BigEndian.AppendUint32([]byte{2, Precision, 0, 1}, math.MaxUint32), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sketchOf(subjectHashes("keep", 10))
			before := s.Estimate()
			err := s.UnmarshalBinary(tc.data)
			if !errors.Is(err, ErrBadSketch) {
				t.Fatalf("UnmarshalBinary = %v, want ErrBadSketch", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if s.Estimate() != before {
				t.Error("a failed unmarshal changed the sketch")
			}
		})
	}
}

func TestMergeSkipsBadSketches(t *testing.T) {
	hs := subjectHashes("merge", 3_000)
	a, b := mustMarshal(t, sketchOf(hs[:2_000])), mustMarshal(t, sketchOf(hs[1_000:]))
	est, err := Merge(a, []byte("garbage"), b, nil)
	var me *MergeError
	if !errors.As(err, &me) || !errors.Is(err, ErrBadSketch) {
		t.Fatalf("Merge error = %v", err)
	}
	if len(me.Skipped) != 2 || me.Skipped[0].Index != 1 || me.Skipped[1].Index != 3 {
		t.Errorf("skipped = %+v", me.Skipped)
	}
	if est < 2_970 || est > 3_030 {
		t.Errorf("estimate of the good ones = %d, want about 3,000", est)
	}
	if !strings.Contains(err.Error(), "2 skipped") || !strings.Contains(err.Error(), "#1") {
		t.Errorf("error text %q", err)
	}
	if est, err := Merge(); est != 0 || err != nil {
		t.Errorf("Merge() = %d, %v", est, err)
	}
	m, err := MergeSketch(a, b)
	if err != nil || m.Estimate() != est0(t, a, b) {
		t.Errorf("MergeSketch = %v, %v", m, err)
	}
}

func est0(t *testing.T, sketches ...[]byte) uint64 {
	est, err := Merge(sketches...)
	if err != nil {
		t.Fatal(err)
	}
	return est
}

// fleetGalleries spreads n persons over devices the way a site enrols them: a main entrance that has
// about half of everyone, and doors where a person is enrolled on one to five of them.
func fleetGalleries(key string, n, devices int, rng *rand.Rand) [][]string {
	hs := subjectHashes(key, n)
	g := make([][]string, devices)
	for _, h := range hs {
		if rng.IntN(2) == 0 {
			g[0] = append(g[0], h)
		}
		doors := 1
		switch r := rng.IntN(100); {
		case r >= 95:
			doors = 5
		case r >= 85:
			doors = 3
		case r >= 60:
			doors = 2
		}
		for range doors {
			d := 1 + rng.IntN(devices-1)
			g[d] = append(g[d], h)
		}
	}
	return g
}

// The measured error of the merged distinct count: 200 devices whose galleries overlap, each builds and
// encodes its sketch, the controller merges them. Deterministic (fixed keys and seeds), so a pass is a
// pass every time; each trial must be within 3 standard errors.
func TestMergedEstimateError(t *testing.T) {
	const devices = 200
	trials := 16
	if testing.Short() || raceEnabled {
		trials = 1
	}
	se := RelativeError()
	for _, n := range []int{10_000, 50_000, 100_000, 150_000} {
		var sum, sumAbs, sumSq, worst, sumBytes float64
		var sketches int
		for trial := range trials {
			rng := rand.New(rand.NewPCG(uint64(n), uint64(trial)))
			g := fleetGalleries(fmt.Sprintf("fleet-key-%d", trial), n, devices, rng)
			encoded := make([][]byte, devices)
			for i, hs := range g {
				encoded[i] = mustMarshal(t, sketchOf(hs))
				sumBytes += float64(len(encoded[i]))
				sketches++
			}
			est, err := Merge(encoded...)
			if err != nil {
				t.Fatal(err)
			}
			rel := (float64(est) - float64(n)) / float64(n)
			if math.Abs(rel) > 3*se {
				t.Errorf("%d persons, trial %d: estimate %d, relative error %+.4f beyond 3 standard errors (%.4f)", n, trial, est, rel, 3*se)
			}
			sum += rel
			sumAbs += math.Abs(rel)
			sumSq += rel * rel
			worst = max(worst, math.Abs(rel))
		}
		t.Logf("measured: %d persons on %d devices, %d trials: mean error %+.3f%%, mean |error| %.3f%%, RMS %.3f%%, worst %.3f%% (standard error %.3f%%); mean sketch %.0f B",
			n, devices, trials, 100*sum/float64(trials), 100*sumAbs/float64(trials), 100*math.Sqrt(sumSq/float64(trials)), 100*worst, 100*se, sumBytes/float64(sketches))
	}
}

// Seeds: well-formed sketches of each representation, and the shapes of damage a network delivers.
// Run it with a bound on minimisation, which is slow on 16 KiB dense inputs:
//
//	go test -run '^$' -fuzz FuzzUnmarshalMerge -fuzztime 30s -fuzzminimizetime 5s ./fleet/filing/
func FuzzUnmarshalMerge(f *testing.F) {
	sparse := mustMarshal(f, sketchOf(subjectHashes("fuzz", 50)))
	dense := mustMarshal(f, sketchOf(subjectHashes("fuzz", 20_000)))
	empty := mustMarshal(f, NewSketch())
	for _, seed := range [][]byte{
		sparse, dense, empty,
		sparse[:len(sparse)/2], dense[:100], {}, {2, Precision, 0, 1}, {2, Precision, 0, 0, 0, 0, 0x40, 0},
		{1, Precision, 3, 0, 0, 0, 0, 0}, []byte("garbage"), append(bytes.Clone(sparse), 0xff),
	} {
		f.Add(seed)
	}
	other := mustMarshal(f, sketchOf(subjectHashes("fuzz-other", 300)))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The fuzzing engine has no time limit per input: a decoder that loops would stall it silently.
		watchdog := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("no answer in 10 s for input %x", data)) })
		defer watchdog.Stop()
		// The library directly, without the recover that guards the exported calls: a panic in the
		// decoder or the merge is a finding.
		h, err := decodeSketch(data)
		if err != nil {
			if !errors.Is(err, ErrBadSketch) {
				t.Fatalf("error without ErrBadSketch: %v", err)
			}
		} else {
			est := h.Estimate()
			s := &Sketch{hll: h}
			again, err := s.MarshalBinary()
			if err != nil {
				t.Fatalf("a decoded sketch does not encode: %v", err)
			}
			h2, err := decodeSketch(again)
			if err != nil {
				t.Fatalf("a re-encoded sketch does not decode: %v", err)
			}
			if h2.Estimate() != est {
				t.Fatalf("estimate %d after re-encoding, %d before", h2.Estimate(), est)
			}
			m := NewSketch()
			if err := m.hll.Merge(h); err != nil {
				t.Fatal(err)
			}
			var o Sketch
			if err := o.UnmarshalBinary(other); err != nil {
				t.Fatal(err)
			}
			if err := h.Merge(o.hll); err != nil {
				t.Fatal(err)
			}
			_ = h.Estimate()
		}
		if _, err := Merge(other, data, other); err != nil && !errors.Is(err, ErrBadSketch) {
			t.Fatalf("Merge error without ErrBadSketch: %v", err)
		}
	})
}

func BenchmarkAdd(b *testing.B) {
	hs := subjectHashes("bench-add", 1<<16)
	s := NewSketch()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.Add(hs[i&(1<<16-1)])
	}
}

// What a device does to publish: build its gallery's sketch and encode it.
func BenchmarkBuildSketch(b *testing.B) {
	for _, n := range []int{500, 10_000} {
		b.Run(fmt.Sprintf("%d_persons", n), func(b *testing.B) {
			hs := subjectHashes("bench-build", n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := sketchOf(hs).MarshalBinary(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchFleet builds device sketches cheaply (random 64-hex strings stand in for keyed hashes: the
// sketch cannot tell them apart).
var benchFleet = sync.OnceValue(func() map[string][][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	hexHash := func() string {
		var b [32]byte
		for i := 0; i < 32; i += 8 {
			binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
		}
		return hex.EncodeToString(b[:])
	}
	build := func(devices, persons int) [][]byte {
		out := make([][]byte, devices)
		for d := range out {
			s := NewSketch()
			for range persons {
				s.Add(hexHash())
			}
			out[d], _ = s.MarshalBinary()
		}
		return out
	}
	return map[string][][]byte{
		"sparse": build(10_000, 500),   // a door with 500 enrolled persons
		"dense":  build(1_000, 20_000), // a site gate with 20,000
	}
})

func BenchmarkMerge(b *testing.B) {
	for _, tc := range []struct {
		name string
		kind string
		n    int
	}{
		{"1000_devices_500_persons", "sparse", 1_000},
		{"10000_devices_500_persons", "sparse", 10_000},
		{"1000_devices_20000_persons", "dense", 1_000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sketches := benchFleet()[tc.kind][:tc.n]
			bytesIn := 0
			for _, s := range sketches {
				bytesIn += len(s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := Merge(sketches...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bytesIn)/float64(tc.n), "B/sketch")
		})
	}
}

func BenchmarkMarshalledSize(b *testing.B) {
	for _, n := range []int{100, 1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("%d_persons", n), func(b *testing.B) {
			s := sketchOf(subjectHashes("bench-size", n))
			var size int
			b.ReportAllocs()
			for b.Loop() {
				data, err := s.MarshalBinary()
				if err != nil {
					b.Fatal(err)
				}
				size = len(data)
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
}
