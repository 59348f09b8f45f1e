package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// groupStore is an SQLite store with a table the group-commit tests write to.
func groupStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "fleet.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.w.Exec(`CREATE TABLE g (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return s
}

func insertKey(k string) func(t *tx) error {
	return func(t *tx) error {
		_, err := t.exec(`INSERT INTO g (k) VALUES (?)`, k)
		return err
	}
}

func keys(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	rows, err := s.r.Query(`SELECT k FROM g`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		got[k] = true
	}
	return got
}

func request(ctx context.Context, fn func(t *tx) error) *writeReq {
	return &writeReq{ctx: ctx, fn: fn, err: make(chan error, 1)}
}

// A batch whose writes all succeed is one transaction, and every write of it is committed.
func TestGroupCommitBatch(t *testing.T) {
	s := groupStore(t)
	var batch []*writeReq
	for i := range 5 {
		batch = append(batch, request(context.Background(), insertKey(fmt.Sprint(i))))
	}
	s.group.commit(batch)
	for i, r := range batch {
		if err := <-r.err; err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if got := keys(t, s); len(got) != 5 {
		t.Errorf("committed %v, want 5 keys", got)
	}
	if s.batches.Load() != 1 || s.splits.Load() != 0 {
		t.Errorf("batches %d splits %d, want 1 and 0", s.batches.Load(), s.splits.Load())
	}
}

// One failing write of a batch fails alone: the others are committed, each caller gets its own answer.
func TestGroupCommitFailureIsOnlyItsOwn(t *testing.T) {
	s := groupStore(t)
	boom := errors.New("boom")
	batch := []*writeReq{
		request(context.Background(), insertKey("a")),
		request(context.Background(), func(t *tx) error {
			if err := insertKey("b")(t); err != nil {
				return err
			}
			return boom // after writing: its write must not survive
		}),
		request(context.Background(), insertKey("a")), // a constraint violation, after "a" above
		request(context.Background(), insertKey("c")),
	}
	s.group.commit(batch)
	want := []error{nil, boom, nil, nil}
	for i, r := range batch {
		err := <-r.err
		switch {
		case i == 2 && err == nil:
			t.Errorf("write 2 (a duplicate key) succeeded")
		case i != 2 && !errors.Is(err, want[i]):
			t.Errorf("write %d: %v, want %v", i, err, want[i])
		}
	}
	got := keys(t, s)
	if !got["a"] || got["b"] || !got["c"] || len(got) != 2 {
		t.Errorf("committed %v, want a and c", got)
	}
	if s.splits.Load() != 1 {
		t.Errorf("splits %d, want 1", s.splits.Load())
	}
}

// A write whose caller has given up before its turn is not run.
func TestGroupCommitCancelled(t *testing.T) {
	s := groupStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	batch := []*writeReq{request(ctx, insertKey("gone")), request(context.Background(), insertKey("kept"))}
	s.group.commit(batch)
	if err := <-batch[0].err; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v", err)
	}
	if err := <-batch[1].err; err != nil {
		t.Errorf("write: %v", err)
	}
	if got := keys(t, s); got["gone"] || !got["kept"] {
		t.Errorf("committed %v", got)
	}
}

// Concurrent writers through the store's own path all commit; after Close a write is refused, not hung.
func TestGroupCommitConcurrentAndClose(t *testing.T) {
	s := groupStore(t)
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.write(context.Background(), "insert", insertKey(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := keys(t, s); len(got) != 400 {
		t.Errorf("%d keys committed, want 400", len(got))
	}
	t.Logf("400 writes in %d shared transactions", s.batches.Load())
	s.Close()
	if err := s.write(context.Background(), "insert", insertKey("late")); !errors.Is(err, errClosed) {
		t.Errorf("write after Close: %v, want %v", err, errClosed)
	}
}
