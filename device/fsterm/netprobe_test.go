package fsterm

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faceguard/faceguard/device"
)

const (
	tcpHeader  = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tcp6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	lineTail   = " 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 20 4 30 10 -1\n"
)

// tcpLine renders one kernel table entry.
func tcpLine(slot int, local, remote, state string) string {
	return fmt.Sprintf("%4d: %s %s %s%s", slot, local, remote, state, lineTail)
}

func TestParseProcNetTCP(t *testing.T) {
	tests := []struct {
		name  string
		v6    bool
		table string
		want  []string
	}{
		{"v4_header_only", false, tcpHeader, nil},
		{"v4_established", false, tcpHeader +
			tcpLine(0, "0F00000A:CF14", "0500000A:20FB", "01"), []string{"10.0.0.5:8443"}},
		{"v4_other_states_skipped", false, tcpHeader +
			tcpLine(0, "00000000:1F90", "00000000:0000", "0A") + // LISTEN
			tcpLine(1, "0F00000A:CF14", "146433C6:01BB", "06") + // TIME_WAIT
			tcpLine(2, "0F00000A:CF15", "146433C6:01BB", "08") + // CLOSE_WAIT
			tcpLine(3, "0F00000A:CF16", "4D7100CB:1F90", "01"), []string{"203.0.113.77:8080"}},
		{"v4_lower_case_hex", false, tcpHeader +
			tcpLine(0, "0f00000a:cf14", "4d7100cb:1f90", "01"), []string{"203.0.113.77:8080"}},
		{"v4_blank_lines", false, tcpHeader + "\n" +
			tcpLine(0, "0F00000A:CF14", "0100007F:0CEA", "01") + "\n", []string{"127.0.0.1:3306"}},
		{"v6_established", true, tcp6Header +
			tcpLine(0, "00000000000000000000000000000000:0016", "00000000000000000000000000000000:0000", "0A") +
			tcpLine(1, "B80D0120000000000000000001000000:C350", "B80D0120000000000000000077000000:01BB", "01"),
			[]string{"[2001:db8::77]:443"}},
		{"v6_loopback", true, tcp6Header +
			tcpLine(0, "00000000000000000000000001000000:9C40", "00000000000000000000000001000000:0050", "01"),
			[]string{"[::1]:80"}},
		{"v6_ipv4_mapped", true, tcp6Header +
			tcpLine(0, "0000000000000000FFFF00000701080A:9C40", "0000000000000000FFFF00000501080A:20FB", "01"),
			[]string{"[::ffff:10.8.1.5]:8443"}},
		{"v6_link_local", true, tcp6Header +
			tcpLine(0, "000080FE00000000FF270A00A1664EFE:C738", "000080FE000000000000000001000000:1F40", "01"),
			[]string{"[fe80::1]:8000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcNetTCP(strings.NewReader(tt.table), tt.v6)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, ap := range got {
				s = append(s, ap.String())
			}
			if fmt.Sprint(s) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", s, tt.want)
			}
		})
	}
}

func TestParseProcNetTCPRefuses(t *testing.T) {
	good := tcpLine(0, "0F00000A:CF14", "0500000A:20FB", "01")
	tests := []struct {
		name       string
		v6         bool
		table      string
		wantReason string
	}{
		{"empty", false, "", "empty"},
		{"no_header", false, good, "line 1: not the kernel's header"},
		{"short_line", false, tcpHeader + "   0: 0F00000A:CF14\n", "line 2: not a socket entry"},
		{"no_slot", false, tcpHeader + strings.Replace(good, "0:", "0 ", 1), "line 2: not a socket entry"},
		{"bad_remote_hex", false, tcpHeader + tcpLine(0, "0F00000A:CF14", "0500000G:20FB", "01"), "line 2: remote address: address is not hex"},
		{"bad_port", false, tcpHeader + tcpLine(0, "0F00000A:CF14", "0500000A:20F", "01"), "line 2: remote address: not HEX:PORT"},
		{"bad_local", false, tcpHeader + tcpLine(0, "0F00000A", "0500000A:20FB", "01"), "line 2: local address: not HEX:PORT"},
		{"bad_state", false, tcpHeader + tcpLine(0, "0F00000A:CF14", "0500000A:20FB", "1"), "line 2: state is not two hex digits"},
		{"v4_entry_in_tcp6", true, tcp6Header + good, "line 2: local address: not HEX:PORT"},
		{"v6_entry_in_tcp", false, tcpHeader + tcpLine(0, "00000000000000000000000001000000:9C40", "00000000000000000000000001000000:0050", "01"),
			"line 2: local address: not HEX:PORT"},
		{"second_line_broken", false, tcpHeader + good + "garbage\n", "line 3: not a socket entry"},
		{"overlong_line", false, tcpHeader + strings.Repeat("x", 70000) + "\n", "read: bufio.Scanner: token too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseProcNetTCP(strings.NewReader(tt.table), tt.v6)
			if err == nil || err.Error() != tt.wantReason {
				t.Errorf("err = %v, want %q", err, tt.wantReason)
			}
		})
	}
}

