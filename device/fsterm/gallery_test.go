package fsterm

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
)

// gallerySchema is the contract's schema, as a terminal creates it.
const gallerySchema = GallerySchema

// ago renders testNow minus d as the terminal writes times, in another zone than the clock's on purpose.
func ago(d time.Duration) string { return testNow.Add(-d).UTC().Format(time.RFC3339Nano) }

const day = 24 * time.Hour

// newGallery creates a gallery.db from SQL statements and returns its path.
func newGallery(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gallery.db")
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(script); err != nil {
		t.Fatalf("build gallery: %v", err)
	}
	return path
}

// subject and consentRow write rows of the documented schema.
func subject(ref, ageBand, storedAt, enrolledAt string) string {
	return fmt.Sprintf("INSERT INTO subjects (subject_ref, template, age_band, stored_at, enrolled_at) VALUES ('%s', x'00', '%s', '%s', '%s');\n",
		ref, ageBand, storedAt, enrolledAt)
}

func consentRow(id int, ref, basis, guardian, granted, withdrawn string) string {
	null := func(s string) string {
		if s == "" {
			return "NULL"
		}
		return "'" + s + "'"
	}
	return fmt.Sprintf("INSERT INTO consents VALUES (%d, '%s', '%s', %s, '%s', %s);\n", id, ref, basis, null(guardian), granted, null(withdrawn))
}

