package fleet_test

// The broker is the first line of the fleet's defence: a device that is broken into holds a valid
// certificate, and must still not be able to speak for another device, send commands, or read anyone
// else's. These tests start Mosquitto with the production configuration of deploy/mosquitto (paths and
// port swapped for the test's) and the embedded mochi broker with its fleet ACL, and try every way around.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/internal/broker"
	"github.com/faceguard/faceguard/internal/testbroker"
	"github.com/faceguard/faceguard/internal/testpki"
	"github.com/faceguard/faceguard/wire"
)

// controllerCN is the controller's certificate name in deploy/mosquitto/acl. It has a dot, which no device
// id may have, so no device certificate can ever carry it.
const controllerCN = "faceguard.controller"

// grace is how long a check keeps listening for a message that must not come, after a control message
// published behind it has come. The control message is what makes the check meaningful; the grace
// only catches a broker that would reorder.
const grace = 300 * time.Millisecond

// deployConf is the production configuration under test.
const deployConf = "../deploy/mosquitto/mosquitto.conf"

// renderMosquittoConf returns deploy/mosquitto/mosquitto.conf with the production paths and port replaced
// by the test's, and the documented revocation line turned on with crlFile. Every line it does not replace
// is kept as it is; a production path left over fails the test.
func renderMosquittoConf(t testing.TB, dir string, port int, crlFile string) string {
	t.Helper()
	f, err := os.Open(deployConf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	replace := map[string]string{
		"listener":             fmt.Sprintf("listener %d 127.0.0.1", port),
		"persistence_location": "persistence_location " + dir + "/",
		"log_dest":             "log_dest stderr",
		"acl_file":             "acl_file " + filepath.Join(dir, "acl"),
		"cafile":               "cafile " + filepath.Join(dir, "ca.pem"),
		"certfile":             "certfile " + filepath.Join(dir, "broker.pem"),
		"keyfile":              "keyfile " + filepath.Join(dir, "broker.key"),
		"#crlfile":             "crlfile " + crlFile,
	}
	seen := map[string]int{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		key, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if r, ok := replace[key]; ok {
			seen[key]++
			line = r
		}
		out = append(out, line)
	}
	for key := range replace {
		if seen[key] != 1 {
			t.Fatalf("%s: %q appears %d times, the test renders it once", deployConf, key, seen[key])
		}
	}
	text := strings.Join(out, "\n") + "\n"
	for _, line := range out {
		if !strings.HasPrefix(line, "#") && (strings.Contains(line, "/etc/") || strings.Contains(line, "/var/")) {
			t.Fatalf("%s: the test does not know how to render %q", deployConf, line)
		}
	}
	return text
}

// TestMosquittoConfigIsStrict reads the production configuration for the settings the fleet's security
// rests on, so that weakening one fails here, not in the field.
func TestMosquittoConfigIsStrict(t *testing.T) {
	b, err := os.ReadFile(deployConf)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		settings[k] = append(settings[k], v)
	}
	for k, want := range map[string]string{
		"allow_anonymous": "false", "require_certificate": "true", "use_identity_as_username": "true",
		"use_username_as_clientid": "true", "tls_version": "tlsv1.2", "persistence": "true",
		"per_listener_settings": "false", "allow_zero_length_clientid": "false",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %v, want %s", k, got, want)
		}
	}
	if got := settings["listener"]; len(got) != 1 {
		t.Errorf("listeners %v: one TLS listener and nothing else", got)
	}
	for _, k := range []string{"password_file", "psk_file", "auth_plugin", "plugin", "bridge_cafile", "connection"} {
		if _, ok := settings[k]; ok {
			t.Errorf("%s is set: a second way in besides the device certificate", k)
		}
	}
	acl, err := os.ReadFile("../deploy/mosquitto/acl")
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, line := range strings.Split(string(acl), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			rules = append(rules, strings.Join(strings.Fields(line), " "))
		}
	}
	want := []string{"user " + controllerCN, "topic readwrite faceguard/v1/#",
		"pattern write faceguard/v1/dev/%u/#", "pattern read faceguard/v1/cmd/%u/#", "pattern read faceguard/v1/bcast/#"}
	if strings.Join(rules, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the ACL grants\n%s\nwant exactly\n%s", strings.Join(rules, "\n"), strings.Join(want, "\n"))
	}
	if wire.ValidDeviceID(controllerCN) {
		t.Fatalf("the controller's name %q could be a device id", controllerCN)
	}
}

