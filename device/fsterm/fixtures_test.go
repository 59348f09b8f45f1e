package fsterm

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFixtureGalleries keeps every fixture's gallery.db in step with the gallery.sql next to it: the .sql
// is what people read and edit, the .db is what the collector reads. With -update it rebuilds each .db;
// without, it fails when a .db holds anything other than what its .sql produces.
func TestFixtureGalleries(t *testing.T) {
	sqlFiles, err := filepath.Glob(filepath.Join(fixturesDir, "*", "var", "lib", "terminal", "gallery.sql"))
	if err != nil || len(sqlFiles) == 0 {
		t.Fatalf("no fixture galleries: %v", err)
	}
	for _, sqlFile := range sqlFiles {
		name := strings.Split(filepath.ToSlash(strings.TrimPrefix(sqlFile, fixturesDir+string(filepath.Separator))), "/")[0]
		t.Run(name, func(t *testing.T) {
			dbFile := strings.TrimSuffix(sqlFile, ".sql") + ".db"
			if *update {
				if err := os.Remove(dbFile); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				buildGallery(t, sqlFile, dbFile)
				return
			}
			want := filepath.Join(t.TempDir(), "gallery.db")
			buildGallery(t, sqlFile, want)
			if got, want := dumpGallery(t, dbFile), dumpGallery(t, want); got != want {
				t.Errorf("%s does not match %s (run with -update):\ngot:\n%s\nwant:\n%s", dbFile, sqlFile, got, want)
			}
		})
	}
}

// buildGallery runs a .sql script into a new, compact database that needs no -wal or -journal file.
func buildGallery(t *testing.T, sqlFile, dbFile string) {
	t.Helper()
	script, err := os.ReadFile(sqlFile)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+dbFile)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, stmt := range []string{"PRAGMA page_size=512", "PRAGMA journal_mode=DELETE", string(script), "VACUUM"} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", sqlFile, err)
		}
	}
}

// dumpGallery renders the schema and every row of every table of a database, in a stable order.
func dumpGallery(t *testing.T, dbFile string) string {
	t.Helper()
	db, err := sql.Open("sqlite3", galleryDSN(dbFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	rows, err := db.Query(`SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name`)
	if err != nil {
		t.Fatalf("%s: %v", dbFile, err)
	}
	var tables []string
	for rows.Next() {
		var name string
		var def sql.NullString
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s\n", def.String)
		if strings.HasPrefix(def.String, "CREATE TABLE") {
			tables = append(tables, name)
		}
	}
	rows.Close()
	for _, table := range tables {
		rows, err := db.Query(fmt.Sprintf(`SELECT * FROM %q ORDER BY rowid`, table))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s: %q\n", table, vals)
		}
		rows.Close()
	}
	return b.String()
}
