package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/link"
	"github.com/faceguard/faceguard/agent/store"
	"github.com/faceguard/faceguard/device/fsterm"
	"github.com/faceguard/faceguard/internal/buildinfo"
)

// runDaemon is `faceguard-agent run`: keep the terminal lawful until SIGTERM.
func runDaemon(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	configFile := fs.String("config", "/etc/faceguard/agent.yaml", "configuration `file` (see deploy/agent.yaml)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("run: unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := agent.LoadConfig(*configFile)
	if err != nil {
		return usageError{err}
	}
	// A terminal evaluates a few times a minute: spend a little CPU on collection to keep the resident
	// memory small (DESIGN §11: RSS ≤ 40 MB). GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := newLogger(e.stderr, cfg.Log.Format, level)

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	var bundleKey []byte
	if cfg.Keys.BundleVerificationKey != "" {
		if bundleKey, err = os.ReadFile(cfg.Keys.BundleVerificationKey); err != nil {
			return fmt.Errorf("bundle key: %w", err)
		}
	}
	eng, err := engine.New(ctx, engine.Options{VerificationKey: bundleKey, StateDir: cfg.StateDir, Logger: log})
	if err != nil {
		return err
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, "agent.db"), store.Options{Clock: e.clock})
	if err != nil {
		return err
	}
	defer st.Close()

	var subjectKey []byte
	if cfg.Keys.SubjectKey != "" {
		if subjectKey, err = cfg.SubjectHashKey(); err != nil {
			return fmt.Errorf("subject key: %w", err)
		}
	}
	term := fsterm.New(fsterm.Options{Root: cfg.Root, Clock: e.clock, DeviceID: cfg.DeviceID,
		StatusMaxAge: cfg.Intervals.StatusMaxAge.D(), SubjectKey: subjectKey, AllowedRemotes: brokerRemotes(cfg.Broker.URL, log),
		ReleaseMemoryAfterCount: true})
	defer term.Close()

	opts := agent.Options{
		DeviceID: cfg.DeviceID, Terminal: term, Engine: eng, Store: st, Clock: e.clock, Logger: log,
		BrokerURL: cfg.Broker.URL, SubjectKey: subjectKey,
		EvaluateEvery: cfg.Intervals.Evaluate.D(), HeartbeatEvery: cfg.Intervals.Heartbeat.D(), Debounce: cfg.Intervals.Debounce.D(),
		GalleryEvery: cfg.Intervals.GalleryEvery.D(),
		WatchRoot:    cfg.Root, APISocket: cfg.API.Socket,
	}
	if cfg.Keys.ControllerPublicKey != "" {
		if opts.ControllerKey, err = cfg.ControllerKey(); err != nil {
			return fmt.Errorf("controller key: %w", err)
		}
	}
	if opts.BrokerTLS, err = brokerTLS(cfg.Broker); err != nil {
		return err
	}
	if u, _ := url.Parse(cfg.Broker.URL); u != nil && u.User != nil {
		opts.BrokerUsername = u.User.Username()
		opts.BrokerPassword, _ = u.User.Password()
	}
	if cfg.Broker.Username != "" {
		opts.BrokerUsername = cfg.Broker.Username
	}
	if cfg.Broker.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Broker.PasswordFile)
		if err != nil {
			return fmt.Errorf("broker password: %w", err)
		}
		opts.BrokerPassword = strings.TrimSpace(string(b))
	}
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	a.SetLogLevel(level)
	log.Info("faceguard-agent", "version", buildinfo.Version, "device", cfg.DeviceID, "root", cfg.Root,
		"broker", link.Redact(cfg.Broker.URL), "policy", eng.Info().Revision)
	return a.Run(ctx)
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// brokerTLS builds the client's TLS from the configured files: the fleet CA, and the device's own
// certificate when the broker asks for one.
func brokerTLS(b agent.BrokerConfig) (*tls.Config, error) {
	if b.CAFile == "" && b.CertFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: b.ServerName}
	if b.CAFile != "" {
		pem, err := os.ReadFile(b.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker ca: %s holds no PEM certificate", b.CAFile)
		}
	}
	if b.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// brokerRemotes are the broker's addresses: the agent's own connection is not the terminal's egress.
func brokerRemotes(brokerURL string, log *slog.Logger) []string {
	u, err := url.Parse(brokerURL)
	if err != nil || u.Host == "" {
		return nil
	}
	host, port := u.Hostname(), u.Port()
	if ip := net.ParseIP(host); ip != nil {
		return []string{net.JoinHostPort(ip.String(), port)}
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		log.Warn("cannot resolve the broker; list it in site.yaml network.allowed_remotes so its connection is not "+
			"taken for undeclared egress", "host", host, "err", err)
		return nil
	}
	var out []string
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.String(), port))
	}
	return out
}
