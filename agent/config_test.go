package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keyDir writes the key files a configuration names.
func keyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	for name, b := range map[string][]byte{
		"controller.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"subject.key":    []byte("0123456789abcdef0123456789abcdef\n"),
		"short.key":      []byte("too short"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestShippedConfigParses keeps deploy/agent.yaml, the documented example, valid: every key it shows
// exists, with the files it names made present.
func TestShippedConfigParses(t *testing.T) {
	b, err := os.ReadFile("../deploy/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := keyDir(t)
	text := string(b)
	for _, f := range []string{"fleet-ca.pem", "device.pem", "device.key", "bundle.pub"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text = strings.ReplaceAll(text, "/etc/faceguard/", dir+"/")
	text = strings.Replace(text, "root: /\n", "root: "+t.TempDir()+"\n", 1)
	text = strings.Replace(text, "bundle_verification_key: "+dir+"/bundle.pub", "bundle_verification_key: \"\"", 1)
	c, err := ParseConfig([]byte(text), dir)
	if err != nil {
		t.Fatalf("deploy/agent.yaml: %v", err)
	}
	if c.DeviceID != "gate-01" || c.Intervals.Evaluate.D() != 60*time.Second || c.API.Socket != DefaultSocket ||
		c.Intervals.GalleryEvery.D() != DefaultGalleryEvery {
		t.Fatalf("parsed %+v", c)
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	dir := keyDir(t)
	root := t.TempDir()
	base := "device_id: gate-01\nroot: " + root + "\n"
	c, err := ParseConfig([]byte(base), dir)
	if err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	if c.StateDir != DefaultStateDir || c.Intervals.Heartbeat.D() != DefaultHeartbeat || c.Log.Format != "json" ||
		c.Intervals.GalleryEvery.D() != DefaultGalleryEvery {
		t.Fatalf("defaults %+v", c)
	}
	tests := []struct {
		name, yaml, wantKey string
	}{
		{"empty", "", "device_id"},
		{"bad_id", "device_id: Gate 01\nroot: " + root + "\n", "device_id"},
		{"unknown_key", base + "brokr:\n  url: tcp://x:1\n", "brokr"},
		{"bad_root", "device_id: gate-01\nroot: /no/such/dir\n", "root"},
		{"bad_scheme", base + "broker:\n  url: http://x:1883\n", "broker.url"},
		{"no_port", base + "broker:\n  url: tcp://x\n", "broker.url"},
		{"broker_without_key", base + "broker:\n  url: tcp://x:1883\n", "keys.controller_public_key"},
		{"tls_files_plain_scheme", base + "broker:\n  url: tcp://x:1883\n  ca_file: controller.pub\nkeys:\n  controller_public_key: controller.pub\n", "broker.url"},
		{"cert_without_key", base + "broker:\n  url: ssl://x:8883\n  cert_file: controller.pub\nkeys:\n  controller_public_key: controller.pub\n", "broker.cert_file"},
		{"missing_ca", base + "broker:\n  url: ssl://x:8883\n  ca_file: nope.pem\nkeys:\n  controller_public_key: controller.pub\n", "broker.ca_file"},
		{"controller_key_not_ed25519", base + "keys:\n  controller_public_key: subject.key\n", "keys.controller_public_key"},
		{"short_subject_key", base + "keys:\n  subject_key: short.key\n", "keys.subject_key"},
		{"bad_duration", base + "intervals:\n  evaluate: soon\n", "soon"},
		{"too_short", base + "intervals:\n  heartbeat: 10ms\n", "intervals.heartbeat"},
		{"gallery_every_negative", base + "intervals:\n  gallery_every: -1s\n", "intervals.gallery_every"},
		{"gallery_every_too_long", base + "intervals:\n  gallery_every: 1h\n", "intervals.gallery_every"},
		{"bad_level", base + "log:\n  level: loud\n", "log.level"},
		{"bad_format", base + "log:\n  format: xml\n", "log.format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml), dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("error %v does not name %q", err, tt.wantKey)
			}
		})
	}
}
