// Package testbroker gives tests a real MQTT broker of their own on a free loopback port — embedded
// mochi-mqtt, or a Mosquitto process from Debian — and a subscriber that records what crosses it.
// Nothing depends on a broker left running: each test starts its own and stops it.
package testbroker

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/faceguard/faceguard/internal/broker"
)

// Mochi starts an embedded broker for the test and stops it at the end.
func Mochi(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// MosquittoBinary is where Debian installs the broker (`make deps` installs it).
const MosquittoBinary = "/usr/sbin/mosquitto"

// Mosquitto is a real Mosquitto process with its own configuration and persistence directory.
type Mosquitto struct {
	t      testing.TB
	dir    string
	port   int
	conf   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// MosquittoOptions add to the generated configuration.
type MosquittoOptions struct {
	// Extra configuration lines (TLS listener settings, an ACL file…) for the listener.
	Extra []string
	// Port to listen on; 0 picks a free one.
	Port int
}

// StartMosquitto starts Mosquitto on a free loopback port with persistence in a temporary directory, so a
// restart keeps sessions and retained messages as a production broker would.
func StartMosquitto(t testing.TB, opts MosquittoOptions) *Mosquitto {
	t.Helper()
	if _, err := os.Stat(MosquittoBinary); err != nil {
		t.Fatalf("mosquitto is not installed (%v): run `make deps`, which installs Debian's mosquitto", err)
	}
	// Started as root, Mosquitto drops to its own user: the directory it persists sessions into must be
	// that user's, and reachable (t.TempDir nests in a directory only root may enter), or it cannot save
	// and a restart silently loses every persistent session.
	dir, err := os.MkdirTemp("", "mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	chownToMosquitto(t, dir)
	m := &Mosquitto{t: t, dir: dir, port: opts.Port}
	if m.port == 0 {
		m.port = FreePort(t)
	}
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", m.port),
		"allow_anonymous true",
		"persistence true",
		"persistence_location " + m.dir + "/",
		"autosave_interval 1",
		"max_queued_messages 100000",
		"max_inflight_messages 1000",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"log_type notice",
	}
	lines = append(lines, opts.Extra...)
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func chownToMosquitto(t testing.TB, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("mosquitto")
	if err != nil {
		t.Fatalf("running as root, mosquitto drops to the mosquitto user, which does not exist: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// URL is the broker's URL for paho.
func (m *Mosquitto) URL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", m.port) }

// Port is the listening port.
func (m *Mosquitto) Port() int { return m.port }

// Dir is the broker's working directory (configuration, persistence, log).
func (m *Mosquitto) Dir() string { return m.dir }

// PID is the running broker's process id (0 while it is stopped), to read its CPU time and memory from
// /proc. A restart starts a new process.
func (m *Mosquitto) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Start runs the broker and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(MosquittoBinary, "-c", m.conf)
	logFile, err := os.OpenFile(filepath.Join(m.dir, "mosquitto.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.t.Fatal(err)
	}
	defer logFile.Close()
	var stderr bytes.Buffer
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
			m.t.Fatalf("mosquitto exited: %s\n%s", stderr.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto did not listen on %d within 10s", m.port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop terminates the broker (SIGTERM: it saves its persistence file) and waits for it. A broker that
// could not save fails the test: a restart would then lose sessions for a reason that is not the code's.
func (m *Mosquitto) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
	if log, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log")); bytes.Contains(log, []byte("Error saving in-memory database")) {
		m.t.Errorf("mosquitto could not save its persistence file:\n%s", log)
	}
}

// Restart stops and starts the broker on the same port.
func (m *Mosquitto) Restart() {
	m.Stop()
	m.Start()
}

// FreePort returns a loopback TCP port nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Message is one message a Recorder saw.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
	At       time.Time
}

// Recorder subscribes to a topic filter and keeps every message, for assertions.
type Recorder struct {
	client paho.Client
	mu     sync.Mutex
	msgs   []Message
	notify chan struct{}
}

// Record connects a subscriber to brokerURL (clean session, its own client id) for filter. It returns
// once the broker has acknowledged the subscription, so that nothing published after it is missed.
func Record(t testing.TB, brokerURL, filter string) *Recorder {
	return record(t, brokerURL, filter, true)
}

// RecordPersistent is Record with a persistent session: messages published while the recorder is
// reconnecting (a broker restart) are queued for it by the broker instead of missed.
func RecordPersistent(t testing.TB, brokerURL, filter string) *Recorder {
	return record(t, brokerURL, filter, false)
}

func record(t testing.TB, brokerURL, filter string, clean bool) *Recorder {
	t.Helper()
	r := &Recorder{notify: make(chan struct{}, 1)}
	// paho runs the connect handler in a goroutine of its own, after Connect's token completes: the
	// subscription is not there yet when Connect returns.
	subscribed := make(chan struct{})
	var once sync.Once
	opts := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(fmt.Sprintf("recorder-%d", time.Now().UnixNano())).
		SetCleanSession(clean).SetOrderMatters(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).
		SetOnConnectHandler(func(c paho.Client) {
			tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
				r.mu.Lock()
				r.msgs = append(r.msgs, Message{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), Retained: m.Retained(), At: time.Now()})
				r.mu.Unlock()
				select {
				case r.notify <- struct{}{}:
				default:
				}
			})
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				once.Do(func() { close(subscribed) })
			}
		})
	r.client = paho.NewClient(opts)
	tok := r.client.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder connect: %v", tok.Error())
	}
	t.Cleanup(func() { r.client.Disconnect(100) })
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatalf("recorder: the broker did not acknowledge the subscription to %s within 10s", filter)
	}
	return r
}

// Messages returns a copy of what was recorded so far.
func (r *Recorder) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// WaitFor waits until some recorded message satisfies match, and returns it. The timeout is a bound on
// the test's patience, not an assertion about speed.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, what string, match func(Message) bool) Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		for _, m := range r.Messages() {
			if match(m) {
				return m
			}
		}
		select {
		case <-r.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waited %s for %s; saw %d messages", timeout, what, len(r.Messages()))
		}
	}
}

// Client connects a plain paho client (for publishing commands in tests).
func Client(t testing.TB, brokerURL, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond))
	tok := c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("client connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}
