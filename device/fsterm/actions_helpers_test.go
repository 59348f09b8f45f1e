package fsterm

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testKey is the fleet subject key of the action tests.
var testKey = []byte("test-fleet-subject-key")

// actionRoot builds a terminal root in a temporary directory with the gallery script (gallerySchema
// and rows) at GalleryPath, an empty spool and a site.yaml whose notice promises retentionDays. It
// returns the root.
func actionRoot(t testing.TB, rows string, retentionDays int) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{filepath.Dir(GalleryPath), SpoolPath, filepath.Dir(SitePath)} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	site := strings.Replace(goodSite, "retention_days: 365", fmt.Sprintf("retention_days: %d", retentionDays), 1)
	if err := os.WriteFile(filepath.Join(root, SitePath), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	execGallery(t, filepath.Join(root, GalleryPath), gallerySchema+rows)
	return root
}

// execGallery runs SQL on the gallery at path as the terminal software would, creating it if needed.
func execGallery(t testing.TB, path, script string) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(script); err != nil {
		t.Fatalf("gallery script: %v", err)
	}
}

// actionTerminal is a Terminal on root with the test key and the fake clock at testNow, closed when
// the test ends.
func actionTerminal(t testing.TB, root string, mod ...func(*Options)) *Terminal {
	t.Helper()
	term := newTestTerminal(root, append([]func(*Options){func(o *Options) { o.SubjectKey = testKey }}, mod...)...)
	t.Cleanup(func() {
		if err := term.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return term
}

// queryStrings runs a query that returns one text column on the gallery under root.
func queryStrings(t testing.TB, root, query string) []string {
	t.Helper()
	db, err := sql.Open("sqlite3", galleryDSN(filepath.Join(root, GalleryPath)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.String)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
