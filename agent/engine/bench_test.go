package engine

import (
	"context"
	"testing"

	"github.com/faceguard/faceguard/device"
)

// typicalFacts is a terminal with a few problems, the common case in the field: a gate in a public
// place whose sign is stale, with a withdrawn subject not yet purged and a raw capture past its limit.
func typicalFacts(b testing.TB) device.Facts {
	f := compliantFacts(b)
	f.Location.PublicPlace = true
	f.Location.Category = "office_entrance"
	ref := "MPS-2026-113"
	f.Location.NecessityRef = &ref
	f.Signage.VerifiedAt = nil
	f.Subjects.WithdrawnPending, f.Subjects.WithdrawnOldestS = 1, 7200
	f.RawImages = device.RawImages{Count: 3, OldestAgeS: 45}
	return f
}

// BenchmarkDecide is the full-pack decision, prepared, in process (DESIGN §11: p50 ≤ 100 µs).
func BenchmarkDecide(b *testing.B) {
	for _, c := range []struct {
		name  string
		facts device.Facts
	}{
		{"compliant", compliantFacts(b)},
		{"typical", typicalFacts(b)},
		{"hotel_room", hotelFacts(b)},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newEngine(b, Options{})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, &c.facts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecideParallel is the same decision from every core at once, as the simulator runs it.
func BenchmarkDecideParallel(b *testing.B) {
	e := newEngine(b, Options{})
	f := typicalFacts(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Decide(ctx, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMatch is the hot path a terminal calls before it uses a face match (DESIGN §11: p99 ≤ 50 µs).
func BenchmarkMatch(b *testing.B) {
	e := newEngine(b, Options{})
	in := device.MatchInput{
		Subject:  device.MatchSubject{Found: true, Consent: device.BasisSeparate, AgeBand: device.AgeAdult},
		Terminal: device.MatchTerminal{FaceRecognitionAllowed: true},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Match(ctx, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkActivateBundle is the cost of a policy swap: verify, read, compile, canary.
func BenchmarkActivateBundle(b *testing.B) {
	key := ecKey(b)
	ctx := context.Background()
	raw := signedBundle(b, key, "1", nil)
	b.ReportAllocs()
	for b.Loop() {
		e := &Engine{opts: Options{VerificationKey: key.pub, MaxBundleBytes: DefaultMaxBundleBytes}}
		bd, info, err := e.verifyBundle(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := compile(ctx, bd, info); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatchLive evaluates the match policy itself, as a pack with no match table would (a pack that
// calls a nondeterministic builtin), and as each entry of the table is computed.
func BenchmarkMatchLive(b *testing.B) {
	e := newEngine(b, Options{})
	g := e.active.Load()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		in   device.MatchInput
	}{
		{"allowed", device.MatchInput{Subject: device.MatchSubject{Found: true, Consent: device.BasisSeparate, AgeBand: device.AgeAdult},
			Terminal: device.MatchTerminal{FaceRecognitionAllowed: true}}},
		{"denied", device.MatchInput{Subject: device.MatchSubject{Found: true, Consent: device.BasisSeparate, Withdrawn: true, AgeBand: device.AgeAdult},
			Terminal: device.MatchTerminal{FaceRecognitionAllowed: true}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.evalMatch(ctx, &c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
