package filing

import (
	"fmt"
	"time"
)

// ChinaTime is China Standard Time as a fixed UTC+8 zone. The filing dates are dates in China; a fixed
// zone gives them without the tz database, which a device or a minimal container may lack (China has
// kept UTC+8 without daylight saving since 1991).
var ChinaTime = time.FixedZone("UTC+8", 8*60*60)

// Date is a civil date in China: a day on the calendar, with no time of day and no zone. The zero Date
// is "no date".
type Date struct {
	year  int
	month time.Month
	day   int
}

// NewDate returns the date year-month-day, normalising out-of-range values the way time.Date does
// (2025-02-30 is 2025-03-02).
func NewDate(year int, month time.Month, day int) Date {
	return dateOfUTC(time.Date(year, month, day, 0, 0, 0, 0, time.UTC))
}

// DateOf returns the date in China at the instant t.
func DateOf(t time.Time) Date { return dateOfUTC(t.In(ChinaTime)) }

// Today is the date in China at now; the controller passes its clock's now.
func Today(now time.Time) Date { return DateOf(now) }

func dateOfUTC(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// ParseDate reads a date written YYYY-MM-DD, strictly: 2025-6-1 and 2025-02-30 are refused.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || t.Format(time.DateOnly) != s {
		return Date{}, fmt.Errorf("date %q is not a YYYY-MM-DD calendar date", s)
	}
	return dateOfUTC(t), nil
}

// MustDate is ParseDate for constants and tests; it panics on a malformed date.
func MustDate(s string) Date {
	d, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// The arithmetic runs on UTC midnights: UTC has no daylight saving, so every day is 24 hours and a civil
// date maps to exactly one instant.
func (d Date) utc() time.Time { return time.Date(d.year, d.month, d.day, 0, 0, 0, 0, time.UTC) }

// IsZero reports whether d is the zero Date ("no date").
func (d Date) IsZero() bool { return d == Date{} }

// Year, Month and Day are the parts of d.
func (d Date) Year() int             { return d.year }
func (d Date) Month() time.Month     { return d.month }
func (d Date) Day() int              { return d.day }
func (d Date) Weekday() time.Weekday { return d.utc().Weekday() }

// AddDays returns d moved n calendar days (back when n < 0).
func (d Date) AddDays(n int) Date { return dateOfUTC(d.utc().AddDate(0, 0, n)) }

// DaysUntil returns the number of calendar days from d to e (negative when e is before d).
func (d Date) DaysUntil(e Date) int { return int(e.utc().Sub(d.utc()).Hours() / 24) }

// Compare returns -1, 0 or +1 as d is before, the same as, or after e.
func (d Date) Compare(e Date) int {
	switch {
	case d.year != e.year:
		return cmpInt(d.year, e.year)
	case d.month != e.month:
		return cmpInt(int(d.month), int(e.month))
	default:
		return cmpInt(d.day, e.day)
	}
}

// Before and After order dates.
func (d Date) Before(e Date) bool { return d.Compare(e) < 0 }
func (d Date) After(e Date) bool  { return d.Compare(e) > 0 }

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// String writes d as YYYY-MM-DD, and the zero Date as "".
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return fmt.Sprintf("%04d-%02d-%02d", d.year, int(d.month), d.day)
}

// MarshalText writes d as YYYY-MM-DD (JSON: a string; the zero Date is "").
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads YYYY-MM-DD; "" is the zero Date.
func (d *Date) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Date{}
		return nil
	}
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func isWeekend(d Date) bool {
	wd := d.Weekday()
	return wd == time.Saturday || wd == time.Sunday
}
