package storetest

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/wire"
)

// population is a small fleet over three sites, with every status the dashboard filters on.
//
//	site a (Alpha 北京): a-01 compliant online, a-02 non_compliant (critical) online, a-03 offline (lwt), no summary
//	site b (Beta_Lab):   b-01 compliant, fail-safe error, b-02 non_compliant (high), offline shutdown
//	no birth:            x-01 compliant (a summary before its birth)
func population(t *testing.T, s fleet.Store) {
	t.Helper()
	step := 0
	apply := func(what string, ok bool, err error) {
		t.Helper()
		want(t, what, ok, err, true)
		step++
	}
	for _, b := range []wire.Birth{birth("a-01", 1, 1, "a"), birth("a-02", 1, 1, "a"), birth("a-03", 1, 1, "a"),
		birth("b-01", 1, 1, "b"), birth("b-02", 1, 1, "b")} {
		if b.Site == "a" {
			b.SiteName = "Alpha 北京"
		} else {
			b.SiteName = "Beta_Lab"
		}
		ok, err := s.ApplyBirth(ctx, b, at(step))
		apply("birth "+b.Dev, ok, err)
	}
	for _, dev := range []string{"a-01", "a-02", "a-03", "b-01", "b-02"} {
		ok, err := s.ApplyState(ctx, online(dev, 1, 2), at(step))
		apply("online "+dev, ok, err)
	}
	ok, err := s.ApplyState(ctx, lwt("a-03", 1), at(step))
	apply("lwt", ok, err)
	ok, err = s.ApplyState(ctx, state("b-02", 1, 9, wire.StateOffline, "shutdown"), at(step))
	apply("shutdown", ok, err)
	ok, err = s.ApplyCompliance(ctx, compliance("a-01", 1, 3), at(step))
	apply("a-01", ok, err)
	ok, err = s.ApplyCompliance(ctx, compliance("a-02", 1, 3, failing("c.raw", "critical"), failing("c.sign", "high")), at(step))
	apply("a-02", ok, err)
	c := compliance("b-01", 1, 3)
	c.Status, c.FailSafe, c.Fault = wire.StatusError, true, "facts unknown"
	ok, err = s.ApplyCompliance(ctx, c, at(step))
	apply("b-01", ok, err)
	ok, err = s.ApplyCompliance(ctx, compliance("b-02", 1, 3, failing("c.sign", "high"), failing("c.minor", "low")), at(step))
	apply("b-02", ok, err)
	ok, err = s.ApplyCompliance(ctx, compliance("x-01", 1, 3), at(step))
	apply("x-01", ok, err)
}

func devicesPage(t *testing.T, s fleet.Store, q fleet.DeviceQuery) ([]string, int) {
	t.Helper()
	ds, total, err := s.Devices(ctx, q)
	if err != nil {
		t.Fatalf("%+v: %v", q, err)
	}
	return deviceIDs(ds), total
}

