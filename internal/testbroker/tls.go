package testbroker

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// MosquittoDir makes a directory for a broker's configuration, certificates, ACL and persistence that
// Mosquitto can read and write after it drops to its own user (as root it runs as user mosquitto, and a
// t.TempDir nests in a directory only root may enter). It is removed when the test ends.
func MosquittoDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mosquitto-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	chownToMosquitto(t, dir)
	return dir
}

// WriteMosquittoFile writes name into dir (from MosquittoDir), readable by the broker's user only, as a
// key file must be in production. It returns the file's path.
func WriteMosquittoFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	chownToMosquitto(t, path)
	return path
}

// StartMosquittoConfig starts Mosquitto with conf, a complete configuration the caller wrote (its own
// listeners, TLS, ACL, persistence — nothing is added), in dir (from MosquittoDir). port is the port of
// conf's listener: Start waits until it accepts connections. The lifecycle is StartMosquitto's: the broker
// stops when the test ends, Restart keeps the port, and its log (stderr) is dir/mosquitto.log.
func StartMosquittoConfig(t testing.TB, dir string, port int, conf string) *Mosquitto {
	t.Helper()
	if _, err := os.Stat(MosquittoBinary); err != nil {
		t.Fatalf("mosquitto is not installed (%v): run `make deps`, which installs Debian's mosquitto", err)
	}
	m := &Mosquitto{t: t, dir: dir, port: port}
	m.conf = WriteMosquittoFile(t, dir, "mosquitto.conf", []byte(conf))
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// TLSURL is the broker's URL for paho on a TLS listener.
func (m *Mosquitto) TLSURL() string { return fmt.Sprintf("ssl://127.0.0.1:%d", m.port) }

// Log returns what the broker logged so far.
func (m *Mosquitto) Log() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
	return string(b)
}
