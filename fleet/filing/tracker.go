package filing

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/faceguard/faceguard/wire"
)

// Kinds of filing record (fleet.FilingRecord.Kind).
const (
	KindThresholdCrossed = "threshold_crossed" // the first day the merged estimate reached the threshold
	KindFiled            = "filed"             // a filing, or an update of it, was made (Reference: its number)
	KindMaterialChange   = "material_change"   // a material change to what was filed
	KindFRStopped        = "fr_stopped"        // face recognition stopped
	KindCancelled        = "cancelled"         // the filing was cancelled
)

// The Measures took effect on InForce; a processor already over the threshold then had to file by
// TransitionalDue (the CAC's notice), which is also 30 working days after InForce.
var (
	InForce         = NewDate(2025, 6, 1)
	TransitionalDue = NewDate(2025, 7, 14)
)

// Record is one dated fact of the filing tracker: fleet.FilingRecord without what the tracker does not
// read. The controller copies Kind, Date and Reference.
type Record struct {
	Kind      string `json:"kind"`
	Date      string `json:"date"` // YYYY-MM-DD, the date in China
	Reference string `json:"reference,omitempty"`
	Note      string `json:"note,omitempty"`
}

// Config holds the numbers of Art. 15 and the warning band.
type Config struct {
	Threshold   int // persons stored that oblige the filing: 100,000
	WarningFrom int // the warning band starts here: 80,000
	WorkingDays int // the time to file, update or cancel: 30 working days
}

// DefaultConfig is Art. 15 with a warning band from 80,000 persons.
func DefaultConfig() Config {
	return Config{Threshold: 100_000, WarningFrom: 80_000, WorkingDays: 30}
}

// Input is what the controller knows today.
type Input struct {
	// Estimate is the merged distinct count of enrolled persons across the fleet (Merge).
	Estimate int
	// RelativeError is the estimate's relative standard error (RelativeError()); 0 for an exact count.
	RelativeError float64
	// MissingSketches counts devices whose sketch could not be merged (MergeError): the estimate is then
	// a lower bound.
	MissingSketches int
	// Records are the filing records, in the order they were recorded.
	Records []Record
	// Today is the date in China (Today(clock.Now())).
	Today Date
}

// Band places the count against the threshold.
type Band string

// Bands.
const (
	BandBelow   Band = "below"   // count + 2 standard errors < WarningFrom
	BandWarning Band = "warning" // count + 2 standard errors ≥ WarningFrom, count < Threshold
	BandOver    Band = "over"    // count ≥ Threshold
)

// State is where the filing stands (research/regulation.md §4, filing.status).
type State string

// States, in the order a processor meets them.
const (
	StateNotRequired State = "not_required" // under the threshold and nothing open
	StateDue         State = "due"          // the threshold was reached, no filing yet
	StateFiled       State = "filed"        // filed, nothing pending
	StateChangeDue   State = "change_due"   // a material change awaits its update
	StateCancelDue   State = "cancel_due"   // face recognition stopped, the filing awaits cancellation
	StateCancelled   State = "cancelled"    // the filing was cancelled
)

// Deadline is one 30-working-day duty.
type Deadline struct {
	Trigger Date `json:"trigger,omitzero"` // the day the clock started (counted from the day after)
	Due     Date `json:"due,omitzero"`     // the last day
	// Remaining is the working days after today up to Due: 0 means today is the last day; negative,
	// the working days since Due. Zero and meaningless once Met.
	Remaining int       `json:"remaining"`
	Overdue   bool      `json:"overdue"`
	Met       Date      `json:"met,omitzero"` // when the duty was done
	Late      bool      `json:"late,omitempty"`
	Estimate  Estimate  `json:"estimate,omitzero"`
	Explain   wire.Text `json:"explain"`
}

// Open reports whether the duty is still to be done.
func (d *Deadline) Open() bool { return d != nil && d.Met.IsZero() }

// Done is a duty done: the date, and the filing's reference where there is one.
type Done struct {
	Date      Date   `json:"date"`
	Reference string `json:"reference,omitempty"`
}

