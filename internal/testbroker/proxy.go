package testbroker

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP relay between MQTT clients and a broker that keeps every byte it carries, in both
// directions: what a privacy test inspects is then everything that crossed the wire, not only what a
// subscriber was allowed to see (commands, chunks, retained messages, wills, client ids, credentials).
type Proxy struct {
	ln     net.Listener
	target string
	scheme string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// streams holds one buffer per direction of each connection, in the order they were opened.
	streams []*Stream
	closed  bool
	wg      sync.WaitGroup
}

// Stream is what one direction of one connection carried.
type Stream struct {
	// Upstream is client → broker; otherwise broker → client.
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

func (s *Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// StartProxy listens on a free loopback port and relays every connection to brokerURL's host. It stops
// when the test ends.
func StartProxy(t testing.TB, brokerURL string) *Proxy {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil || u.Host == "" {
		t.Fatalf("proxy: broker url %q", brokerURL)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host, scheme: u.Scheme, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// URL is the broker URL that goes through the proxy.
func (p *Proxy) URL() string { return p.scheme + "://" + p.ln.Addr().String() }

// Streams returns every direction of every connection so far.
func (p *Proxy) Streams() []*Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Stream(nil), p.streams...)
}

// Total is the number of bytes carried so far, both directions.
func (p *Proxy) Total() int {
	n := 0
	for _, s := range p.Streams() {
		s.mu.Lock()
		n += s.buf.Len()
		s.mu.Unlock()
	}
	return n
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.relay(c)
	}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *Proxy) relay(client net.Conn) {
	defer p.wg.Done()
	broker, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		client.Close()
		p.untrack(client)
		return
	}
	if !p.track(broker) {
		client.Close()
		broker.Close()
		p.untrack(client)
		return
	}
	up, down := &Stream{Upstream: true}, &Stream{}
	p.mu.Lock()
	p.streams = append(p.streams, up, down)
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, rec *Stream) {
		_, _ = io.Copy(io.MultiWriter(dst, rec), src)
		done <- struct{}{}
	}
	go pipe(broker, client, up)
	go pipe(client, broker, down)
	<-done
	client.Close()
	broker.Close()
	<-done
	p.untrack(client, broker)
}

// Close stops accepting, cuts the connections still open, and waits for the relay's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}
