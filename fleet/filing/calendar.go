package filing

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/faceguard/faceguard/wire"
)

// The official working-day calendar, one file per year, each from the State Council General Office's
// notice on that year's holidays (部分节假日安排的通知). A new year is added by dropping its file here (or,
// at run time, in the operator's calendar directory: Calendar.LoadDir).
//
//go:embed calendar/*.json
var officialFiles embed.FS

// ConservativeBuffer is how many working days a due date is moved earlier when the span it is counted
// over reaches a year whose calendar is not loaded.
//
// Why that is conservative: in a year without data the days are counted Mon–Fri. The real calendar
// differs in two ways. A holiday on a weekday removes a working day, which can only move the real due
// date later, so ignoring holidays errs early. A make-up working day (调休上班, a Saturday or Sunday)
// adds a working day, which can move the real due date earlier by one working day each. Stepping back
// K working days covers any span with at most K make-up days, so the real due date is never before the
// one shown. The most seen in one 30-working-day span is 3 (2024: 04-07, 04-28 and 05-11; and 09-14,
// 09-29, 10-12); TestConservativeBufferCoversKnownYears checks the shipped years against this constant.
const ConservativeBuffer = 4

// MaxYearFileBytes bounds a year file; a real one is under 4 KiB.
const MaxYearFileBytes = 64 << 10

// Year is one year of the official calendar, as written in its file.
type Year struct {
	Year     int       `json:"year"`
	Source   Source    `json:"source"`
	Holidays []Holiday `json:"holidays"`
	// Origin is where the year was loaded from: "embedded" or the file's path.
	Origin string `json:"-"`
}

