package filing

import (
	"encoding/json"
	"testing"
	"time"
)

func TestParseDate(t *testing.T) {
	for _, good := range []string{"2025-06-01", "2024-02-29", "2199-12-31"} {
		d, err := ParseDate(good)
		if err != nil || d.String() != good {
			t.Errorf("ParseDate(%q) = %v, %v", good, d, err)
		}
	}
	for _, bad := range []string{"", "2025-6-1", "2025-02-30", "2025-06-01T00:00:00Z", " 2025-06-01", "20250601", "2023-02-29"} {
		if d, err := ParseDate(bad); err == nil {
			t.Errorf("ParseDate(%q) = %v, want an error", bad, d)
		}
	}
}

func TestDateOfIsChinaDate(t *testing.T) {
	// 16:00 UTC is midnight in China: the date turns there, not at UTC midnight.
	for _, tc := range []struct {
		at   string
		want string
	}{
		{"2025-05-31T15:59:59Z", "2025-05-31"},
		{"2025-05-31T16:00:00Z", "2025-06-01"},
		{"2025-06-01T00:30:00+09:00", "2025-05-31"}, // 23:30 in China
		{"2025-12-31T23:00:00-05:00", "2026-01-01"},
	} {
		at, err := time.Parse(time.RFC3339, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if got := Today(at).String(); got != tc.want {
			t.Errorf("Today(%s) = %s, want %s", tc.at, got, tc.want)
		}
	}
}

func TestDateArithmetic(t *testing.T) {
	d := MustDate("2024-02-28")
	if got := d.AddDays(1).String(); got != "2024-02-29" {
		t.Errorf("leap day: %s", got)
	}
	if got := MustDate("2025-12-31").AddDays(1).String(); got != "2026-01-01" {
		t.Errorf("year end: %s", got)
	}
	if got := MustDate("2026-03-01").AddDays(-1).String(); got != "2026-02-28" {
		t.Errorf("back over February: %s", got)
	}
	if n := MustDate("2025-06-01").DaysUntil(MustDate("2025-07-14")); n != 43 {
		t.Errorf("DaysUntil = %d, want 43", n)
	}
	if MustDate("2025-06-01").Weekday() != time.Sunday {
		t.Error("2025-06-01 is a Sunday")
	}
	if !MustDate("2025-06-01").Before(MustDate("2025-06-02")) || !MustDate("2026-01-01").After(MustDate("2025-12-31")) {
		t.Error("ordering is wrong")
	}
	if NewDate(2025, 2, 30) != MustDate("2025-03-02") {
		t.Error("NewDate does not normalise")
	}
	if !(Date{}).IsZero() || MustDate("2025-01-01").IsZero() {
		t.Error("IsZero is wrong")
	}
}

func TestDateJSON(t *testing.T) {
	type doc struct {
		D Date `json:"d"`
		Z Date `json:"z,omitzero"`
	}
	b, err := json.Marshal(doc{D: MustDate("2026-02-02")})
	if err != nil || string(b) != `{"d":"2026-02-02"}` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var back doc
	if err := json.Unmarshal(b, &back); err != nil || back.D != MustDate("2026-02-02") {
		t.Fatalf("unmarshal: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"2026-2-2"}`), &back); err == nil {
		t.Error("a sloppy date was accepted")
	}
}