var queryScenarios = []scenario{
	{"paging_and_search", func(t *testing.T, s fleet.Store) {
		var all []string
		for i := 0; i < 120; i++ {
			site := []string{"s2", "s1", "s3"}[i%3]
			dev := fmt.Sprintf("DEV-%03d", i)
			b := birth(dev, 1, 1, site)
			b.SiteName = map[string]string{"s1": "North Gate", "s2": "South 100%", "s3": "东门"}[site]
			ok, err := s.ApplyBirth(ctx, b, at(i))
			want(t, dev, ok, err, true)
			all = append(all, site+"/"+dev)
		}
		sort.Strings(all)
		var ordered []string
		for _, k := range all {
			ordered = append(ordered, k[3:])
		}
		ids, total := devicesPage(t, s, fleet.DeviceQuery{})
		equal(t, "total", total, 120)
		equal(t, "first page: 50, by site then id", ids, ordered[:50])
		ids, _ = devicesPage(t, s, fleet.DeviceQuery{Offset: 50, Limit: 50})
		equal(t, "second page", ids, ordered[50:100])
		ids, total = devicesPage(t, s, fleet.DeviceQuery{Offset: 100, Limit: 50})
		equal(t, "last page", ids, ordered[100:])
		equal(t, "total on the last page", total, 120)
		ids, total = devicesPage(t, s, fleet.DeviceQuery{Offset: 500})
		equal(t, "past the end", len(ids), 0)
		equal(t, "total past the end", total, 120)

		ids, total = devicesPage(t, s, fleet.DeviceQuery{Search: "dev-01"})
		equal(t, "id substring, any case", ids, []string{"DEV-010", "DEV-013", "DEV-016", "DEV-019", "DEV-012", "DEV-015", "DEV-018", "DEV-011", "DEV-014", "DEV-017"})
		equal(t, "total", total, 10)
		_, total = devicesPage(t, s, fleet.DeviceQuery{Search: "north"})
		equal(t, "site name substring", total, 40)
		_, total = devicesPage(t, s, fleet.DeviceQuery{Search: "东"})
		equal(t, "site name in Chinese", total, 40)
		_, total = devicesPage(t, s, fleet.DeviceQuery{Search: "100%"})
		equal(t, "a literal %", total, 40)
		_, total = devicesPage(t, s, fleet.DeviceQuery{Search: "V_0"})
		equal(t, "a literal _", total, 0)
		ids, total = devicesPage(t, s, fleet.DeviceQuery{Site: "s3", Search: "DEV-1", Limit: 3})
		equal(t, "site and search", ids, []string{"DEV-101", "DEV-104", "DEV-107"})
		equal(t, "total", total, 7)
	}},
	{"devices_status_filter", func(t *testing.T, s fleet.Store) {
		population(t, s)
		for _, c := range []struct {
			status string
			want   []string
		}{
			{"", []string{"x-01", "a-01", "a-02", "a-03", "b-01", "b-02"}},
			{"compliant", []string{"x-01", "a-01"}},
			{"non_compliant", []string{"a-02", "b-02"}},
			{"critical", []string{"a-02"}},
			{"offline", []string{"a-03", "b-02"}},
			{"error", []string{"b-01"}},
		} {
			ids, total := devicesPage(t, s, fleet.DeviceQuery{Status: c.status})
			sameList(t, "status "+c.status, ids, c.want)
			equal(t, "total of "+c.status, total, len(c.want))
		}
		ids, _ := devicesPage(t, s, fleet.DeviceQuery{Status: "non_compliant", Site: "b"})
		equal(t, "status and site", ids, []string{"b-02"})
		if _, _, err := s.Devices(ctx, fleet.DeviceQuery{Status: "bogus"}); err == nil {
			t.Fatal("an unknown status filter was accepted")
		}
	}},
	{"overview_by_site", func(t *testing.T, s fleet.Store) {
		population(t, s)
		o, err := s.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "sites", o.Sites, []fleet.SiteSummary{
			{Site: "", Devices: 1, Compliant: 1},
			{Site: "a", SiteName: "Alpha 北京", Devices: 3, Compliant: 1, NonCompliant: 1, Critical: 1, Offline: 1},
			{Site: "b", SiteName: "Beta_Lab", Devices: 2, NonCompliant: 1, Offline: 1, FailSafe: 1},
		})
		equal(t, "total", o.Total, fleet.SiteSummary{Devices: 6, Compliant: 2, NonCompliant: 2, Critical: 1, Offline: 2, FailSafe: 1})
	}},
	{"overview_empty", func(t *testing.T, s fleet.Store) {
		o, err := s.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Sites) != 0 || o.Total != (fleet.SiteSummary{}) {
			t.Fatalf("an empty fleet: %+v", o)
		}
	}},
	{"device_not_found", func(t *testing.T, s fleet.Store) {
		_, err := s.Device(ctx, "nobody")
		notFound(t, "device", err)
	}},
	{"device_ids", func(t *testing.T, s fleet.Store) {
		population(t, s)
		equal(t, "ids", must[[]string](t)(s.DeviceIDs(ctx)), []string{"a-01", "a-02", "a-03", "b-01", "b-02", "x-01"})
	}},
	{"open_violations_of_one_device_exactly", func(t *testing.T, s fleet.Store) {
		// room-1's page must not lose its violations to room-10 … room-19, whose ids contain "room-1".
		ctx := context.Background()
		for i, dev := range []string{"room-1", "room-10", "room-11", "room-12"} {
			want(t, "birth", must[bool](t)(s.ApplyBirth(ctx, birth(dev, 1, 1, "hotel"), at(i))), nil, true)
			_, err := s.AddEvent(ctx, opened(dev, 1, 2, "FRM-13-PRIVATE-SPACE", "critical"), at(i))
			if err != nil {
				t.Fatal(err)
			}
		}
		vs := openViolations(t, s, fleet.ViolationQuery{Dev: "room-1", Limit: 2})
		if len(vs) != 1 || vs[0].Dev != "room-1" {
			t.Fatalf("violations of room-1: %+v", vs)
		}
		if vs[0].Site != "hotel" || vs[0].SiteName != "Site hotel" {
			t.Fatalf("site %q, site name %q", vs[0].Site, vs[0].SiteName)
		}
	}},
	{"open_violations_order_and_filters", func(t *testing.T, s fleet.Store) {
		population(t, s)
		ok, err := s.AddEvent(ctx, opened("x-01", 1, 4, "c.raw", "critical"), at(50))
		want(t, "x-01 opened", ok, err, true)
		v, total, err := s.OpenViolations(ctx, fleet.ViolationQuery{})
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "by severity, site, device, control", ids(v), []string{"x-01/c.raw", "a-02/c.raw", "a-02/c.sign", "b-02/c.sign", "b-02/c.minor"})
		equal(t, "total", total, 5)
		equal(t, "site of each", []string{v[0].Site, v[1].Site, v[4].Site}, []string{"", "a", "b"})
		for _, c := range []struct {
			name string
			q    fleet.ViolationQuery
			want []string
			n    int
		}{
			{"site", fleet.ViolationQuery{Site: "b"}, []string{"b-02/c.sign", "b-02/c.minor"}, 2},
			{"search", fleet.ViolationQuery{Search: "A-0"}, []string{"a-02/c.raw", "a-02/c.sign"}, 2},
			{"control", fleet.ViolationQuery{Control: "c.sign"}, []string{"a-02/c.sign", "b-02/c.sign"}, 2},
			{"severity", fleet.ViolationQuery{Severity: "critical"}, []string{"x-01/c.raw", "a-02/c.raw"}, 2},
			{"page", fleet.ViolationQuery{Offset: 1, Limit: 2}, []string{"a-02/c.raw", "a-02/c.sign"}, 5},
			{"everything", fleet.ViolationQuery{Site: "a", Search: "02", Control: "c.raw", Severity: "critical"}, []string{"a-02/c.raw"}, 1},
		} {
			v, total, err := s.OpenViolations(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			equal(t, c.name, ids(v), c.want)
			equal(t, c.name+" total", total, c.n)
		}
	}},
	{"violation_follows_device_site", func(t *testing.T, s fleet.Store) {
		ok, err := s.AddEvent(ctx, opened("d1", 1, 1, "c.a", "high"), at(1))
		want(t, "opened before any birth", ok, err, true)
		ok, err = s.ApplyBirth(ctx, birth("d1", 1, 2, "s9"), at(2))
		want(t, "birth", ok, err, true)
		v := openViolations(t, s, fleet.ViolationQuery{Site: "s9"})
		if len(v) != 1 || v[0].Site != "s9" {
			t.Fatalf("violations of site s9: %+v", v)
		}
		ok, err = s.ApplyBirth(ctx, birth("d1", 2, 1, "s10"), at(3))
		want(t, "moved", ok, err, true)
		ok, err = s.ApplyCompliance(ctx, compliance("d1", 2, 2, failing("c.a", "high"), failing("c.b", "low")), at(4))
		want(t, "summary", ok, err, true)
		equal(t, "none left at s9", len(openViolations(t, s, fleet.ViolationQuery{Site: "s9"})), 0)
		v = openViolations(t, s, fleet.ViolationQuery{Site: "s10"})
		equal(t, "both at s10", ids(v), []string{"d1/c.a", "d1/c.b"})
	}},
}