// aclBroker is a broker under test with its fleet CA.
type aclBroker struct {
	name string
	url  string
	ca   *testpki.CA
	// mochi disconnects an MQTT 3.1.1 client that publishes at QoS 1 where it may not, and refuses a
	// subscription it may not make (SUBACK 0x80); Mosquitto acknowledges the publish and drops it, and
	// grants the subscription but delivers nothing through it. Both deliver nothing.
	mochi bool
	// revoked is a device certificate on the broker's revocation list (Mosquitto only: mochi's listener
	// has no CRL).
	revoked *testpki.Issued
}

func startProductionMosquitto(t *testing.T) aclBroker {
	ca := testpki.NewCA(t)
	dir := testbroker.MosquittoDir(t)
	srv := ca.Server(t)
	stolen := ca.Client(t, "gate-stolen")
	testbroker.WriteMosquittoFile(t, dir, "ca.pem", ca.CertPEM)
	testbroker.WriteMosquittoFile(t, dir, "broker.pem", srv.CertPEM)
	testbroker.WriteMosquittoFile(t, dir, "broker.key", srv.KeyPEM)
	crl := testbroker.WriteMosquittoFile(t, dir, "fleet.crl", ca.CRL(t, stolen))
	acl, err := os.ReadFile("../deploy/mosquitto/acl")
	if err != nil {
		t.Fatal(err)
	}
	testbroker.WriteMosquittoFile(t, dir, "acl", acl)
	port := testbroker.FreePort(t)
	m := testbroker.StartMosquittoConfig(t, dir, port, renderMosquittoConf(t, dir, port, crl))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.Log())
		}
	})
	return aclBroker{name: "mosquitto", url: m.TLSURL(), ca: ca, revoked: &stolen}
}

func startMochiFleetACL(t *testing.T) aclBroker {
	ca := testpki.NewCA(t)
	b, err := broker.Start(broker.Options{Addr: "127.0.0.1:0", TLS: ca.ServerTLS(t), ControllerIDs: []string{controllerCN}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return aclBroker{name: "mochi", url: b.URL(), ca: ca, mochi: true}
}

// probe is one MQTT client of a test, with everything it received.
type probe struct {
	c      paho.Client
	mu     sync.Mutex
	msgs   []testbroker.Message
	notify chan struct{}
	lost   chan struct{}
}

// connect connects as clientID with a certificate for cn (no certificate when cn is ""), over tlsCfg
// when given.
func (b aclBroker) connect(t testing.TB, cn, clientID string) (*probe, error) {
	var cfg *tls.Config
	if cn != "" {
		cfg = b.ca.ClientTLS(t, cn)
	} else {
		cfg = &tls.Config{RootCAs: b.ca.Pool, MinVersion: tls.VersionTLS12}
	}
	return b.connectTLS(t, cfg, clientID)
}

func (b aclBroker) connectTLS(t testing.TB, cfg *tls.Config, clientID string) (*probe, error) {
	p := &probe{notify: make(chan struct{}, 1), lost: make(chan struct{})}
	var once sync.Once
	opts := paho.NewClientOptions().AddBroker(b.url).SetClientID(clientID).SetTLSConfig(cfg).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(paho.Client, error) { once.Do(func() { close(p.lost) }) })
	p.c = paho.NewClient(opts)
	tok := p.c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, errors.New("connect: no answer")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.c.Disconnect(50) })
	return p, nil
}

