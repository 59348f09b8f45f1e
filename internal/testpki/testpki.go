// Package testpki makes a throwaway certificate authority and certificates for tests of MQTT over TLS
// with client certificates: a broker certificate for 127.0.0.1, and a device certificate per device id
// (its common name is the device id, as the fleet's brokers require).
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority for one test.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	Pool    *x509.CertPool
}

// NewCA makes a CA valid for a day.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "faceguard test fleet CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: pool}
}

// Issued is a certificate with its key, as PEM and as a tls.Certificate.
type Issued struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
	Cert            *x509.Certificate
}

// serial numbers every certificate of the test binary (tests that run in parallel issue at once).
var serial atomic.Int64

// Server issues the broker's certificate for 127.0.0.1 and localhost.
func (ca *CA) Server(t testing.TB) Issued {
	return ca.issue(t, "broker", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate whose common name is id.
func (ca *CA) Client(t testing.TB, id string) Issued {
	return ca.issue(t, id, nil, nil, x509.ExtKeyUsageClientAuth)
}

func (ca *CA) issue(t testing.TB, cn string, ips []net.IP, names []string, usage x509.ExtKeyUsage) Issued {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1) + 1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: ips, DNSNames: names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return Issued{CertPEM: certPEM, KeyPEM: keyPEM, TLS: pair, Cert: cert}
}

// CRL returns a PEM certificate revocation list of the CA, valid for a day, that revokes the given
// certificates (none: an empty list, which a broker checking revocation still needs).
func (ca *CA) CRL(t testing.TB, revoked ...Issued) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(serial.Add(1) + 1), ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(24 * time.Hour)}
	for _, r := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: r.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// TLSFor is a client's TLS configuration with an issued certificate (ClientTLS issues a new one).
func (ca *CA) TLSFor(is Issued) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{is.TLS}, MinVersion: tls.VersionTLS12}
}

// ServerTLS is the broker's TLS configuration: its certificate, and client certificates required and
// verified against the CA.
func (ca *CA) ServerTLS(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.Server(t).TLS}, ClientCAs: ca.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}

// ClientTLS is a device's TLS configuration with its own certificate.
func (ca *CA) ClientTLS(t testing.TB, id string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Client(t, id).TLS}, MinVersion: tls.VersionTLS12}
}

// WriteFiles writes the CA, and a certificate and key, into dir for tools that take files (Mosquitto,
// the agent's configuration). It returns the paths.
func (ca *CA) WriteFiles(t testing.TB, dir, name string, is Issued) (caFile, certFile, keyFile string) {
	t.Helper()
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+".key")
	for p, b := range map[string][]byte{caFile: ca.CertPEM, certFile: is.CertPEM, keyFile: is.KeyPEM} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}