func TestIsInternet(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", false},
		{"0.0.0.0", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"100.128.0.1", true},
		{"169.254.10.1", false},
		{"203.0.113.77", true},
		{"8.8.8.8", true},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"2001:db8::77", true},
		{"::ffff:10.0.0.5", false},
		{"::ffff:203.0.113.77", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := isInternet(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("isInternet(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	list, err := parseAllowList([]string{
		"203.0.113.10:8883", "198.51.100.7", "10.9.0.0/16", "[2001:db8::10]:443", "2001:db8:1::/48",
		"::ffff:192.0.2.1", "::ffff:192.0.2.128/121",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		remote string
		want   bool
	}{
		{"203.0.113.10:8883", true},
		{"203.0.113.10:443", false}, // ip:port allows that port only
		{"198.51.100.7:1", true},    // ip allows every port
		{"198.51.100.8:1", false},
		{"10.9.200.1:22", true},
		{"10.10.0.1:22", false},
		{"[2001:db8::10]:443", true},
		{"[2001:db8::10]:80", false},
		{"[2001:db8:1:ff::1]:80", true},
		{"[2001:db8:2::1]:80", false},
		{"192.0.2.1:80", true},   // written IPv4-mapped, compared unmapped
		{"192.0.2.130:80", true}, // mapped CIDR
		{"192.0.2.2:80", false},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			if got := list.allows(netip.MustParseAddrPort(tt.remote)); got != tt.want {
				t.Errorf("allows(%s) = %v, want %v", tt.remote, got, tt.want)
			}
		})
	}
}

func TestAllowListRefuses(t *testing.T) {
	for _, entry := range []string{"broker.example:8883", "10.0.0.0/33", "10.0.0.1:99999", "fe80::1%eth0", "", "::ffff:0:0/95"} {
		t.Run(entry, func(t *testing.T) {
			if _, err := parseAllowList([]string{entry}); err == nil {
				t.Errorf("accepted %q", entry)
			}
		})
	}
}

