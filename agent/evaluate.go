package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/wire"
)

// evalRequest asks the loop for an evaluation; done, if set, receives the outcome.
type evalRequest struct {
	reason string
	done   chan<- evalOutcome
}

// evalOutcome is what a command waiting on an evaluation is told.
type evalOutcome struct {
	Status   string `json:"status"`
	Critical int    `json:"critical"`
	High     int    `json:"high"`
	Medium   int    `json:"medium"`
	Low      int    `json:"low"`
	Fault    string `json:"fault,omitempty"`
}

// request queues an evaluation without blocking: if the queue is full an evaluation is pending anyway.
func (a *Agent) request(reason string, done chan<- evalOutcome) {
	select {
	case a.requests <- evalRequest{reason: reason, done: done}:
	default:
		if done != nil {
			go func() { a.requests <- evalRequest{reason: reason, done: done} }()
		}
	}
}

// loop runs evaluations one at a time; requests that arrive during one are served by the next.
func (a *Agent) loop(ctx context.Context) {
	for {
		var first evalRequest
		select {
		case <-ctx.Done():
			return
		case first = <-a.requests:
		}
		batch := []evalRequest{first}
	collect:
		for {
			select {
			case r := <-a.requests:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		out := a.runEvaluation(ctx, first.reason)
		for _, r := range batch {
			if r.done != nil {
				r.done <- out
			}
		}
	}
}

// runEvaluation evaluates, enforces and records; when enforcement changed the terminal it evaluates once
// more, so the record shows the state after the fix (a violation opened, the action, the violation closed).
func (a *Agent) runEvaluation(ctx context.Context, reason string) (out evalOutcome) {
	defer a.schedulePeriodic()
	defer func() {
		if r := recover(); r != nil {
			out = a.failSafe(ctx, reason, fmt.Errorf("panic during evaluation: %v", r))
		}
	}()
	out, changed := a.evaluateOnce(ctx, reason)
	if changed {
		out, _ = a.evaluateOnce(ctx, reason+"+after-enforcement")
	}
	a.scheduleRawExpiry(ctx)
	a.reannounceIfChanged(ctx)
	a.pruneJournal(ctx)
	return out
}

// evaluateOnce is one pass of gather → evaluate → enforce → record. changed reports whether enforcement
// changed anything on the terminal.
func (a *Agent) evaluateOnce(ctx context.Context, reason string) (evalOutcome, bool) {
	facts, err := a.term.Facts(ctx)
	if err != nil {
		return a.failSafe(ctx, reason, fmt.Errorf("gather facts: %w", err)), false
	}
	decision, err := a.eng.Decide(ctx, &facts)
	if err != nil {
		return a.failSafe(ctx, reason, err), false
	}
	ctrl := a.controlFor(decision)
	var applied []appliedAction
	var faults []string
	changedCtrl, err := a.term.ApplyControl(ctx, ctrl)
	ctrlApplied := err == nil
	if err != nil {
		faults = append(faults, fmt.Sprintf("apply control: %v", err))
	}
	for _, act := range decision.Actions {
		res, err := a.enforce(ctx, act)
		switch {
		case err != nil:
			faults = append(faults, fmt.Sprintf("%s: %v", act, err))
		case res != nil && res.Outcome.Count > 0:
			applied = append(applied, *res)
		}
	}
	// The summary counts the quarantined subjects; if the gallery cannot say, the last count stands.
	if n, err := a.term.QuarantinedCount(ctx); err == nil {
		a.quarantined.Store(int64(n))
	}
	a.current.Store(&snapshot{facts: facts, decision: decision, control: ctrl, at: a.clock.Now()})
	if err := a.record(ctx, reason, &facts, decision, ctrl, ctrlApplied, applied, faults, ""); err != nil {
		a.log.Error("record evaluation", "err", err)
	}
	if !facts.IsUnknown(device.GroupSubjects) {
		a.publishSubjects(ctx, facts.Subjects.Count)
	}
	return outcomeOf(decision, ""), len(applied) > 0 || changedCtrl
}

// appliedAction is a data action that changed something, for the record.
type appliedAction struct {
	Action  string
	Outcome device.Outcome
	Count   int
}

// controlFor turns the decision's actions into the orders of control.json. An order that is not in the
// actions is lifted: control.json always says the whole current truth.
func (a *Agent) controlFor(d device.Decision) device.Control {
	reason := func(action string) *device.Reason {
		catalog := a.eng.Catalog()
		for _, v := range d.Violations {
			if c, ok := catalog[v.Control]; ok && c.Action != nil && *c.Action == action {
				return &device.Reason{Control: v.Control, ZH: v.Message.ZH, EN: v.Message.EN}
			}
		}
		return nil
	}
	permission := func(forbiddenBy string) device.Permission {
		if slices.Contains(d.Actions, forbiddenBy) {
			return device.Permission{Allowed: false, Reason: reason(forbiddenBy)}
		}
		return device.Permission{Allowed: true}
	}
	c := device.Control{
		FaceRecognition: permission(device.ActionDisableFaceRecognition),
		Enrolment:       permission(device.ActionBlockEnrolment),
		FaceDataEgress:  permission(device.ActionBlockFaceDataEgress),
	}
	// Never lock a person out: whenever face recognition is off, the other ways through are on.
	c.AlternativesRequiredOn = slices.Contains(d.Actions, device.ActionEnableAlternatives) || !c.FaceRecognition.Allowed
	return c
}

// enforce carries out one data action through the terminal. Control actions are in ApplyControl.
func (a *Agent) enforce(ctx context.Context, action string) (*appliedAction, error) {
	var (
		o   device.Outcome
		err error
	)
	switch action {
	case device.ActionDisableFaceRecognition, device.ActionEnableAlternatives,
		device.ActionBlockFaceDataEgress, device.ActionBlockEnrolment:
		return nil, nil // carried by control.json
	case device.ActionDeleteRawImages:
		o, err = a.term.DeleteRawImages(ctx, a.rawImageMaxAge())
	case device.ActionPurgeWithdrawnSubjects:
		o, err = a.term.PurgeWithdrawnSubjects(ctx, "FRM-06-WITHDRAWAL")
	case device.ActionPurgeExpiredSubjects:
		o, err = a.term.PurgeExpiredSubjects(ctx, "FRM-08-RETENTION")
	case device.ActionQuarantineUnconsentedSubjects:
		o, err = a.term.QuarantineUnconsentedSubjects(ctx, "FRM-06-CONSENT")
	case device.ActionQuarantineMinorsWithoutGuardian:
		o, err = a.term.QuarantineMinorsWithoutGuardian(ctx, "FRM-07-MINORS")
	default:
		// A newer policy may order what this agent cannot do: say so, do not pretend.
		return nil, fmt.Errorf("this agent does not know the action %q", action)
	}
	if err != nil {
		return nil, err
	}
	return &appliedAction{Action: action, Outcome: o, Count: o.Count}, nil
}

func (a *Agent) rawImageMaxAge() time.Duration {
	if n, ok := a.eng.ConfigInt("raw_image_max_s"); ok && n >= 0 {
		return time.Duration(n) * time.Second
	}
	return 10 * time.Second
}

// failSafe is what the agent does when it cannot judge the terminal: face recognition off, enrolment and
// face-data egress blocked, every other way through on, and the fault recorded and reported.
func (a *Agent) failSafe(ctx context.Context, reason string, cause error) evalOutcome {
	a.log.Error("failing safe: face recognition off, alternatives on", "err", cause)
	why := &device.Reason{Control: device.FailSafeControl,
		ZH: "无法完成合规评估，已按安全原则关闭人脸识别，请使用刷卡等其他方式通行（" + cause.Error() + "）",
		EN: "compliance could not be evaluated, so face recognition is off as a precaution; use another way through (" + cause.Error() + ")"}
	ctrl := device.Control{
		FaceRecognition:        device.Permission{Allowed: false, Reason: why},
		Enrolment:              device.Permission{Allowed: false, Reason: why},
		FaceDataEgress:         device.Permission{Allowed: false, Reason: why},
		AlternativesRequiredOn: true,
	}
	faults := []string{cause.Error()}
	_, err := a.term.ApplyControl(ctx, ctrl)
	if err != nil {
		faults = append(faults, fmt.Sprintf("apply fail-safe control: %v", err))
	}
	prev := a.current.Load()
	snap := &snapshot{control: ctrl, failSafe: true, fault: cause.Error(), at: a.clock.Now()}
	if prev != nil {
		snap.facts = prev.facts
	}
	a.current.Store(snap)
	if err := a.record(ctx, reason, nil, device.Decision{}, ctrl, err == nil, nil, faults, cause.Error()); err != nil {
		a.log.Error("record fail-safe", "err", err)
	}
	return evalOutcome{Status: wire.StatusError, Fault: cause.Error()}
}

func outcomeOf(d device.Decision, fault string) evalOutcome {
	return evalOutcome{Status: d.Status, Critical: d.Counts.Critical, High: d.Counts.High, Medium: d.Counts.Medium,
		Low: d.Counts.Low, Fault: fault}
}

// kv keys of the agent's own state in the store.
const (
	kvLastDecision   = "last_decision_sha256"
	kvLastCompliance = "last_compliance_sha256"
	kvLastPublished  = "last_compliance_at"
	kvLastFaults     = "last_faults_sha256"
	kvLastControl    = "last_control"
)

// record writes one evaluation in a single transaction: the evaluation, what changed in the audit chain,
// the events and the compliance summary in the outbox. A crash leaves all of it or none of it.
func (a *Agent) record(ctx context.Context, reason string, facts *device.Facts, d device.Decision, ctrl device.Control,
	ctrlApplied bool, applied []appliedAction, faults []string, fault string) error {
	now := a.clock.Now().UTC()
	policy := a.eng.Info()
	var factsSum string
	var unknown []string
	if facts != nil {
		b, _ := json.Marshal(facts)
		factsSum = sha256Hex(b)
		for _, u := range facts.Unknown {
			unknown = append(unknown, u.Fact)
		}
	}
	status := d.Status
	if fault != "" {
		status = wire.StatusError
	}
	decisionJSON, _ := json.Marshal(d)
	decisionSum := sha256Hex(append([]byte(status+"\n"+fault+"\n"), decisionJSON...))

	err := a.st.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.RecordEvaluation(store.Evaluation{At: now, FactsSHA256: factsSum, PolicyRevision: policy.Revision,
			Status: status, Decision: decisionJSON}); err != nil {
			return err
		}
		last, _, err := tx.Get(kvLastDecision)
		if err != nil {
			return err
		}
		if last != decisionSum {
			entry := map[string]any{"reason": reason, "status": status, "policy": policy.Revision, "facts_sha256": factsSum,
				"decision": json.RawMessage(decisionJSON), "unknown": unknown}
			if fault != "" {
				entry["fault"] = fault
			}
			if _, err := tx.Append("decision", entry); err != nil {
				return err
			}
			if err := tx.Put(kvLastDecision, decisionSum); err != nil {
				return err
			}
		}
		if ctrlApplied {
			if err := a.recordControl(tx, now, ctrl, decisionSum); err != nil {
				return err
			}
		}
		for _, act := range applied {
			if _, err := tx.Append("action", map[string]any{"action": act.Action, "count": act.Count,
				"decision_sha256": decisionSum}); err != nil {
				return err
			}
			ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventAction, At: now, Action: act.Action, Count: act.Count}
			if err := a.enqueueEvent(tx, &ev); err != nil {
				return err
			}
			if len(act.Outcome.Receipts) > 0 {
				hashes := make([]string, 0, len(act.Outcome.Receipts))
				for _, r := range act.Outcome.Receipts {
					if _, err := tx.Append("receipt", r); err != nil {
						return err
					}
					hashes = append(hashes, r.Hash)
				}
				// A purge of thousands would not fit one message (wire.MaxPayload): the receipts go in parts.
				for part := range slices.Chunk(hashes, maxReceiptsPerEvent) {
					rev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventReceipt, At: now, Action: act.Action,
						Count: len(part), Receipts: part}
					if err := a.enqueueEvent(tx, &rev); err != nil {
						return err
					}
				}
			}
		}
		if err := a.recordFaults(tx, now, faults); err != nil {
			return err
		}
		if fault == "" {
			if err := a.diffViolations(tx, now, d); err != nil {
				return err
			}
		}
		return a.enqueueCompliance(tx, now, status, d, ctrl, unknown, fault, policy.Revision, policy.SHA256)
	})
	if err == nil && a.link != nil {
		a.link.Kick()
	}
	return err
}

