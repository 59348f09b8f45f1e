// Package testpg gives tests a real PostgreSQL server of their own: Debian's binaries, a fresh cluster
// (initdb) in a temporary directory, a free loopback port, and its Unix socket in that directory. Nothing
// depends on a server left running or on the system's cluster: each server is started by a test (or by a
// package's TestMain) and stopped, its directory removed, when that ends.
//
// PostgreSQL refuses to run as root. Run as root (a container, CI), the cluster is created and the server
// run as the `postgres` system user that Debian's package creates, in a directory under /tmp that user
// owns: t.TempDir nests inside a directory only root may enter.
//
// The server trades durability for speed (fsync off): it is for tests only.
package testpg

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// binGlob is where Debian installs the server binaries, one directory per major version.
var binGlob = "/usr/lib/postgresql/*/bin"

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 30 * time.Second

// Server is a running PostgreSQL server. Its methods are safe for concurrent use.
type Server struct {
	dir  string // owns everything: data/, the socket, the log
	port int
	bin  string
	cred *syscall.Credential // the postgres user's, when run as root

	cmd    *exec.Cmd
	exited chan struct{}
	stop   sync.Once

	names atomic.Int64 // databases and schemas created, for unique names

	// StartupTime is how long initdb and the first accepted connection took.
	StartupTime time.Duration
}

// Start starts a server for this test and returns the DSN of a new database on it; the server is stopped
// and its directory removed when the test ends. A missing PostgreSQL fails the test (it is a dependency
// of the test suite, installed by `make deps`), never skips it.
func Start(t testing.TB) string {
	t.Helper()
	srv, err := StartServer()
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(srv.Stop)
	t.Logf("testpg: PostgreSQL started in %s", srv.StartupTime.Round(time.Millisecond))
	return srv.NewDatabase(t)
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared returns the DSN of a fresh, empty schema on a server shared by the whole test binary, started
// on first use: one cluster per package instead of one per test, and a schema (named in the DSN's
// search_path) per call, because creating one takes milliseconds where a database takes a third of a
// second. Unqualified names in the test's SQL land in its schema. The package's TestMain stops the server:
//
//	func TestMain(m *testing.M) { os.Exit(testpg.Run(m)) }
func Shared(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = StartServer()
		if shared.err == nil {
			t.Logf("testpg: shared PostgreSQL started in %s", shared.srv.StartupTime.Round(time.Millisecond))
		}
	}
	srv, err := shared.srv, shared.err
	shared.mu.Unlock()
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	return srv.NewSchema(t)
}

// Run runs the tests and then stops the shared server, if one was started; it returns m.Run's code.
func Run(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// StopShared stops the server Shared started, if any.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.Stop()
		shared.srv = nil
	}
}

// Binaries returns the newest installed PostgreSQL's bin directory.
func Binaries() (string, error) {
	dirs, _ := filepath.Glob(binGlob)
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("PostgreSQL is not installed (no %s/initdb): run `make deps`, which installs Debian's postgresql", binGlob)
	}
	version := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return found[0], nil
}

// StartServer creates a cluster in a new directory and starts a server on a free loopback port. The
// caller stops it with Stop.
func StartServer() (*Server, error) {
	began := time.Now()
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	srv := &Server{bin: bin}
	// Directly under /tmp, not t.TempDir: when run as root, the postgres user must be able to enter it.
	srv.dir, err = os.MkdirTemp("", "testpg-")
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if srv.cred, err = postgresUser(); err != nil {
			os.RemoveAll(srv.dir)
			return nil, err
		}
		if err := os.Chown(srv.dir, int(srv.cred.Uid), int(srv.cred.Gid)); err != nil {
			os.RemoveAll(srv.dir)
			return nil, err
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "--pgdata", srv.data(), "--username", "postgres",
		"--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: srv.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(srv.dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// The port is free when probed and may be taken before the server binds it: try another then.
	for attempt := 1; ; attempt++ {
		err = srv.start()
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "could not bind") && !strings.Contains(err.Error(), "could not create") {
			os.RemoveAll(srv.dir)
			return nil, err
		}
	}
	srv.StartupTime = time.Since(began)
	return srv, nil
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL refuses to run as root and there is no postgres user to run it as (%v): run `make deps`, which installs Debian's postgresql", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres user: uid %q gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) data() string    { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// start runs postgres in the foreground (no pg_ctl daemon), so the test process owns it: it gets SIGKILL
// if the test binary dies, and fast shutdown (SIGINT) from Stop.
func (s *Server) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data(),
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "logging_collector=off", "-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	db, err := sql.Open("pgx", s.dsn("postgres", ""))
	if err != nil {
		s.kill()
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("postgres exited at start:\n%s", s.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("postgres did not accept connections within %s (%v):\n%s", startTimeout, err, s.log())
		}
	}
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(bytes.TrimSpace(b))
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// dsn is the URL of a database on the server, as the postgres superuser, with a search_path if schema is
// set.
func (s *Server) dsn(db, schema string) string {
	q := url.Values{"sslmode": {"disable"}}
	if schema != "" {
		q.Set("search_path", schema)
	}
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path: "/" + db, RawQuery: q.Encode()}
	return u.String()
}

// Port is the server's loopback TCP port.
func (s *Server) Port() int { return s.port }

// Dir is the server's directory (data/, socket, postgres.log).
func (s *Server) Dir() string { return s.dir }

// NewDatabase creates an empty database and returns its DSN. It is left for Stop to remove with the
// cluster: dropping it would wait for every pool still open on it.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", s.names.Add(1))
	s.admin(t, "CREATE DATABASE "+name+" TEMPLATE template0")
	return s.dsn(name, "")
}

// NewSchema creates an empty schema in the postgres database and returns a DSN whose search_path is that
// schema alone.
func (s *Server) NewSchema(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", s.names.Add(1))
	s.admin(t, "CREATE SCHEMA "+name)
	return s.dsn("postgres", name)
}

func (s *Server) admin(t testing.TB, stmt string) {
	t.Helper()
	db, err := sql.Open("pgx", s.dsn("postgres", ""))
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("testpg: %s: %v\n%s", stmt, err, s.log())
	}
}

// Stop shuts the server down (fast: open sessions are cut) and removes its directory.
func (s *Server) Stop() {
	s.stop.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-s.exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
		if err := os.RemoveAll(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "testpg: remove %s: %v\n", s.dir, err)
		}
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
