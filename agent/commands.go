package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/faceguard/faceguard/agent/link"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/buildinfo"
	"github.com/faceguard/faceguard/wire"
)

// commandWorker takes inbound messages one at a time: commands, and chunks of bundles being fetched.
// It is the only consumer of the link's inbox, so paho's goroutines never wait on the agent.
func (a *Agent) commandWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case in := <-a.link.Inbox():
			a.handleInbound(ctx, in)
		}
	}
}

func (a *Agent) handleInbound(ctx context.Context, in link.Inbound) {
	if _, rev, n, err := wire.ParseChunkTopic(in.Topic); err == nil {
		a.receiveChunk(rev, n, in.Payload)
		in.Ack()
		return
	}
	a.handleCommand(ctx, in)
}

// handleCommand verifies, journals, acknowledges and executes one command. The journal makes a command
// run at most once: a redelivery or a controller retry with the same id is answered from it.
func (a *Agent) handleCommand(ctx context.Context, in link.Inbound) {
	now := a.clock.Now()
	cmd, payloadHash, err := wire.VerifyCommand(in.Payload, in.Topic, a.opts.DeviceID, a.opts.ControllerKey, now)
	if err != nil {
		a.reject(ctx, in, cmd, err)
		return
	}
	digest := wire.CommandDigest(cmd)
	var (
		prev  store.JournalEntry
		known bool
	)
	err = a.st.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if prev, known, err = tx.Command(cmd.ID); err != nil || known {
			return err
		}
		if _, err := tx.Append("command", map[string]any{"id": cmd.ID, "type": cmd.Type, "issued_at": cmd.IssuedAt,
			"expires_at": cmd.ExpiresAt, "payload_sha256": payloadHash, "status": wire.ResultAccepted}); err != nil {
			return err
		}
		if err := tx.PutCommand(store.JournalEntry{ID: cmd.ID, Type: cmd.Type, PayloadSHA256: digest, ReceivedAt: now,
			ExpiresAt: cmd.ExpiresAt, Status: wire.ResultAccepted}); err != nil {
			return err
		}
		return a.enqueueResult(tx, cmd, wire.ResultAccepted, "", nil, false)
	})
	if err != nil {
		// Not journaled, so not acknowledged: the broker delivers it again.
		a.log.Error("journal command", "id", cmd.ID, "err", err)
		return
	}
	in.Ack()
	a.kick()
	if known {
		a.answerDuplicate(ctx, cmd, digest, prev)
		return
	}
	a.log.Info("command accepted", "id", cmd.ID, "type", cmd.Type)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		status, reason, result := a.execute(ctx, cmd)
		a.finish(context.WithoutCancel(ctx), cmd, status, reason, result)
	}()
}

// answerDuplicate re-sends the journaled answer of a command already seen (a redelivery, a retry, or a
// broadcast re-sent to this device). The same id with other arguments is not a redelivery but a replay
// with altered content: it is rejected.
func (a *Agent) answerDuplicate(ctx context.Context, cmd wire.Command, digest string, prev store.JournalEntry) {
	err := a.st.Tx(ctx, func(tx *store.Tx) error {
		if prev.PayloadSHA256 != digest {
			if _, err := tx.Append("command", map[string]any{"id": cmd.ID, "type": cmd.Type, "status": wire.ResultRejected,
				"reason": "replayed id with different content", "digest": digest}); err != nil {
				return err
			}
			return a.enqueueResult(tx, cmd, wire.ResultRejected, "replayed id with different content", nil, true)
		}
		ans := decodeAnswer(prev.Result)
		return a.enqueueResult(tx, cmd, prev.Status, ans.Reason, ans.Result, true)
	})
	if err != nil {
		a.log.Error("answer duplicate command", "id", cmd.ID, "err", err)
	}
	a.kick()
}

// reject answers a command that failed verification. Its id is only a hint (the command is not trusted),
// used so the operator sees the answer; one that is not even an id gets no answer, only the record.
func (a *Agent) reject(ctx context.Context, in link.Inbound, cmd wire.Command, why error) {
	a.log.Warn("command rejected", "topic", in.Topic, "reason", why)
	if cmd.ID == "" {
		cmd = untrustedCommandHint(in.Payload)
	}
	if cmd.Type == "" {
		if _, typ, err := wire.ParseCommandTopic(in.Topic); err == nil {
			cmd.Type = typ
		}
	}
	err := a.st.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.Append("command", map[string]any{"id": cmd.ID, "type": cmd.Type, "status": wire.ResultRejected,
			"reason": why.Error()}); err != nil {
			return err
		}
		if !resultIDPattern.MatchString(cmd.ID) {
			return nil
		}
		return a.enqueueResult(tx, cmd, wire.ResultRejected, why.Error(), nil, false)
	})
	if err != nil {
		a.log.Error("record rejected command", "err", err)
		return // not acknowledged: it comes again and is rejected again
	}
	in.Ack()
	a.kick()
}

var resultIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// untrustedCommandHint reads the id and type from a command that did not verify, for the answer only.
func untrustedCommandHint(payload []byte) wire.Command {
	var c wire.Command
	var sc wire.SignedCommand
	if json.Unmarshal(payload, &sc) == nil && sc.Payload != "" {
		if b, err := base64.RawURLEncoding.DecodeString(sc.Payload); err == nil {
			_ = json.Unmarshal(b, &c)
		}
	} else {
		_ = json.Unmarshal(payload, &c)
	}
	return wire.Command{ID: c.ID, Type: c.Type}
}

// execute runs a verified command. It returns the final status, a reason when it failed, and the result.
func (a *Agent) execute(ctx context.Context, cmd wire.Command) (string, string, any) {
	switch cmd.Type {
	case wire.CmdReevaluate:
		done := make(chan evalOutcome, 1)
		a.request("command "+cmd.ID, done)
		select {
		case out := <-done:
			return wire.ResultSucceeded, "", out
		case <-ctx.Done():
			return wire.ResultFailed, "agent stopping", nil
		}
	case wire.CmdRebirth:
		if err := a.enqueueBirth(ctx); err != nil {
			return wire.ResultFailed, err.Error(), nil
		}
		return wire.ResultSucceeded, "", nil
	case wire.CmdForgetSubject:
		return a.forgetSubject(ctx, cmd)
	case wire.CmdConfig:
		return a.applyConfigCommand(ctx, cmd)
	case wire.CmdBundleOffer:
		return a.fetchBundle(ctx, cmd)
	}
	return wire.ResultRejected, fmt.Sprintf("unknown command type %q", cmd.Type), nil
}

var subjectHashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// forgetSubject deletes one subject named by its keyed hash, and answers with counts and receipt hashes.
func (a *Agent) forgetSubject(ctx context.Context, cmd wire.Command) (string, string, any) {
	var args wire.ForgetArgs
	if err := json.Unmarshal(cmd.Args, &args); err != nil || !subjectHashPattern.MatchString(args.SubjectHash) {
		return wire.ResultRejected, "args: subject_hash must be 64 lower-case hex digits (the keyed hash, never the reference)", nil
	}
	o, err := a.term.ForgetSubject(ctx, args.SubjectHash, "forget-subject "+cmd.ID)
	if err != nil {
		return wire.ResultFailed, err.Error(), nil
	}
	res := wire.ForgetResult{Deleted: o.Count, Receipts: []string{}}
	now := a.clock.Now().UTC()
	err = a.st.Tx(ctx, func(tx *store.Tx) error {
		for _, r := range o.Receipts {
			if _, err := tx.Append("receipt", r); err != nil {
				return err
			}
			res.Receipts = append(res.Receipts, r.Hash)
		}
		if len(res.Receipts) == 0 {
			return nil
		}
		ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventReceipt, At: now, Action: "forget_subject",
			Count: o.Count, Receipts: res.Receipts, Detail: "command " + cmd.ID}
		return a.enqueueEvent(tx, &ev)
	})
	if err != nil {
		// The subject is gone but the receipt is not recorded: say so rather than claim success.
		return wire.ResultFailed, "deleted, but the receipt could not be recorded: " + err.Error(), res
	}
	if o.Count > 0 {
		a.Reevaluate("forget-subject")
	}
	return wire.ResultSucceeded, "", res
}