// TestCountGalleryRules has one case on each side of every counting rule of docs/terminal.md.
func TestCountGalleryRules(t *testing.T) {
	adult := func(ref string) string { return subject(ref, "adult", "device", ago(10*day)) }
	minor := func(ref string) string { return subject(ref, "under_14", "device", ago(10*day)) }
	retention := 30
	tests := []struct {
		name      string
		rows      string
		retention *int
		want      device.Subjects
	}{
		{"empty", "", &retention, device.Subjects{}},
		{"separate_consent", adult("s-1") + consentRow(1, "s-1", "separate", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"law_is_consent_enough", adult("s-1") + consentRow(1, "s-1", "law", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"no_consent_row", adult("s-1"),
			&retention, device.Subjects{Count: 1, WithoutConsent: 1}},
		{"basis_none", adult("s-1") + consentRow(1, "s-1", "none", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1, WithoutConsent: 1}},
		{"guardian_without_ref", adult("s-1") + consentRow(1, "s-1", "guardian", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1, WithoutConsent: 1}},
		{"guardian_with_empty_ref", adult("s-1") + consentRow(1, "s-1", "guardian", "", ago(10*day), "") + "UPDATE consents SET guardian_ref = '';\n",
			&retention, device.Subjects{Count: 1, WithoutConsent: 1}},
		{"guardian_with_ref", adult("s-1") + consentRow(1, "s-1", "guardian", "g-1", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"consent_of_another_subject", adult("s-1") + consentRow(1, "s-2", "separate", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1, WithoutConsent: 1}},

		{"withdrawn", adult("s-1") + consentRow(1, "s-1", "separate", "", ago(10*day), ago(90*time.Second)),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 90}},
		{"withdrawn_age_rounds_up", adult("s-1") + consentRow(1, "s-1", "separate", "", ago(10*day), ago(90*time.Second+time.Millisecond)),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 91}},
		{"withdrawn_oldest_of_two", adult("s-1") + adult("s-2") +
			consentRow(1, "s-1", "separate", "", ago(10*day), ago(time.Hour)) +
			consentRow(2, "s-2", "separate", "", ago(10*day), ago(2*time.Hour)),
			&retention, device.Subjects{Count: 2, WithdrawnPending: 2, WithdrawnOldestS: 7200}},
		{"withdrawn_in_the_future", adult("s-1") + consentRow(1, "s-1", "separate", "", ago(10*day), ago(-time.Hour)),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 0}},
		{"withdrawn_without_consent_counts_once", adult("s-1") + consentRow(1, "s-1", "none", "", ago(10*day), ago(time.Minute)),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 60}},
		{"withdrawn_then_granted_again", adult("s-1") +
			consentRow(1, "s-1", "separate", "", ago(20*day), ago(15*day)) +
			consentRow(2, "s-1", "separate", "", ago(5*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"granted_then_withdrawn", adult("s-1") +
			consentRow(1, "s-1", "separate", "", ago(5*day), ago(time.Second)) +
			consentRow(2, "s-1", "separate", "", ago(20*day), ""),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 1}},
		{"same_grant_time_higher_id_wins_withdrawn", adult("s-1") +
			consentRow(1, "s-1", "separate", "", ago(5*day), "") +
			consentRow(2, "s-1", "separate", "", ago(5*day), ago(time.Second)),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 1}},
		{"same_grant_time_higher_id_wins_not_withdrawn", adult("s-1") +
			consentRow(2, "s-1", "separate", "", ago(5*day), ago(time.Second)) +
			consentRow(3, "s-1", "separate", "", ago(5*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"grant_time_compared_as_instants", adult("s-1") +
			// 09:00+08:00 is later than 02:00Z although it sorts first as text.
			consentRow(1, "s-1", "separate", "", "2026-11-20T02:00:00Z", ago(time.Second)) +
			consentRow(2, "s-1", "separate", "", "2026-11-20T11:00:00+08:00", ""),
			&retention, device.Subjects{Count: 1}},

		{"minor_with_separate_consent", minor("s-1") + consentRow(1, "s-1", "separate", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1, MinorsWithoutGuardian: 1}},
		{"minor_with_guardian", minor("s-1") + consentRow(1, "s-1", "guardian", "g-1", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"minor_under_law", minor("s-1") + consentRow(1, "s-1", "law", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"minor_guardian_without_ref", minor("s-1") + consentRow(1, "s-1", "guardian", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1, WithoutConsent: 1, MinorsWithoutGuardian: 1}},
		{"minor_without_consent", minor("s-1"),
			&retention, device.Subjects{Count: 1, WithoutConsent: 1, MinorsWithoutGuardian: 1}},
		{"minor_withdrawn", minor("s-1") + consentRow(1, "s-1", "separate", "", ago(10*day), ago(time.Second)),
			&retention, device.Subjects{Count: 1, WithdrawnPending: 1, WithdrawnOldestS: 1}},
		{"teenager_with_separate_consent", subject("s-1", "14_17", "device", ago(10*day)) + consentRow(1, "s-1", "separate", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"age_unknown_with_separate_consent", subject("s-1", "unknown", "device", ago(10*day)) + consentRow(1, "s-1", "separate", "", ago(10*day), ""),
			&retention, device.Subjects{Count: 1}},

		{"beyond_retention", subject("s-1", "adult", "device", ago(30*day+time.Second)) + consentRow(1, "s-1", "separate", "", ago(31*day), ""),
			&retention, device.Subjects{Count: 1, BeyondRetention: 1}},
		{"at_retention", subject("s-1", "adult", "device", ago(30*day)) + consentRow(1, "s-1", "separate", "", ago(31*day), ""),
			&retention, device.Subjects{Count: 1}},
		{"withdrawn_beyond_retention", subject("s-1", "adult", "device", ago(40*day)) + consentRow(1, "s-1", "separate", "", ago(40*day), ago(time.Second)),
			&retention, device.Subjects{Count: 1, BeyondRetention: 1, WithdrawnPending: 1, WithdrawnOldestS: 1}},
		{"retention_unknown", subject("s-1", "adult", "device", ago(300*day)) + consentRow(1, "s-1", "separate", "", ago(300*day), ""),
			nil, device.Subjects{Count: 1}},
		{"retention_zero", subject("s-1", "adult", "device", ago(time.Second)) + consentRow(1, "s-1", "separate", "", ago(time.Second), ""),
			ptr(0), device.Subjects{Count: 1, BeyondRetention: 1}},
		{"retention_longer_than_a_duration", subject("s-1", "adult", "device", "0001-01-01T00:00:00Z") + consentRow(1, "s-1", "separate", "", ago(time.Second), ""),
			ptr(maxCount), device.Subjects{Count: 1}},

		{"stored_on_lan", subject("s-1", "adult", "lan", ago(day)) + consentRow(1, "s-1", "separate", "", ago(day), ""),
			&retention, device.Subjects{Count: 1, StoredOffDevice: 1}},
		{"stored_in_cloud", subject("s-1", "adult", "cloud", ago(day)) + consentRow(1, "s-1", "separate", "", ago(day), ""),
			&retention, device.Subjects{Count: 1, StoredOffDevice: 1}},
		{"stored_on_device", subject("s-1", "adult", "device", ago(day)) + consentRow(1, "s-1", "separate", "", ago(day), ""),
			&retention, device.Subjects{Count: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := newGallery(t, gallerySchema+tt.rows)
			got, err := countGallery(context.Background(), path, testNow, tt.retention)
			if err != nil {
				t.Fatalf("countGallery: %v", err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestCountGalleryBroken: a gallery that cannot be counted makes subjects unknown with a reason that
// names the table and column, never a subject.
func TestCountGalleryBroken(t *testing.T) {
	good := subject("s-secret-1", "adult", "device", ago(day)) + consentRow(1, "s-secret-1", "separate", "", ago(day), "")
	tests := []struct {
		name       string
		setup      func(t *testing.T) string
		wantReason string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "gallery.db") }, "missing"},
		{"a_directory", func(t *testing.T) string { return t.TempDir() }, "not a regular file"},
		{"not_a_database", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "gallery.db")
			if err := os.WriteFile(path, []byte("this is not an SQLite database, just some text long enough"), 0o644); err != nil {
				t.Fatal(err)
			}
			return path
		}, "open: file is not a database"},
		{"no_consents_table", func(t *testing.T) string {
			return newGallery(t, strings.SplitAfter(gallerySchema, ");")[0])
		}, "table consents: no such table"},
		{"no_subjects_table", func(t *testing.T) string {
			return newGallery(t, "CREATE TABLE consents (id INTEGER PRIMARY KEY);")
		}, "table subjects: no such table"},
		{"missing_column", func(t *testing.T) string {
			return newGallery(t, strings.Replace(gallerySchema, "  stored_at    TEXT NOT NULL DEFAULT 'device',\n", "", 1))
		}, "table subjects: no such column: stored_at"},
		{"bad_granted_at", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+consentRow(2, "s-secret-1", "separate", "", "last tuesday", ""))
		}, "table consents, column granted_at: 1 row not an RFC 3339 time"},
		{"bad_withdrawn_at", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+consentRow(2, "s-secret-1", "separate", "", ago(day), "2026-11-20"))
		}, "table consents, column withdrawn_at: 1 row not an RFC 3339 time"},
		{"bad_enrolled_at", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+subject("s-secret-2", "adult", "device", "2026-11-20 10:00:00")+subject("s-secret-3", "adult", "device", ""))
		}, "table subjects, column enrolled_at: 2 rows not an RFC 3339 time"},
		{"null_enrolled_at", func(t *testing.T) string {
			return newGallery(t, strings.Replace(gallerySchema, "enrolled_at  TEXT NOT NULL", "enrolled_at  TEXT", 1)+
				"INSERT INTO subjects (subject_ref) VALUES ('s-secret-2');")
		}, "table subjects, column enrolled_at: 1 row not an RFC 3339 time"},
		{"bad_basis", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+consentRow(2, "s-secret-1", "verbal", "", ago(day), ""))
		}, "table consents, column basis: 1 row not one of separate, guardian, law, none"},
		{"bad_age_band", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+subject("s-secret-2", "child", "device", ago(day)))
		}, "table subjects, column age_band: 1 row not one of under_14, 14_17, adult, unknown"},
		{"bad_stored_at", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+subject("s-secret-2", "adult", "usb-stick", ago(day)))
		}, "table subjects, column stored_at: 1 row not one of device, lan, cloud"},
		{"two_bad_columns", func(t *testing.T) string {
			return newGallery(t, gallerySchema+good+subject("s-secret-2", "child", "device", "soon"))
		}, "table subjects, column age_band: 1 row not one of under_14, 14_17, adult, unknown; table subjects, column enrolled_at: 1 row not an RFC 3339 time"},
		{"text_id", func(t *testing.T) string {
			return newGallery(t, strings.Replace(gallerySchema, "id           INTEGER PRIMARY KEY", "id TEXT", 1)+
				consentRow(1, "s-secret-1", "separate", "", ago(day), "")+"UPDATE consents SET id = 's-secret-1';")
		}, `table consents: sql: Scan error on column index 0, name "id": wrong type`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t)
			f := placeholderFacts(testNow)
			if err := collectGallery(context.Background(), nil, path, testNow, ptr(30), &f); err != nil {
				t.Fatal(err)
			}
			mustValidate(t, f)
			if len(f.Unknown) != 1 || f.Unknown[0].Fact != device.GroupSubjects || f.Unknown[0].Source != GalleryPath {
				t.Fatalf("unknown = %v", f.Unknown)
			}
			if got := f.Unknown[0].Reason; got != tt.wantReason {
				t.Errorf("reason = %q, want %q", got, tt.wantReason)
			}
			if strings.Contains(f.Unknown[0].Reason, "secret") {
				t.Errorf("reason names a subject: %q", f.Unknown[0].Reason)
			}
			if f.Subjects != (device.Subjects{}) {
				t.Errorf("subjects = %+v, want placeholders", f.Subjects)
			}
		})
	}
}

func TestCountGalleryDoesNotCreateTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gallery.db")
	if _, err := countGallery(context.Background(), path, testNow, nil); err == nil {
		t.Fatal("counted a missing gallery")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the gallery was created: %v", err)
	}
}

// TestCountGalleryWAL reads a gallery in WAL mode while the terminal software holds it open with
// uncheckpointed writes, and leaves it unchanged.
func TestCountGalleryWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gallery.db")
	writer, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	writer.SetMaxOpenConns(1)
	if _, err := writer.Exec("PRAGMA wal_autocheckpoint=0;" + gallerySchema +
		subject("s-1", "adult", "device", ago(day)) + consentRow(1, "s-1", "separate", "", ago(day), "") +
		subject("s-2", "under_14", "cloud", ago(day))); err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := writer.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	if st, err := os.Stat(path + "-wal"); err != nil || st.Size() == 0 {
		t.Fatalf("no WAL content: %v", err)
	}
	before, _ := os.ReadFile(path)

	got, err := countGallery(context.Background(), path, testNow, ptr(30))
	if err != nil {
		t.Fatal(err)
	}
	want := device.Subjects{Count: 2, WithoutConsent: 1, MinorsWithoutGuardian: 1, StoredOffDevice: 1}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the count changed the database file")
	}
	// The writer is not blocked by the reader having been there.
	if _, err := writer.Exec(subject("s-3", "adult", "device", ago(day))); err != nil {
		t.Errorf("write after count: %v", err)
	}
}

