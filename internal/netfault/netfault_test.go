package netfault

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a line and reads the echo, within d.
func roundTrip(c net.Conn, line string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	return readLine(c, d)
}

func readLine(c net.Conn, d time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

const patience = 5 * time.Second

func TestPassBlackholeRestore(t *testing.T) {
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	if got, err := roundTrip(c, "hello", patience); err != nil || got != "hello" {
		t.Fatalf("pass: %q %v", got, err)
	}

	p.Blackhole()
	if p.Mode() != Blackhole {
		t.Fatalf("mode %v", p.Mode())
	}
	// Bytes are held both ways; the connection stays open.
	if _, err := roundTrip(c, "held", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a byte crossed a blackhole: %v", err)
	}
	// A new connection is accepted by the proxy but goes nowhere.
	late := dial(t, p.Addr())
	if _, err := roundTrip(late, "late", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a new connection got through a blackhole: %v", err)
	}

	p.Restore()
	// What was held arrives, in order, on the connection that survived.
	if got, err := readLine(c, patience); err != nil || got != "held" {
		t.Fatalf("after restore: %q %v", got, err)
	}
	if got, err := roundTrip(c, "again", patience); err != nil || got != "again" {
		t.Fatalf("after restore: %q %v", got, err)
	}
	// The held connection never became one: it is reset.
	if _, err := readLine(late, patience); err == nil || isTimeout(err) {
		t.Fatalf("a connection held by the blackhole was not reset: %v", err)
	}
	if st := p.Stats(); st.Held != 1 || st.Forwarded != 1 || st.Live != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDropRestore(t *testing.T) {
	p, url, err := ForURL("tcp://" + echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if url != "tcp://"+p.Addr() {
		t.Fatalf("url %s", url)
	}
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "x", patience); err != nil {
		t.Fatal(err)
	}
	p.Drop()
	if _, err := readLine(c, patience); err == nil || isTimeout(err) {
		t.Fatalf("an open connection survived a drop: %v", err)
	}
	if refused, err := net.DialTimeout("tcp", p.Addr(), patience); err == nil { // else reset during the handshake
		if _, err := readLine(refused, patience); err == nil || isTimeout(err) {
			t.Fatalf("a new connection was not reset during a drop: %v", err)
		}
		refused.Close()
	}
	p.Restore()
	c2 := dial(t, p.Addr())
	if got, err := roundTrip(c2, "back", patience); err != nil || got != "back" {
		t.Fatalf("after restore: %q %v", got, err)
	}
}

func TestDropDuringBlackhole(t *testing.T) {
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, "x", patience); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	held := dial(t, p.Addr())
	p.Drop()
	for _, conn := range []net.Conn{c, held} {
		if _, err := readLine(conn, patience); err == nil || isTimeout(err) {
			t.Fatalf("not reset: %v", err)
		}
	}
	p.Restore()
	if got, err := roundTrip(dial(t, p.Addr()), "ok", patience); err != nil || got != "ok" {
		t.Fatalf("after restore: %q %v", got, err)
	}
}

// The server going away resets the client, as a refused connection would.
func TestServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.DialTimeout("tcp", p.Addr(), patience)
	if err != nil {
		return // reset before the handshake was even seen: as good as a refusal
	}
	defer c.Close()
	if _, err := bufio.NewReader(c).ReadByte(); err == nil {
		t.Fatal("read through a proxy to nothing")
	}
}

func TestCloseLeavesNothingRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		c := dial(t, p.Addr())
		if _, err := roundTrip(c, "x", patience); err != nil {
			t.Fatal(err)
		}
	}
	p.Blackhole()
	dial(t, p.Addr())
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for runtime.NumGoroutine() > before+25 && time.Now().Before(deadline) { // the echo server's own goroutines end with their conns
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Stats(); st.Live != 0 {
		t.Fatalf("live links after close: %+v", st)
	}
	if _, err := ParseMode("sideways"); err == nil {
		t.Fatal("ParseMode accepted nonsense")
	}
	if m, err := ParseMode("blackhole"); err != nil || m != Blackhole {
		t.Fatal(m, err)
	}
}

// With Record, the proxy keeps what it forwarded, each direction of each connection apart; without, nothing.
func TestRecord(t *testing.T) {
	addr := echoServer(t)
	p, err := Listen(addr, Record())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, line := range []string{"first", "second"} {
		c := dial(t, p.Addr())
		if got, err := roundTrip(c, line, 5*time.Second); err != nil || got != line {
			t.Fatalf("round trip %q: %q, %v", line, got, err)
		}
		c.Close()
	}
	streams := p.Streams()
	if len(streams) != 4 {
		t.Fatalf("%d streams, want 2 per connection", len(streams))
	}
	for i, s := range streams {
		want := []string{"first\n", "second\n"}[i/2]
		if s.Upstream != (i%2 == 0) || string(s.Bytes()) != want || s.Len() != len(want) {
			t.Errorf("stream %d: upstream %v, %q", i, s.Upstream, s.Bytes())
		}
	}

	plain, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := roundTrip(dial(t, plain.Addr()), "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(plain.Streams()); n != 0 {
		t.Errorf("a proxy without Record kept %d streams", n)
	}
}