// recordControl records each change of the terminal's orders as the action it is, against the last
// orders applied (kept in the store, so a restart does not report everything again).
func (a *Agent) recordControl(tx *store.Tx, now time.Time, ctrl device.Control, decisionSum string) error {
	var prev device.Control
	prevJSON, ok, err := tx.Get(kvLastControl)
	if err != nil {
		return err
	}
	if !ok {
		// A terminal starts with nothing forbidden and nothing required of it.
		prev = device.Control{FaceRecognition: device.Permission{Allowed: true}, Enrolment: device.Permission{Allowed: true},
			FaceDataEgress: device.Permission{Allowed: true}}
	} else if err := json.Unmarshal([]byte(prevJSON), &prev); err != nil {
		return fmt.Errorf("last control: %w", err)
	}
	for _, change := range controlChanges(prev, ctrl) {
		entry := map[string]any{"action": change.action, "decision_sha256": decisionSum}
		if change.reason != nil {
			entry["reason"] = change.reason
		}
		if _, err := tx.Append("action", entry); err != nil {
			return err
		}
		ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventAction, At: now, Action: change.action}
		if change.reason != nil {
			ev.Control = change.reason.Control
			ev.Message = &wire.Text{ZH: change.reason.ZH, EN: change.reason.EN}
		}
		if err := a.enqueueEvent(tx, &ev); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(ctrl)
	return tx.Put(kvLastControl, string(b))
}