func TestUndeclaredFlows(t *testing.T) {
	aps := func(ss ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, s := range ss {
			out = append(out, netip.MustParseAddrPort(s))
		}
		return out
	}
	allowed, err := parseAllowList([]string{"203.0.113.10:8883", "10.9.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("declared_allowed_and_duplicates_left_out", func(t *testing.T) {
		got := undeclaredFlows(aps(
			"198.51.100.20:443",      // declared
			"[::ffff:10.8.1.5]:8443", // declared, seen through tcp6
			"203.0.113.10:8883",      // allowed
			"10.9.3.3:80",            // allowed by CIDR
			"203.0.113.77:8080",      // undeclared
			"203.0.113.77:8080",      // the same remote again, from another local port
			"10.0.0.9:22",            // undeclared, on the LAN
			"[2001:db8::77]:443",     // undeclared v6
		), aps("198.51.100.20:443", "10.8.1.5:8443"), allowed)
		want := []device.Egress{
			{Dest: "203.0.113.77:8080", Internet: true, Data: "unknown", Consent: "none"},
			{Dest: "[2001:db8::77]:443", Internet: true, Data: "unknown", Consent: "none"},
			{Dest: "10.0.0.9:22", Internet: false, Data: "unknown", Consent: "none"},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got  %+v\nwant %+v", got, want)
		}
	})
	t.Run("declared_port_matters", func(t *testing.T) {
		got := undeclaredFlows(aps("198.51.100.20:8443"), aps("198.51.100.20:443"), allowList{})
		if len(got) != 1 || got[0].Dest != "198.51.100.20:8443" {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("capped_at_64_internet_first", func(t *testing.T) {
		var remotes []netip.AddrPort
		for i := range 100 {
			remotes = append(remotes, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 80))
		}
		remotes = append(remotes, netip.MustParseAddrPort("203.0.113.99:443"))
		got := undeclaredFlows(remotes, nil, allowList{})
		if len(got) != maxObservedFlow {
			t.Fatalf("%d flows, want %d", len(got), maxObservedFlow)
		}
		if got[0].Dest != "203.0.113.99:443" || !got[0].Internet || got[1].Dest != "10.0.0.0:80" || got[63].Dest != "10.0.0.62:80" {
			t.Errorf("first %+v, second %+v, last %+v", got[0], got[1], got[63])
		}
	})
}

// writeProc writes proc/net/tcp and tcp6 under a new root; nil leaves a table out.
func writeProc(t *testing.T, tcp, tcp6 *string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range map[string]*string{ProcTCPPath: tcp, ProcTCP6Path: tcp6} {
		if content == nil {
			continue
		}
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestCollectEgress(t *testing.T) {
	declaredFlow := device.Egress{Dest: "door-controller.lan:8443", Data: "match_result", Consent: "none"}
	tcp := tcpHeader +
		tcpLine(0, "0F00000A:CF14", "0500000A:20FB", "01") + // 10.0.0.5:8443, declared
		tcpLine(1, "0F00000A:CF15", "4D7100CB:1F90", "01") + // 203.0.113.77:8080
		tcpLine(2, "0F00000A:CF16", "0A7100CB:22B3", "01") // 203.0.113.10:8883
	tcp6 := tcp6Header +
		tcpLine(0, "B80D0120000000000000000001000000:C350", "B80D0120000000000000000077000000:01BB", "01") // [2001:db8::77]:443
	siteAllowed, _ := parseAllowList([]string{"203.0.113.10:8883"})
	declared := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.5:8443")}

	tests := []struct {
		name        string
		tcp, tcp6   *string
		in          probeInput
		wantDests   []string
		wantUnknown []string // "source: reason"
	}{
		{"both_tables", &tcp, &tcp6,
			probeInput{declared: declared, siteAllowed: siteAllowed, siteKnown: true},
			[]string{"door-controller.lan:8443", "203.0.113.77:8080", "[2001:db8::77]:443"}, nil},
		{"allowed_by_options", &tcp, &tcp6,
			probeInput{declared: declared, siteKnown: true, optionsAllowed: []string{"203.0.113.10:8883", "2001:db8::/32"}},
			[]string{"door-controller.lan:8443", "203.0.113.77:8080"}, nil},
		{"tcp6_missing_is_no_ipv6", &tcp, nil,
			probeInput{declared: declared, siteAllowed: siteAllowed, siteKnown: true},
			[]string{"door-controller.lan:8443", "203.0.113.77:8080"}, nil}, // no IPv6 in the kernel: nothing unknown
		{"tcp_malformed", ptr("garbage\n"), &tcp6,
			probeInput{declared: declared, siteAllowed: siteAllowed, siteKnown: true},
			[]string{"door-controller.lan:8443", "[2001:db8::77]:443"}, []string{"proc/net/tcp: line 1: not the kernel's header"}},
		{"site_unknown_with_undeclared", &tcp, &tcp6,
			probeInput{declared: declared, siteKnown: false},
			[]string{"door-controller.lan:8443", "203.0.113.10:8883", "203.0.113.77:8080", "[2001:db8::77]:443"},
			[]string{"etc/faceguard/site.yaml: allow-list unavailable: site.yaml could not be read"}},
		{"site_unknown_nothing_undeclared", ptr(tcpHeader + tcpLine(0, "0F00000A:CF14", "0500000A:20FB", "01")), ptr(tcp6Header),
			probeInput{declared: declared, siteKnown: false},
			[]string{"door-controller.lan:8443"}, nil},
		{"bad_option", &tcp, &tcp6,
			probeInput{declared: declared, siteAllowed: siteAllowed, siteKnown: true, optionsAllowed: []string{"broker.example:8883"}},
			[]string{"door-controller.lan:8443", "203.0.113.77:8080", "[2001:db8::77]:443"},
			[]string{`options.allowed_remotes: entry 0: "broker.example:8883" is not ip, ip:port or a CIDR`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := writeProc(t, tt.tcp, tt.tcp6)
			f := placeholderFacts(testNow)
			f.Egress = []device.Egress{declaredFlow}
			collectEgress(root, tt.in, &f)
			mustValidate(t, f)
			var dests []string
			for _, e := range f.Egress {
				dests = append(dests, e.Dest)
			}
			if fmt.Sprint(dests) != fmt.Sprint(tt.wantDests) {
				t.Errorf("egress = %v, want %v", dests, tt.wantDests)
			}
			if got := unknownGroups(f)[device.GroupEgress]; fmt.Sprint(got) != fmt.Sprint(tt.wantUnknown) {
				t.Errorf("unknown egress = %q, want %q", got, tt.wantUnknown)
			}
			if len(f.Unknown) != len(tt.wantUnknown) {
				t.Errorf("unknown = %v", f.Unknown)
			}
		})
	}
}
