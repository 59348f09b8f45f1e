package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/device"
	"github.com/faceguard/faceguard/sim"
	"github.com/faceguard/faceguard/wire"
)

// runSim is `faceguard sim`: many simulated terminals, each a real agent with its own MQTT connection,
// against any broker, until Ctrl-C; then a summary.
func runSim(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	n := fs.Int("devices", 100, "how many simulated terminals")
	brokerURL := fs.String("broker", "tcp://127.0.0.1:1883", "the MQTT broker `URL`")
	keysDir := fs.String("keys", "", "the fleet's keys `DIR` (controller.pub, subject.key): without it the simulated terminals get keys of their own and refuse the controller's commands")
	dir := fs.String("dir", "", "where the terminal roots live (default: a temporary directory, removed at exit; tmpfs is best for thousands)")
	prefix := fs.String("prefix", "sim", "device ids are `PREFIX`-00001…")
	perSite := fs.Int("per-site", 50, "terminals per simulated site")
	every := fs.Duration("evaluate", time.Minute, "each agent evaluates at least this often")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 100000 {
		return usageError{errors.New("sim: --devices must be 1 to 100000")}
	}
	if !wire.ValidDeviceID(*prefix + "-00001") {
		return usageError{fmt.Errorf("sim: --prefix %q makes invalid device ids", *prefix)}
	}
	ctrlPub, subjectKey, err := simKeys(*keysDir)
	if err != nil {
		return usageError{err}
	}
	workDir := *dir
	if workDir == "" {
		d, err := os.MkdirTemp("", "faceguard-sim-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		workDir = d
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := engine.New(ctx, engine.Options{})
	if err != nil {
		return err
	}
	profiles := SimProfiles(*prefix, *n, *perSite)
	fmt.Fprintf(e.stdout, "faceguard sim: starting %d terminals against %s…\n", *n, *brokerURL)
	start := time.Now()
	progress := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progress:
				return
			case <-t.C:
				fmt.Fprintf(e.stdout, "  %s elapsed…\n", time.Since(start).Round(time.Second))
			}
		}
	}()
	fl, err := sim.StartFleet(ctx, sim.FleetOptions{Dir: workDir, Profiles: profiles, BrokerURL: *brokerURL, ControllerKey: ctrlPub,
		SubjectKey: subjectKey, Engine: eng, Logger: log, EvaluateEvery: *every, ConnectConcurrency: 64,
		ReadyTimeout: time.Duration(*n/20+60) * time.Second})
	close(progress)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	fmt.Fprintf(e.stdout, "%d terminals online in %s; Ctrl-C stops them\n", *n, time.Since(start).Round(time.Millisecond))
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "stopping…")
	compliant, non := 0, 0
	for _, d := range fl.Devices() {
		if dec, _, ok := d.Agent().Snapshot(); ok && dec.Status == device.StatusCompliant {
			compliant++
		} else {
			non++
		}
	}
	if err := fl.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "summary: %d terminals ran for %s; at the end %d compliant, %d not\n", *n,
		time.Since(start).Round(time.Second), compliant, non)
	return nil
}

// simKeys reads the fleet's keys, or makes throwaway ones.
func simKeys(dir string) (ed25519.PublicKey, []byte, error) {
	if dir == "" {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, nil, err
		}
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(i*7 + 1)
		}
		return pub, []byte(fmt.Sprintf("%x", key)), nil
	}
	b, err := os.ReadFile(filepath.Join(dir, controllerPubFile))
	if err != nil {
		return nil, nil, fmt.Errorf("--keys: %w", err)
	}
	pub, err := wire.ParseEd25519PublicKey(b)
	if err != nil {
		return nil, nil, err
	}
	subject, err := agent.ReadSubjectKey(filepath.Join(dir, subjectKeyFile))
	if err != nil {
		return nil, nil, err
	}
	return pub, subject, nil
}

// SimProfiles makes n terminals in sites of perSite, mostly compliant, with the faults of the demo spread
// among them (one terminal in eight has one).
func SimProfiles(prefix string, n, perSite int) []sim.Profile {
	faults := []func(*sim.Profile){
		func(p *sim.Profile) { p.FaceOnly = true },
		func(p *sim.Profile) { p.MinorWithoutGuardian = true },
		func(p *sim.Profile) { p.WithdrawnSubject = true },
		func(p *sim.Profile) { p.RawCaptures, p.RawBacklog = true, 3 },
		func(p *sim.Profile) { p.TemplateUpload, p.PublicPlace, p.Category = true, true, "hotel_lobby" },
		func(p *sim.Profile) { p.HotelRoom, p.PublicPlace = true, true },
		func(p *sim.Profile) { p.CoercivePrompt = true },
		func(p *sim.Profile) { p.SignRemoved = true },
	}
	out := make([]sim.Profile, n)
	for i := range out {
		site := fmt.Sprintf("%s-site-%03d", prefix, i/perSite+1)
		p := sim.Profile{ID: fmt.Sprintf("%s-%05d", prefix, i+1), Site: site, SiteName: site, Adults: 20}
		if i%8 == 7 {
			faults[(i/8)%len(faults)](&p)
		}
		out[i] = p
	}
	return out
}
