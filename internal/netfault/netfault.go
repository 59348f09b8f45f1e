// Package netfault is a TCP proxy that a test or the simulator puts between clients and a server, to
// break the network between them on command and mend it again:
//
//   - Blackhole is a partition: bytes stop flowing both ways, open connections stay open (TCP keeps
//     retransmitting, so what was sent arrives if the partition heals before either end gives up), and new
//     connections hang — accepted by the proxy, never forwarded, and reset when the network comes back,
//     as a SYN lost in a partition never becomes a connection.
//   - Drop is a link that went down hard, or a firewall that rejects: every connection is reset at once
//     (RST, nothing flushed) and new ones are reset as soon as they arrive.
//   - Restore mends either.
//
// Drop is also how the simulator kills an agent the way a crash does (the broker sees a reset, not an MQTT
// DISCONNECT, and publishes the last will), and a proxy started with Record keeps every byte it carried,
// both ways, for a test that must inspect everything that crossed the wire.
//
// It forwards bytes as they are and knows nothing of the protocol above. It is for tests and load: it
// listens on loopback only.
package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with traffic now.
type Mode int

// Modes of a Proxy.
const (
	Pass      Mode = iota // forward
	Blackhole             // hold every byte and every new connection
	Drop                  // reset every connection, old and new
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode reads a mode's name.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Pass, Blackhole, Drop} {
		if m.String() == s {
			return m, nil
		}
	}
	return Pass, fmt.Errorf("netfault: mode %q: want pass, blackhole or drop", s)
}

// DialTimeout bounds the proxy's connection to the server.
const DialTimeout = 10 * time.Second

// Stats count what the proxy did since it started.
type Stats struct {
	Accepted  int64 // connections accepted from clients
	Forwarded int64 // of those, connected through to the server
	Held      int64 // accepted during a blackhole and never forwarded
	Reset     int64 // connections reset by Drop, Restore (held ones) or Close
	Live      int   // forwarded connections open now
}

// Proxy forwards the connections it accepts on a loopback port to one server address.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	mode   Mode
	gate   chan struct{} // closed while bytes may flow; a fresh open one during a blackhole
	links  map[*link]struct{}
	held   map[net.Conn]struct{}
	closed bool

	record  bool
	streams []*Stream // with record: one per direction of each forwarded connection, in order

	accepted, forwarded, heldN, reset atomic.Int64
	wg                                sync.WaitGroup
}

// Option configures a proxy.
type Option func(*Proxy)

// Record keeps every byte the proxy forwards (Streams).
func Record() Option { return func(p *Proxy) { p.record = true } }

// Stream is what one direction of one connection carried, with Record.
type Stream struct {
	// Upstream is client → server; otherwise server → client.
	Upstream bool
	mu       sync.Mutex
	buf      bytes.Buffer
}

// Bytes returns a copy of what the stream carried so far.
func (s *Stream) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.buf.Bytes())
}

// Len is how many bytes the stream carried so far.
func (s *Stream) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

func (s *Stream) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

// Streams returns, with Record, every direction of every connection forwarded so far.
func (p *Proxy) Streams() []*Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Stream(nil), p.streams...)
}

// link is one forwarded connection: the client's side and the server's.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed when the link is torn down
	once           sync.Once
}

// Listen starts a proxy to target ("host:port") on a free loopback port.
func Listen(target string, opts ...Option) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("netfault: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netfault: %w", err)
	}
	gate := make(chan struct{})
	close(gate)
	p := &Proxy{ln: ln, target: target, gate: gate, links: map[*link]struct{}{}, held: map[net.Conn]struct{}{}}
	for _, o := range opts {
		o(p)
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// ForURL starts a proxy to the host of a server URL (tcp://host:port, mqtt://…) and returns it with the
// same URL pointed at the proxy.
func ForURL(serverURL string, opts ...Option) (*Proxy, string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		return nil, "", fmt.Errorf("netfault: server url %q: want scheme://host:port", serverURL)
	}
	p, err := Listen(u.Host, opts...)
	if err != nil {
		return nil, "", err
	}
	proxied := *u
	proxied.Host = p.Addr()
	return p, proxied.String(), nil
}

// Addr is the proxy's listening address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the server's address.
func (p *Proxy) Target() string { return p.target }

