package fsterm

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzGalleryRows: a gallery row of any content, as terminal software might write it. fsterm counts it
// or marks the subjects group unknown, its facts stay valid, every action and lookup answers without
// panicking, and no fact, reason or error ever repeats a subject's or a guardian's reference.
func FuzzGalleryRows(f *testing.F) {
	for _, s := range []struct{ ref, age, stored, enrolled, basis, guardian, granted, withdrawn string }{
		{"7f3a", "adult", "device", ago(10 * day), "separate", "", ago(11 * day), ""},
		{"7f3a", "under_14", "device", ago(10 * day), "separate", "", ago(11 * day), ""},
		{"7f3a", "under_14", "device", ago(10 * day), "guardian", "g-secret-mum", ago(11 * day), ""},
		{"7f3a", "adult", "cloud", ago(10 * day), "separate", "", ago(11 * day), ago(2 * time.Hour)},
		{"7f3a", "adult", "device", ago(900 * day), "none", "", ago(901 * day), ""},
		{"", "s-secret-7f3a", "s-secret-7f3a", "s-secret-7f3a", "s-secret-7f3a", "g-secret-x", "s-secret-7f3a", "s-secret-7f3a"},
		{"x", "adult", "device", "2026-11-24", "separate", "", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z"},
		{"\x00", "", "", "", "", "", "", ""},
	} {
		f.Add(s.ref, s.age, s.stored, s.enrolled, s.basis, s.guardian, s.granted, s.withdrawn)
	}
	f.Fuzz(func(t *testing.T, refSuffix, ageBand, storedAt, enrolledAt, basis, guardian, granted, withdrawn string) {
		ref := "s-secret-" + refSuffix
		root := galleryRoot(t)
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(root, GalleryPath))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(gallerySchema); err != nil {
			t.Fatal(err)
		}
		null := func(s string) any {
			if s == "" {
				return nil
			}
			return s
		}
		_, err1 := db.Exec(`INSERT INTO subjects (subject_ref, template, age_band, stored_at, enrolled_at) VALUES (?, x'00', ?, ?, ?)`,
			ref, ageBand, storedAt, enrolledAt)
		_, err2 := db.Exec(`INSERT INTO consents (subject_ref, basis, guardian_ref, granted_at, withdrawn_at) VALUES (?, ?, ?, ?, ?)`,
			ref, basis, null(guardian), granted, null(withdrawn))
		db.Close()
		if err1 != nil || err2 != nil {
			t.Fatalf("gallery: %v %v", err1, err2)
		}
		term := actionTerminal(t, root)
		secrets := []string{ref}
		if strings.HasPrefix(guardian, "g-secret-") {
			secrets = append(secrets, guardian)
		}
		leak := func(where, s string) {
			for _, secret := range secrets {
				if strings.Contains(s, secret) {
					t.Fatalf("%s repeats %q: %s", where, secret, s)
				}
			}
		}
		facts, err := term.Facts(context.Background())
		if err != nil {
			t.Fatalf("Facts: %v", err)
		}
		validateFuzzFacts(t, facts)
		for _, u := range facts.Unknown {
			leak("an unknown fact's reason", u.Source+" "+u.Reason)
		}
		if s := facts.Subjects; s.Count < 0 || s.Count > 1 || s.WithoutConsent > s.Count || s.WithdrawnPending > s.Count ||
			s.MinorsWithoutGuardian > s.Count || s.BeyondRetention > s.Count || s.StoredOffDevice > s.Count {
			t.Fatalf("one row counted as %+v", s)
		}
		errs := galleryCalls(term, ref)
		_, errs["LookupSubject(guardian)"] = term.LookupSubject(context.Background(), guardian)
		for method, err := range errs {
			if err != nil {
				leak(method, err.Error())
			}
		}
		if after, err := term.Facts(context.Background()); err != nil {
			t.Fatalf("Facts after the actions: %v", err)
		} else {
			validateFuzzFacts(t, after)
		}
	})
}

// galleryRoot is actionRoot without the gallery's rows, in a directory whose name SQLite reads as a path:
// a fuzz seed's test name has a '#', which a file: URI takes for the start of a fragment.
func galleryRoot(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "fg-gallery-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	for _, dir := range []string{filepath.Dir(GalleryPath), SpoolPath, filepath.Dir(SitePath)} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	site := strings.Replace(goodSite, "retention_days: 365", "retention_days: 30", 1)
	if err := os.WriteFile(filepath.Join(root, SitePath), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}
