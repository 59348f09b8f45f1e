package agent

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/agent/link"
	"github.com/faceguard/faceguard/wire"
)

// Config is the agent's configuration file (deploy/agent.yaml documents every key).
type Config struct {
	DeviceID  string          `yaml:"device_id"`
	Root      string          `yaml:"root"`
	StateDir  string          `yaml:"state_dir"`
	Broker    BrokerConfig    `yaml:"broker"`
	Keys      KeysConfig      `yaml:"keys"`
	Intervals IntervalsConfig `yaml:"intervals"`
	API       APIConfig       `yaml:"api"`
	Log       LogConfig       `yaml:"log"`
}

// BrokerConfig is the MQTT connection. An empty URL runs the agent without a fleet: it still enforces and
// records, and its outbox waits.
type BrokerConfig struct {
	URL          string `yaml:"url"`
	CAFile       string `yaml:"ca_file"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ServerName   string `yaml:"server_name"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// KeysConfig names the key files the agent pins.
type KeysConfig struct {
	ControllerPublicKey   string `yaml:"controller_public_key"`   // Ed25519, PEM: verifies commands
	BundleVerificationKey string `yaml:"bundle_verification_key"` // ECDSA or RSA, PEM: verifies bundles
	SubjectKey            string `yaml:"subject_key"`             // the fleet's subject hash key
}

// IntervalsConfig are the agent's clocks.
type IntervalsConfig struct {
	Evaluate     Duration `yaml:"evaluate"`       // re-evaluate at least this often; default 60s
	Heartbeat    Duration `yaml:"heartbeat"`      // re-publish the compliance summary; default 15m
	StatusMaxAge Duration `yaml:"status_max_age"` // status.json older than this is unknown; default 15m
	Debounce     Duration `yaml:"debounce"`       // wait this long after a watched file changes; default 200ms
	// GalleryEvery: changes of the gallery alone (a busy gate records every recognition) are evaluated at
	// most this often; the first after a quiet spell at once. Default 5s; 0 evaluates every change.
	GalleryEvery Duration `yaml:"gallery_every"`
}

// APIConfig is the local decision API.
type APIConfig struct {
	Socket string `yaml:"socket"` // Unix socket path; "" turns the API off
}

// LogConfig sets logging.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | text
}

// Duration reads "60s", "15m" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 60s or 15m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Defaults of every optional key.
const (
	DefaultRoot         = "/"
	DefaultStateDir     = "/var/lib/faceguard"
	DefaultSocket       = "/run/faceguard/agent.sock"
	DefaultEvaluate     = 60 * time.Second
	DefaultHeartbeat    = 15 * time.Minute
	DefaultStatusMaxAge = 15 * time.Minute
	DefaultDebounce     = 200 * time.Millisecond
	DefaultGalleryEvery = 5 * time.Second
)

// LoadConfig reads and validates a configuration file. Unknown keys are refused, and every error names
// the key at fault.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(data, filepath.Dir(path))
}

// ParseConfig reads a configuration; relative file names in it are resolved against dir.
func ParseConfig(data []byte, dir string) (Config, error) {
	c := Config{
		Root:     DefaultRoot,
		StateDir: DefaultStateDir,
		Intervals: IntervalsConfig{Evaluate: Duration(DefaultEvaluate), Heartbeat: Duration(DefaultHeartbeat), StatusMaxAge: Duration(DefaultStatusMaxAge), Debounce: Duration(DefaultDebounce),
			GalleryEvery: Duration(DefaultGalleryEvery)},
		API: APIConfig{Socket: DefaultSocket},
		Log: LogConfig{Level: "info", Format: "json"},
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // an empty file is all defaults
		return Config{}, fmt.Errorf("config: %w", err)
	}
	for _, p := range []*string{&c.Root, &c.StateDir, &c.Broker.CAFile, &c.Broker.CertFile, &c.Broker.KeyFile,
		&c.Broker.PasswordFile, &c.Keys.ControllerPublicKey, &c.Keys.BundleVerificationKey, &c.Keys.SubjectKey, &c.API.Socket} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return c, c.Validate()
}

