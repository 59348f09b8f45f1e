package testpg

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	began := time.Now()
	dsn := Start(t)
	t.Logf("server and database ready in %s", time.Since(began).Round(time.Millisecond))
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES ($1, $2)`, 1, "one"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRowContext(ctx, `SELECT v FROM t WHERE id = $1`, 1).Scan(&v); err != nil || v != "one" {
		t.Fatalf("read back %q, %v", v, err)
	}
	var user string
	if err := db.QueryRowContext(ctx, `SELECT current_user`).Scan(&user); err != nil || user != "postgres" {
		t.Fatalf("current_user %q, %v", user, err)
	}
}

func TestStopRemovesDirectory(t *testing.T) {
	srv, err := StartServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s", srv.StartupTime.Round(time.Millisecond))
	dsn := srv.NewDatabase(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err != nil { // a session open across the shutdown: fast mode cuts it
		t.Fatal(err)
	}
	began := time.Now()
	srv.Stop()
	t.Logf("stopped in %s", time.Since(began).Round(time.Millisecond))
	if _, err := os.Stat(srv.Dir()); !os.IsNotExist(err) {
		t.Fatalf("directory %s left behind: %v", srv.Dir(), err)
	}
	srv.Stop() // idempotent
}

func TestSharedSchemasAreSeparate(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a == b {
		t.Fatalf("the same database twice: %s", a)
	}
	for _, dsn := range []string{a, b} {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`CREATE TABLE only_here (x INT)`); err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		db.Close()
	}
}

func TestMissingBinaries(t *testing.T) {
	defer func(g string) { binGlob = g }(binGlob)
	binGlob = filepath.Join(t.TempDir(), "*", "bin")
	_, err := StartServer()
	if err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("without PostgreSQL: %v, want an error that says to run make deps", err)
	}
}

func TestNewestVersion(t *testing.T) {
	defer func(g string) { binGlob = g }(binGlob)
	root := t.TempDir()
	for _, v := range []string{"9", "15", "13"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "initdb"), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	binGlob = filepath.Join(root, "*", "bin")
	if got, err := Binaries(); err != nil || got != filepath.Join(root, "15", "bin") {
		t.Fatalf("%s, %v; want version 15", got, err)
	}
}

func TestMain(m *testing.M) { os.Exit(Run(m)) }
