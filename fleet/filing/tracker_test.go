package filing

import (
	"encoding/json"
	"strings"
	"testing"
)

func rec(kind, date string) Record { return Record{Kind: kind, Date: date} }

func filed(date, ref string) Record { return Record{Kind: KindFiled, Date: date, Reference: ref} }

func TestEvaluate(t *testing.T) {
	se := RelativeError()
	for _, tc := range []struct {
		name    string
		in      Input
		state   State
		band    Band
		overdue bool
		check   func(t *testing.T, s Status)
	}{
		{
			name:  "below",
			in:    Input{Estimate: 50_000, RelativeError: se, Today: MustDate("2025-09-01")},
			state: StateNotRequired, band: BandBelow,
			check: func(t *testing.T, s Status) {
				if s.ErrorBound != 813 || s.Filing != nil || s.NeedsThresholdRecord() {
					t.Errorf("bound %d, filing %+v", s.ErrorBound, s.Filing)
				}
				wantText(t, s.Explain.EN, "No filing required", "50,000", "±813", "100,000")
				wantText(t, s.Explain.ZH, "无需备案", "50,000")
			},
		},
		{
			// 79,000 is under 80,000 but 79,000 + 2 × 0.8125 % × 79,000 = 80,284 is not: the band uses
			// the upper bound.
			name:  "warning from the upper bound",
			in:    Input{Estimate: 79_000, RelativeError: se, Today: MustDate("2025-09-01")},
			state: StateNotRequired, band: BandWarning,
			check: func(t *testing.T, s Status) {
				wantText(t, s.BandExplain.EN, "79,000", "80,284", "warning band")
				wantText(t, s.BandExplain.ZH, "预警区")
				if strings.Contains(s.BandExplain.EN, "may already") {
					t.Error("says the threshold may be reached")
				}
			},
		},
		{
			name:  "warning, the upper bound past the threshold",
			in:    Input{Estimate: 99_000, RelativeError: se, Today: MustDate("2025-09-01")},
			state: StateNotRequired, band: BandWarning,
			check: func(t *testing.T, s Status) {
				wantText(t, s.BandExplain.EN, "may already be there")
				if s.NeedsThresholdRecord() {
					t.Error("the estimate itself is under the threshold: no record")
				}
			},
		},
		{
			name:  "just under the warning band",
			in:    Input{Estimate: 78_700, RelativeError: se, Today: MustDate("2025-09-01")}, // upper 79,979
			state: StateNotRequired, band: BandBelow,
		},
		{
			name:  "over, not yet recorded",
			in:    Input{Estimate: 100_000, RelativeError: se, Today: MustDate("2025-09-15")},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if !s.NeedsThresholdRecord() || s.CrossedRecorded || s.Crossed != MustDate("2025-09-15") {
					t.Errorf("crossed %s recorded %v", s.Crossed, s.CrossedRecorded)
				}
				wantDeadline(t, s.Filing, "2025-09-15", "2025-10-31", 30, false)
				r := s.ThresholdRecord()
				if r.Kind != KindThresholdCrossed || r.Date != "2025-09-15" || !strings.Contains(r.Note, "100000 ± 1625") {
					t.Errorf("threshold record %+v", r)
				}
				wantText(t, s.Explain.EN, "today (2025-09-15)", "record it", "2025-10-31", "30 working days left")
				wantText(t, s.Explain.ZH, "尚无记录", "2025-10-31")
			},
		},
		{
			name: "over, recorded, due today",
			in: Input{Estimate: 101_000, RelativeError: se, Today: MustDate("2025-10-31"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.NeedsThresholdRecord() || !s.CrossedRecorded {
					t.Error("a recorded crossing asks for another record")
				}
				wantDeadline(t, s.Filing, "2025-09-15", "2025-10-31", 0, false)
				wantText(t, s.Explain.EN, "due today")
				wantText(t, s.Explain.ZH, "最后期限")
			},
		},
		{
			name: "overdue",
			in: Input{Estimate: 101_000, RelativeError: se, Today: MustDate("2025-11-03"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15")}},
			state: StateDue, band: BandOver, overdue: true,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Filing, "2025-09-15", "2025-10-31", -1, true)
				wantText(t, s.Explain.EN, "1 working days overdue")
				wantText(t, s.Explain.ZH, "已逾期 1 个工作日")
			},
		},
		{
			name: "the deadline holds when the count falls back under",
			in: Input{Estimate: 97_000, RelativeError: se, Today: MustDate("2025-10-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15")}},
			state: StateDue, band: BandWarning,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Filing, "2025-09-15", "2025-10-31", 18, false) // National Day in between
			},
		},
		{
			name: "crossed before the Measures took effect",
			in: Input{Estimate: 180_000, RelativeError: se, Today: MustDate("2025-07-15"),
				Records: []Record{rec(KindThresholdCrossed, "2024-11-03")}},
			state: StateDue, band: BandOver, overdue: true,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Filing, "2024-11-03", "2025-07-14", -1, true)
				wantText(t, s.Explain.EN, "before the Measures took effect on 2025-06-01", "by 2025-07-14")
			},
		},
		{
			name: "crossed on the day the Measures took effect",
			in: Input{Estimate: 180_000, RelativeError: se, Today: MustDate("2025-06-10"),
				Records: []Record{rec(KindThresholdCrossed, "2025-06-01")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Filing, "2025-06-01", "2025-07-14", 24, false)
			},
		},
		{
			name: "crossed after the Measures took effect",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2025-06-04"),
				Records: []Record{rec(KindThresholdCrossed, "2025-06-03")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Filing, "2025-06-03", "2025-07-15", 29, false)
			},
		},
		{
			name: "filed: no longer due",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2025-12-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-2025-0042")}},
			state: StateFiled, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.Filing.Open() || s.Filing.Overdue || s.Filing.Late || s.Filing.Met != MustDate("2025-10-20") {
					t.Errorf("filing %+v", s.Filing)
				}
				if s.Filed == nil || s.Filed.Reference != "BA-2025-0042" || s.NeedsThresholdRecord() {
					t.Errorf("filed %+v", s.Filed)
				}
				wantText(t, s.Explain.EN, "Filed on 2025-10-20", "BA-2025-0042", "nothing is pending")
				wantText(t, s.Explain.ZH, "已于 2025-10-20 备案", "BA-2025-0042")
			},
		},
		{
			name: "filed late",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2025-12-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-11-05", "BA-1")}},
			state: StateFiled, band: BandOver,
			check: func(t *testing.T, s Status) {
				if !s.Filing.Late || s.Overdue {
					t.Errorf("filing %+v, overdue %v", s.Filing, s.Overdue)
				}
				wantText(t, s.Explain.EN, "after the due date 2025-10-31")
			},
		},
		{
			name: "filed before a crossing was recorded",
			in: Input{Estimate: 100_500, RelativeError: se, Today: MustDate("2025-12-01"),
				Records: []Record{filed("2025-11-05", "BA-1")}},
			state: StateFiled, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.Filing != nil || s.NeedsThresholdRecord() {
					t.Errorf("filing %+v", s.Filing)
				}
			},
		},
		{
			name: "material change after the filing",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2026-02-02"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindMaterialChange, "2026-01-20"), rec(KindMaterialChange, "2026-02-01")}},
			state: StateChangeDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				// The earliest uncovered change sets the due date; the later one does not extend it.
				wantDeadline(t, s.Change, "2026-01-20", "2026-03-09", 21, false)
				wantText(t, s.Explain.EN, "material change on 2026-01-20", "2026-03-09")
				wantText(t, s.Explain.ZH, "重大变更", "更新备案")
			},
		},
		{
			name: "material change covered by an update",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2026-04-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindMaterialChange, "2026-01-20"), filed("2026-03-02", "BA-1-U1")}},
			state: StateFiled, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.Change == nil || s.Change.Open() || s.Change.Met != MustDate("2026-03-02") || s.Change.Late {
					t.Errorf("change %+v", s.Change)
				}
				if s.Filed.Reference != "BA-1-U1" {
					t.Errorf("filed %+v: the latest filing is shown", s.Filed)
				}
			},
		},
		{
			name: "material change overdue",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2026-03-10"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindMaterialChange, "2026-01-20")}},
			state: StateChangeDue, band: BandOver, overdue: true,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Change, "2026-01-20", "2026-03-09", -1, true)
			},
		},
		{
			name: "material change before the filing is part of it",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2025-10-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), rec(KindMaterialChange, "2025-09-20")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.Change != nil || len(s.Problems) != 1 || !strings.Contains(s.Problems[0], "before the first filing") {
					t.Errorf("change %+v, problems %q", s.Change, s.Problems)
				}
			},
		},
		{
			name: "face recognition stopped: cancellation due",
			in: Input{Estimate: 110_000, RelativeError: se, Today: MustDate("2026-09-10"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindFRStopped, "2026-09-10")}},
			state: StateCancelDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				wantDeadline(t, s.Cancel, "2026-09-10", "2026-10-28", 30, false)
				if s.Stopped != MustDate("2026-09-10") {
					t.Errorf("stopped %s", s.Stopped)
				}
				wantText(t, s.Explain.EN, "stopped on 2026-09-10", "cancel the filing", "2026-10-28")
				wantText(t, s.Explain.ZH, "注销备案")
			},
		},
		{
			name: "stopped before filing: the filing deadline is kept",
			in: Input{Estimate: 110_000, RelativeError: se, Today: MustDate("2025-10-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), rec(KindFRStopped, "2025-09-30")}},
			state: StateCancelDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if !s.Filing.Open() || !s.Cancel.Open() {
					t.Errorf("filing %+v cancel %+v", s.Filing, s.Cancel)
				}
				wantText(t, s.Explain.EN, "No filing was made before the stop", "2025-10-31")
			},
		},
		{
			name: "cancelled",
			in: Input{Estimate: 0, RelativeError: se, Today: MustDate("2026-11-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindFRStopped, "2026-09-10"), Record{Kind: KindCancelled, Date: "2026-10-15", Reference: "BA-1"}}},
			state: StateCancelled, band: BandBelow,
			check: func(t *testing.T, s Status) {
				if s.Cancel.Open() || s.Cancel.Met != MustDate("2026-10-15") || s.Cancelled == nil || s.Overdue {
					t.Errorf("cancel %+v", s.Cancel)
				}
				wantText(t, s.Explain.EN, "cancelled on 2026-10-15")
			},
		},
		{
			name: "cancelled but the fleet still reports over the threshold",
			in: Input{Estimate: 105_000, RelativeError: se, Today: MustDate("2026-11-02"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindFRStopped, "2026-09-10"), rec(KindCancelled, "2026-10-15")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if !s.NeedsThresholdRecord() || s.Cancelled == nil || s.Filed != nil {
					t.Errorf("needs record %v, cancelled %+v, filed %+v", s.NeedsThresholdRecord(), s.Cancelled, s.Filed)
				}
			},
		},
		{
			name: "a new cycle after a cancellation",
			in: Input{Estimate: 100_000, RelativeError: se, Today: MustDate("2026-11-20"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindCancelled, "2026-10-15"), rec(KindThresholdCrossed, "2026-11-16")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.Crossed != MustDate("2026-11-16") || s.Filed != nil || s.NeedsThresholdRecord() {
					t.Errorf("crossed %s filed %+v", s.Crossed, s.Filed)
				}
			},
		},
		{
			name: "a deadline in a year without calendar data",
			in: Input{Estimate: 100_000, RelativeError: se, Today: MustDate("2026-12-10"),
				Records: []Record{rec(KindThresholdCrossed, "2026-12-10")}},
			state: StateDue, band: BandOver,
			check: func(t *testing.T, s Status) {
				if !s.Filing.Estimate.Conservative || !s.Estimate.Conservative || s.Estimate.Years[0] != 2027 {
					t.Errorf("estimate %+v", s.Filing.Estimate)
				}
				wantText(t, s.Explain.EN, "2027 is not loaded")
				wantText(t, s.Explain.ZH, "2027年的官方节假日安排未加载")
			},
		},
		{
			name: "records out of order, bad and future ones ignored",
			in: Input{Estimate: 120_000, RelativeError: se, Today: MustDate("2025-12-01"),
				Records: []Record{filed("2025-10-20", "BA-1"), rec(KindThresholdCrossed, "2025-09-15"),
					rec("renewed", "2025-10-01"), rec(KindMaterialChange, "2025-13-01"), rec(KindFRStopped, "2026-01-01"),
					rec(KindThresholdCrossed, "2025-09-20")}},
			state: StateFiled, band: BandOver,
			check: func(t *testing.T, s Status) {
				if s.Crossed != MustDate("2025-09-15") || s.Stopped != (Date{}) {
					t.Errorf("crossed %s stopped %s", s.Crossed, s.Stopped)
				}
				if len(s.Problems) != 3 {
					t.Errorf("problems %q", s.Problems)
				}
			},
		},
		{
			name: "a stop or a cancellation with nothing filed is ignored",
			in: Input{Estimate: 40_000, RelativeError: se, Today: MustDate("2025-12-01"),
				Records: []Record{rec(KindFRStopped, "2025-10-01"), rec(KindCancelled, "2025-10-02")}},
			state: StateNotRequired, band: BandBelow,
			check: func(t *testing.T, s Status) {
				if s.Cancel != nil || s.Cancelled != nil || len(s.Problems) != 2 {
					t.Errorf("cancel %+v, problems %q", s.Cancel, s.Problems)
				}
			},
		},
		{
			name: "a cancellation ends a pending update",
			in: Input{Estimate: 1_000, RelativeError: se, Today: MustDate("2026-12-01"),
				Records: []Record{rec(KindThresholdCrossed, "2025-09-15"), filed("2025-10-20", "BA-1"),
					rec(KindMaterialChange, "2026-01-20"), rec(KindFRStopped, "2026-09-10"), rec(KindCancelled, "2026-11-20")}},
			state: StateCancelled, band: BandBelow,
			check: func(t *testing.T, s Status) {
				if s.Change != nil || !s.Cancel.Late {
					t.Errorf("change %+v, cancel %+v", s.Change, s.Cancel)
				}
			},
		},
		{
			name:  "some sketches missing: a lower bound",
			in:    Input{Estimate: 60_000, RelativeError: se, MissingSketches: 3, Today: MustDate("2025-09-01")},
			state: StateNotRequired, band: BandBelow,
			check: func(t *testing.T, s Status) {
				if !s.LowerBound {
					t.Error("not marked a lower bound")
				}
				wantText(t, s.BandExplain.EN, "3 devices", "lower bound")
			},
		},
		{
			name:  "unusable inputs",
			in:    Input{Estimate: -5, RelativeError: -1},
			state: StateNotRequired, band: BandBelow,
			check: func(t *testing.T, s Status) {
				if s.Count != 0 || s.RelativeError != RelativeError() || len(s.Problems) != 3 {
					t.Errorf("count %d rse %v problems %q", s.Count, s.RelativeError, s.Problems)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Evaluate(Official(), DefaultConfig(), tc.in)
			if s.State != tc.state || s.Band != tc.band || s.Overdue != tc.overdue {
				t.Errorf("state %s band %s overdue %v; want %s %s %v (%s)", s.State, s.Band, s.Overdue, tc.state, tc.band, tc.overdue, s.Explain.EN)
			}
			if s.Explain.ZH == "" || s.Explain.EN == "" || s.BandExplain.ZH == "" || s.BandExplain.EN == "" {
				t.Errorf("an explanation is missing: %+v %+v", s.Explain, s.BandExplain)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
			if _, err := json.Marshal(s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func wantDeadline(t *testing.T, d *Deadline, trigger, due string, remaining int, overdue bool) {
	t.Helper()
	if d == nil {
		t.Fatal("no deadline")
	}
	if d.Trigger.String() != trigger || d.Due.String() != due || d.Remaining != remaining || d.Overdue != overdue {
		t.Errorf("deadline %s → %s, %d left, overdue %v; want %s → %s, %d, %v",
			d.Trigger, d.Due, d.Remaining, d.Overdue, trigger, due, remaining, overdue)
	}
	if d.Explain.ZH == "" || d.Explain.EN == "" {
		t.Errorf("deadline without an explanation: %+v", d)
	}
}

func wantText(t *testing.T, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("%q does not say %q", text, p)
		}
	}
}

// The status as the API serves it: dates as YYYY-MM-DD, absent parts left out.
func TestStatusJSON(t *testing.T) {
	s := Evaluate(Official(), DefaultConfig(), Input{Estimate: 100_000, RelativeError: RelativeError(),
		Today: MustDate("2025-09-15"), Records: []Record{rec(KindThresholdCrossed, "2025-09-15")}})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	filing := m["filing"].(map[string]any)
	if filing["due"] != "2025-10-31" || m["crossed"] != "2025-09-15" || m["state"] != "due" || m["band"] != "over" {
		t.Errorf("JSON %s", b)
	}
	for _, absent := range []string{"material_change", "cancellation", "filed", "fr_stopped", "estimate", "problems"} {
		if _, ok := m[absent]; ok {
			t.Errorf("%s is present: %s", absent, b)
		}
	}
	if _, ok := filing["met"]; ok {
		t.Errorf("met is present: %s", b)
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1234567: "1,234,567", -80000: "-80,000"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
}