func (b aclBroker) mustConnect(t testing.TB, cn, clientID string) *probe {
	t.Helper()
	p, err := b.connect(t, cn, clientID)
	if err != nil {
		t.Fatalf("%s: %s as %s: %v", b.name, cn, clientID, err)
	}
	return p
}

// subscribe subscribes to filter and returns the broker's answer (QoS granted, or 0x80 refused).
func (p *probe) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	tok := p.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		p.mu.Lock()
		p.msgs = append(p.msgs, testbroker.Message{Topic: m.Topic(), Payload: append([]byte(nil), m.Payload()...), Retained: m.Retained(), At: time.Now()})
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// publish publishes at QoS 1 and waits for the broker's acknowledgement (or the connection's end).
func (p *probe) publish(t testing.TB, topic, payload string, retained bool) error {
	t.Helper()
	tok := p.c.Publish(topic, 1, retained, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-p.lost:
		return errors.New("disconnected by the broker")
	case <-time.After(15 * time.Second):
		t.Fatalf("publish %s: neither acknowledged nor disconnected", topic)
		return nil
	}
}

func (p *probe) has(payload string) bool {
	return p.any(func(m testbroker.Message) bool { return string(m.Payload) == payload })
}

func (p *probe) any(match func(testbroker.Message) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.msgs {
		if match(m) {
			return true
		}
	}
	return false
}

func (p *probe) waitFor(t testing.TB, payload string) {
	t.Helper()
	p.wait(t, payload, func(m testbroker.Message) bool { return string(m.Payload) == payload })
}

// waitForRetained waits for payload sent as a retained message (on subscribing), not as a live one.
func (p *probe) waitForRetained(t testing.TB, payload string) {
	t.Helper()
	p.wait(t, "retained "+payload, func(m testbroker.Message) bool { return m.Retained && string(m.Payload) == payload })
}

func (p *probe) wait(t testing.TB, what string, match func(testbroker.Message) bool) {
	t.Helper()
	deadline := time.After(patience)
	for !p.any(match) {
		select {
		case <-p.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waited %s for %s", patience, what)
		}
	}
}

// never fails if one of the payloads arrived: called once a control message published after them has
// arrived, it gives a reordering broker a last chance to show them.
func (p *probe) never(t testing.TB, payloads ...string) {
	t.Helper()
	time.Sleep(grace)
	for _, s := range payloads {
		if p.has(s) {
			t.Errorf("%q was delivered", s)
		}
	}
}

// denied publishes as a device where it may not, on a connection of its own, and checks the broker's
// answer: Mosquitto acknowledges and keeps the connection, mochi cuts it.
func (b aclBroker) denied(t *testing.T, cn, topic, payload string, retained bool) {
	t.Helper()
	p := b.mustConnect(t, cn, cn)
	err := p.publish(t, topic, payload, retained)
	if b.mochi {
		select {
		case <-p.lost:
		case <-time.After(patience):
			t.Fatalf("mochi kept %s connected after a publish on %s", cn, topic)
		}
		return
	}
	if err != nil || !p.c.IsConnectionOpen() {
		t.Fatalf("mosquitto: publish of %s on %s: %v, connected %v (it acknowledges and drops)", cn, topic, err, p.c.IsConnectionOpen())
	}
	p.c.Disconnect(50)
}

// TestBrokerACL runs the fleet's access rules against both brokers.
func TestBrokerACL(t *testing.T) {
	for _, start := range []func(*testing.T) aclBroker{startProductionMosquitto, startMochiFleetACL} {
		b := start(t)
		t.Run(b.name, func(t *testing.T) { testBrokerACL(t, b) })
	}
}