// Status is the filing tracker's answer, for the dashboard, the API and the report.
type Status struct {
	Today Date `json:"today"`

	Count         int     `json:"count"`
	RelativeError float64 `json:"relative_error"`
	// ErrorBound is two standard errors in persons (about 95 %): the count is Count ± ErrorBound.
	ErrorBound int `json:"error_bound"`
	// LowerBound is set when some devices' sketches were missing: the true count may be higher.
	LowerBound  bool      `json:"lower_bound,omitempty"`
	Threshold   int       `json:"threshold"`
	WarningFrom int       `json:"warning_from"`
	Band        Band      `json:"band"`
	BandExplain wire.Text `json:"band_explain"`

	State   State     `json:"state"`
	Overdue bool      `json:"overdue"`
	Explain wire.Text `json:"explain"`

	// Crossed is the day the threshold was reached in the current filing cycle: from the
	// threshold_crossed record, or today when the estimate is over and no record says so yet
	// (CrossedRecorded false: the controller records it, see NeedsThresholdRecord).
	Crossed         Date      `json:"crossed,omitzero"`
	CrossedRecorded bool      `json:"crossed_recorded"`
	Filing          *Deadline `json:"filing,omitempty"`
	Filed           *Done     `json:"filed,omitempty"` // the latest filing or update
	Change          *Deadline `json:"material_change,omitempty"`
	Stopped         Date      `json:"fr_stopped,omitzero"`
	Cancel          *Deadline `json:"cancellation,omitempty"`
	Cancelled       *Done     `json:"cancelled,omitempty"`

	// Estimate covers every date above: set when any was computed without the official calendar.
	Estimate Estimate `json:"estimate,omitzero"`
	// Problems lists records that were ignored, and why.
	Problems []string `json:"problems,omitempty"`
}

// NeedsThresholdRecord reports whether the controller should store a threshold_crossed record dated
// today (ThresholdRecord): the estimate is over the threshold and no open filing cycle records a
// crossing or a filing. The deadline runs from the day recorded, so it is recorded on the first day.
func (s *Status) NeedsThresholdRecord() bool { return !s.Crossed.IsZero() && !s.CrossedRecorded }

// ThresholdRecord is the record NeedsThresholdRecord asks for.
func (s *Status) ThresholdRecord() Record {
	return Record{
		Kind: KindThresholdCrossed,
		Date: s.Today.String(),
		Note: fmt.Sprintf("merged estimate %d ± %d persons (threshold %d)", s.Count, s.ErrorBound, s.Threshold),
	}
}

// cycle is one filing's life: crossing, filing, changes, stop, cancellation. A record after a
// cancellation starts the next cycle.
type cycle struct {
	crossed       Date
	firstFiled    Done
	lastFiled     Done
	pendingChange Date // the earliest material change not yet covered by a later filing
	lastChange    Date // the latest material change, for the record once covered
	changeMet     Date
	stopped       Date
	cancelled     Done
}

func (c *cycle) closed() bool { return !c.cancelled.Date.IsZero() }

