package filing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestAddWorkingDays(t *testing.T) {
	cal := Official()
	for _, tc := range []struct {
		name, start, want string
	}{
		// research/regulation.md §5: the test vectors.
		{"in force date gives the CAC transitional deadline", "2025-06-01", "2025-07-14"},
		{"after the Dragon Boat holiday", "2025-06-03", "2025-07-15"},
		{"over National Day 2025 and its make-up days", "2025-09-15", "2025-10-31"},
		{"over the year end and the 2026-01-04 make-up Sunday", "2025-12-20", "2026-02-02"},
		{"over Spring Festival 2026 with both make-up Saturdays", "2026-01-20", "2026-03-09"},
		{"over Mid-Autumn and National Day 2026", "2026-09-10", "2026-10-28"},

		// Derived by hand around Spring Festival 2026 (02-15..02-23 off, 02-14 and 02-28 worked).
		{"the day before the make-up Saturday", "2026-02-13", "2026-04-02"},
		{"start on the make-up Saturday 2026-02-14", "2026-02-14", "2026-04-03"},
		{"start on a Spring Festival holiday", "2026-02-17", "2026-04-03"},
		{"start on the last holiday day", "2026-02-23", "2026-04-03"},
		{"start on the make-up Saturday 2026-02-28, over Qingming", "2026-02-28", "2026-04-13"},

		// Derived by hand around National Day 2025 (10-01..10-08 off, 09-28 and 10-11 worked).
		{"start on the make-up Sunday 2025-09-28", "2025-09-28", "2025-11-14"},
		{"start on the eve of the holiday", "2025-09-30", "2025-11-18"},
		{"start on a National Day holiday", "2025-10-03", "2025-11-18"},
		{"start on the make-up Saturday 2025-10-11", "2025-10-11", "2025-11-21"},

		// Spring Festival 2025 (01-28..02-04 off, 01-26 and 02-08 worked).
		{"start on the make-up Sunday 2025-01-26", "2025-01-26", "2025-03-14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, est := cal.AddWorkingDays(MustDate(tc.start), 30)
			if got.String() != tc.want {
				t.Errorf("30 working days after %s = %s, want %s", tc.start, got, tc.want)
			}
			if est.Conservative || est.Warning != (Estimate{}).Warning {
				t.Errorf("a known span gave an estimate: %+v", est)
			}
		})
	}
}

// The derived vectors above are also checked by a count that shares no code with AddWorkingDays: the
// notice's days listed again by hand.
func TestAddWorkingDaysMatchesHandList(t *testing.T) {
	off := map[string]bool{}
	work := map[string]bool{}
	for _, r := range [][2]string{
		{"2025-01-01", "2025-01-01"}, {"2025-01-28", "2025-02-04"}, {"2025-04-04", "2025-04-06"},
		{"2025-05-01", "2025-05-05"}, {"2025-05-31", "2025-06-02"}, {"2025-10-01", "2025-10-08"},
		{"2026-01-01", "2026-01-03"}, {"2026-02-15", "2026-02-23"}, {"2026-04-04", "2026-04-06"},
		{"2026-05-01", "2026-05-05"}, {"2026-06-19", "2026-06-21"}, {"2026-09-25", "2026-09-27"},
		{"2026-10-01", "2026-10-07"},
	} {
		for d := MustDate(r[0]); !d.After(MustDate(r[1])); d = d.AddDays(1) {
			off[d.String()] = true
		}
	}
	for _, d := range []string{"2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11",
		"2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"} {
		work[d] = true
	}
	cal := Official()
	for start := MustDate("2025-01-01"); start.Before(MustDate("2026-11-01")); start = start.AddDays(1) {
		d, n := start, 0
		for n < 30 {
			d = d.AddDays(1)
			s := d.String()
			if work[s] || (!off[s] && !isWeekend(d)) {
				n++
			}
		}
		if got, _ := cal.AddWorkingDays(start, 30); got != d {
			t.Fatalf("30 working days after %s: calendar %s, hand list %s", start, got, d)
		}
	}
}

func TestIsWorkingDay(t *testing.T) {
	cal := Official()
	for _, tc := range []struct {
		date           string
		working, known bool
	}{
		{"2025-06-02", false, true}, // Dragon Boat holiday, a Monday
		{"2025-06-03", true, true},
		{"2025-09-28", true, true}, // make-up Sunday
		{"2025-10-08", false, true},
		{"2025-10-11", true, true}, // make-up Saturday
		{"2025-10-12", false, true},
		{"2026-01-04", true, true}, // make-up Sunday
		{"2026-02-14", true, true}, // make-up Saturday
		{"2026-02-16", false, true},
		{"2024-04-07", true, true}, // make-up Sunday
		{"2027-03-01", true, false},
		{"2027-03-06", false, false},
		{"2023-12-29", true, false},
	} {
		w, k := cal.IsWorkingDay(MustDate(tc.date))
		if w != tc.working || k != tc.known {
			t.Errorf("IsWorkingDay(%s) = %v, %v; want %v, %v", tc.date, w, k, tc.working, tc.known)
		}
	}
}

