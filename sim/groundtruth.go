package sim

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/wire"
)

// The ground truth of "nothing lost, nothing twice": a device's audit chain says exactly which events its
// agent must have published, because every event is written in the same transaction as the record that
// causes it. A recorded decision whose violations differ from the previous judged decision's caused one
// violation_opened per control that appeared and one violation_closed per control that left (a fail-safe
// decision judges nothing: it opens and closes nothing); every "action" entry caused one action event;
// every "receipt" entry's hash went out in a receipt event; every "fault" entry caused a fault event. What
// a receiver holds after deduplication on (dev, session, seq) must be exactly that.

// Truth is what a device's audit chain says it published.
type Truth struct {
	Device string
	// Chain is the verification of the chain: every check below is only as good as Chain.OK.
	Chain store.VerifyResult
	// Transitions holds, per control, its violation's openings (true) and closings (false) in order.
	Transitions map[string][]bool
	// Open are the controls failing at the last judged decision: what the fleet must show open.
	Open []string
	// Actions are the actions taken, in order (control changes and data actions alike).
	Actions []string
	// Receipts are the hashes of the deletion receipts, sorted.
	Receipts []string
	// Faults counts the faults recorded.
	Faults int
	// Decisions counts the decisions recorded; FailSafe those of them that were fail-safes.
	Decisions, FailSafe int
	// Sessions counts the agent's starts.
	Sessions int
}

// Events counts the violation, action and fault events the truth implies. Receipts travel several to an
// event, so they are counted by hash: len(Receipts).
func (t Truth) Events() int {
	n := len(t.Actions) + t.Faults
	for _, tr := range t.Transitions {
		n += len(tr)
	}
	return n
}

// Events counts the violation, action and fault events received (after deduplication).
func (r Reported) Events() int {
	n := len(r.Actions) + r.Faults
	for _, tr := range r.Transitions {
		n += len(tr)
	}
	return n
}

// TruthOf reads and verifies an open store's chain (the agent may be writing meanwhile: the chain is read
// in one snapshot).
func TruthOf(ctx context.Context, st *store.Store) (Truth, error) {
	res, err := st.Verify(ctx)
	if err != nil {
		return Truth{}, err
	}
	entries, err := st.Entries(ctx, 1, 0)
	if err != nil {
		return Truth{}, err
	}
	// The chain may have grown between the two reads; the rows added meanwhile are verified next time.
	t, err := TruthFromEntries(entries)
	t.Chain = res
	return t, err
}

// TruthOfFile reads and verifies the chain of a store file, read-only (the agent may be running).
func TruthOfFile(ctx context.Context, path string) (Truth, error) {
	st, err := store.OpenReadOnly(path)
	if err != nil {
		return Truth{}, err
	}
	defer st.Close()
	return TruthOf(ctx, st)
}

// TruthFromEntries derives the truth from chain entries in seq order (without verifying them).
func TruthFromEntries(entries []store.AuditEntry) (Truth, error) {
	t := Truth{Transitions: map[string][]bool{}}
	open := map[string]bool{}
	for _, e := range entries {
		switch e.Kind {
		case "start":
			t.Sessions++
		case "decision":
			var d struct {
				Fault    string `json:"fault"`
				Decision struct {
					Violations []struct {
						Control string `json:"control"`
					} `json:"violations"`
				} `json:"decision"`
			}
			if err := json.Unmarshal(e.Payload, &d); err != nil {
				return t, fmt.Errorf("audit seq %d: decision: %w", e.Seq, err)
			}
			t.Decisions++
			if d.Fault != "" {
				t.FailSafe++
				continue
			}
			now := map[string]bool{}
			for _, v := range d.Decision.Violations {
				now[v.Control] = true
			}
			for c := range now {
				if !open[c] {
					t.Transitions[c] = append(t.Transitions[c], true)
				}
			}
			for c := range open {
				if !now[c] {
					t.Transitions[c] = append(t.Transitions[c], false)
				}
			}
			open = now
		case "action":
			var a struct {
				Action string `json:"action"`
			}
			if err := json.Unmarshal(e.Payload, &a); err != nil {
				return t, fmt.Errorf("audit seq %d: action: %w", e.Seq, err)
			}
			t.Actions = append(t.Actions, a.Action)
		case "receipt":
			var r struct {
				Hash string `json:"hash"`
			}
			if err := json.Unmarshal(e.Payload, &r); err != nil {
				return t, fmt.Errorf("audit seq %d: receipt: %w", e.Seq, err)
			}
			t.Receipts = append(t.Receipts, r.Hash)
		case "fault":
			t.Faults++
		}
	}
	t.Open = slices.Sorted(maps.Keys(open))
	slices.Sort(t.Receipts)
	return t, nil
}