// Evaluate works out the filing status. It is a pure function of its inputs and the calendar.
//
// Counting convention (a judgement call): the threshold is reached when the estimate itself reaches
// Config.Threshold. HyperLogLog's estimate is unbiased, so taking the upper bound would start a legal
// clock on a day the fleet is more likely than not under 100,000, and taking the lower bound would start
// it late. The margin is the warning band instead: it is entered when count + 2 standard errors reaches
// Config.WarningFrom, and the explanation says when the upper bound is already past the threshold.
//
// Records are ordered by date, keeping their given order within a day. In a cycle: the earliest
// threshold_crossed counts; the first filed meets the filing duty and each later one is an update that
// covers the material changes before it; the earliest uncovered material change sets the update's due
// date (a later change does not extend it); a material change before the first filing is part of that
// filing; the earliest fr_stopped starts the cancellation clock; cancelled ends the cycle. A stop or a
// cancellation with neither a crossing nor a filing before it is ignored (and listed in Problems).
func Evaluate(cal *Calendar, cfg Config, in Input) Status {
	if cal == nil {
		cal = Official()
	}
	if cfg.Threshold <= 0 {
		cfg = DefaultConfig()
	}
	if cfg.WorkingDays <= 0 {
		cfg.WorkingDays = DefaultConfig().WorkingDays
	}
	s := Status{
		Today:         in.Today,
		Count:         in.Estimate,
		RelativeError: in.RelativeError,
		LowerBound:    in.MissingSketches > 0,
		Threshold:     cfg.Threshold,
		WarningFrom:   cfg.WarningFrom,
	}
	if in.Today.IsZero() {
		s.problem("today's date is not set: days remaining and overdue are not computed")
	}
	if s.Count < 0 {
		s.problem(fmt.Sprintf("estimate %d is negative, read as 0", s.Count))
		s.Count = 0
	}
	if math.IsNaN(s.RelativeError) || math.IsInf(s.RelativeError, 0) || s.RelativeError < 0 || s.RelativeError >= 1 {
		s.problem(fmt.Sprintf("relative error %v is not usable, read as the sketch's %.4f", in.RelativeError, RelativeError()))
		s.RelativeError = RelativeError()
	}
	s.ErrorBound = int(math.Ceil(2 * s.RelativeError * float64(s.Count)))
	s.band(in.MissingSketches)

	cur := s.replay(in.Records)
	s.apply(cal, cfg, cur)
	return s
}

func (s *Status) problem(p string) { s.Problems = append(s.Problems, p) }

func (s *Status) band(missing int) {
	upper := s.Count + s.ErrorBound
	n, u := groupDigits(s.Count), groupDigits(upper)
	e := groupDigits(s.ErrorBound)
	th, wf := groupDigits(s.Threshold), groupDigits(s.WarningFrom)
	switch {
	case s.Count >= s.Threshold:
		s.Band = BandOver
		s.BandExplain = wire.Text{
			ZH: fmt.Sprintf("估计存储 %s 人（±%s），已达到 %s 人的备案门槛。", n, e, th),
			EN: fmt.Sprintf("An estimated %s persons stored (±%s): the %s-person filing threshold is reached.", n, e, th),
		}
	case upper >= s.WarningFrom:
		s.Band = BandWarning
		s.BandExplain = wire.Text{
			ZH: fmt.Sprintf("估计存储 %s 人，加两倍标准误差为 %s 人，已进入预警区（%s 人起）：请准备备案材料。", n, u, wf),
			EN: fmt.Sprintf("An estimated %s persons stored, %s with two standard errors: in the warning band (from %s); prepare the filing.", n, u, wf),
		}
		if upper >= s.Threshold {
			s.BandExplain.ZH += fmt.Sprintf("上限已超过 %s 人门槛，实际人数可能已达到。", th)
			s.BandExplain.EN += fmt.Sprintf(" The upper bound is past the %s threshold: the real count may already be there.", th)
		}
	default:
		s.Band = BandBelow
		s.BandExplain = wire.Text{
			ZH: fmt.Sprintf("估计存储 %s 人，加两倍标准误差为 %s 人，低于预警线 %s 人。", n, u, wf),
			EN: fmt.Sprintf("An estimated %s persons stored, %s with two standard errors: below the warning band (from %s).", n, u, wf),
		}
	}
	if missing > 0 {
		s.BandExplain.ZH += fmt.Sprintf("有 %d 台设备的名单草图不可用，人数为下限。", missing)
		s.BandExplain.EN += fmt.Sprintf(" %d devices' sketches could not be read: the count is a lower bound.", missing)
	}
}

type dated struct {
	Record
	date Date
	pos  int
}