// applyConfigCommand changes run-time settings and keeps them across restarts.
func (a *Agent) applyConfigCommand(ctx context.Context, cmd wire.Command) (string, string, any) {
	var args wire.ConfigArgs
	dec := json.NewDecoder(bytes.NewReader(cmd.Args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&args); err != nil {
		return wire.ResultRejected, "args: " + err.Error(), nil
	}
	rc := *a.runtime.Load()
	if v := args.EvaluateIntervalS; v != nil {
		if *v < 1 || *v > 86400 {
			return wire.ResultRejected, "evaluate_interval_s must be 1 to 86400", nil
		}
		rc.evaluateEvery = time.Duration(*v) * time.Second
	}
	if v := args.HeartbeatS; v != nil {
		if *v < 10 || *v > 86400 {
			return wire.ResultRejected, "heartbeat_s must be 10 to 86400", nil
		}
		rc.heartbeatEvery = time.Duration(*v) * time.Second
	}
	var level *slog.Level
	if v := args.LogLevel; v != nil {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*v)); err != nil {
			return wire.ResultRejected, "log_level must be debug, info, warn or error", nil
		}
		level = &l
	}
	rc.version++
	if err := a.st.Tx(ctx, func(tx *store.Tx) error {
		b, _ := json.Marshal(map[string]any{"evaluate_s": int(rc.evaluateEvery / time.Second),
			"heartbeat_s": int(rc.heartbeatEvery / time.Second), "version": rc.version})
		if err := tx.Put(kvRuntime, string(b)); err != nil {
			return err
		}
		_, err := tx.Append("config", map[string]any{"command": cmd.ID, "version": rc.version, "args": json.RawMessage(cmd.Args)})
		return err
	}); err != nil {
		return wire.ResultFailed, err.Error(), nil
	}
	a.runtime.Store(&rc)
	if level != nil && a.logLevel != nil {
		a.logLevel.Set(*level)
	}
	a.schedulePeriodic()
	if err := a.enqueueBirth(ctx); err != nil {
		a.log.Error("birth after config", "err", err)
	}
	return wire.ResultSucceeded, "", map[string]int{"config_version": rc.version}
}

const kvRuntime = "runtime_config"

// loadRuntime restores settings a config command made before a restart.
func (a *Agent) loadRuntime(ctx context.Context) error {
	var raw string
	var ok bool
	if err := a.st.Tx(ctx, func(tx *store.Tx) error {
		var err error
		raw, ok, err = tx.Get(kvRuntime)
		return err
	}); err != nil {
		return fmt.Errorf("agent: read run-time settings: %w", err)
	}
	if !ok {
		return nil
	}
	var v struct {
		EvaluateS  int `json:"evaluate_s"`
		HeartbeatS int `json:"heartbeat_s"`
		Version    int `json:"version"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		a.log.Error("run-time settings unreadable; using the configuration file's", "err", err)
		return nil
	}
	rc := *a.runtime.Load()
	if v.EvaluateS > 0 {
		rc.evaluateEvery = time.Duration(v.EvaluateS) * time.Second
	}
	if v.HeartbeatS > 0 {
		rc.heartbeatEvery = time.Duration(v.HeartbeatS) * time.Second
	}
	rc.version = v.Version
	a.runtime.Store(&rc)
	return nil
}

// finish journals the final answer and queues it for the controller.
func (a *Agent) finish(ctx context.Context, cmd wire.Command, status, reason string, result any) {
	var raw json.RawMessage
	if result != nil {
		raw, _ = json.Marshal(result)
	}
	err := a.st.Tx(ctx, func(tx *store.Tx) error {
		prev, _, err := tx.Command(cmd.ID)
		if err != nil {
			return err
		}
		prev.Status = status
		prev.Result, _ = json.Marshal(journalAnswer{Reason: reason, Result: raw})
		if err := tx.PutCommand(prev); err != nil {
			return err
		}
		if _, err := tx.Append("command", map[string]any{"id": cmd.ID, "type": cmd.Type, "status": status, "reason": reason,
			"result": raw}); err != nil {
			return err
		}
		return a.enqueueResult(tx, cmd, status, reason, raw, false)
	})
	if err != nil {
		a.log.Error("record command result", "id", cmd.ID, "err", err)
	}
	a.log.Info("command finished", "id", cmd.ID, "type", cmd.Type, "status", status, "reason", reason)
	a.kick()
}

// journalAnswer is what the journal keeps of a final answer, to give it again to a duplicate.
type journalAnswer struct {
	Reason string          `json:"reason,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

func decodeAnswer(raw json.RawMessage) journalAnswer {
	var a journalAnswer
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &a)
	}
	return a
}

func (a *Agent) enqueueResult(tx *store.Tx, cmd wire.Command, status, reason string, result json.RawMessage, duplicate bool) error {
	r := wire.Result{Envelope: a.envelope(wire.TypeResult), ID: cmd.ID, Command: cmd.Type, Status: status,
		Reason: reason, Result: result, Duplicate: duplicate}
	b, err := marshal(r)
	if err != nil {
		return err
	}
	return tx.Enqueue(store.OutMsg{Topic: wire.ResultTopic(a.opts.DeviceID, cmd.ID), Payload: b, QoS: 1})
}

