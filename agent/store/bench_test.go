package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkAppend is one audit entry per transaction: a durable commit (synchronous=FULL) each time.
func BenchmarkAppend(b *testing.B) {
	s, _, _ := openTest(b, Options{})
	ctx := context.Background()
	payload := map[string]any{"action": "delete_raw_captures", "count": 3, "receipts": []string{strings.Repeat("ab", 32)}}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Tx(ctx, func(tx *Tx) error {
			_, err := tx.Append("action", payload)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTxEvaluation is one step of the agent: an evaluation, three audit entries and two outbox
// messages (an event and the coalesced compliance summary) in one durable transaction.
func BenchmarkTxEvaluation(b *testing.B) {
	s, _, _ := openTest(b, Options{})
	ctx := context.Background()
	var failing []map[string]string
	for i := 0; i < 12; i++ {
		failing = append(failing, map[string]string{"control": fmt.Sprintf("control.%d", i), "severity": "high"})
	}
	decision, _ := json.Marshal(map[string]any{"status": "non_compliant", "violations": failing, "actions": []string{"disable_fr"}})
	event := []byte(`{"v":1,"type":"event","dev":"d1","session":1,"seq":1,"ts":"2025-06-01T08:00:00Z","event_id":"e1","kind":"violation_opened"}`)
	compliance := []byte(fmt.Sprintf(`{"v":1,"type":"compliance","status":"non_compliant","failing":%s}`, must(json.Marshal(failing))))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Tx(ctx, func(tx *Tx) error {
			id, err := tx.RecordEvaluation(Evaluation{FactsSHA256: strings.Repeat("f", 64), PolicyRevision: "builtin-1",
				Status: "non_compliant", Decision: decision})
			if err != nil {
				return err
			}
			if _, err := tx.Append("decision", map[string]any{"evaluation": id, "status": "non_compliant", "failing": 12}); err != nil {
				return err
			}
			if _, err := tx.Append("action", map[string]any{"action": "disable_fr", "ok": true}); err != nil {
				return err
			}
			if _, err := tx.Append("receipt", map[string]any{"deleted": 2, "receipts": []string{strings.Repeat("ab", 32)}}); err != nil {
				return err
			}
			return tx.Enqueue(
				OutMsg{Topic: "faceguard/v1/dev/d1/event", Payload: event, QoS: 1},
				OutMsg{Topic: "faceguard/v1/dev/d1/compliance", Payload: compliance, QoS: 1, Retained: true, CoalesceKey: "compliance"},
			)
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify walks a chain of 10,000 entries.
func BenchmarkVerify(b *testing.B) {
	s, _, _ := openTest(b, Options{})
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if err := s.Tx(ctx, func(tx *Tx) error {
			for j := 0; j < 100; j++ {
				if _, err := tx.Append("decision", map[string]any{"i": i*100 + j, "status": "compliant"}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := s.Verify(ctx)
		if err != nil || !res.OK {
			b.Fatal(res, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