// Mode is the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Set switches to a mode (Pass is Restore).
func (p *Proxy) Set(m Mode) {
	switch m {
	case Blackhole:
		p.Blackhole()
	case Drop:
		p.Drop()
	default:
		p.Restore()
	}
}

// Blackhole stops every byte in both directions and holds new connections unanswered.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.mode == Blackhole {
		return
	}
	if p.mode == Pass {
		p.gate = make(chan struct{})
	}
	p.mode = Blackhole
}

// Drop resets every connection and every held one, and resets new connections as they arrive.
func (p *Proxy) Drop() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if p.mode == Pass {
		p.gate = make(chan struct{}) // nothing flows while links are being torn down
	}
	p.mode = Drop
	links, held := p.takeAllLocked()
	p.mu.Unlock()
	p.resetAll(links, held)
}

// Restore forwards again. Connections held by a blackhole are reset (the client tries again); the
// connections that were open through it carry on, with what was held.
func (p *Proxy) Restore() {
	p.mu.Lock()
	if p.closed || p.mode == Pass {
		p.mu.Unlock()
		return
	}
	p.mode = Pass
	held := p.held
	p.held = map[net.Conn]struct{}{}
	close(p.gate)
	p.mu.Unlock()
	p.resetAll(nil, held)
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	live := len(p.links)
	p.mu.Unlock()
	return Stats{Accepted: p.accepted.Load(), Forwarded: p.forwarded.Load(), Held: p.heldN.Load(), Reset: p.reset.Load(), Live: live}
}

// Close stops listening, resets every connection and waits for the proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links, held := p.takeAllLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	p.resetAll(links, held)
	p.wg.Wait()
	return err
}

// takeAllLocked empties the tables of links and held connections. p.mu is held.
func (p *Proxy) takeAllLocked() ([]*link, map[net.Conn]struct{}) {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	held := p.held
	p.held = map[net.Conn]struct{}{}
	return links, held
}

func (p *Proxy) resetAll(links []*link, held map[net.Conn]struct{}) {
	for _, l := range links {
		l.teardown(true)
		p.reset.Add(1)
	}
	for c := range held {
		resetConn(c)
		p.reset.Add(1)
	}
}

// resetConn closes with an RST: SO_LINGER 0 discards what was not sent.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: try again
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		switch {
		case p.closed || p.mode == Drop:
			p.mu.Unlock()
			resetConn(c)
			p.reset.Add(1)
			continue
		case p.mode == Blackhole:
			p.held[c] = struct{}{}
			p.heldN.Add(1)
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.connect(c)
	}
}

// connect dials the server for a client and forwards between them until either side ends.
func (p *Proxy) connect(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, DialTimeout)
	if err != nil {
		resetConn(client) // the server is down: the client sees a refusal
		return
	}
	l := &link{client: client, server: server, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.mode == Drop {
		p.mu.Unlock()
		l.teardown(true)
		p.reset.Add(1)
		return
	}
	p.links[l] = struct{}{}
	var up, down *Stream
	if p.record {
		up, down = &Stream{Upstream: true}, &Stream{}
		p.streams = append(p.streams, up, down)
	}
	p.mu.Unlock()
	p.forwarded.Add(1)
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); p.pump(l, server, client, up) }()
	go func() { defer pumps.Done(); p.pump(l, client, server, down) }()
	pumps.Wait()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pump copies src to dst (and to rec, when recording), waiting at the gate before every write, and tears
// the link down when src ends or dst fails: MQTT has no use for half-closed connections.
func (p *Proxy) pump(l *link, dst, src net.Conn, rec *Stream) {
	defer l.teardown(false)
	buf := make([]byte, 4<<10) // small: a proxy of a thousand connections holds two of these each
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.wait(l) {
				return
			}
			if rec != nil { // before forwarding: whoever has the bytes can find them recorded
				_, _ = rec.Write(buf[:n])
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// io.EOF: the sender closed, and what it sent before was delivered above. Anything else:
			// the connection broke. Either way the link ends.
			return
		}
	}
}

// wait blocks while bytes may not flow; false when the link was torn down meanwhile.
func (p *Proxy) wait(l *link) bool {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	select {
	case <-gate:
		return true
	case <-l.done:
		return false
	}
}

func (l *link) teardown(rst bool) {
	l.once.Do(func() {
		close(l.done)
		if rst {
			resetConn(l.client)
			resetConn(l.server)
			return
		}
		_ = l.client.Close()
		_ = l.server.Close()
	})
}
