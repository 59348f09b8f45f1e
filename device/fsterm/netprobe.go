package fsterm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/faceguard/faceguard/device"
)

// tcpEstablished is the kernel's TCP_ESTABLISHED in the st column.
const tcpEstablished = 0x01

// cgnat is the shared address space of RFC 6598: the carrier's side of the NAT, not the internet.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// probeInput is what the egress probe needs from the other collectors and the agent's configuration.
type probeInput struct {
	declared       []netip.AddrPort // status.json egress[].remote
	siteAllowed    allowList        // site.yaml network.allowed_remotes
	siteKnown      bool             // site.yaml was read, so siteAllowed is the installer's list
	optionsAllowed []string         // Options.AllowedRemotes
}

// collectEgress appends to f.Egress every established connection that nothing declares or allows. The
// declared flows already in f.Egress stay listed whatever happens here; a table that cannot be read
// makes egress unknown, because a connection the probe cannot see is not a connection that is absent.
func collectEgress(root string, in probeInput, f *device.Facts) {
	var remotes []netip.AddrPort
	for _, table := range []struct {
		rel string
		v6  bool
	}{{ProcTCPPath, false}, {ProcTCP6Path, true}} {
		found, err := readProcNetTCP(filepath.Join(root, filepath.FromSlash(table.rel)), table.v6)
		if table.v6 && errors.Is(err, errMissing) {
			continue // a kernel without IPv6 has no tcp6 table, and so no IPv6 connections
		}
		if err != nil {
			markUnknown(f, device.GroupEgress, table.rel, err)
			continue
		}
		remotes = append(remotes, found...)
	}

	allowed := in.siteAllowed
	extra, err := parseAllowList(in.optionsAllowed)
	if err != nil {
		markUnknown(f, device.GroupEgress, sourceAllowedRemoteOption, err)
	}
	allowed = allowed.merge(extra)

	observed := undeclaredFlows(remotes, in.declared, allowed)
	if len(observed) > 0 && !in.siteKnown {
		// Without the installer's allow-list these may be connections the installer allowed: the
		// probe cannot tell a violation from a broken site.yaml.
		markUnknown(f, device.GroupEgress, SitePath, errors.New("allow-list unavailable: site.yaml could not be read"))
	}
	f.Egress = append(f.Egress, observed...)
}

// undeclaredFlows turns the remotes of established connections into egress facts, leaving out those
// declared or allowed. One entry per remote, internet ones first so that the cap of maxObservedFlow
// never hides an internet connection behind local ones.
func undeclaredFlows(remotes, declared []netip.AddrPort, allowed allowList) []device.Egress {
	seen := map[netip.AddrPort]bool{}
	var keep []netip.AddrPort
	for _, ap := range remotes {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		// Loopback never leaves the device: it is not egress.
		if ap.Addr().IsLoopback() || seen[ap] || slices.Contains(declared, ap) || allowed.allows(ap) {
			continue
		}
		seen[ap] = true
		keep = append(keep, ap)
	}
	slices.SortFunc(keep, func(a, b netip.AddrPort) int {
		if ia, ib := isInternet(a.Addr()), isInternet(b.Addr()); ia != ib {
			if ia {
				return -1
			}
			return 1
		}
		return a.Compare(b)
	})
	if len(keep) > maxObservedFlow {
		keep = keep[:maxObservedFlow]
	}
	flows := make([]device.Egress, 0, len(keep))
	for _, ap := range keep {
		flows = append(flows, device.Egress{
			Dest:     ap.String(),
			Internet: isInternet(ap.Addr()),
			Data:     device.EgressUnknown,
			Consent:  device.ConsentNone,
		})
	}
	return flows
}

// isInternet reports whether an address is reachable only over the internet: not loopback, unspecified,
// private (RFC 1918, fc00::/7), link-local or carrier-grade NAT.
func isInternet(a netip.Addr) bool {
	a = a.Unmap()
	return !(a.IsLoopback() || a.IsUnspecified() || a.IsPrivate() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || cgnat.Contains(a))
}

func readProcNetTCP(path string, v6 bool) ([]netip.AddrPort, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fileError(err)
	}
	defer fh.Close()
	return parseProcNetTCP(fh, v6)
}

