package testkit

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PgBouncer is a real PgBouncer in transaction pooling mode in front of
// the test server, started for one test: the pooler that sends each
// transaction to whichever server connection is free, so that anything
// relying on a session (a named prepared statement, a session advisory
// lock, LISTEN) breaks under it as it would in production.
type PgBouncer struct {
	Addr string // host:port it listens on

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

// pgbouncerPackage names what to install when PgBouncer is missing: make
// test installs it (scripts/scale-tools.sh).
const pgbouncerPackage = "pgbouncer (Debian: apt-get install pgbouncer; make test installs it)"

// StartPgBouncer starts PgBouncer for t in front of the server of
// TEST_DATABASE_URL; it stops when t ends. Every database and user is
// passed through to the server (a fallback entry), each pair with a pool
// of its own: give each test a role (see Role) and reach it with URL.
//
// PgBouncer refuses to run as root: run as root, it is started with -u
// postgres, the server's own account.
func StartPgBouncer(t testing.TB) *PgBouncer {
	t.Helper()
	bin := pgbouncerBinary(t)
	server := baseURL(t)
	host, port := server.Hostname(), server.Port()
	if port == "" {
		port = "5432"
	}
	dir, err := os.MkdirTemp("", "testkit-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var args []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("testkit: PgBouncer does not run as root, and there is no postgres user to run it as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-u", "postgres")
	}
	userName := server.User.Username()
	if userName == "" {
		userName = "postgres"
	}
	// auth_type trust: the test server trusts its clients too. A user
	// must still be known: the server user is listed, and the others (see
	// Role) are looked up on the server as that user. Small pools: many
	// tests share one server.
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), fmt.Appendf(nil, "%q \"\"\n", userName), 0o644); err != nil {
		t.Fatal(err)
	}

	for attempt := 0; ; attempt++ {
		listen := freePort(t)
		ini := fmt.Sprintf(`[databases]
* = host=%s port=%s auth_user=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
auth_user = %s
auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = $1
pool_mode = transaction
default_pool_size = 5
max_client_conn = 500
server_login_retry = 1
log_connections = 0
log_disconnections = 0
`, host, port, userName, listen, filepath.Join(dir, "users.txt"), userName)
		cfg := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
			t.Fatal(err)
		}
		p := &PgBouncer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(listen)), done: make(chan struct{})}
		p.cmd = exec.Command(bin, append(args, cfg)...)
		p.cmd.Stdout, p.cmd.Stderr = &lockedWriter{p}, &lockedWriter{p}
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("testkit: start %s: %v", bin, err)
		}
		go func() { _ = p.cmd.Wait(); close(p.done) }()
		if p.waitListening(10 * time.Second) {
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("pgbouncer log:\n%s", p.output())
				}
			})
			return p
		}
		p.stop()
		// Another process may have taken the port between freePort and
		// PgBouncer's bind: try another.
		if attempt == 2 {
			t.Fatalf("testkit: PgBouncer did not start:\n%s", p.output())
		}
	}
}

// URL returns dbURL (a URL of the test server, as Role returns) with
// PgBouncer's address in place of the server's.
func (p *PgBouncer) URL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		panic(fmt.Sprintf("testkit: PgBouncer.URL(%q): %v", dbURL, err))
	}
	u.Host = p.Addr
	return u.String()
}

func (p *PgBouncer) waitListening(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
			_ = c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (p *PgBouncer) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *PgBouncer) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct{ p *PgBouncer }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// pgbouncerBinary finds pgbouncer on PATH or where Debian puts it (sbin,
// which an ordinary user's PATH may lack). Missing, the test fails naming
// the package: a test skipped for a missing tool looks like a passing one.
func pgbouncerBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("testkit: pgbouncer is not installed: install %s", pgbouncerPackage)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