type controlChange struct {
	action string
	reason *device.Reason
}

// controlChanges names what changed between two sets of orders, as actions.
func controlChanges(prev, next device.Control) []controlChange {
	var out []controlChange
	perm := func(p, n device.Permission, forbid, allow string) {
		switch {
		case p.Allowed && !n.Allowed:
			out = append(out, controlChange{forbid, n.Reason})
		case !p.Allowed && n.Allowed:
			out = append(out, controlChange{allow, nil})
		}
	}
	perm(prev.FaceRecognition, next.FaceRecognition, device.ActionDisableFaceRecognition, "restore_face_recognition")
	if !prev.AlternativesRequiredOn && next.AlternativesRequiredOn {
		out = append(out, controlChange{device.ActionEnableAlternatives, nil})
	} else if prev.AlternativesRequiredOn && !next.AlternativesRequiredOn {
		out = append(out, controlChange{"release_alternatives", nil})
	}
	perm(prev.FaceDataEgress, next.FaceDataEgress, device.ActionBlockFaceDataEgress, "allow_face_data_egress")
	perm(prev.Enrolment, next.Enrolment, device.ActionBlockEnrolment, "allow_enrolment")
	return out
}

// recordFaults reports faults when they change, not every minute they persist.
func (a *Agent) recordFaults(tx *store.Tx, now time.Time, faults []string) error {
	b, _ := json.Marshal(faults)
	sum := sha256Hex(b)
	last, _, err := tx.Get(kvLastFaults)
	if err != nil || last == sum {
		return err
	}
	if err := tx.Put(kvLastFaults, sum); err != nil {
		return err
	}
	for _, f := range faults {
		if _, err := tx.Append("fault", map[string]any{"fault": f}); err != nil {
			return err
		}
		ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventFault, At: now, Detail: f}
		if err := a.enqueueEvent(tx, &ev); err != nil {
			return err
		}
	}
	return nil
}

