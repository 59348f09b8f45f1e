package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/fleet/filing"
	"github.com/faceguard/faceguard/wire"
)

// kv keys of the last subjects sketch published.
const (
	kvSketchSum   = "subjects_sketch_sha256"
	kvSketchCount = "subjects_sketch_count"
	kvSketchAt    = "subjects_sketch_at"
)

// publishSubjects sends the filing tracker's input: a HyperLogLog sketch of the keyed hashes of the
// gallery's subjects (never a reference), retained, when the gallery's size changed or at the heartbeat,
// and only if the sketch itself changed. Without a subject key there is nothing to hash with.
func (a *Agent) publishSubjects(ctx context.Context, count int) {
	if len(a.opts.SubjectKey) == 0 || a.link == nil {
		return
	}
	var lastSum, lastCount, lastAt string
	if err := a.st.Tx(ctx, func(tx *store.Tx) error {
		var err error
		if lastSum, _, err = tx.Get(kvSketchSum); err != nil {
			return err
		}
		if lastCount, _, err = tx.Get(kvSketchCount); err != nil {
			return err
		}
		lastAt, _, err = tx.Get(kvSketchAt)
		return err
	}); err != nil {
		a.log.Error("read subjects sketch state", "err", err)
		return
	}
	now := a.clock.Now().UTC()
	due := lastCount != itoa(count)
	if t, err := time.Parse(time.RFC3339Nano, lastAt); err != nil || now.Sub(t) >= a.runtime.Load().heartbeatEvery || now.Before(t) {
		due = true
	}
	if !due {
		return
	}
	sk := filing.NewSketch()
	if err := a.term.SubjectHashes(ctx, sk.Add); err != nil {
		a.log.Warn("subjects sketch not built", "err", err)
		return
	}
	data, err := sk.MarshalBinary()
	if err != nil {
		a.log.Error("encode subjects sketch", "err", err)
		return
	}
	sum := sha256Hex(data)
	err = a.st.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.Put(kvSketchCount, itoa(count)); err != nil {
			return err
		}
		if err := tx.Put(kvSketchAt, now.Format(time.RFC3339Nano)); err != nil {
			return err
		}
		if sum == lastSum {
			return nil
		}
		msg := wire.Subjects{Envelope: a.envelope(wire.TypeSubjects), Count: count, Sketch: data}
		b, err := marshal(msg)
		if err != nil {
			return err
		}
		if err := tx.Put(kvSketchSum, sum); err != nil {
			return err
		}
		return tx.Enqueue(store.OutMsg{Topic: wire.SubjectsTopic(a.opts.DeviceID), Payload: b, QoS: 1, Retained: true,
			CoalesceKey: "subjects"})
	})
	if err != nil {
		a.log.Error("record subjects sketch", "err", err)
		return
	}
	a.kick()
}

func itoa(n int) string { return strconv.Itoa(n) }
