package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/storetest"
	"github.com/faceguard/faceguard/internal/testpg"
	"github.com/faceguard/faceguard/wire"
)

// One PostgreSQL server for the package, a fresh database per store.
func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }

func open(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func sqliteDSN(t testing.TB) string { return filepath.Join(t.TempDir(), "fleet.db") }

// dialects are the databases every test runs on, each giving the DSN of a fresh, empty database.
var dialects = []struct {
	name string
	dsn  func(t testing.TB) string
}{
	{"sqlite", sqliteDSN},
	{"postgres", testpg.Shared},
}

func TestContract(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) fleet.Store { return open(t, d.dsn(t)) })
		})
	}
}

func TestConcurrentControllers(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			var handles []*Store
			storetest.RunConcurrent(t, func(t *testing.T) (fleet.Store, fleet.Store) {
				dsn := d.dsn(t)
				a, b := open(t, dsn), open(t, dsn)
				handles = append(handles, a, b)
				return a, b
			})
			var retries int64
			for _, s := range handles {
				retries += s.retries.Load()
			}
			t.Logf("transactions retried after a deadlock or serialisation failure: %d", retries)
		})
	}
}

func TestSchemaNewerRefused(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			dsn := d.dsn(t)
			s := open(t, dsn)
			if _, err := s.w.Exec(s.d.rebind(`UPDATE meta SET value = ? WHERE key = 'schema_version'`), "99"); err != nil {
				t.Fatal(err)
			}
			_, err := Open(context.Background(), dsn, Options{})
			if !errors.Is(err, ErrSchemaNewer) {
				t.Fatalf("opening a schema 99 database: %v, want ErrSchemaNewer", err)
			}
			t.Log(err)
		})
	}
}

func TestReopenKeepsFleet(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			dsn := d.dsn(t)
			ctx := context.Background()
			s, err := Open(ctx, dsn, Options{})
			if err != nil {
				t.Fatal(err)
			}
			b := wire.Birth{Envelope: wire.Envelope{V: 1, Type: wire.TypeBirth, Dev: "d1", Session: 1, Seq: 1, TS: time.Now()}, Site: "s"}
			if ok, err := s.ApplyBirth(ctx, b, time.Now()); !ok || err != nil {
				t.Fatalf("birth: %v %v", ok, err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, dsn)
			if d, err := s.Device(ctx, "d1"); err != nil || d.Site != "s" {
				t.Fatalf("after reopening: %+v, %v", d, err)
			}
			if ok, err := s.ApplyBirth(ctx, b, time.Now()); ok || err != nil {
				t.Fatalf("the same birth after reopening: %v %v", ok, err)
			}
		})
	}
}

// Two controllers starting at once on a new database: one migrates, the other waits and finds it done.
func TestConcurrentOpen(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			dsn := d.dsn(t)
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := Open(context.Background(), dsn, Options{})
					if err == nil {
						err = s.Close()
					}
					errs[i] = err
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestSQLiteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a?b#c%d.db") // URI syntax in a plain path
	open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	uri := "file:" + filepath.Join(dir, "uri.db") + "?_cache_size=-1000"
	s := open(t, uri)
	if s.Dialect() != "sqlite" {
		t.Fatalf("dialect %s", s.Dialect())
	}
	if _, err := os.Stat(filepath.Join(dir, "uri.db")); err != nil {
		t.Fatal(err)
	}
	for _, dsn := range []string{":memory:", "file::memory:", "file:x?mode=memory", ""} {
		if _, err := Open(context.Background(), dsn, Options{}); err == nil {
			t.Fatalf("%q was accepted", dsn)
		}
	}
}

func TestSQLiteReadersAreQueryOnly(t *testing.T) {
	s := open(t, sqliteDSN(t))
	if _, err := s.r.Exec(`INSERT INTO meta (key, value) VALUES ('x', 'y')`); err == nil {
		t.Fatal("a read connection wrote")
	}
}

func TestRebind(t *testing.T) {
	for _, c := range []struct{ in, sqlite, pg string }{
		{"SELECT 1", "SELECT 1", "SELECT 1"},
		{"a = ? AND b IN (?, ?)", "a = ? AND b IN (?, ?)", "a = $1 AND b IN ($2, $3)"},
	} {
		if got := sqlite.rebind(c.in); got != c.sqlite {
			t.Errorf("sqlite %q: %q", c.in, got)
		}
		if got := postgres.rebind(c.in); got != c.pg {
			t.Errorf("postgres %q: %q", c.in, got)
		}
	}
}

func TestLikePattern(t *testing.T) {
	for in, want := range map[string]string{"Dev-01": "%dev-01%", "100%": `%100\%%`, "a_b": `%a\_b%`, `c\d`: `%c\\d%`, "东门": "%东门%"} {
		if got := likePattern(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestOutOfRangeSeqRefused(t *testing.T) {
	s := open(t, sqliteDSN(t))
	st := wire.State{Envelope: wire.Envelope{V: 1, Type: wire.TypeState, Dev: "d1", Session: 1 << 63, Seq: 1, TS: time.Now()}, State: "online"}
	if _, err := s.ApplyState(context.Background(), st, time.Now()); !errors.Is(err, wire.ErrMessage) {
		t.Fatalf("a session beyond int64: %v, want wire.ErrMessage (the controller drops it)", err)
	}
}

// The PostgreSQL types hold what the code relies on: byte-order collation on text.
func TestPostgresCollation(t *testing.T) {
	s := open(t, testpg.Shared(t))
	var coll sql.NullString
	if err := s.r.QueryRow(`SELECT collation_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'devices' AND column_name = 'id'`).Scan(&coll); err != nil {
		t.Fatal(err)
	}
	if coll.String != "C" {
		t.Fatalf("devices.id collation %q, want C", coll.String)
	}
}