// replay walks the records in date order and returns the current cycle.
func (s *Status) replay(records []Record) *cycle {
	var rs []dated
	for i, r := range records {
		d, err := ParseDate(r.Date)
		if err != nil {
			s.problem(fmt.Sprintf("record %d (%s): %v; ignored", i, r.Kind, err))
			continue
		}
		if !s.Today.IsZero() && d.After(s.Today) {
			s.problem(fmt.Sprintf("record %d (%s) is dated %s, after today; ignored", i, r.Kind, d))
			continue
		}
		rs = append(rs, dated{r, d, i})
	}
	slices.SortStableFunc(rs, func(a, b dated) int { return a.date.Compare(b.date) })

	c := &cycle{}
	for _, r := range rs {
		ignore := func(why string) {
			s.problem(fmt.Sprintf("record %d (%s %s): %s; ignored", r.pos, r.Kind, r.date, why))
		}
		switch r.Kind {
		case KindThresholdCrossed:
			if c.closed() {
				c = &cycle{}
			}
			if c.crossed.IsZero() {
				c.crossed = r.date
			}
		case KindFiled:
			if c.closed() {
				c = &cycle{}
			}
			done := Done{Date: r.date, Reference: r.Reference}
			if c.firstFiled.Date.IsZero() {
				c.firstFiled = done
			}
			if !c.pendingChange.IsZero() {
				c.changeMet = r.date
				c.pendingChange = Date{}
			}
			c.lastFiled = done
		case KindMaterialChange:
			switch {
			case c.closed():
				ignore("the filing was already cancelled")
			case c.firstFiled.Date.IsZero():
				ignore("before the first filing, which includes it")
			default:
				c.lastChange = r.date
				if c.pendingChange.IsZero() {
					c.pendingChange = r.date
					c.changeMet = Date{}
				}
			}
		case KindFRStopped:
			switch {
			case c.closed():
				ignore("the filing was already cancelled")
			case c.crossed.IsZero() && c.firstFiled.Date.IsZero():
				ignore("no threshold was reached and nothing was filed, so there is nothing to cancel")
			case c.stopped.IsZero():
				c.stopped = r.date
			}
		case KindCancelled:
			switch {
			case c.closed():
				ignore("the filing was already cancelled")
			case c.crossed.IsZero() && c.firstFiled.Date.IsZero():
				ignore("nothing was filed")
			default:
				c.cancelled = Done{Date: r.date, Reference: r.Reference}
			}
		default:
			ignore("unknown kind")
		}
	}
	return c
}

func (s *Status) apply(cal *Calendar, cfg Config, c *cycle) {
	th := groupDigits(cfg.Threshold)
	if c.closed() && s.Count >= cfg.Threshold {
		// The filing was cancelled but the fleet still reports persons over the threshold: the devices
		// have not purged, or recognition resumed. Face information of that many persons is stored, so
		// a new cycle is owed; the cancellation stays on show.
		s.Cancelled = &c.cancelled
		c = &cycle{}
	}
	crossed := c.crossed
	s.CrossedRecorded = !crossed.IsZero()
	if crossed.IsZero() && c.firstFiled.Date.IsZero() && s.Count >= cfg.Threshold {
		crossed = s.Today
	}
	if c.closed() {
		s.Cancelled = &c.cancelled
	}
	if !c.lastFiled.Date.IsZero() {
		s.Filed = &c.lastFiled
	}
	s.Stopped = c.stopped
	s.Crossed = crossed

	if !crossed.IsZero() {
		due, est := cal.AddWorkingDays(crossed, cfg.WorkingDays)
		if crossed.Before(InForce) {
			due, est = TransitionalDue, Estimate{}
		}
		s.Filing = s.deadline(cal, crossed, due, est, c.firstFiled.Date)
		s.Filing.Explain = s.filingExplain(crossed, th)
	}
	// A cancelled filing has nothing left to update.
	if !c.closed() && (!c.pendingChange.IsZero() || !c.lastChange.IsZero()) {
		trigger, met := c.pendingChange, Date{}
		if trigger.IsZero() {
			trigger, met = c.lastChange, c.changeMet
		}
		due, est := cal.AddWorkingDays(trigger, cfg.WorkingDays)
		s.Change = s.deadline(cal, trigger, due, est, met)
		s.Change.Explain = s.changeExplain()
	}
	if !c.stopped.IsZero() {
		due, est := cal.AddWorkingDays(c.stopped, cfg.WorkingDays)
		s.Cancel = s.deadline(cal, c.stopped, due, est, c.cancelled.Date)
		s.Cancel.Explain = s.cancelExplain(c)
	} else if c.closed() {
		s.Cancel = &Deadline{Met: c.cancelled.Date}
		s.Cancel.Explain = wire.Text{
			ZH: fmt.Sprintf("备案已于 %s 注销。", c.cancelled.Date),
			EN: fmt.Sprintf("The filing was cancelled on %s.", c.cancelled.Date),
		}
	}

	for _, d := range []*Deadline{s.Filing, s.Change, s.Cancel} {
		if d == nil {
			continue
		}
		if d.Open() {
			s.Estimate = s.Estimate.Merge(d.Estimate)
		}
		if d.Overdue && !c.closed() {
			s.Overdue = true
		}
	}

	switch {
	case c.closed():
		s.State, s.Explain = StateCancelled, s.Cancel.Explain
	case !c.stopped.IsZero():
		s.State, s.Explain = StateCancelDue, s.Cancel.Explain
		if s.Filing.Open() {
			s.Explain.ZH += s.Filing.Explain.ZH
			s.Explain.EN += " " + s.Filing.Explain.EN
		}
	case s.Filing.Open():
		s.State, s.Explain = StateDue, s.Filing.Explain
	case s.Change.Open():
		s.State, s.Explain = StateChangeDue, s.Change.Explain
	case s.Filed != nil:
		s.State = StateFiled
		s.Explain = wire.Text{
			ZH: fmt.Sprintf("已于 %s 备案%s，无待办事项。", s.Filed.Date, refZH(s.Filed.Reference)),
			EN: fmt.Sprintf("Filed on %s%s; nothing is pending.", s.Filed.Date, refEN(s.Filed.Reference)),
		}
		if s.Filing != nil && s.Filing.Late {
			s.Explain.ZH += fmt.Sprintf("（晚于截止日 %s）", s.Filing.Due)
			s.Explain.EN += fmt.Sprintf(" (after the due date %s)", s.Filing.Due)
		}
	default:
		s.State = StateNotRequired
		s.Explain = wire.Text{
			ZH: fmt.Sprintf("无需备案：估计存储 %s 人（±%s），未达到 %s 人的门槛。", groupDigits(s.Count), groupDigits(s.ErrorBound), th),
			EN: fmt.Sprintf("No filing required: an estimated %s persons stored (±%s), under the %s threshold.", groupDigits(s.Count), groupDigits(s.ErrorBound), th),
		}
	}
}