// diffViolations emits one event when a violation opens and one when it closes, across restarts.
func (a *Agent) diffViolations(tx *store.Tx, now time.Time, d device.Decision) error {
	open, err := tx.OpenViolations()
	if err != nil {
		return err
	}
	next := map[string]store.OpenViolation{}
	for _, v := range d.Violations {
		if prev, ok := open[v.Control]; ok {
			next[v.Control] = prev
			continue
		}
		ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventViolationOpened, At: now, Control: v.Control,
			Severity: v.Severity, Articles: v.Articles, Message: &wire.Text{ZH: v.Message.ZH, EN: v.Message.EN}}
		ev.EventID = eventID(ev.Envelope)
		if err := a.enqueueEvent(tx, &ev); err != nil {
			return err
		}
		next[v.Control] = store.OpenViolation{Severity: v.Severity, OpenedAt: now, EventID: ev.EventID}
	}
	for control, prev := range open {
		if _, still := next[control]; still {
			continue
		}
		ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventViolationClosed, At: now, Control: control,
			Severity: prev.Severity, Detail: "opened by " + prev.EventID}
		if err := a.enqueueEvent(tx, &ev); err != nil {
			return err
		}
	}
	return tx.SetOpenViolations(next)
}

func (a *Agent) enqueueEvent(tx *store.Tx, ev *wire.Event) error {
	if ev.EventID == "" {
		ev.EventID = eventID(ev.Envelope)
	}
	b, err := marshal(ev)
	if err != nil {
		return err
	}
	return tx.Enqueue(store.OutMsg{Topic: wire.EventTopic(a.opts.DeviceID), Payload: b, QoS: 1})
}

// maxReceiptsPerEvent bounds a receipt event: 1,000 hashes of 64 hex digits are some 67 KB, well under
// wire.MaxPayload, which the broker and the controller enforce.
const maxReceiptsPerEvent = 1000

// eventID is stable for the life of the message: it is fixed when the event is first recorded.
func eventID(e wire.Envelope) string { return fmt.Sprintf("%s-%d-%d", e.Dev, e.Session, e.Seq) }