func TestOfficialCalendarFiles(t *testing.T) {
	cal := Official()
	if got := cal.Years(); len(got) < 3 || got[0] != 2024 || got[1] != 2025 || got[2] != 2026 {
		t.Fatalf("Years() = %v, want 2024, 2025, 2026 at least", got)
	}
	y, _ := cal.Year(2025)
	if y.Source.Number != "国办发明电〔2024〕12号" || y.Source.Date != "2024-11-12" || y.Origin != "embedded" {
		t.Errorf("2025 source = %+v, origin %q", y.Source, y.Origin)
	}
	// research/regulation.md §5: the day counts of each notice.
	for year, want := range map[int]map[string]int{
		2025: {"元旦": 1, "春节": 8, "清明节": 3, "劳动节": 5, "端午节": 3, "国庆节、中秋节": 8},
		2026: {"元旦": 3, "春节": 9, "清明节": 3, "劳动节": 5, "端午节": 3, "中秋节": 3, "国庆节": 7},
	} {
		y, _ := cal.Year(year)
		if len(y.Holidays) != len(want) {
			t.Errorf("%d: %d holidays, want %d", year, len(y.Holidays), len(want))
		}
		for _, h := range y.Holidays {
			if len(h.Off) != want[h.Name] {
				t.Errorf("%d %s: %d days off, want %d", year, h.Name, len(h.Off), want[h.Name])
			}
		}
	}
}

// A span that reaches a year without data: the Mon–Fri count moved ConservativeBuffer working days
// earlier, never later than a plain weekday count, with the warning in both languages.
func TestAddWorkingDaysUnknownYear(t *testing.T) {
	cal := Official()
	got, est := cal.AddWorkingDays(MustDate("2027-03-01"), 30)
	if got.String() != "2027-04-06" { // weekdays: 2027-04-12; four working days earlier
		t.Errorf("2027-03-01 + 30 = %s, want 2027-04-06", got)
	}
	if !est.Conservative || len(est.Years) != 1 || est.Years[0] != 2027 {
		t.Errorf("estimate = %+v", est)
	}
	if !strings.Contains(est.Warning.EN, "2027") || !strings.Contains(est.Warning.EN, "not loaded") ||
		!strings.Contains(est.Warning.ZH, "2027年") || !strings.Contains(est.Warning.ZH, "未加载") {
		t.Errorf("warning = %+v", est.Warning)
	}

	// A span that starts in a known year and ends in an unknown one.
	got, est = cal.AddWorkingDays(MustDate("2026-12-10"), 30)
	if !est.Conservative || len(est.Years) != 1 || est.Years[0] != 2027 {
		t.Errorf("estimate = %+v", est)
	}
	if plain := weekdayCount(MustDate("2026-12-10"), 30); got.After(plain) {
		t.Errorf("due %s is later than a plain weekday count %s", got, plain)
	}

	// Never later than a plain weekday count, wherever the span starts (from the first start whose span
	// reaches 2027; the known part, December 2026, has no holiday).
	for start := MustDate("2026-11-20"); start.Before(MustDate("2028-01-01")); start = start.AddDays(1) {
		got, est := cal.AddWorkingDays(start, 30)
		if plain := weekdayCount(start, 30); got.After(plain) || !est.Conservative || !got.After(start) {
			t.Fatalf("%s: due %s (plain %s), estimate %+v", start, got, plain, est)
		}
	}
	// A short count never moves to or before the start.
	if got, _ := cal.AddWorkingDays(MustDate("2027-03-01"), 2); got != MustDate("2027-03-02") {
		t.Errorf("2 working days after 2027-03-01 = %s", got)
	}
}

func weekdayCount(start Date, n int) Date {
	d := start
	for n > 0 {
		d = d.AddDays(1)
		if !isWeekend(d) {
			n--
		}
	}
	return d
}