// ReportedEvent is one event as a receiver holds it: from the fleet's store or off the broker.
type ReportedEvent struct {
	Session, Seq uint64
	Kind         string
	Control      string
	Action       string
	Receipts     []string
}

// FromWire turns a wire event into a ReportedEvent.
func FromWire(e wire.Event) ReportedEvent {
	return ReportedEvent{Session: e.Session, Seq: e.Seq, Kind: e.Kind, Control: e.Control, Action: e.Action, Receipts: e.Receipts}
}

// Reported is what a receiver holds of one device, deduplicated on (session, seq).
type Reported struct {
	Transitions   map[string][]bool
	Actions       []string
	Receipts      []string
	ReceiptEvents int
	Faults        int
	// Duplicates counts the events dropped as seen before; Conflicts those that reused a (session, seq)
	// with other content, which deduplication would hide and must never happen.
	Duplicates, Conflicts int
}

// ReportedOf deduplicates one device's events on (session, seq) and orders them as the agent numbered
// them.
func ReportedOf(events []ReportedEvent) Reported {
	type key struct{ session, seq uint64 }
	seen := map[key]ReportedEvent{}
	var r Reported
	for _, e := range events {
		k := key{e.Session, e.Seq}
		if prev, ok := seen[k]; ok {
			r.Duplicates++
			if prev.Kind != e.Kind || prev.Control != e.Control || prev.Action != e.Action || !slices.Equal(prev.Receipts, e.Receipts) {
				r.Conflicts++
			}
			continue
		}
		seen[k] = e
	}
	ordered := slices.SortedFunc(maps.Values(seen), func(a, b ReportedEvent) int {
		return cmp.Or(cmp.Compare(a.Session, b.Session), cmp.Compare(a.Seq, b.Seq))
	})
	r.Transitions = map[string][]bool{}
	for _, e := range ordered {
		switch e.Kind {
		case wire.EventViolationOpened:
			r.Transitions[e.Control] = append(r.Transitions[e.Control], true)
		case wire.EventViolationClosed:
			r.Transitions[e.Control] = append(r.Transitions[e.Control], false)
		case wire.EventAction:
			r.Actions = append(r.Actions, e.Action)
		case wire.EventReceipt:
			r.ReceiptEvents++
			r.Receipts = append(r.Receipts, e.Receipts...)
		case wire.EventFault:
			r.Faults++
		}
	}
	slices.Sort(r.Receipts)
	return r
}

// Missing compares what a receiver holds with the truth and says what differs ("" when nothing does):
// an event missing, one too many, or out of its order.
func (t Truth) Missing(r Reported) string {
	var diffs []string
	for _, c := range slices.Sorted(maps.Keys(mergeKeys(t.Transitions, r.Transitions))) {
		if want, got := t.Transitions[c], r.Transitions[c]; !slices.Equal(want, got) {
			diffs = append(diffs, fmt.Sprintf("%s: recorded %s, received %s", c, transitions(want), transitions(got)))
		}
	}
	if !slices.Equal(t.Actions, r.Actions) {
		diffs = append(diffs, fmt.Sprintf("actions: recorded %v, received %v", t.Actions, r.Actions))
	}
	if !slices.Equal(t.Receipts, r.Receipts) {
		diffs = append(diffs, fmt.Sprintf("receipts: recorded %d, received %d", len(t.Receipts), len(r.Receipts)))
	}
	if t.Faults != r.Faults {
		diffs = append(diffs, fmt.Sprintf("faults: recorded %d, received %d", t.Faults, r.Faults))
	}
	if r.Conflicts > 0 {
		diffs = append(diffs, fmt.Sprintf("%d events reused a (session, seq) with other content", r.Conflicts))
	}
	return strings.Join(diffs, "; ")
}

func mergeKeys(a, b map[string][]bool) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

func transitions(ts []bool) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, open := range ts {
		if i > 0 {
			b.WriteByte(' ')
		}
		if open {
			b.WriteString("opened")
		} else {
			b.WriteString("closed")
		}
	}
	b.WriteByte(']')
	return b.String()
}
