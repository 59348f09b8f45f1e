package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/faceguard/faceguard/agent"
	"github.com/faceguard/faceguard/fleet"
	"github.com/faceguard/faceguard/fleet/store/sqlstore"
	"github.com/faceguard/faceguard/wire"
)

// serveOptions are the controller's settings, from flags (fleet serve) or from the demo.
type serveOptions struct {
	broker     string
	db         string
	httpAddr   string
	keysDir    string
	clientID   string
	shareGroup string
	caFile     string
	certFile   string
	keyFile    string
	username   string
	password   string
	calendars  string
}

// runServe is `faceguard fleet serve`: ingest, commands, dashboard, API, metrics, until SIGTERM.
func runServe(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("fleet serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var o serveOptions
	fs.StringVar(&o.broker, "broker", "tcp://127.0.0.1:1883", "the MQTT broker `URL` (tcp:// or ssl://)")
	fs.StringVar(&o.db, "db", "faceguard-fleet.db", "the fleet store: a SQLite `file`, or postgres://… to share a fleet between controllers")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "serve the dashboard, the API and /metrics on `ADDR`")
	fs.StringVar(&o.keysDir, "keys", "keys", "the `DIR` of faceguard keys gen (controller.key, bundle.pub, subject.key, api.token)")
	fs.StringVar(&o.clientID, "client-id", defaultClientID(), "this controller's MQTT client `id` (unique per controller)")
	fs.StringVar(&o.shareGroup, "share-group", "faceguard", "shared-subscription `group` of the fleet's controllers (\"\" to turn off)")
	fs.StringVar(&o.caFile, "ca-file", "", "TLS: the CA `FILE` of the broker's certificate")
	fs.StringVar(&o.certFile, "cert-file", "", "TLS: the controller's client certificate `FILE`")
	fs.StringVar(&o.keyFile, "key-file", "", "TLS: the controller's client key `FILE`")
	fs.StringVar(&o.username, "username", "", "broker user name")
	fs.StringVar(&o.password, "password-file", "", "broker password `FILE`")
	fs.StringVar(&o.calendars, "calendars", "", "a `DIR` of extra working-day calendars (YYYY.json) for years the binary does not know")
	if err := parse(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := startController(ctx, e, o, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(e.stdout, "faceguard controller: dashboard and API on http://%s/ (metrics /metrics), broker %s, store %s\n",
		srv.addr, o.broker, redactDSN(o.db))
	<-ctx.Done()
	return nil
}

// controllerServer is a running controller with its HTTP server.
type controllerServer struct {
	ctl   *fleet.Controller
	st    fleet.Store
	http  *http.Server
	addr  string
	token string
}

func (s *controllerServer) Close() {
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = s.http.Shutdown(sctx)
	s.ctl.Close()
	_ = s.st.Close()
}

func startController(ctx context.Context, e env, o serveOptions, log *slog.Logger) (*controllerServer, error) {
	keys, err := loadControllerKeys(o.keysDir)
	if err != nil {
		return nil, usageError{err}
	}
	if !isLoopback(o.httpAddr) && keys.token == "" {
		return nil, usageError{fmt.Errorf("--http %s listens beyond this machine: put api.token in %s (faceguard keys gen writes one)",
			o.httpAddr, o.keysDir)}
	}
	st, err := sqlstore.Open(ctx, o.db, sqlstore.Options{})
	if err != nil {
		return nil, err
	}
	tlsCfg, err := clientTLS(o.caFile, o.certFile, o.keyFile)
	if err != nil {
		st.Close()
		return nil, usageError{err}
	}
	password := ""
	if o.password != "" {
		b, err := os.ReadFile(o.password)
		if err != nil {
			st.Close()
			return nil, usageError{err}
		}
		password = strings.TrimSpace(string(b))
	}
	ctl, err := fleet.NewController(fleet.Options{Store: st, BrokerURL: o.broker, TLS: tlsCfg, Username: o.username, Password: password,
		ClientID: o.clientID, ShareGroup: o.shareGroup, CommandKey: keys.command, SubjectKey: keys.subject,
		Clock: e.clock, Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ctl.Start(startCtx); err != nil {
		ctl.Close()
		st.Close()
		return nil, fmt.Errorf("connect to the broker %s: %w", o.broker, err)
	}
	mux := http.NewServeMux()
	api := &fleet.API{C: ctl, Token: keys.token}
	if keys.bundlePub != nil {
		api.VerifyBundle = func(data []byte) (string, error) {
			info, err := verifyBundleBytes(context.Background(), data, keys.bundlePub)
			return info.Revision, err
		}
	}
	tracker, err := newFilingTracker(st, e.clock, o.calendars)
	if err != nil {
		ctl.Close()
		st.Close()
		return nil, usageError{err}
	}
	api.Filing = tracker.handler
	api.Report = reportHandler(st, e.clock)
	api.Register(mux)
	mux.Handle("GET /metrics", ctl.MetricsHandler())
	registerDashboard(mux, ctl, tracker)
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		ctl.Close()
		st.Close()
		return nil, usageError{fmt.Errorf("--http %s: %w (another program listens there; choose another address)", o.httpAddr, err)}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	go tracker.run(ctx, log)
	return &controllerServer{ctl: ctl, st: st, http: srv, addr: ln.Addr().String(), token: keys.token}, nil
}

type controllerKeys struct {
	command   []byte // ed25519.PrivateKey
	subject   []byte
	bundlePub []byte
	token     string
}

// loadControllerKeys reads the keys of `faceguard keys gen`. The command key and subject key are needed;
// without bundle.pub bundles cannot be pushed, without api.token the API takes commands from loopback only.
func loadControllerKeys(dir string) (controllerKeys, error) {
	var k controllerKeys
	b, err := os.ReadFile(filepath.Join(dir, controllerKeyFile))
	if err != nil {
		return k, fmt.Errorf("controller key: %w (run faceguard keys gen --dir %s)", err, dir)
	}
	priv, err := wire.ParseEd25519PrivateKey(b)
	if err != nil {
		return k, err
	}
	k.command = priv
	if k.subject, err = agent.ReadSubjectKey(filepath.Join(dir, subjectKeyFile)); err != nil {
		return k, fmt.Errorf("subject key: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, bundlePubFile)); err == nil {
		k.bundlePub = b
	}
	if b, err := os.ReadFile(filepath.Join(dir, apiTokenFile)); err == nil {
		k.token = strings.TrimSpace(string(b))
	}
	return k, nil
}

func clientTLS(ca, cert, key string) (*tls.Config, error) {
	if ca == "" && cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", ca)
		}
	}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func defaultClientID() string {
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 32
		}
		return '-'
	}, h)
	return "faceguard-controller-" + h
}

func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "@"); i > 0 && strings.Contains(dsn, "://") {
		return dsn[:strings.Index(dsn, "://")+3] + "…" + dsn[i:]
	}
	return dsn
}
