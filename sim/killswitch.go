package sim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"
)

// killSwitch is a TCP relay between one simulated agent and the broker, so that the simulator can cut the
// agent's connection the way a crash or a power cut does: the broker sees the socket reset without an
// MQTT DISCONNECT and publishes the agent's last will. The agent cannot be made to do that itself (a
// cancelled agent.Run always publishes its offline state), and the relay needs nothing from agent/.
type killSwitch struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	severed bool
	wg      sync.WaitGroup
}

// newKillSwitch listens on a loopback port for brokerURL and returns the URL the agent should use.
func newKillSwitch(brokerURL string) (*killSwitch, string, error) {
	u, err := url.Parse(brokerURL)
	if err != nil || u.Host == "" {
		return nil, "", fmt.Errorf("sim: kill switch: broker url %q", brokerURL)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("sim: kill switch: %w", err)
	}
	k := &killSwitch{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	k.wg.Add(1)
	go k.accept()
	proxied := *u
	proxied.Host = ln.Addr().String()
	return k, proxied.String(), nil
}

func (k *killSwitch) accept() {
	defer k.wg.Done()
	for {
		c, err := k.ln.Accept()
		if err != nil {
			return // closed by sever
		}
		if !k.track(c) {
			c.Close()
			continue
		}
		k.wg.Add(1)
		go k.relay(c)
	}
}

// track registers a connection, unless the switch was already thrown.
func (k *killSwitch) track(c net.Conn) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.severed {
		return false
	}
	k.conns[c] = struct{}{}
	return true
}

func (k *killSwitch) untrack(cs ...net.Conn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range cs {
		delete(k.conns, c)
	}
}

func (k *killSwitch) relay(agentSide net.Conn) {
	defer k.wg.Done()
	brokerSide, err := net.DialTimeout("tcp", k.target, 10*time.Second)
	if err != nil {
		agentSide.Close()
		k.untrack(agentSide)
		return
	}
	if !k.track(brokerSide) {
		agentSide.Close()
		brokerSide.Close()
		k.untrack(agentSide)
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		// A small buffer, and no splice: io.Copy between two TCP connections would hold a pipe (two
		// descriptors) per direction for the connection's life.
		buf := make([]byte, 4<<10)
		_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
		done <- struct{}{}
	}
	go pipe(brokerSide, agentSide)
	go pipe(agentSide, brokerSide)
	<-done
	agentSide.Close()
	brokerSide.Close()
	<-done
	k.untrack(agentSide, brokerSide)
}

// sever cuts every connection at once with a reset, and refuses new ones.
func (k *killSwitch) sever() {
	k.mu.Lock()
	k.severed = true
	conns := make([]net.Conn, 0, len(k.conns))
	for c := range k.conns {
		conns = append(conns, c)
	}
	k.mu.Unlock()
	_ = k.ln.Close()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, not FIN: nothing is flushed, as when the process dies
		}
		_ = c.Close()
	}
}

// Close severs and waits for the relay's goroutines.
func (k *killSwitch) Close() error {
	k.sever()
	k.wg.Wait()
	return nil
}

// ErrNotKillable is returned by Device.Kill for a device started without DeviceOptions.Killable.
var ErrNotKillable = errors.New("sim: the device was not started killable")