// The conservative date is checked against the real one: drop each known year from the calendar in
// turn, and the due date computed without it must never be after the due date computed with it.
func TestConservativeDateNeverLaterThanOfficial(t *testing.T) {
	full := Official()
	for _, drop := range full.Years() {
		var keep []Year
		for _, y := range full.Years() {
			if y != drop {
				yr, _ := full.Year(y)
				keep = append(keep, yr)
			}
		}
		partial, err := NewCalendar(keep...)
		if err != nil {
			t.Fatal(err)
		}
		worst := 1 << 30
		for start := NewDate(drop-1, 11, 1); start.Year() <= drop; start = start.AddDays(1) {
			real, rest := full.AddWorkingDays(start, 30)
			if rest.Conservative {
				continue // the real span itself leaves the known years
			}
			guess, gest := partial.AddWorkingDays(start, 30)
			if !gest.Conservative {
				continue
			}
			if guess.After(real) {
				t.Errorf("without %d: 30 working days after %s estimated %s, official %s", drop, start, guess, real)
			}
			worst = min(worst, guess.DaysUntil(real))
		}
		t.Logf("without %d: the conservative due date is at least %d calendar days before the official one", drop, worst)
	}
}

// ConservativeBuffer must cover the most make-up working days seen in one 30-working-day span of any
// shipped year. A new year file with more fails here, and the constant has to grow.
func TestConservativeBufferCoversKnownYears(t *testing.T) {
	cal := Official()
	most, at := 0, Date{}
	for _, y := range cal.Years() {
		for start := NewDate(y, 1, 1).AddDays(-1); start.Year() <= y; start = start.AddDays(1) {
			due, est := cal.AddWorkingDays(start, 30)
			if est.Conservative {
				continue
			}
			n := 0
			for d := start.AddDays(1); !d.After(due); d = d.AddDays(1) {
				if yd := cal.years[d.Year()]; yd != nil && yd.makeUp[d] {
					n++
				}
			}
			if n > most {
				most, at = n, start
			}
		}
	}
	t.Logf("most make-up working days in one 30-working-day span: %d (from %s)", most, at)
	if most > ConservativeBuffer {
		t.Errorf("ConservativeBuffer = %d does not cover %d make-up days after %s", ConservativeBuffer, most, at)
	}
}

func TestWorkingDaysBetween(t *testing.T) {
	cal := Official()
	for _, tc := range []struct {
		from, to string
		want     int
	}{
		{"2025-06-01", "2025-07-14", 30},
		{"2025-07-14", "2025-07-14", 0},
		{"2025-09-30", "2025-10-09", 1}, // the whole holiday, then Thursday
		{"2025-09-30", "2025-10-11", 3}, // ... and the make-up Saturday
		{"2025-07-15", "2025-07-14", -1},
		{"2025-10-13", "2025-10-08", -4}, // 10-09, 10-10, 10-11 (make-up), 10-13; not 10-12 (Sunday)
	} {
		got, est := cal.WorkingDaysBetween(MustDate(tc.from), MustDate(tc.to))
		if got != tc.want || est.Conservative {
			t.Errorf("WorkingDaysBetween(%s, %s) = %d, %+v; want %d", tc.from, tc.to, got, est, tc.want)
		}
	}
	if _, est := cal.WorkingDaysBetween(MustDate("2026-12-20"), MustDate("2027-01-10")); !est.Conservative {
		t.Error("a count into 2027 gave no warning")
	}
}

const year2027 = `{
  "year": 2027,
  "source": {"title": "TEST FIXTURE, not a real notice", "date": "2026-11-01"},
  "holidays": [
    {"name": "元旦", "days": 1, "days_off": ["2027-01-01"]},
    {"name": "春节", "name_en": "Spring Festival", "days": 8,
     "days_off": ["2027-02-05", "2027-02-06", "2027-02-07", "2027-02-08", "2027-02-09", "2027-02-10", "2027-02-11", "2027-02-12"],
     "make_up_working_days": ["2027-02-13"]}
  ]
}`

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The year file is a symbolic link, as an operator's configuration tool may make it.
	elsewhere := filepath.Join(t.TempDir(), "notice-2027.json")
	if err := os.WriteFile(elsewhere, []byte(year2027), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "2027.json")); err != nil {
		t.Fatal(err)
	}
	write("README.md", "the operator's notes are ignored")
	base := Official()
	cal, loaded, err := base.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0] != 2027 {
		t.Errorf("loaded %v", loaded)
	}
	if w, k := cal.IsWorkingDay(MustDate("2027-02-13")); !w || !k {
		t.Errorf("2027-02-13 (make-up Saturday) = %v, %v", w, k)
	}
	if w, k := cal.IsWorkingDay(MustDate("2027-02-08")); w || !k {
		t.Errorf("2027-02-08 (holiday Monday) = %v, %v", w, k)
	}
	if _, est := cal.AddWorkingDays(MustDate("2027-01-10"), 30); est.Conservative {
		t.Errorf("a loaded year still gave an estimate: %+v", est)
	}
	if _, k := base.IsWorkingDay(MustDate("2027-02-13")); k {
		t.Error("LoadDir changed the calendar it was called on")
	}
	if y, _ := cal.Year(2027); y.Origin != filepath.Join(dir, "2027.json") {
		t.Errorf("origin = %q", y.Origin)
	}
}