func TestCountGalleryCancelled(t *testing.T) {
	path := newGallery(t, gallerySchema+subject("s-1", "adult", "device", ago(day)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := placeholderFacts(testNow)
	if err := collectGallery(ctx, nil, path, testNow, nil, &f); err == nil {
		t.Fatalf("no error for a cancelled context; unknown = %v", f.Unknown)
	}
}

func TestGalleryDSNEscapesThePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := newGallery(t, gallerySchema+subject("s-1", "adult", "device", ago(day)))
	data, _ := os.ReadFile(src)
	path := filepath.Join(dir, "gallery.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := countGallery(context.Background(), path, testNow, nil)
	if err != nil || got.Count != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// The reader keeps its connection from one count to the next, sees the terminal's writes, opens the new
// file when the terminal software renames one over gallery.db, and lets go of a gallery that is gone
// without ever creating one.
func TestGalleryReaderFollowsTheFile(t *testing.T) {
	path := newGallery(t, gallerySchema+subject("s-1", "adult", "device", ago(day)))
	var r galleryReader
	defer r.close()
	count := func() int {
		t.Helper()
		got, err := r.count(context.Background(), path, testNow, nil)
		if err != nil {
			t.Fatal(err)
		}
		return got.Count
	}
	if n := count(); n != 1 {
		t.Fatalf("count %d, want 1", n)
	}
	first := r.db
	w, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Exec(subject("s-2", "adult", "device", ago(day))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if n := count(); n != 2 || r.db != first {
		t.Fatalf("after a write: count %d (want 2), same connection %v", n, r.db == first)
	}

	replacement := newGallery(t, gallerySchema+subject("a", "adult", "device", ago(day))+
		subject("b", "adult", "device", ago(day))+subject("c", "adult", "device", ago(day)))
	if err := os.Rename(replacement, path); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 || r.db == first {
		t.Fatalf("after a rename over the file: count %d (want 3), reopened %v", n, r.db != first)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := r.count(context.Background(), path, testNow, nil); err == nil {
		t.Fatal("counted a gallery that is gone")
	}
	if r.db != nil {
		t.Error("the connection to a deleted gallery is still open")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the gallery was created again: %v", err)
	}
}

// A table dropped under a kept connection is reported by name, on that count and the next.
func TestGalleryReaderTableDropped(t *testing.T) {
	path := newGallery(t, gallerySchema+subject("s-1", "adult", "device", ago(day)))
	var r galleryReader
	defer r.close()
	if _, err := r.count(context.Background(), path, testNow, nil); err != nil {
		t.Fatal(err)
	}
	w, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Exec(`DROP TABLE consents`); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := r.count(context.Background(), path, testNow, nil); err == nil || !strings.Contains(err.Error(), "consents") {
			t.Errorf("count %d after the consents table was dropped: %v", i+1, err)
		}
	}
}

// The reader keeps its tally while the gallery is unchanged: the counts that depend on the time still
// follow the clock and the retention asked for, and any write by another connection is counted.
func TestGalleryReaderKeepsTheTally(t *testing.T) {
	for _, mode := range []string{"delete", "wal"} {
		t.Run(mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gallery.db")
			w, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode="+mode)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.SetMaxOpenConns(1)
			if _, err := w.Exec(gallerySchema +
				subject("s-1", "adult", "device", ago(29*day)) + consentRow(1, "s-1", "separate", "", ago(29*day), ago(time.Hour)) +
				subject("s-2", "adult", "device", ago(10*day)) + consentRow(2, "s-2", "separate", "", ago(10*day), "")); err != nil {
				t.Fatal(err)
			}
			var r galleryReader
			defer r.close()
			count := func(now time.Time, retention *int) device.Subjects {
				t.Helper()
				got, err := r.count(context.Background(), path, now, retention)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			check := func(what string, got, want device.Subjects) {
				t.Helper()
				if got != want {
					t.Errorf("%s: got %+v, want %+v", what, got, want)
				}
			}
			check("first count", count(testNow, ptr(30)),
				device.Subjects{Count: 2, WithdrawnPending: 1, WithdrawnOldestS: 3600})
			kept := r.last
			check("two days later", count(testNow.Add(2*day), ptr(30)),
				device.Subjects{Count: 2, WithdrawnPending: 1, WithdrawnOldestS: 3600 + 2*86400, BeyondRetention: 1})
			check("a shorter retention", count(testNow, ptr(5)),
				device.Subjects{Count: 2, WithdrawnPending: 1, WithdrawnOldestS: 3600, BeyondRetention: 2})
			check("the notice unknown", count(testNow, nil),
				device.Subjects{Count: 2, WithdrawnPending: 1, WithdrawnOldestS: 3600})
			if r.last != kept {
				t.Error("the gallery was counted again although nothing was written")
			}

			if _, err := w.Exec(`UPDATE consents SET withdrawn_at = ? WHERE subject_ref = 's-2'`, ago(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			check("after a withdrawal", count(testNow, ptr(30)),
				device.Subjects{Count: 2, WithdrawnPending: 2, WithdrawnOldestS: 7200})
			if _, err := w.Exec(`DELETE FROM subjects`); err != nil {
				t.Fatal(err)
			}
			check("after a purge", count(testNow, ptr(30)), device.Subjects{})
		})
	}
}

// TestGalleryReaderAgreesWithAFreshCount: through random writes and a moving clock, the kept reader
// counts exactly what a connection opened for each count does.
func TestGalleryReaderAgreesWithAFreshCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	path := newGallery(t, gallerySchema)
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var r galleryReader
	defer r.close()
	bands := []string{"adult", "under_14", "14_17", "unknown"}
	bases := []string{"separate", "guardian", "law", "none"}
	now := testNow
	for step := range 200 {
		ref := fmt.Sprintf("s-%d", rng.IntN(40))
		var stmt string
		switch rng.IntN(5) {
		case 0, 1:
			stmt = subject(ref, bands[rng.IntN(len(bands))], storageSites[rng.IntN(len(storageSites))],
				ago(time.Duration(rng.IntN(60*24))*time.Hour))
		case 2:
			withdrawn := ""
			if rng.IntN(2) == 0 {
				withdrawn = ago(time.Duration(rng.IntN(48)) * time.Hour)
			}
			guardian := ""
			if rng.IntN(2) == 0 {
				guardian = "g-1"
			}
			stmt = consentRow(step+1, ref, bases[rng.IntN(len(bases))], guardian, ago(time.Duration(rng.IntN(60*24))*time.Hour), withdrawn)
		case 3:
			stmt = fmt.Sprintf("DELETE FROM subjects WHERE subject_ref = '%s';", ref)
		case 4:
			// Nothing written: only the clock moves.
		}
		if stmt != "" {
			if _, err := w.Exec(stmt); err != nil && !strings.Contains(err.Error(), "UNIQUE") {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Duration(rng.IntN(3)) * day)
		retention := ptr(rng.IntN(40))
		got, err := r.count(context.Background(), path, now, retention)
		if err != nil {
			t.Fatal(err)
		}
		want, err := countGallery(context.Background(), path, now, retention)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("step %d (%q): the kept reader counts %+v, a fresh count %+v", step, stmt, got, want)
		}
	}
}

// TestReleaseMemoryAfterCount: with the option, a count of the gallery hands its garbage back to the
// operating system at once (one forced collection), and a kept count does not; without it, never.
func TestReleaseMemoryAfterCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gallery.db")
	w, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Exec(gallerySchema + subject("s-1", "adult", "device", ago(day)) +
		consentRow(1, "s-1", "separate", "", ago(day), "")); err != nil {
		t.Fatal(err)
	}
	forced := func() uint32 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.NumForcedGC
	}
	for _, release := range []bool{false, true} {
		r := galleryReader{release: release}
		before := forced()
		for range 2 { // a count, then the kept one
			if _, err := r.count(context.Background(), path, testNow, ptr(30)); err != nil {
				t.Fatal(err)
			}
		}
		want := uint32(0)
		if release {
			want = 1
		}
		if got := forced() - before; got != want {
			t.Errorf("release %v: %d forced collections for a count and a kept count, want %d", release, got, want)
		}
		r.close()
	}
	if !New(Options{ReleaseMemoryAfterCount: true}).galleryRO.release {
		t.Error("the option does not reach the facts' reader")
	}
}