// onConnect announces the device: online state, birth, and the latest summary again (a broker that
// restarted without persistence has lost the retained ones).
//
// A device that connects before its first evaluation does not know yet what and where it is: it says it
// is online at once, and leaves its birth to the evaluation that follows (reannounceIfChanged), rather
// than announce an empty identity and a full one a moment later (at 10,000 devices, 7,000 births more).
func (a *Agent) onConnect() {
	ctx := context.Background()
	withBirth := a.current.Load() != nil
	if !withBirth {
		a.birthSaid.Store(birthPending)
	}
	if err := a.announce(ctx, true, withBirth); err != nil {
		a.log.Error("enqueue birth", "err", err)
	}
	a.Reevaluate("connect")
}

// birthPending is what birthSaid holds while a birth is due: no identity equals it.
const birthPending = "\xffpending"

// enqueueBirth queues the retained state and birth.
func (a *Agent) enqueueBirth(ctx context.Context) error { return a.announce(ctx, true, true) }

// announce queues the retained online state when online is set (and has the next evaluation publish its
// summary again: a broker that restarted without persistence has lost the retained one), and the birth
// when withBirth is set.
func (a *Agent) announce(ctx context.Context, online, withBirth bool) error {
	var msgs []store.OutMsg
	if withBirth {
		info := a.eng.Info()
		b := wire.Birth{Envelope: a.envelope(wire.TypeBirth), Agent: buildinfo.Version,
			Bundle:        wire.BundleInfo{Revision: info.Revision, SHA256: info.SHA256},
			ConfigVersion: a.runtime.Load().version, Capabilities: wire.CommandTypes}
		if s := a.current.Load(); s != nil {
			b.Kind, b.Category = s.facts.Device.Kind, s.facts.Location.Category
		}
		if st, ok := a.term.(interface{ Site() fsterm.SiteInfo }); ok {
			si := st.Site()
			b.Site, b.SiteName, b.Model, b.Firmware = si.SiteID, si.SiteName, si.Model, si.Firmware
		}
		a.birthSaid.Store(birthIdentity(b))
		bb, err := marshal(b)
		if err != nil {
			return err
		}
		msgs = append(msgs, store.OutMsg{Topic: wire.BirthTopic(a.opts.DeviceID), Payload: bb, QoS: 1, Retained: true, CoalesceKey: "birth"})
	}
	if online {
		sb, err := marshal(wire.State{Envelope: a.envelope(wire.TypeState), State: wire.StateOnline})
		if err != nil {
			return err
		}
		// The state goes first, as it always did.
		msgs = append([]store.OutMsg{{Topic: wire.StateTopic(a.opts.DeviceID), Payload: sb, QoS: 1, Retained: true, CoalesceKey: "state"}}, msgs...)
	}
	err := a.st.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.Enqueue(msgs...); err != nil {
			return err
		}
		if !online {
			return nil
		}
		// The next evaluation republishes the summary: forget what was published.
		return tx.Put(kvLastCompliance, "")
	})
	a.kick()
	return err
}

// birthIdentity is what a birth says about where and what the device is; when it changes (the first
// evaluation learns the site, an installer edits site.yaml), the device announces itself again.
func birthIdentity(b wire.Birth) string {
	return b.Site + "\x00" + b.SiteName + "\x00" + b.Kind + "\x00" + b.Category + "\x00" + b.Model + "\x00" + b.Firmware
}

// reannounceIfChanged queues a new birth when the device's identity changed since the last one.
func (a *Agent) reannounceIfChanged(ctx context.Context) {
	if a.link == nil {
		return
	}
	b := wire.Birth{}
	if s := a.current.Load(); s != nil {
		b.Kind, b.Category = s.facts.Device.Kind, s.facts.Location.Category
	}
	if st, ok := a.term.(interface{ Site() fsterm.SiteInfo }); ok {
		si := st.Site()
		b.Site, b.SiteName, b.Model, b.Firmware = si.SiteID, si.SiteName, si.Model, si.Firmware
	}
	if said, _ := a.birthSaid.Load().(string); said != birthIdentity(b) {
		if err := a.announce(ctx, false, true); err != nil {
			a.log.Error("re-announce", "err", err)
		}
	}
}

func (a *Agent) kick() {
	if a.link != nil {
		a.link.Kick()
	}
}