var filingScenarios = []scenario{
	{"filing_records_oldest_first", func(t *testing.T, s fleet.Store) {
		recs := []fleet.FilingRecord{
			{Kind: "filed", Date: "2025-07-10", Reference: "京网信备 123", Note: "filed", CreatedAt: at(3)},
			{Kind: "threshold_crossed", Date: "2025-06-02", CreatedAt: at(1)},
			{Kind: "material_change", Date: "2025-07-10", Note: "second that day", CreatedAt: at(4)},
		}
		for _, r := range recs {
			if err := s.AddFilingRecord(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got := must[[]fleet.FilingRecord](t)(s.FilingRecords(ctx))
		equal(t, "count", len(got), 3)
		var kinds []string
		for _, r := range got {
			kinds = append(kinds, r.Kind)
		}
		equal(t, "oldest first", kinds, []string{"threshold_crossed", "filed", "material_change"})
		equal(t, "fields", []string{got[1].Date, got[1].Reference, got[1].Note}, []string{"2025-07-10", "京网信备 123", "filed"})
		sameTime(t, "created", got[1].CreatedAt, at(3))
	}},
	{"filing_record_needs_a_date", func(t *testing.T, s fleet.Store) {
		if err := s.AddFilingRecord(ctx, fleet.FilingRecord{Kind: "filed", Date: "10/07/2025"}); err == nil {
			t.Fatal("a date that does not sort was accepted")
		}
		equal(t, "none", len(must[[]fleet.FilingRecord](t)(s.FilingRecords(ctx))), 0)
	}},
}
