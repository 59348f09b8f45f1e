package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/internal/clock"
)

// DefaultConnectConcurrency is how many devices StartFleet brings up at once.
const DefaultConnectConcurrency = 64

// DefaultReadyTimeout bounds how long StartFleet waits for one device to come online.
const DefaultReadyTimeout = time.Minute

// FleetOptions start a fleet of simulated devices against one broker.
type FleetOptions struct {
	// Dir holds one directory per device, named by its id (put it on a tmpfs for large fleets).
	Dir      string
	Profiles []Profile
	// BrokerURL, ControllerKey and SubjectKey are the fleet's, as in DeviceOptions.
	BrokerURL     string
	ControllerKey ed25519.PublicKey
	SubjectKey    []byte
	// Engine is shared by every device; nil compiles the built-in pack once for the fleet.
	Engine *engine.Engine
	Logger *slog.Logger
	// ConnectConcurrency bounds how many devices are being brought up at once: each writes its terminal,
	// opens its store, starts its agent and waits until it is online (WaitReady) before its slot is
	// taken by the next. Default DefaultConnectConcurrency.
	ConnectConcurrency int
	// ReadyTimeout bounds the wait for one device; default DefaultReadyTimeout.
	ReadyTimeout time.Duration

	EvaluateEvery   time.Duration
	HeartbeatEvery  time.Duration
	ReconnectJitter time.Duration
	StatusMaxAge    time.Duration
	InboxSize       int
	Clock           clock.Clock
	Killable        bool
	// GalleryIdleTimeout: as DeviceOptions.GalleryIdleTimeout, for every device.
	GalleryIdleTimeout time.Duration
	// CountOnFreshConnection: as DeviceOptions.CountOnFreshConnection, for every device.
	CountOnFreshConnection bool
	// Customize, when set, adjusts the options of the i-th device (in the order of Profiles) before it
	// starts: its own clock, broker URL (through a netfault proxy), state directory, kill switch.
	Customize func(i int, opts *DeviceOptions)
}

// Fleet is a set of running simulated devices.
type Fleet struct {
	devices []*Device
	byID    map[string]*Device
}

// StartFleet starts a device for every profile, at most ConnectConcurrency at a time, and returns once
// every one of them is online. If one cannot be started or does not come online in time, it stops those
// already started and returns the error.
func StartFleet(ctx context.Context, opts FleetOptions) (*Fleet, error) {
	if opts.Dir == "" {
		return nil, errors.New("sim: FleetOptions.Dir is required")
	}
	seen := map[string]bool{}
	for _, p := range opts.Profiles {
		if seen[p.ID] {
			return nil, fmt.Errorf("sim: device id %q appears twice in the fleet", p.ID)
		}
		seen[p.ID] = true
	}
	if opts.Engine == nil {
		eng, err := engine.New(ctx, engine.Options{Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		opts.Engine = eng
	}
	if opts.ConnectConcurrency <= 0 {
		opts.ConnectConcurrency = DefaultConnectConcurrency
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}

	f := &Fleet{devices: make([]*Device, len(opts.Profiles)), byID: make(map[string]*Device, len(opts.Profiles))}
	// The devices outlive StartFleet's ctx: they run until Stop.
	runCtx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, opts.ConnectConcurrency)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	failed := func() bool {
		errMu.Lock()
		defer errMu.Unlock()
		return firstErr != nil
	}
	for i, p := range opts.Profiles {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil || failed() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			do := DeviceOptions{
				Dir: filepath.Join(opts.Dir, p.ID), Profile: p, Engine: opts.Engine,
				BrokerURL: opts.BrokerURL, ControllerKey: opts.ControllerKey, SubjectKey: opts.SubjectKey,
				EvaluateEvery: opts.EvaluateEvery, HeartbeatEvery: opts.HeartbeatEvery, ReconnectJitter: opts.ReconnectJitter,
				StatusMaxAge: opts.StatusMaxAge, InboxSize: opts.InboxSize, Clock: opts.Clock, Logger: opts.Logger,
				Killable: opts.Killable, GalleryIdleTimeout: opts.GalleryIdleTimeout, CountOnFreshConnection: opts.CountOnFreshConnection,
			}
			if opts.Customize != nil {
				opts.Customize(i, &do)
			}
			d, err := StartDevice(runCtx, do)
			if err == nil {
				f.devices[i] = d
				wctx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
				err = d.WaitReady(wctx)
				cancel()
			}
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("sim: start fleet: %w", ctx.Err())
	}
	started := f.devices[:0]
	for _, d := range f.devices {
		if d != nil {
			started = append(started, d)
		}
	}
	f.devices = started
	if firstErr != nil {
		_ = f.Stop()
		return nil, firstErr
	}
	for _, d := range f.devices {
		f.byID[d.ID()] = d
	}
	return f, nil
}

// Devices are the fleet's devices, in the order of the profiles.
func (f *Fleet) Devices() []*Device { return f.devices }

// Device is the device with this id, or nil.
func (f *Fleet) Device(id string) *Device { return f.byID[id] }

// Stop stops every device, all at once (each one's clean stop waits on the broker's acknowledgement of
// its offline state, so one after the other would take minutes for a large fleet).
func (f *Fleet) Stop() error {
	errs := make([]error, len(f.devices))
	var wg sync.WaitGroup
	for i, d := range f.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.Stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
