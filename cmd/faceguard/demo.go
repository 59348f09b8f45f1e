package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/internal/broker"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

// runDemo is `faceguard demo`: an embedded broker, the controller with its dashboard, and a dozen
// simulated terminals with faults, in one process, until Ctrl-C.
func runDemo(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	mqttAddr := fs.String("mqtt-addr", "127.0.0.1:1883", "the embedded MQTT broker listens on `ADDR`")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "the dashboard and API listen on `ADDR`")
	dir := fs.String("dir", "", "keep the demo's keys, fleet store and terminals in `DIR` (default: a temporary directory removed at exit)")
	every := fs.Duration("summary", 5*time.Second, "print the live summary this often (0: never)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if !isLoopback(*httpAddr) {
		return usageError{errors.New("demo: --http-addr must be a loopback address (the demo has no API token)")}
	}
	workDir := *dir
	if workDir == "" {
		d, err := os.MkdirTemp("", "faceguard-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		workDir = d
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(workDir, "demo.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// Keys: a fresh fleet identity for this demo. The API token is left out: the demo listens on loopback.
	keysDir := filepath.Join(workDir, "keys")
	keys, err := generateKeys()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return err
	}
	for name, b := range keys {
		if name == apiTokenFile {
			continue
		}
		if err := os.WriteFile(filepath.Join(keysDir, name), b, 0o600); err != nil {
			return err
		}
	}

	b, err := broker.Start(broker.Options{Addr: *mqttAddr, Logger: log})
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return usageError{fmt.Errorf("demo: --mqtt-addr %s: %v (is another broker running? choose another address with --mqtt-addr)", *mqttAddr, err)}
		}
		return err
	}
	defer b.Close()

	srv, err := startController(ctx, e, serveOptions{broker: b.URL(), db: filepath.Join(workDir, "fleet.db"), httpAddr: *httpAddr,
		keysDir: keysDir, clientID: "faceguard-demo-controller"}, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	eng, err := engine.New(ctx, engine.Options{VerificationKey: keys[bundlePubFile], Logger: log})
	if err != nil {
		return err
	}
	ctrlPub, err := wire.ParseEd25519PublicKey(keys[controllerPubFile])
	if err != nil {
		return err
	}
	subjectKey, err := agent.ReadSubjectKey(filepath.Join(keysDir, subjectKeyFile))
	if err != nil {
		return err
	}
	profiles := sim.DemoProfiles()
	fmt.Fprintf(e.stdout, "faceguard demo: starting an MQTT broker on %s, the controller, and %d simulated terminals…\n", b.Addr(), len(profiles))
	fl, err := sim.StartFleet(ctx, sim.FleetOptions{Dir: filepath.Join(workDir, "terminals"), Profiles: profiles, BrokerURL: b.URL(),
		ControllerKey: ctrlPub, SubjectKey: subjectKey, Engine: eng, Logger: log, EvaluateEvery: 15 * time.Second,
		ReconnectJitter: 500 * time.Millisecond})
	if err != nil {
		return fmt.Errorf("demo: start the simulated terminals: %w", err)
	}
	stopped := false
	stopFleet := func() {
		if !stopped {
			stopped = true
			_ = fl.Stop()
		}
	}
	defer stopFleet()

	url := "http://" + srv.addr + "/"
	fmt.Fprintf(e.stdout, `
  dashboard    %s   (中文 / English switch on every page)
  broker       tcp://%s
  files        %s   (keys, fleet store, terminals, demo.log)

  try, in another shell:
    faceguard fleet status   --server http://%s
    faceguard fleet forget   --server http://%s --subject resident-0001
    faceguard fleet reevaluate --server http://%s
    faceguard fleet report   --server http://%s --format html -o report.html
    faceguard sim --devices 200 --broker tcp://%s --keys %s     (fills the dashboard)

  Ctrl-C stops the demo.

`, url, b.Addr(), workDir, srv.addr, srv.addr, srv.addr, srv.addr, b.Addr(), keysDir)

	var tick <-chan time.Time
	if *every > 0 {
		t := time.NewTicker(*every)
		defer t.Stop()
		tick = t.C
		printSummary(ctx, e, srv.st)
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(e.stdout, "\nstopping: terminals, controller, broker…")
			stopFleet()
			fmt.Fprintln(e.stdout, "stopped.")
			return nil
		case <-tick:
			printSummary(ctx, e, srv.st)
		}
	}
}

// printSummary prints one line of the fleet's state, and what the agents did.
func printSummary(ctx context.Context, e env, st fleet.Store) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ov, err := st.Overview(qctx)
	if err != nil {
		return
	}
	evs, _ := st.Events(qctx, "", []string{wire.EventAction, wire.EventReceipt}, time.Time{}, 1000)
	actions, receipts := 0, 0
	for _, ev := range evs {
		if ev.Kind == wire.EventReceipt {
			receipts += len(ev.Receipts)
		} else {
			actions++
		}
	}
	t := ov.Total
	online := t.Devices - t.Offline
	fmt.Fprintf(e.stdout, "%s  %d terminals · %d online · %d compliant · %d non-compliant (%d critical) · %d actions · %d deletion receipts\n",
		time.Now().Format("15:04:05"), t.Devices, online, t.Compliant, t.NonCompliant, t.Critical, actions, receipts)
}