func TestLoadDirReplacesAShippedYear(t *testing.T) {
	// As in 2020, when a later notice extended the Spring Festival holiday: the operator's file replaces
	// the shipped year.
	amended := strings.Replace(mustRead(t, "calendar/2026.json"), `"2026-02-23"]`, `"2026-02-23", "2026-02-24"]`, 1)
	amended = strings.Replace(amended, `"days": 9`, `"days": 10`, 1)
	cal, loaded, err := Official().LoadFS(fstest.MapFS{"2026.json": {Data: []byte(amended)}}, "ops")
	if err != nil || len(loaded) != 1 {
		t.Fatal(loaded, err)
	}
	if w, _ := cal.IsWorkingDay(MustDate("2026-02-24")); w {
		t.Error("the amended holiday is still a working day")
	}
	if w, _ := Official().IsWorkingDay(MustDate("2026-02-24")); !w {
		t.Error("the shipped calendar changed")
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := officialFiles.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadDirRejectsBadYears(t *testing.T) {
	for _, tc := range []struct {
		name, file, body, want string
	}{
		{"holiday also a make-up day", "2027.json",
			strings.Replace(year2027, `"make_up_working_days": ["2027-02-13"]`, `"make_up_working_days": ["2027-02-06"]`, 1),
			"2027-02-06 is also listed"},
		{"date outside the year", "2027.json", strings.Replace(year2027, `"2027-01-01"`, `"2026-12-31"`, 1), "is not in 2027"},
		{"duplicate day off", "2027.json", strings.Replace(year2027, `"days": 1, "days_off": ["2027-01-01"]`, `"days": 2, "days_off": ["2027-01-01", "2027-01-01"]`, 1), "also listed"},
		{"make-up day on a weekday", "2027.json", strings.Replace(year2027, `["2027-02-13"]`, `["2027-02-15"]`, 1), "not a weekend day"},
		{"day count disagrees", "2027.json", strings.Replace(year2027, `"days": 8`, `"days": 7`, 1), "the notice says 7 days"},
		{"impossible date", "2027.json", strings.Replace(year2027, `"2027-01-01"`, `"2027-02-30"`, 1), "not a YYYY-MM-DD"},
		{"file named for another year", "2028.json", year2027, "the file says year 2027"},
		{"placeholder without holidays", "2027.json", `{"year": 2027, "source": {"title": "x", "date": "2026-11-01"}, "holidays": []}`, "no holidays"},
		{"no source", "2027.json", strings.Replace(year2027, `"title": "TEST FIXTURE, not a real notice", `, ``, 1), "title is required"},
		{"unknown field", "2027.json", strings.Replace(year2027, `"days": 8`, `"days": 8, "makeup": []`, 1), "unknown field"},
		{"trailing data", "2027.json", year2027 + "{}", "data after"},
		{"not JSON", "2027.json", "year: 2027", "calendar year file"},
		{"too large", "2027.json", year2027 + strings.Repeat(" ", MaxYearFileBytes), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{
				tc.file:     {Data: []byte(tc.body)},
				"2029.json": {Data: []byte(strings.ReplaceAll(year2027, "2027-", "2029-"))},
			}
			// 2029.json is bad too (its year field says 2027), so both problems are reported and
			// nothing is loaded.
			cal, loaded, err := Official().LoadFS(fsys, "ops")
			if err == nil {
				t.Fatalf("loaded %v", loaded)
			}
			if cal != nil || loaded != nil {
				t.Error("a failed load returned a calendar")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "ops/2029.json") {
				t.Errorf("error %q does not name every bad file", err)
			}
		})
	}
}

func TestEstimateMerge(t *testing.T) {
	var a, b Estimate
	a.note(2028)
	b.note(2027)
	b.note(2028)
	m := a.finish().Merge(b.finish())
	if !m.Conservative || len(m.Years) != 2 || m.Years[0] != 2027 || !strings.Contains(m.Warning.EN, "2027, 2028") {
		t.Errorf("merge = %+v", m)
	}
	if z := (Estimate{}).Merge(Estimate{}); z.Conservative || z.Warning.EN != "" {
		t.Errorf("merge of exact = %+v", z)
	}
}

func TestOfficialIsShared(t *testing.T) {
	if Official() != Official() {
		t.Error("the embedded calendar is parsed more than once")
	}
}