func testBrokerACL(t *testing.T, b aclBroker) {
	ctl := b.mustConnect(t, controllerCN, controllerCN)
	if code := ctl.subscribe(t, "faceguard/v1/dev/#"); code != 1 {
		t.Fatalf("the controller's subscription: %#x", code)
	}
	gateA := b.mustConnect(t, "gate-a", "gate-a")
	gateB := b.mustConnect(t, "gate-b", "gate-b")
	for _, f := range wire.DeviceSubscriptions("gate-b") {
		if code := gateB.subscribe(t, f); code != 1 {
			t.Fatalf("gate-b's own subscription %s: %#x", f, code)
		}
	}

	t.Run("own_tree_delivered", func(t *testing.T) {
		if err := gateA.publish(t, wire.EventTopic("gate-a"), "a-event-1", false); err != nil {
			t.Fatal(err)
		}
		ctl.waitFor(t, "a-event-1")
		if err := gateB.publish(t, wire.StateTopic("gate-b"), "b-state-real", true); err != nil {
			t.Fatal(err)
		}
		ctl.waitFor(t, "b-state-real")
	})

	t.Run("another_devices_tree_refused", func(t *testing.T) {
		for _, topic := range []string{wire.StateTopic("gate-b"), wire.ComplianceTopic("gate-b"), wire.ResultTopic("gate-b", "c-1")} {
			b.denied(t, "gate-a", topic, "a-forged-"+topic, false)
		}
		b.denied(t, "gate-a", wire.StateTopic("gate-b"), "a-forged-retained", true)
		control := b.mustConnect(t, "gate-a", "gate-a")
		if err := control.publish(t, wire.EventTopic("gate-a"), "a-control-2", false); err != nil {
			t.Fatal(err)
		}
		ctl.waitFor(t, "a-control-2")
		ctl.never(t, "a-forged-retained", "a-forged-"+wire.StateTopic("gate-b"), "a-forged-"+wire.ComplianceTopic("gate-b"),
			"a-forged-"+wire.ResultTopic("gate-b", "c-1"))
		// The state the broker keeps for gate-b is still gate-b's own: subscribing again sends it.
		ctl.subscribe(t, wire.StateTopic("gate-b"))
		ctl.waitForRetained(t, "b-state-real")
		ctl.never(t, "a-forged-retained")
	})

	t.Run("commands_from_a_device_refused", func(t *testing.T) {
		for _, topic := range []string{wire.CommandTopic("gate-b", wire.CmdForgetSubject), wire.BroadcastTopic(wire.CmdForgetSubject),
			wire.ChunkTopic("gate-b", "r1", 0), wire.CommandTopic("gate-a", wire.CmdReevaluate), wire.ControllerStateTopic} {
			b.denied(t, "gate-a", topic, "a-command-"+topic, false)
		}
		if err := ctl.publish(t, wire.CommandTopic("gate-b", wire.CmdReevaluate), "ctl-command-b", false); err != nil {
			t.Fatal(err)
		}
		if err := ctl.publish(t, wire.BroadcastTopic(wire.CmdRebirth), "ctl-broadcast", false); err != nil {
			t.Fatal(err)
		}
		gateB.waitFor(t, "ctl-command-b")
		gateB.waitFor(t, "ctl-broadcast")
		gateB.never(t, "a-command-"+wire.CommandTopic("gate-b", wire.CmdForgetSubject), "a-command-"+wire.BroadcastTopic(wire.CmdForgetSubject),
			"a-command-"+wire.ChunkTopic("gate-b", "r1", 0))
		ctl.never(t, "a-command-"+wire.ControllerStateTopic)
	})

	t.Run("another_devices_commands_unreadable", func(t *testing.T) {
		spy := b.mustConnect(t, "gate-a", "gate-a")
		refused := map[string]byte{}
		for _, f := range []string{"faceguard/v1/cmd/gate-b/#", "faceguard/v1/cmd/+/req/+", wire.StateTopic("gate-b"), "faceguard/v1/dev/#",
			wire.ControllerStateTopic, "#", "$SYS/#"} {
			refused[f] = spy.subscribe(t, f)
		}
		for _, f := range wire.DeviceSubscriptions("gate-a") {
			if code := spy.subscribe(t, f); code != 1 {
				t.Fatalf("gate-a's own subscription %s: %#x", f, code)
			}
		}
		if b.mochi {
			for f, code := range refused {
				if code != 0x80 {
					t.Errorf("mochi granted %s (%#x)", f, code)
				}
			}
		}
		if err := ctl.publish(t, wire.CommandTopic("gate-b", wire.CmdForgetSubject), "ctl-secret-for-b", false); err != nil {
			t.Fatal(err)
		}
		if err := gateB.publish(t, wire.EventTopic("gate-b"), "b-event-private", false); err != nil {
			t.Fatal(err)
		}
		ctl.waitFor(t, "b-event-private") // the broker has it before the control below is sent
		if err := ctl.publish(t, wire.CommandTopic("gate-a", wire.CmdReevaluate), "ctl-control-for-a", false); err != nil {
			t.Fatal(err)
		}
		if err := ctl.publish(t, wire.BroadcastTopic(wire.CmdReevaluate), "ctl-broadcast-2", false); err != nil {
			t.Fatal(err)
		}
		spy.waitFor(t, "ctl-control-for-a")
		spy.waitFor(t, "ctl-broadcast-2")
		spy.never(t, "ctl-secret-for-b", "b-event-private", "b-state-real", "ctl-command-b")
		spy.mu.Lock()
		defer spy.mu.Unlock()
		for _, m := range spy.msgs {
			if !strings.HasPrefix(m.Topic, "faceguard/v1/cmd/gate-a/") && !strings.HasPrefix(m.Topic, "faceguard/v1/bcast/") {
				t.Errorf("gate-a read %s", m.Topic)
			}
		}
	})

	t.Run("no_certificate_no_connection", func(t *testing.T) {
		if _, err := b.connect(t, "", "gate-a"); err == nil {
			t.Fatal("connected without a client certificate")
		}
		other := testpki.NewCA(t)
		cfg := &tls.Config{RootCAs: b.ca.Pool, Certificates: []tls.Certificate{other.Client(t, "gate-a").TLS}, MinVersion: tls.VersionTLS12}
		if _, err := b.connectTLS(t, cfg, "gate-a"); err == nil {
			t.Fatal("connected with a certificate of another CA")
		}
		if b.revoked != nil {
			if _, err := b.connectTLS(t, b.ca.TLSFor(*b.revoked), "gate-stolen"); err == nil {
				t.Fatal("connected with a revoked certificate")
			}
		}
		old := &tls.Config{RootCAs: b.ca.Pool, Certificates: []tls.Certificate{b.ca.Client(t, "gate-a").TLS},
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		if _, err := b.connectTLS(t, old, "gate-a"); err == nil {
			t.Fatal("connected over TLS 1.1")
		}
	})

	t.Run("client_id_takeover", func(t *testing.T) {
		victim := b.mustConnect(t, "gate-v", "gate-v")
		// gate-c, with its own valid certificate, connects under gate-v's client id.
		impostor, err := b.connect(t, "gate-c", "gate-v")
		if b.mochi {
			// mochi binds the client id to the certificate: refused.
			if err == nil {
				t.Fatal("mochi let gate-c connect as gate-v")
			}
		} else {
			// Mosquitto replaces the client id with the certificate's name (use_username_as_clientid): the
			// impostor is gate-c, takes over nothing, and writes only under gate-c.
			if err != nil {
				t.Fatalf("gate-c: %v", err)
			}
			_ = impostor.publish(t, wire.StateTopic("gate-v"), "c-as-v", true)
			if err := impostor.publish(t, wire.EventTopic("gate-c"), "c-own-event", false); err != nil {
				t.Fatal(err)
			}
			ctl.waitFor(t, "c-own-event")
		}
		if err := victim.publish(t, wire.EventTopic("gate-v"), "v-still-here", false); err != nil {
			t.Fatalf("the victim lost its connection: %v", err)
		}
		ctl.waitFor(t, "v-still-here")
		ctl.never(t, "c-as-v")
		select {
		case <-victim.lost:
			t.Fatal("the impostor kicked the victim off")
		default:
		}
	})

	if !b.mochi {
		t.Run("oversized_refused", func(t *testing.T) {
			// Over message_size_limit (wire.MaxPayload): acknowledged and dropped. Over max_packet_size: the
			// connection is cut before the broker reads the packet whole.
			big := strings.Repeat("x", 300<<10)
			p := b.mustConnect(t, "gate-a", "gate-a")
			if err := p.publish(t, wire.EventTopic("gate-a"), big, false); err != nil || !p.c.IsConnectionOpen() {
				t.Fatalf("over message_size_limit: %v (acknowledged and dropped)", err)
			}
			huge := strings.Repeat("y", 1100<<10)
			if err := p.publish(t, wire.EventTopic("gate-a"), huge, false); err == nil && p.c.IsConnectionOpen() {
				t.Fatal("a packet over max_packet_size kept its connection")
			}
			control := b.mustConnect(t, "gate-a", "gate-a")
			if err := control.publish(t, wire.EventTopic("gate-a"), "a-control-size", false); err != nil {
				t.Fatal(err)
			}
			ctl.waitFor(t, "a-control-size")
			ctl.never(t, big, huge)
		})
	}

	// The probes step aside for the real controller, which connects under the same certificate name.
	ctl.c.Disconnect(50)
	t.Run("agent_and_controller_end_to_end", func(t *testing.T) { testAgentThroughBroker(t, b) })
}

// testAgentThroughBroker runs a real controller and a real agent, each with its certificate, through the
// broker: the device reports, the controller sees it, a signed command goes down and its result comes up.
func testAgentThroughBroker(t *testing.T, b aclBroker) {
	k := newKeys(t)
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "fleet.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := fleet.NewController(fleet.Options{Store: st, BrokerURL: b.url, TLS: b.ca.ClientTLS(t, controllerCN), ClientID: controllerCN,
		ShareGroup: "faceguard", CommandKey: k.cmdPriv, SubjectKey: k.subject})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	eng, err := engine.New(ctx, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ast, err := store.Open(filepath.Join(t.TempDir(), "agent.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ast.Close()
	term := fsterm.New(fsterm.Options{Root: terminalFixture(t, "residential-gate"), SubjectKey: k.subject})
	defer term.Close()
	a, err := agent.New(agent.Options{DeviceID: "gate-e2e", Terminal: term, Engine: eng, Store: ast, BrokerURL: b.url,
		BrokerTLS: b.ca.ClientTLS(t, "gate-e2e"), ControllerKey: k.cmdPub, SubjectKey: k.subject, EvaluateEvery: time.Hour,
		ReconnectJitter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	stopped := false
	stopAgent := func() {
		if !stopped {
			stopped = true
			stop()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
		}
	}
	defer stopAgent()

	eventually(t, "the controller to see gate-e2e online with its summary", func() bool {
		d, err := c.Store().Device(ctx, "gate-e2e")
		return err == nil && d.State == wire.StateOnline && d.Status != "" && d.Audit.Seq > 0
	})
	cmd, err := c.Issue(ctx, fleet.IssueRequest{Type: wire.CmdReevaluate, Target: "gate-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range waitCommand(t, c, cmd.ID) {
		if r.Status != wire.ResultSucceeded {
			t.Fatalf("%s answered %+v", r.Dev, r)
		}
	}
	stopAgent()
	eventually(t, "gate-e2e offline", func() bool {
		d, err := c.Store().Device(ctx, "gate-e2e")
		return err == nil && d.State == wire.StateOffline
	})
}

// terminalFixture copies an example terminal of testdata/terminals into a fresh root.
func terminalFixture(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "terminals", name)
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}