// parseProcNetTCP returns the remote ends of the ESTABLISHED connections in a proc/net/tcp (or tcp6, when
// v6) table. A table that does not look like the kernel's is refused as a whole rather than half-read.
func parseProcNetTCP(r io.Reader, v6 bool) ([]netip.AddrPort, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		return nil, errors.New("empty")
	}
	if h := strings.Fields(sc.Text()); len(h) < 4 || h[0] != "sl" || h[1] != "local_address" {
		return nil, errors.New("line 1: not the kernel's header")
	}
	var remotes []netip.AddrPort
	for line := 2; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 4 || !isSlot(fields[0]) {
			return nil, fmt.Errorf("line %d: not a socket entry", line)
		}
		if _, err := parseProcAddr(fields[1], v6); err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", line, err)
		}
		remote, err := parseProcAddr(fields[2], v6)
		if err != nil {
			return nil, fmt.Errorf("line %d: remote address: %w", line, err)
		}
		st, err := strconv.ParseUint(fields[3], 16, 8)
		if err != nil || len(fields[3]) != 2 {
			return nil, fmt.Errorf("line %d: state is not two hex digits", line)
		}
		if st == tcpEstablished {
			remotes = append(remotes, remote)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return remotes, nil
}

// isSlot reports whether a field is the "12:" slot number that starts each entry.
func isSlot(s string) bool {
	n, ok := strings.CutSuffix(s, ":")
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

// parseProcAddr parses the kernel's "ADDR:PORT" in hex. The address is the in-memory bytes printed as
// 32-bit words in host order (little-endian here); the port is a plain number.
func parseProcAddr(s string, v6 bool) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	size := 8
	if v6 {
		size = 32
	}
	if !ok || len(addrHex) != size || len(portHex) != 4 {
		return netip.AddrPort{}, errors.New("not HEX:PORT")
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, errors.New("port is not hex")
	}
	var b [16]byte
	for i := 0; i < size/8; i++ {
		word, err := strconv.ParseUint(addrHex[i*8:i*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, errors.New("address is not hex")
		}
		binary.LittleEndian.PutUint32(b[i*4:], uint32(word))
	}
	var addr netip.Addr
	if v6 {
		addr = netip.AddrFrom16(b)
	} else {
		addr = netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// allowList is network.allowed_remotes: connections the installer attests carry no face data.
type allowList struct {
	addrs     []netip.Addr     // "ip": any port
	addrPorts []netip.AddrPort // "ip:port"
	prefixes  []netip.Prefix   // CIDR: any address inside, any port
}

// parseAllowList parses entries written as "ip", "ip:port" ("[v6]:port") or a CIDR.
func parseAllowList(entries []string) (allowList, error) {
	var a allowList
	for i, e := range entries {
		switch {
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return allowList{}, fmt.Errorf("entry %d: %s is not a CIDR", i, quote(e))
			}
			if p.Addr().Is4In6() {
				// ::ffff:10.0.0.0/104 means 10.0.0.0/8: compare like the remotes, unmapped.
				if p.Bits() < 96 {
					return allowList{}, fmt.Errorf("entry %d: %s is wider than the IPv4-mapped range", i, quote(e))
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			a.prefixes = append(a.prefixes, p.Masked())
		default:
			if ap, err := netip.ParseAddrPort(e); err == nil && ap.Addr().Zone() == "" {
				a.addrPorts = append(a.addrPorts, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
				continue
			}
			if ip, err := netip.ParseAddr(e); err == nil && ip.Zone() == "" {
				a.addrs = append(a.addrs, ip.Unmap())
				continue
			}
			return allowList{}, fmt.Errorf("entry %d: %s is not ip, ip:port or a CIDR", i, quote(e))
		}
	}
	return a, nil
}

func (a allowList) merge(b allowList) allowList {
	return allowList{
		addrs:     append(slices.Clone(a.addrs), b.addrs...),
		addrPorts: append(slices.Clone(a.addrPorts), b.addrPorts...),
		prefixes:  append(slices.Clone(a.prefixes), b.prefixes...),
	}
}

// allows reports whether a remote (already unmapped) is on the list.
func (a allowList) allows(ap netip.AddrPort) bool {
	if slices.Contains(a.addrPorts, ap) || slices.Contains(a.addrs, ap.Addr()) {
		return true
	}
	for _, p := range a.prefixes {
		if p.Contains(ap.Addr()) {
			return true
		}
	}
	return false
}
