package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/faceguard/faceguard/device"
)

// Match evaluates data.faceguard.match: may this face match be used now. Any error must be read as
// "no": the terminal then offers the person another way through.
func (e *Engine) Match(ctx context.Context, in *device.MatchInput) (device.MatchResult, error) {
	return e.active.Load().matchOne(ctx, in)
}

func (g *generation) matchOne(ctx context.Context, in *device.MatchInput) (device.MatchResult, error) {
	if g.matchTable != nil {
		if i, ok := matchIndex(in); ok {
			return g.matchTable[i].Clone(), nil
		}
	}
	return g.evalMatch(ctx, in)
}

// evalMatch evaluates data.faceguard.match live.
func (g *generation) evalMatch(ctx context.Context, in *device.MatchInput) (device.MatchResult, error) {
	v, err := evalOne(ctx, g.match, matchToAST(in))
	if err != nil {
		return device.MatchResult{}, fmt.Errorf("evaluate match: %w", err)
	}
	r, err := decodeMatch(v)
	if err != nil {
		return device.MatchResult{}, fmt.Errorf("evaluate match: %w", err)
	}
	return r, nil
}

// canary holds a new generation to the floor every faceguard pack must keep, whatever a bundle changes:
// the answers are well formed, face recognition in a hotel room is switched off, a face-only door gets
// its alternatives turned on without face being switched off, and a withdrawn subject is never matched.
// A bundle that breaks any of these is refused.
func (g *generation) canary(ctx context.Context) error {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := func() device.Facts {
		ref, purpose := "PIA-canary", "access_control"
		return device.Facts{
			Schema: device.FactsSchema, CollectedAt: at,
			Device:   device.Device{ID: "canary", Kind: device.KindDoorTerminal, Stage: device.StageProduction},
			FR:       device.FR{Enabled: true, Mode: "verify_1to1", Purpose: purpose},
			Location: device.Location{Category: "residential_gate", CaptureZoneDefined: true},
			Signage:  device.Signage{Present: true, Evidence: "photo_audit", VerifiedAt: &at},
			Notice: device.Notice{ShownBeforeCapture: true, RetentionDays: 365,
				Fields: []string{"processor_contact", "purpose", "method", "retention_period", "impact", "rights"}},
			Alternatives: device.Alternatives{Configured: []string{"ic_card"}, Healthy: []string{"ic_card"}, RefuseOptionShown: true},
			Security:     device.Security{StorageEncrypted: true, TransportTLS: true, AuditLog: true, AccessControl: true},
			PIA:          device.PIA{Ref: &ref, CompletedAt: &at, Purpose: &purpose},
		}
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: canary: %s", ErrBundleIncomplete, fmt.Sprintf(format, args...))
	}

	compliant := base()
	if d, err := g.decide(ctx, factsToAST(&compliant)); err != nil {
		return fail("%v", err)
	} else if d.Status != device.StatusCompliant {
		return fail("a compliant residential gate is judged %s: %+v", d.Status, d.Violations)
	}

	hotel := base()
	hotel.Location.Category = "hotel_guest_room"
	d, err := g.decide(ctx, factsToAST(&hotel))
	if err != nil {
		return fail("%v", err)
	}
	if !slices.Contains(d.Actions, device.ActionDisableFaceRecognition) || !slices.Contains(d.Actions, device.ActionEnableAlternatives) {
		return fail("face recognition in a hotel guest room is not switched off with alternatives on (actions %v)", d.Actions)
	}

	faceOnly := base()
	faceOnly.Alternatives = device.Alternatives{}
	d, err = g.decide(ctx, factsToAST(&faceOnly))
	if err != nil {
		return fail("%v", err)
	}
	if slices.Contains(d.Actions, device.ActionDisableFaceRecognition) || !slices.Contains(d.Actions, device.ActionEnableAlternatives) {
		return fail("a face-only door must get alternatives on and keep face on (actions %v)", d.Actions)
	}

	withdrawn := device.MatchInput{
		Subject:  device.MatchSubject{Found: true, Consent: device.BasisSeparate, Withdrawn: true, AgeBand: device.AgeAdult},
		Terminal: device.MatchTerminal{FaceRecognitionAllowed: true},
	}
	if r, err := g.matchOne(ctx, &withdrawn); err != nil {
		return fail("%v", err)
	} else if r.Allow {
		return fail("a subject who withdrew consent is allowed to match")
	}
	return nil
}