// Source names the notice a year file copies.
type Source struct {
	Title  string `json:"title"`            // e.g. 国务院办公厅关于2026年部分节假日安排的通知
	Number string `json:"number,omitempty"` // e.g. 国办发明电〔2025〕7号
	Date   string `json:"date"`             // the notice's date, YYYY-MM-DD
	URL    string `json:"url,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Holiday is one holiday of the notice: its days off and the make-up working days (调休上班) that go
// with it.
type Holiday struct {
	Name   string `json:"name"`
	NameEN string `json:"name_en,omitempty"`
	// Days is the notice's "共N天"; when set it must equal the number of days off listed.
	Days   int    `json:"days,omitempty"`
	Off    []Date `json:"days_off"`
	MakeUp []Date `json:"make_up_working_days,omitempty"`
}

// ParseYear reads and validates a year file.
func ParseYear(data []byte) (Year, error) {
	var y Year
	if len(data) > MaxYearFileBytes {
		return y, fmt.Errorf("calendar year file: %d bytes, the limit is %d", len(data), MaxYearFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&y); err != nil {
		return Year{}, fmt.Errorf("calendar year file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Year{}, errors.New("calendar year file: data after the JSON object")
	}
	if err := y.Validate(); err != nil {
		return Year{}, err
	}
	return y, nil
}

// Validate checks a year: its source is named, it lists holidays, every date lies in the year, no date
// appears twice, no day is both a holiday and a make-up working day, and every make-up working day is a
// Saturday or Sunday (a make-up "working day" on a weekday would change nothing and is a typo).
//
// A year with no holidays is refused: every year has at least New Year's Day and the Spring Festival,
// and an empty file (a placeholder published before the notice) must not pass for a known calendar.
// A notice whose days cross the year line (the 2012 notice made 2011-12-31 a working day) is split
// between the two year files.
func (y Year) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if y.Year < 2000 || y.Year > 2199 {
		bad("year %d is out of range", y.Year)
	}
	if strings.TrimSpace(y.Source.Title) == "" {
		bad("source: the notice's title is required")
	}
	if _, err := ParseDate(y.Source.Date); err != nil {
		bad("source: %v", err)
	}
	if len(y.Holidays) == 0 {
		bad("no holidays listed: a year file copies a published notice, an empty one is a placeholder")
	}
	seen := map[Date]string{}
	check := func(where string, d Date, makeUp bool) {
		switch {
		case d.IsZero():
			bad("%s: empty date", where)
			return
		case d.Year() != y.Year:
			bad("%s: %s is not in %d", where, d, y.Year)
		case makeUp && !isWeekend(d):
			bad("%s: make-up working day %s is a %s, not a weekend day", where, d, d.Weekday())
		}
		if prev, dup := seen[d]; dup {
			bad("%s: %s is also listed at %s", where, d, prev)
			return
		}
		seen[d] = where
	}
	for i, h := range y.Holidays {
		name := fmt.Sprintf("holidays[%d] %s", i, h.Name)
		if strings.TrimSpace(h.Name) == "" {
			bad("holidays[%d]: name is required", i)
		}
		if len(h.Off) == 0 {
			bad("%s: no days off", name)
		}
		if h.Days != 0 && h.Days != len(h.Off) {
			bad("%s: the notice says %d days, %d are listed", name, h.Days, len(h.Off))
		}
		for j, d := range h.Off {
			check(fmt.Sprintf("%s days_off[%d]", name, j), d, false)
		}
		for j, d := range h.MakeUp {
			check(fmt.Sprintf("%s make_up_working_days[%d]", name, j), d, true)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("calendar %d: %w", y.Year, errors.Join(errs...))
	}
	return nil
}

// Calendar answers whether a date in China is a working day under the official calendar. It is
// immutable: LoadDir returns a new one, so a controller can swap calendars while others read.
type Calendar struct {
	years map[int]*yearDays
}

type yearDays struct {
	Year
	off, makeUp map[Date]bool
}

// NewCalendar builds a calendar from validated years; a later year replaces an earlier one of the same
// number.
func NewCalendar(years ...Year) (*Calendar, error) {
	c := &Calendar{years: map[int]*yearDays{}}
	for _, y := range years {
		if err := y.Validate(); err != nil {
			return nil, err
		}
		yd := &yearDays{Year: y, off: map[Date]bool{}, makeUp: map[Date]bool{}}
		for _, h := range y.Holidays {
			for _, d := range h.Off {
				yd.off[d] = true
			}
			for _, d := range h.MakeUp {
				yd.makeUp[d] = true
			}
		}
		c.years[y.Year] = yd
	}
	return c, nil
}

var official = sync.OnceValues(func() (*Calendar, error) {
	var years []Year
	names, err := fs.Glob(officialFiles, "calendar/*.json")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		data, err := officialFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		y, err := parseYearFile(name, data)
		if err != nil {
			return nil, err
		}
		y.Origin = "embedded"
		years = append(years, y)
	}
	return NewCalendar(years...)
})

// Official returns the calendar shipped with faceguard (calendar/*.json). The files are checked by the
// tests, so a failure here is a build that skipped them; it panics rather than count on a bad calendar.
func Official() *Calendar {
	c, err := official()
	if err != nil {
		panic("filing: the embedded calendar is invalid: " + err.Error())
	}
	return c
}

var yearFileName = regexp.MustCompile(`^([0-9]{4})\.json$`)

func parseYearFile(name string, data []byte) (Year, error) {
	m := yearFileName.FindStringSubmatch(path.Base(name))
	if m == nil {
		return Year{}, fmt.Errorf("%s: a year file is named YYYY.json", name)
	}
	y, err := ParseYear(data)
	if err != nil {
		return Year{}, fmt.Errorf("%s: %w", name, err)
	}
	if want, _ := strconv.Atoi(m[1]); y.Year != want {
		return Year{}, fmt.Errorf("%s: the file says year %d", name, y.Year)
	}
	return y, nil
}

// LoadDir returns a calendar with the years in dir added: each file named YYYY.json (other files are
// ignored), validated like the shipped ones. A year already in c is replaced, which is how a notice
// that amends a published year (as in 2020, when the Spring Festival holiday was extended) is applied.
// It is all or nothing: if any year file is invalid, no year is loaded and the error names every
// problem. It also returns the years it loaded.
func (c *Calendar) LoadDir(dir string) (*Calendar, []int, error) {
	return c.LoadFS(os.DirFS(dir), dir)
}

// LoadFS is LoadDir on a file system; label names it in errors and in Year.Origin.
func (c *Calendar) LoadFS(fsys fs.FS, label string) (*Calendar, []int, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, nil, fmt.Errorf("read calendar directory: %w", err)
	}
	var (
		added []Year
		errs  []error
	)
	for _, e := range entries {
		if e.IsDir() || !yearFileName.MatchString(e.Name()) {
			continue
		}
		where := path.Join(label, e.Name())
		data, err := readBounded(fsys, e.Name())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		y, err := parseYearFile(where, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		y.Origin = where
		added = append(added, y)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	all := make([]Year, 0, len(c.years)+len(added))
	for _, yd := range c.years {
		all = append(all, yd.Year)
	}
	all = append(all, added...)
	next, err := NewCalendar(all...)
	if err != nil {
		return nil, nil, err
	}
	loaded := make([]int, 0, len(added))
	for _, y := range added {
		loaded = append(loaded, y.Year)
	}
	slices.Sort(loaded)
	return next, loaded, nil
}

func readBounded(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxYearFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxYearFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxYearFileBytes)
	}
	return data, nil
}

// Years lists the years the calendar knows, in order.
func (c *Calendar) Years() []int {
	ys := make([]int, 0, len(c.years))
	for y := range c.years {
		ys = append(ys, y)
	}
	slices.Sort(ys)
	return ys
}

// Year returns a known year as loaded.
func (c *Calendar) Year(year int) (Year, bool) {
	yd, ok := c.years[year]
	if !ok {
		return Year{}, false
	}
	return yd.Year, true
}

// IsWorkingDay reports whether d is a working day: Mon–Fri and not a holiday, or a make-up working day.
// known is false when d's year has no calendar; working is then the Mon–Fri guess, which the caller
// must not present as official.
func (c *Calendar) IsWorkingDay(d Date) (working, known bool) {
	yd, ok := c.years[d.Year()]
	if !ok {
		return !isWeekend(d), false
	}
	switch {
	case yd.makeUp[d]:
		return true, true
	case yd.off[d]:
		return false, true
	}
	return !isWeekend(d), true
}

// Estimate says how far a computed date can be trusted. The zero Estimate is an exact answer from the
// official calendar.
type Estimate struct {
	// Conservative is set when the span reached a year without calendar data: the date is then moved
	// ConservativeBuffer working days earlier than a Mon–Fri count, so the real one is not earlier.
	Conservative bool      `json:"conservative"`
	Years        []int     `json:"years,omitempty"` // the years without data
	Warning      wire.Text `json:"warning,omitzero"`
}

func (e *Estimate) note(year int) {
	if !slices.Contains(e.Years, year) {
		e.Years = append(e.Years, year)
	}
}

func (e Estimate) finish() Estimate {
	if len(e.Years) == 0 {
		return Estimate{}
	}
	slices.Sort(e.Years)
	e.Conservative = true
	ys := make([]string, len(e.Years))
	files := make([]string, len(e.Years))
	for i, y := range e.Years {
		ys[i] = strconv.Itoa(y)
		files[i] = ys[i] + ".json"
	}
	e.Warning = wire.Text{
		ZH: fmt.Sprintf("%s年的官方节假日安排未加载：日期按周一至周五计算并提前%d个工作日（保守估计，实际截止日不会更早）；国务院公布安排后请加载 %s。",
			strings.Join(ys, "、"), ConservativeBuffer, strings.Join(files, "、")),
		EN: fmt.Sprintf("The official holiday calendar for %s is not loaded: the date counts Mon–Fri and is moved %d working days earlier (conservative: the real due date is not earlier); load %s once the State Council publishes it.",
			strings.Join(ys, ", "), ConservativeBuffer, strings.Join(files, ", ")),
	}
	return e
}

// Merge combines two estimates (for a status built from several dates).
func (e Estimate) Merge(o Estimate) Estimate {
	var m Estimate
	for _, y := range e.Years {
		m.note(y)
	}
	for _, y := range o.Years {
		m.note(y)
	}
	return m.finish()
}

// AddWorkingDays returns the n-th working day after start: the count begins the day after start, so
// 30 working days after 2025-06-01 is 2025-07-14 (the CAC's transitional deadline). A start on a
// holiday, a weekend or a make-up day is counted from the same way.
//
// When the span reaches a year without calendar data the date is conservative (see ConservativeBuffer)
// and the Estimate says which years and why; it is never a silent weekday count.
func (c *Calendar) AddWorkingDays(start Date, n int) (Date, Estimate) {
	if n <= 0 {
		return start, Estimate{}
	}
	var est Estimate
	d := start
	for count := 0; count < n; {
		d = d.AddDays(1)
		working, known := c.IsWorkingDay(d)
		if !known {
			est.note(d.Year())
		}
		if working {
			count++
		}
	}
	if len(est.Years) == 0 {
		return d, Estimate{}
	}
	// Step back ConservativeBuffer working days of the same count (real calendar where known, Mon–Fri
	// where not), never to start or before: the first possible due date is the day after it.
	for k := 0; k < ConservativeBuffer; {
		prev := d.AddDays(-1)
		if !prev.After(start) {
			break
		}
		d = prev
		if working, _ := c.IsWorkingDay(d); working {
			k++
		}
	}
	return d, est.finish()
}

// WorkingDaysBetween counts the working days in (from, to]: the days left from today to a due date,
// 0 when to is today. When to is before from it returns minus the working days in (to, from], the days
// overdue. Days in a year without data are counted Mon–Fri and the Estimate says so.
func (c *Calendar) WorkingDaysBetween(from, to Date) (int, Estimate) {
	sign := 1
	if to.Before(from) {
		from, to, sign = to, from, -1
	}
	var est Estimate
	n := 0
	for d := from.AddDays(1); !d.After(to); d = d.AddDays(1) {
		working, known := c.IsWorkingDay(d)
		if !known {
			est.note(d.Year())
		}
		if working {
			n++
		}
	}
	return sign * n, est.finish()
}
