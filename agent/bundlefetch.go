package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/wire"
)

// Pull protocol tuning (research/mqtt.md §2.6): a few chunks in flight, re-requested when they do not come.
const (
	chunkWindow      = 4
	chunkRetryAfter  = 10 * time.Second
	bundleFetchLimit = 15 * time.Minute
	maxOfferedBundle = engine.DefaultMaxBundleBytes
)

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// bundleFetch collects the chunks of one offered bundle. Each chunk is checked against the hash the
// signed offer lists for it, so a chunk from anyone but the controller is dropped on arrival.
type bundleFetch struct {
	offer  wire.BundleOfferArgs
	mu     sync.Mutex
	chunks [][]byte
	got    chan struct{}
}

func (f *bundleFetch) missing() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, c := range f.chunks {
		if c == nil {
			out = append(out, i)
		}
	}
	return out
}

// fetchBundle pulls an offered bundle in chunks, verifies it and activates it; on any failure the active
// policy stays and the answer says why.
func (a *Agent) fetchBundle(ctx context.Context, cmd wire.Command) (string, string, any) {
	var offer wire.BundleOfferArgs
	if err := json.Unmarshal(cmd.Args, &offer); err != nil {
		return wire.ResultRejected, "args: " + err.Error(), nil
	}
	if err := validOffer(offer); err != nil {
		return wire.ResultRejected, err.Error(), nil
	}
	active := a.eng.Info()
	if active.Revision == offer.Revision && active.SHA256 == offer.SHA256 {
		// Offered again what already runs (a retry, a re-sent fleet push): nothing to fetch.
		return wire.ResultSucceeded, "", map[string]any{"revision": active.Revision, "sha256": active.SHA256, "already_active": true}
	}
	if !engine.RevisionNewer(offer.Revision, active.Revision) {
		return wire.ResultRejected, fmt.Sprintf("revision %s is not newer than the active %s", offer.Revision, active.Revision), nil
	}
	f := &bundleFetch{offer: offer, chunks: make([][]byte, len(offer.ChunkSHA256)), got: make(chan struct{}, 1)}
	a.cmdMu.Lock()
	if _, busy := a.fetches[offer.Revision]; busy {
		a.cmdMu.Unlock()
		return wire.ResultRejected, "this revision is already being fetched", nil
	}
	a.fetches[offer.Revision] = f
	a.cmdMu.Unlock()
	defer func() {
		a.cmdMu.Lock()
		delete(a.fetches, offer.Revision)
		a.cmdMu.Unlock()
	}()

	deadline := a.clock.Now().Add(bundleFetchLimit)
	if cmd.ExpiresAt.Before(deadline) {
		deadline = cmd.ExpiresAt
	}
	for {
		missing := f.missing()
		if len(missing) == 0 {
			break
		}
		if !a.clock.Now().Before(deadline) {
			return wire.ResultFailed, fmt.Sprintf("%d of %d chunks did not arrive in time; the active policy stays",
				len(missing), len(f.chunks)), nil
		}
		if err := a.requestChunks(ctx, cmd.ID, offer.Revision, missing); err != nil {
			return wire.ResultFailed, "request chunks: " + err.Error(), nil
		}
		wait := time.NewTimer(chunkRetryAfter)
	waiting:
		for {
			select {
			case <-ctx.Done():
				wait.Stop()
				return wire.ResultFailed, "agent stopping; the active policy stays", nil
			case <-wait.C:
				break waiting
			case <-f.got:
				if m := f.missing(); len(m) == 0 || len(m) <= len(missing)-chunkWindow {
					wait.Stop()
					break waiting
				}
			}
		}
	}

	raw := bytes.Join(f.chunks, nil)
	sum := sha256.Sum256(raw)
	if len(raw) != offer.Size || hex.EncodeToString(sum[:]) != offer.SHA256 {
		return wire.ResultFailed, "the assembled bundle does not match the offer's size and hash; the active policy stays", nil
	}
	info, err := a.eng.ActivateBundle(ctx, raw)
	if errors.Is(err, engine.ErrBundleNotNewer) && a.eng.Info().SHA256 == offer.SHA256 {
		// The same bundle was activated meanwhile (a second offer of it raced this one, or an engine
		// shared by simulated devices): it is the active policy, which is what was asked.
		active := a.eng.Info()
		return wire.ResultSucceeded, "", map[string]any{"revision": active.Revision, "sha256": active.SHA256, "already_active": true}
	}
	now := a.clock.Now().UTC()
	_ = a.st.Tx(context.WithoutCancel(ctx), func(tx *store.Tx) error {
		entry := map[string]any{"command": cmd.ID, "revision": offer.Revision, "sha256": offer.SHA256}
		ev := wire.Event{Envelope: a.envelope(wire.TypeEvent), Kind: wire.EventBundle, At: now}
		if err != nil {
			entry["refused"] = err.Error()
			ev.Detail = fmt.Sprintf("bundle %s refused: %v", offer.Revision, err)
		} else {
			entry["activated"] = true
			ev.Detail = "bundle " + info.Revision + " activated"
		}
		if _, err := tx.Append("bundle", entry); err != nil {
			return err
		}
		return a.enqueueEvent(tx, &ev)
	})
	if err != nil {
		return wire.ResultFailed, fmt.Sprintf("bundle refused, the active policy stays: %v", err), nil
	}
	if err := a.enqueueBirth(ctx); err != nil {
		a.log.Error("birth after bundle", "err", err)
	}
	a.Reevaluate("bundle " + info.Revision)
	return wire.ResultSucceeded, "", map[string]string{"revision": info.Revision, "sha256": info.SHA256}
}