// Validate checks every key and names the first one at fault.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...))
	}
	if c.DeviceID == "" {
		return bad("device_id", "required")
	}
	if !wire.ValidDeviceID(c.DeviceID) {
		return bad("device_id", "%q must match [a-z0-9-]{1,64}", c.DeviceID)
	}
	if st, err := os.Stat(c.Root); err != nil || !st.IsDir() {
		return bad("root", "%s is not a directory", c.Root)
	}
	if c.StateDir == "" {
		return bad("state_dir", "required")
	}
	if c.Broker.URL != "" {
		if err := link.ValidateBrokerURL(c.Broker.URL); err != nil {
			return bad("broker.url", "%v", err)
		}
		tlsScheme := strings.HasPrefix(c.Broker.URL, "ssl://") || strings.HasPrefix(c.Broker.URL, "tls://") || strings.HasPrefix(c.Broker.URL, "mqtts://")
		if !tlsScheme && (c.Broker.CAFile != "" || c.Broker.CertFile != "") {
			return bad("broker.url", "TLS files are set but the scheme %q is not ssl://, tls:// or mqtts://", c.Broker.URL)
		}
		if (c.Broker.CertFile == "") != (c.Broker.KeyFile == "") {
			return bad("broker.cert_file", "cert_file and key_file go together")
		}
		for key, f := range map[string]string{"broker.ca_file": c.Broker.CAFile, "broker.cert_file": c.Broker.CertFile,
			"broker.key_file": c.Broker.KeyFile, "broker.password_file": c.Broker.PasswordFile} {
			if f != "" {
				if _, err := os.Stat(f); err != nil {
					return bad(key, "%v", err)
				}
			}
		}
		if c.Keys.ControllerPublicKey == "" {
			return bad("keys.controller_public_key", "required with a broker: commands must be verifiable")
		}
	}
	if c.Keys.ControllerPublicKey != "" {
		if _, err := c.ControllerKey(); err != nil {
			return bad("keys.controller_public_key", "%v", err)
		}
	}
	if c.Keys.BundleVerificationKey != "" {
		b, err := os.ReadFile(c.Keys.BundleVerificationKey)
		if err != nil {
			return bad("keys.bundle_verification_key", "%v", err)
		}
		if _, err := engine.VerificationAlgorithm(b); err != nil {
			return bad("keys.bundle_verification_key", "%v", err)
		}
	}
	if c.Keys.SubjectKey != "" {
		if _, err := c.SubjectHashKey(); err != nil {
			return bad("keys.subject_key", "%v", err)
		}
	}
	for key, d := range map[string]Duration{"intervals.evaluate": c.Intervals.Evaluate, "intervals.heartbeat": c.Intervals.Heartbeat,
		"intervals.status_max_age": c.Intervals.StatusMaxAge} {
		if d.D() < time.Second {
			return bad(key, "%s is too short (at least 1s)", d.D())
		}
	}
	if c.Intervals.Debounce.D() < 0 || c.Intervals.Debounce.D() > 10*time.Second {
		return bad("intervals.debounce", "%s is out of range (0 to 10s)", c.Intervals.Debounce.D())
	}
	if c.Intervals.GalleryEvery.D() < 0 || c.Intervals.GalleryEvery.D() > 5*time.Minute {
		return bad("intervals.gallery_every", "%s is out of range (0 to 5m)", c.Intervals.GalleryEvery.D())
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "%q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		return bad("log.format", "%q must be json or text", c.Log.Format)
	}
	return nil
}

// ControllerKey reads the pinned Ed25519 key that verifies commands.
func (c *Config) ControllerKey() (ed25519.PublicKey, error) {
	b, err := os.ReadFile(c.Keys.ControllerPublicKey)
	if err != nil {
		return nil, err
	}
	return wire.ParseEd25519PublicKey(b)
}

// SubjectHashKey reads the fleet's subject key: at least 32 bytes, raw or hex on one line.
func (c *Config) SubjectHashKey() ([]byte, error) {
	return ReadSubjectKey(c.Keys.SubjectKey)
}

// ReadSubjectKey reads a subject hash key file.
func ReadSubjectKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k := bytes.TrimSpace(b)
	if len(k) < 32 {
		return nil, fmt.Errorf("%s: %d bytes, want at least 32", path, len(k))
	}
	return k, nil
}