func (s *Status) deadline(cal *Calendar, trigger, due Date, est Estimate, met Date) *Deadline {
	d := &Deadline{Trigger: trigger, Due: due, Estimate: est, Met: met}
	switch {
	case !met.IsZero():
		d.Late = met.After(due)
	case !s.Today.IsZero():
		left, lest := cal.WorkingDaysBetween(s.Today, due)
		d.Remaining, d.Overdue = left, s.Today.After(due)
		d.Estimate = d.Estimate.Merge(lest)
	}
	return d
}

// when writes the part of an explanation that says how long is left.
func (s *Status) when(d *Deadline) (zh, en string) {
	switch {
	case s.Today.IsZero():
		return fmt.Sprintf("截止日 %s", d.Due), fmt.Sprintf("due %s", d.Due)
	case d.Overdue:
		return fmt.Sprintf("已逾期 %d 个工作日（截止日 %s）", -d.Remaining, d.Due),
			fmt.Sprintf("%d working days overdue (due %s)", -d.Remaining, d.Due)
	case d.Remaining == 0:
		return fmt.Sprintf("今天（%s）为最后期限", d.Due), fmt.Sprintf("due today, %s", d.Due)
	}
	return fmt.Sprintf("须于 %s 前完成（剩余 %d 个工作日）", d.Due, d.Remaining),
		fmt.Sprintf("due by %s (%d working days left)", d.Due, d.Remaining)
}

