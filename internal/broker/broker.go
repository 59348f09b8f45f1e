// Package broker embeds a mochi-mqtt broker: the demo's broker and the broker of unit-level tests. It is
// never linked into the device binary.
package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/faceguard/faceguard/wire"
)

// Options configure an embedded broker.
type Options struct {
	// Addr to listen on; "127.0.0.1:0" picks a free loopback port.
	Addr string
	// TLS, when set, serves MQTT over TLS; with ClientCAs and RequireAndVerifyClientCert every device
	// presents a certificate whose common name must be its client id, and the fleet ACL applies.
	TLS *tls.Config
	// ControllerIDs are client ids (or certificate names) allowed everywhere when the ACL applies.
	ControllerIDs []string
	Logger        *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	addr string
	tls  bool
}

// Start listens and serves in the background.
func Start(opts Options) (*Broker, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// Retained state must not vanish after a day (mochi's default forces an expiry even on MQTT 3.1.1).
	caps.MaximumMessageExpiryInterval = 0
	// Queues for fleets: a controller receiving from thousands of devices must not be dropped on. Each
	// client's write queue is a channel allocated whole at connection (8 bytes a slot), so the size is a
	// trade: 16,384 slots (128 KB a client) absorb the burst of retained messages of 2,000 devices
	// reconnecting at once (the demo with `faceguard sim --devices 2000`) while 2,000 devices cost 256 MB.
	// Fleets of ten thousand belong on Mosquitto, which queues per message, not per slot.
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 16 * 1024
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, InlineClient: true, Logger: opts.Logger.With("component", "broker")})
	var err error
	if opts.TLS != nil && opts.TLS.ClientAuth == tls.RequireAndVerifyClientCert {
		err = srv.AddHook(&fleetACL{controllers: opts.ControllerIDs}, nil)
	} else {
		err = srv.AddHook(new(auth.AllowHook), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	addr := ln.Addr().String()
	ln.Close() // mochi listens itself; the port was only reserved to learn a free one
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "mqtt", Address: addr, TLSConfig: opts.TLS})); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return &Broker{srv: srv, addr: addr, tls: opts.TLS != nil}, nil
}

// Addr is host:port.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker URL for paho.
func (b *Broker) URL() string {
	if b.tls {
		return "ssl://" + b.addr
	}
	return "tcp://" + b.addr
}

// Server exposes the mochi server, for tests that observe messages with its inline client.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

// fleetACL binds a device to its certificate and to its own topics: a device publishes only under
// faceguard/v1/dev/{its id}/ and reads only its own commands and the broadcasts.
type fleetACL struct {
	mqtt.HookBase
	controllers []string
}

func (h *fleetACL) ID() string { return "faceguard-fleet-acl" }

func (h *fleetACL) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *fleetACL) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return false
	}
	certs := tc.ConnectionState().PeerCertificates
	return len(certs) > 0 && certNames(certs[0])[cl.ID]
}

func certNames(c *x509.Certificate) map[string]bool {
	return map[string]bool{c.Subject.CommonName: true}
}

func (h *fleetACL) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	for _, id := range h.controllers {
		if cl.ID == id {
			return true
		}
	}
	if write {
		return strings.HasPrefix(topic, wire.Root+"/dev/"+cl.ID+"/")
	}
	return strings.HasPrefix(topic, wire.Root+"/cmd/"+cl.ID+"/") || strings.HasPrefix(topic, wire.Root+"/bcast/")
}
