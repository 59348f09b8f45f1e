package sim

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/faceguard/faceguard/device/fsterm"
)

// Kernel socket states of the st column.
const (
	tcpEstablished = 0x01
	tcpListen      = 0x0A
)

// procSocket is one row of a proc/net/tcp table.
type procSocket struct {
	local, remote netip.AddrPort
	state         int
}

// writeProcNet writes proc/net/tcp and proc/net/tcp6 as the kernel would show the terminal's sockets: a
// listener for its web console, the connections to the LAN door controller and to the fleet broker, and
// the upload's connection while it runs. tcp6 holds only an SSH listener.
func (t *Terminal) writeProcNet() error {
	t.fileMu.Lock()
	defer t.fileMu.Unlock()
	t.mu.Lock()
	uploading := t.st.uploading
	t.mu.Unlock()
	local := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(localAddr), port) }
	v4 := []procSocket{
		{local: netip.MustParseAddrPort("0.0.0.0:8080"), remote: netip.MustParseAddrPort("0.0.0.0:0"), state: tcpListen},
		{local: local(52000), remote: netip.MustParseAddrPort(doorControllerAddr), state: tcpEstablished},
		{local: local(52001), remote: netip.MustParseAddrPort(fleetBrokerAddr), state: tcpEstablished},
	}
	if uploading {
		v4 = append(v4, procSocket{local: local(52002), remote: netip.MustParseAddrPort(uploadAddr), state: tcpEstablished})
	}
	v6 := []procSocket{
		{local: netip.MustParseAddrPort("[::]:22"), remote: netip.MustParseAddrPort("[::]:0"), state: tcpListen},
	}
	if err := writeAtomic(t.path(fsterm.ProcTCPPath), renderProcNet(v4, false)); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := writeAtomic(t.path(fsterm.ProcTCP6Path), renderProcNet(v6, true)); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// renderProcNet renders a table in the kernel's format, header included.
func renderProcNet(socks []procSocket, v6 bool) []byte {
	var b strings.Builder
	if v6 {
		b.WriteString("  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	} else {
		b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	}
	for i, s := range socks {
		fmt.Fprintf(&b, "%4d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 20 4 30 10 -1\n",
			i, procAddr(s.local, v6), procAddr(s.remote, v6), s.state, 20000+i)
	}
	return []byte(b.String())
}

// procAddr is the kernel's "ADDR:PORT": the address's bytes as 32-bit words printed in host order
// (little-endian), the port as four hex digits.
func procAddr(ap netip.AddrPort, v6 bool) string {
	var raw []byte
	if v6 {
		a := ap.Addr().As16()
		raw = a[:]
	} else {
		a := ap.Addr().Unmap().As4()
		raw = a[:]
	}
	var b strings.Builder
	for i := 0; i < len(raw); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.LittleEndian.Uint32(raw[i:i+4]))
	}
	fmt.Fprintf(&b, ":%04X", ap.Port())
	return b.String()
}