func (s *Status) filingExplain(crossed Date, th string) wire.Text {
	d := s.Filing
	if !d.Open() {
		t := wire.Text{
			ZH: fmt.Sprintf("%s 达到 %s 人门槛，已于 %s 备案。", crossed, th, d.Met),
			EN: fmt.Sprintf("The %s threshold was reached on %s; filed on %s.", th, crossed, d.Met),
		}
		if d.Late {
			t.ZH += fmt.Sprintf("（晚于截止日 %s）", d.Due)
			t.EN += fmt.Sprintf(" (after the due date %s)", d.Due)
		}
		return t
	}
	wz, we := s.when(d)
	var t wire.Text
	switch {
	case crossed.Before(InForce):
		t = wire.Text{
			ZH: fmt.Sprintf("办法施行（%s）前已达到 %s 人门槛（%s），须按网信办通知于 %s 前向省级网信部门备案：%s。", InForce, th, crossed, TransitionalDue, wz),
			EN: fmt.Sprintf("The %s threshold was reached on %s, before the Measures took effect on %s: per the CAC notice, file with the provincial CAC by %s — %s.", th, crossed, InForce, TransitionalDue, we),
		}
	case !s.CrossedRecorded:
		t = wire.Text{
			ZH: fmt.Sprintf("估计人数今日（%s）达到 %s 人门槛，尚无记录：须记录达到日期，并在 30 个工作日内向省级网信部门备案，%s。", crossed, th, wz),
			EN: fmt.Sprintf("The estimate reached the %s threshold today (%s) and no record says so yet: record it; file with the provincial CAC within 30 working days, %s.", th, crossed, we),
		}
	default:
		t = wire.Text{
			ZH: fmt.Sprintf("%s 存储人数达到 %s 人，须在 30 个工作日内向省级网信部门备案：%s。", crossed, th, wz),
			EN: fmt.Sprintf("The %s threshold was reached on %s: file with the provincial CAC within 30 working days, %s.", th, crossed, we),
		}
	}
	return withEstimate(t, d.Estimate)
}

func (s *Status) changeExplain() wire.Text {
	d := s.Change
	if !d.Open() {
		return wire.Text{
			ZH: fmt.Sprintf("%s 的重大变更已于 %s 更新备案。", d.Trigger, d.Met),
			EN: fmt.Sprintf("The material change of %s was filed as an update on %s.", d.Trigger, d.Met),
		}
	}
	wz, we := s.when(d)
	return withEstimate(wire.Text{
		ZH: fmt.Sprintf("备案信息于 %s 发生重大变更，须在 30 个工作日内更新备案：%s。", d.Trigger, wz),
		EN: fmt.Sprintf("A material change on %s must be filed as an update within 30 working days: %s.", d.Trigger, we),
	}, d.Estimate)
}

func (s *Status) cancelExplain(c *cycle) wire.Text {
	d := s.Cancel
	if !d.Open() {
		return wire.Text{
			ZH: fmt.Sprintf("%s 停止使用人脸识别，备案已于 %s 注销。", d.Trigger, d.Met),
			EN: fmt.Sprintf("Face recognition stopped on %s; the filing was cancelled on %s.", d.Trigger, d.Met),
		}
	}
	wz, we := s.when(d)
	t := wire.Text{
		ZH: fmt.Sprintf("%s 停止使用人脸识别，须在 30 个工作日内注销备案并依法处理已存储的人脸信息：%s。", d.Trigger, wz),
		EN: fmt.Sprintf("Face recognition stopped on %s: cancel the filing and deal with the stored face information lawfully within 30 working days, %s.", d.Trigger, we),
	}
	if c.firstFiled.Date.IsZero() && !c.crossed.IsZero() {
		t.ZH += "停止前未备案：此处仍保留备案期限（保守处理，是否仍须备案请咨询法务）。"
		t.EN += " No filing was made before the stop: the filing deadline is kept (conservative; ask counsel whether it is still owed)."
	}
	return withEstimate(t, d.Estimate)
}

func withEstimate(t wire.Text, est Estimate) wire.Text {
	if est.Conservative {
		t.ZH += est.Warning.ZH
		t.EN += " " + est.Warning.EN
	}
	return t
}

func refZH(ref string) string {
	if ref == "" {
		return ""
	}
	return "（编号 " + ref + "）"
}

func refEN(ref string) string {
	if ref == "" {
		return ""
	}
	return " (reference " + ref + ")"
}

// groupDigits writes n with thousands separators: 100,000.
func groupDigits(n int) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	digits := strconv.Itoa(n)
	var b strings.Builder
	for i, r := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return sign + b.String()
}