// enqueueCompliance queues the retained summary when it changed, or when the heartbeat is due.
func (a *Agent) enqueueCompliance(tx *store.Tx, now time.Time, status string, d device.Decision, ctrl device.Control,
	unknown []string, fault, revision, bundleSHA string) error {
	c := wire.Compliance{
		Status:   status,
		Policy:   wire.BundleInfo{Revision: revision, SHA256: bundleSHA},
		Counts:   wire.Counts(d.Counts),
		Failing:  []wire.Failing{},
		Actions:  d.Actions,
		Unknown:  unknown,
		Fault:    fault,
		FailSafe: fault != "",
		Control: wire.ControlState{
			FaceRecognitionAllowed: ctrl.FaceRecognition.Allowed, EnrolmentAllowed: ctrl.Enrolment.Allowed,
			FaceDataEgressAllowed: ctrl.FaceDataEgress.Allowed, AlternativesRequiredOn: ctrl.AlternativesRequiredOn,
			Quarantined: int(a.quarantined.Load()),
		},
	}
	if c.Actions == nil {
		c.Actions = []string{}
	}
	for _, v := range d.Violations {
		c.Failing = append(c.Failing, wire.Failing{Control: v.Control, Severity: v.Severity})
	}
	body, _ := json.Marshal(c)
	sum := sha256Hex(body)
	last, _, err := tx.Get(kvLastCompliance)
	if err != nil {
		return err
	}
	lastAt, _, err := tx.Get(kvLastPublished)
	if err != nil {
		return err
	}
	due := true
	if t, err := time.Parse(time.RFC3339Nano, lastAt); err == nil {
		due = now.Sub(t) >= a.runtime.Load().heartbeatEvery || now.Before(t) // a clock that jumped back publishes
	}
	if last == sum && !due {
		return nil
	}
	c.Envelope = a.envelope(wire.TypeCompliance)
	c.EvaluatedAt = now
	head, err := tx.Head()
	if err != nil {
		return err
	}
	c.Audit = wire.AuditHead{Seq: head.Seq, Hash: head.Hash}
	payload, err := marshal(c)
	if err != nil {
		return err
	}
	if err := tx.Put(kvLastCompliance, sum); err != nil {
		return err
	}
	if err := tx.Put(kvLastPublished, now.Format(time.RFC3339Nano)); err != nil {
		return err
	}
	return tx.Enqueue(store.OutMsg{Topic: wire.ComplianceTopic(a.opts.DeviceID), Payload: payload, QoS: 1, Retained: true,
		CoalesceKey: "compliance"})
}

// scheduleRawExpiry sets a timer for the moment the next raw capture reaches its limit, so it is deleted
// within a second of that age instead of at the next sweep.
func (a *Agent) scheduleRawExpiry(ctx context.Context) {
	at, ok, err := a.term.NextRawExpiry(ctx, a.rawImageMaxAge())
	if err != nil || !ok {
		if b := a.rawTimer.Swap(nil); b != nil {
			b.t.Stop()
		}
		return
	}
	// A few milliseconds past the exact expiry, so the capture's age has reached the limit when judged.
	d := max(at.Sub(a.clock.Now())+5*time.Millisecond, 0)
	t := a.clock.AfterFunc(d, func() { a.request("raw-expiry", nil) })
	if old := a.rawTimer.Swap(&timerBox{t}); old != nil {
		old.t.Stop()
	}
}

// schedulePeriodic re-arms the evaluation timer after every evaluation.
func (a *Agent) schedulePeriodic() {
	t := a.clock.AfterFunc(a.runtime.Load().evaluateEvery, func() { a.request("timer", nil) })
	if old := a.periodic.Swap(&timerBox{t}); old != nil {
		old.t.Stop()
	}
}

// pruneJournal forgets commands a day after they expired (a replay of one is refused as expired anyway),
// at most once an hour.
func (a *Agent) pruneJournal(ctx context.Context) {
	now := a.clock.Now()
	if last := a.lastPrune.Load(); last != nil && now.Sub(*last) < time.Hour && !now.Before(*last) {
		return
	}
	a.lastPrune.Store(&now)
	if n, err := a.st.PruneCommands(ctx, now.Add(-24*time.Hour)); err != nil {
		a.log.Warn("prune command journal", "err", err)
	} else if n > 0 {
		a.log.Debug("pruned command journal", "entries", n)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func marshal(v any) ([]byte, error) { return json.Marshal(v) }