func validOffer(o wire.BundleOfferArgs) error {
	switch {
	case !regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`).MatchString(o.Revision):
		return fmt.Errorf("args: revision %q", o.Revision)
	case o.Size <= 0 || o.Size > maxOfferedBundle:
		return fmt.Errorf("args: size %d (at most %d)", o.Size, maxOfferedBundle)
	case o.ChunkSize != wire.ChunkSize:
		return fmt.Errorf("args: chunk_size %d, want %d", o.ChunkSize, wire.ChunkSize)
	case len(o.ChunkSHA256) != (o.Size+o.ChunkSize-1)/o.ChunkSize:
		return fmt.Errorf("args: %d chunk hashes for %d bytes", len(o.ChunkSHA256), o.Size)
	case !sha256Pattern.MatchString(o.SHA256):
		return fmt.Errorf("args: sha256 %q", o.SHA256)
	}
	for i, h := range o.ChunkSHA256 {
		if !sha256Pattern.MatchString(h) {
			return fmt.Errorf("args: chunk_sha256[%d] %q", i, h)
		}
	}
	return nil
}

// requestChunks asks for the missing chunks, a window at a time from the first missing.
func (a *Agent) requestChunks(ctx context.Context, cmdID, rev string, missing []int) error {
	from := missing[0]
	count := min(chunkWindow, len(missing))
	// Ask for a contiguous run: the controller serves [from, from+count).
	for i := 1; i < count; i++ {
		if missing[i] != from+i {
			count = i
			break
		}
	}
	g := wire.BundleGet{Envelope: a.envelope(wire.TypeBundleGet), Command: cmdID, Revision: rev, From: from, Count: count}
	b, err := marshal(g)
	if err != nil {
		return err
	}
	err = a.st.Tx(ctx, func(tx *store.Tx) error {
		return tx.Enqueue(store.OutMsg{Topic: wire.BundleGetTopic(a.opts.DeviceID), Payload: b, QoS: 1})
	})
	a.kick()
	return err
}

// receiveChunk keeps a chunk of a bundle being fetched if its hash is the one the signed offer lists.
func (a *Agent) receiveChunk(rev string, n int, payload []byte) {
	a.cmdMu.Lock()
	f := a.fetches[rev]
	a.cmdMu.Unlock()
	if f == nil || n >= len(f.chunks) || len(payload) > wire.ChunkSize {
		return // not being fetched, or not a chunk of it
	}
	sum := sha256.Sum256(payload)
	if hex.EncodeToString(sum[:]) != f.offer.ChunkSHA256[n] {
		a.log.Warn("bundle chunk does not match the offer; dropped", "revision", rev, "chunk", n)
		return
	}
	f.mu.Lock()
	f.chunks[n] = bytes.Clone(payload)
	f.mu.Unlock()
	select {
	case f.got <- struct{}{}:
	default:
	}
}
