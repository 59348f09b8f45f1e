package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// errClosed is returned by a write after Close.
var errClosed = errors.New("store is closed")

// maxBatch bounds how many writes share one SQLite transaction.
const maxBatch = 256

// groupCommit is SQLite's writer. SQLite has one writer at a time, and with synchronous=FULL each commit
// waits for the disk; a fleet answering a command at once (10,000 devices, four messages each) would queue
// behind one sync per message. So the writes that queued while a commit was being made are committed
// together, in one transaction with one sync: a write still returns only once its own data is committed,
// and a message is still acknowledged only after that. If any write of a batch fails, the whole batch is
// rolled back and its writes run again one at a time, each in its own transaction, so one write's failure
// (a full disk, a bad message) is never another's, and every caller gets its own error or success.
//
// The writes of a batch run in the order they arrived, each seeing the ones before it: the same outcome
// as one transaction each, in that order.
type groupCommit struct {
	s    *Store
	reqs chan *writeReq
	done chan struct{}

	mu     sync.RWMutex // held for reading while a write is handed over; Close takes it to close reqs
	closed bool
}

type writeReq struct {
	ctx context.Context
	fn  func(t *tx) error
	err chan error
}

func newGroupCommit(s *Store) *groupCommit {
	g := &groupCommit{s: s, reqs: make(chan *writeReq, maxBatch), done: make(chan struct{})}
	go g.run()
	return g
}

// write hands fn to the writer and waits for its commit (or its error). A write whose ctx has ended
// before its turn is not run.
func (g *groupCommit) write(ctx context.Context, fn func(t *tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, err: make(chan error, 1)}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return errClosed
	}
	g.reqs <- r
	g.mu.RUnlock()
	return <-r.err
}

// close runs what was handed over and stops the writer.
func (g *groupCommit) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.reqs)
	}
	g.mu.Unlock()
	<-g.done
}

func (g *groupCommit) run() {
	defer close(g.done)
	batch := make([]*writeReq, 0, maxBatch)
	for first := range g.reqs {
		batch = append(batch[:0], first)
	more:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-g.reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		g.commit(batch)
	}
}

func (g *groupCommit) commit(batch []*writeReq) {
	live := make([]*writeReq, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) > 1 {
		// The statements run without the callers' cancellation: cancelling one would interrupt SQLite,
		// which rolls back the whole transaction, everybody's writes with it.
		err := g.s.runTx(context.Background(), g.s.w, nil, func(t *tx) error {
			for i, r := range live {
				if err := r.fn(&tx{ctx: context.WithoutCancel(r.ctx), tx: t.tx, d: t.d}); err != nil {
					return fmt.Errorf("write %d of %d: %w", i+1, len(live), err)
				}
			}
			return nil
		})
		if err == nil {
			for _, r := range live {
				r.err <- nil
			}
			g.s.batches.Add(1)
			return
		}
		g.s.splits.Add(1)
	}
	for _, r := range live {
		if err := r.ctx.Err(); err != nil {
			r.err <- err
			continue
		}
		r.err <- g.s.runTx(r.ctx, g.s.w, nil, r.fn)
	}
}
