package sim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/internal/testbroker"
)

func TestBuiltinScenariosParse(t *testing.T) {
	names := BuiltinScenarios()
	if !slices.Contains(names, "default") || !slices.Contains(names, "soak") {
		t.Fatalf("built-in scenarios %v", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			sc, err := LoadScenario(name)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Name == "" || sc.Devices == 0 || len(sc.Events) == 0 {
				t.Fatalf("%+v", sc)
			}
			// The file on disk is the same scenario.
			fromFile, err := LoadScenario(filepath.Join("scenarios", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if fromFile.Name != sc.Name || len(fromFile.Events) != len(sc.Events) {
				t.Fatal("the embedded scenario differs from the file")
			}
			profiles := sc.Profiles(sc.Devices)
			ids := map[string]bool{}
			for _, p := range profiles {
				if _, err := p.normalized(); err != nil {
					t.Fatal(err)
				}
				ids[p.ID] = true
			}
			if len(ids) != sc.Devices {
				t.Fatalf("%d distinct ids for %d devices", len(ids), sc.Devices)
			}
			tl, err := sc.Timeline(sc.Devices, "tcp://127.0.0.1:1883")
			if err != nil {
				t.Fatal(err)
			}
			tl.Close()
		})
	}
}

func TestParseScenario(t *testing.T) {
	sc, err := ParseScenario([]byte(`
name: t
devices: 200
prefix: gate
seed: 3
sites: {count: 4, names: [A, B]}
kinds: {camera: 10%, kiosk: 5}
faults: {hotel_room: 2, face_only: 5%, raw_captures: 1%}
terminal: {adults: 4, residents: [r-1], recognition_every: -1s, raw_backlog: 2}
agent: {evaluate_every: 1h, reconnect_jitter: 100ms, inbox_size: 4}
events:
  - {at: 1s, do: withdraw_consent, devices: 3}
  - {at: 2s, every: 1s, until: 5s, do: raw_captures, devices: 2%, count: 2}
  - {at: 3s, do: network_cut, devices: 10%, for: 2s, mode: drop}
  - {at: 3s, do: clock_jump, devices: 1, by: -1h30m}
`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Agent.EvaluateEvery.D() != time.Hour || sc.Events[3].By.D() != -90*time.Minute ||
		!sc.Faults["face_only"].IsPct || sc.Faults["hotel_room"].N != 2 {
		t.Fatalf("%+v", sc)
	}
	ps := sc.Profiles(200)
	count := func(f func(Profile) bool) int {
		n := 0
		for _, p := range ps {
			if f(p) {
				n++
			}
		}
		return n
	}
	if n := count(func(p Profile) bool { return p.HotelRoom }); n != 2 {
		t.Errorf("%d hotel rooms, want 2", n)
	}
	if n := count(func(p Profile) bool { return p.FaceOnly }); n != 10 {
		t.Errorf("%d face-only doors, want 10 (5%% of 200)", n)
	}
	if n := count(func(p Profile) bool { return p.RawCaptures && p.RawBacklog == 2 }); n != 2 {
		t.Errorf("%d raw-capture terminals with a backlog of 2, want 2", n)
	}
	if n := count(func(p Profile) bool { return p.Kind == device.KindCamera }); n != 20 {
		t.Errorf("%d cameras, want 20", n)
	}
	if n := count(func(p Profile) bool { return p.Kind == device.KindKiosk }); n != 5 {
		t.Errorf("%d kiosks, want 5", n)
	}
	sites := map[string]string{}
	for _, p := range ps {
		sites[p.Site] = p.SiteName
		if p.Adults != 4 || !slices.Equal(p.Residents, []string{"r-1"}) || p.RecognitionEvery >= 0 || !strings.HasPrefix(p.ID, "gate-") {
			t.Fatalf("profile %+v", p)
		}
	}
	if len(sites) != 4 || sites["gate-site-001"] != "A" || sites["gate-site-002"] != "B" || sites["gate-site-003"] != "A #2" ||
		sites["gate-site-004"] != "B #2" {
		t.Fatalf("sites %v", sites)
	}
	// The same seed makes the same fleet.
	if again := sc.Profiles(200); !slices.EqualFunc(ps, again, func(a, b Profile) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Fatal("the same scenario made two fleets")
	}
	if occ := occurrences(sc.Events[1], 0); occ != 4 {
		t.Fatalf("raw_captures happens %d times, want 4 (2s, 3s, 4s, 5s)", occ)
	}
}

// TestScenarioErrorsNameTheKey: every mistake is reported with the key it is at.
func TestScenarioErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`devicess: 10`, `devicess (line 1): unknown key "devicess"`},
		{`agent: {evaluate_evry: 1m}`, `agent.evaluate_evry (line 1): unknown key`},
		{`agent: {evaluate_every: soon}`, `agent.evaluate_every (line 1): "soon" is not a duration`},
		{`agent: {evaluate_every: -1m}`, `agent.evaluate_every: cannot be negative`},
		{"devices: 10\nfaults:\n  hotel_rom: 1", `faults.hotel_rom: unknown fault`},
		{`faults: {hotel_room: 120%}`, `faults.hotel_room (line 1): "120%" is not a percentage`},
		{`faults: {hotel_room: many}`, `faults.hotel_room (line 1): "many" is not a count`},
		{`faults: {hotel_room: 60%, face_only: 50%}`, `faults: the percentages add up to 110%`},
		{`kinds: {robot: 1}`, `kinds.robot: unknown kind`},
		{`devices: ten`, `devices (line 1): "ten" is not a valid whole number`},
		{`prefix: Gate`, `prefix: "Gate" makes invalid device ids`},
		{`sites: {per_site: 5, count: 2}`, `sites: give per_site or count, not both`},
		{`terminal: {residents: resident-1}`, `terminal.residents (line 1): want a list`},
		{"events:\n  - {at: 1s, do: explode, devices: 1}", `events[0].do: "explode" is not an event`},
		{"events:\n  - {at: 1s, do: network_cut, devices: 1}", `events[0].for: required`},
		{"events:\n  - {at: 1s, do: network_cut, devices: 1, for: 1s, mode: sideways}", `events[0].mode: "sideways"`},
		{"events:\n  - {at: 1s, do: clock_jump, devices: 1}", `events[0].by: required`},
		{"events:\n  - {at: 1s, do: raw_captures}", `events[0].devices: required`},
		{"events:\n  - {at: 1s, do: raw_captures, devices: 1, for: 1s}", `events[0]: raw_captures takes count`},
		{"events:\n  - {at: 1s, every: 1s, do: coercive_prompt, devices: 1, for: 2s}", `events[0].every: 1s is not longer than for`},
		{"events:\n  - {at: 1s, do: raw_captures, devices: 1, colour: red}", `events[0].colour (line 2): unknown key "colour"`},
		{"duration: 1m\nevents:\n  - {at: 2m, do: enrol, devices: 1}", `events[0].at: 2m0s is after the end`},
		{"events:\n  - {at: 1s, do: kill_agent, devices: 60%, for: 1s}\n  - {at: 1s, do: network_cut, devices: 60%, for: 1s}",
			`events: network cuts and agent kills take 120% of the devices`},
		{`- a list`, `the document (line 1): want a mapping of keys`},
		{`name: [unclosed`, `scenario: yaml:`},
	} {
		_, err := ParseScenario([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n  got  %v\n  want …%s…", tc.doc, err, tc.want)
		}
	}
	if _, err := LoadScenario("no-such-scenario"); err == nil || !strings.Contains(err.Error(), "default") {
		t.Errorf("an unknown scenario: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("devices: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadScenario(bad); err == nil || !strings.Contains(err.Error(), "bad.yaml: scenario: devices") {
		t.Errorf("a bad file: %v", err)
	}
}

func TestShareOf(t *testing.T) {
	for _, tc := range []struct {
		s    Share
		n    int
		want int
	}{
		{Share{N: 5}, 100, 5}, {Share{N: 5}, 3, 3}, {Share{Percent: 2, IsPct: true}, 100, 2},
		{Share{Percent: 2, IsPct: true}, 10, 1}, {Share{Percent: 0.5, IsPct: true}, 1000, 5},
		{Share{Percent: 100, IsPct: true}, 7, 7}, {Share{Percent: 0, IsPct: true}, 7, 0}, {Share{}, 7, 0},
	} {
		if got := tc.s.Of(tc.n); got != tc.want {
			t.Errorf("%s of %d = %d, want %d", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestTimeline plays a short timeline on a small fleet against a real broker: every event happens to the
// devices it names, and a network cut and a kill leave the fleet connected again.
func TestTimeline(t *testing.T) {
	sc, err := ParseScenario([]byte(`
name: short
prefix: tl
seed: 5
terminal: {recognition_every: -1s, control_poll_every: 50ms}
agent: {reconnect_jitter: 50ms}
events:
  - {at: 0s, do: withdraw_consent, devices: 1, count: 2}
  - {at: 0s, every: 300ms, until: 700ms, do: raw_captures, devices: 1, count: 1}
  - {at: 100ms, do: coercive_prompt, devices: 2, spread: 100ms, for: 300ms}
  - {at: 200ms, do: clock_jump, devices: 1, by: -1h, for: 200ms}
  - {at: 300ms, do: network_cut, devices: 1, for: 500ms}
  - {at: 300ms, do: kill_agent, devices: 1, for: 300ms}
  - {at: 400ms, do: enrol, devices: 1, count: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	b := testbroker.Mochi(t)
	tl, err := sc.Timeline(n, b.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	opts := FleetOptions{Dir: t.TempDir(), Profiles: sc.Profiles(n), BrokerURL: b.URL(), SubjectKey: testSubjectKey,
		Engine: sharedEngine(t), Customize: tl.Customize}
	sc.FleetOptions(&opts)
	f, err := StartFleet(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	var (
		mu  sync.Mutex
		log []Injection
	)
	if err := tl.Run(context.Background(), f, func(in Injection) { mu.Lock(); log = append(log, in); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if done, total, next := tl.Progress(); done != total || total != 9 || next != "" {
		t.Fatalf("progress %d/%d, next %q", done, total, next)
	}
	seen := map[string]int{}
	for _, in := range log {
		if in.Error != "" {
			t.Errorf("%+v", in)
		}
		seen[in.Event+"/"+in.Phase]++
	}
	for k, want := range map[string]int{"withdraw_consent/once": 1, "raw_captures/once": 3, "coercive_prompt/start": 2,
		"coercive_prompt/end": 2, "clock_jump/start": 1, "clock_jump/end": 1, "network_cut/start": 1, "network_cut/end": 1,
		"kill_agent/start": 1, "kill_agent/end": 1, "enrol/once": 1} {
		if seen[k] != want {
			t.Errorf("%s: %d, want %d (log %+v)", k, seen[k], want, log)
		}
	}
	devs := f.Devices()
	withdrawer := devs[tl.Targets(0)[0]].Terminal()
	if st := withdrawer.Stats(); st.Withdrawals != 2 {
		t.Errorf("withdrawals %+v", st)
	}
	if st := devs[tl.Targets(1)[0]].Terminal().Stats(); st.RawCaptures != 3 {
		t.Errorf("captures %+v", st)
	}
	if st := devs[tl.Targets(6)[0]].Terminal().Stats(); st.Enrolments != 3 {
		t.Errorf("enrolments %+v", st)
	}
	for _, k := range tl.Targets(2) {
		if devs[k].Terminal().CoercivePrompt() {
			t.Error("a coercive prompt left on")
		}
	}
	if tl.clocks[tl.Targets(3)[0]].Offset() != 0 {
		t.Error("a clock left jumped")
	}
	cut, killed := tl.Targets(4)[0], tl.Targets(5)[0]
	if cut == killed || tl.Proxy(4) == nil || tl.Proxy(5) == nil {
		t.Fatal("the cut and the kill share a device or lack a proxy")
	}
	if st := tl.Proxy(5).Stats(); st.Reset == 0 {
		t.Errorf("the kill reset no connection: %+v", st)
	}
	eventually(t, "every device connected again", func() bool {
		for _, d := range devs {
			if !d.Connected() {
				return false
			}
		}
		return true
	})
	if s := devs[killed].Agent().Session(); s != 2 {
		t.Errorf("the killed agent's session is %d, want 2 (restarted on its store)", s)
	}
}
