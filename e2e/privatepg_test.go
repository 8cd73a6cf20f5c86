//go:build chaos

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// privatePG is a PostgreSQL server of the fault suite's own: initdb and
// pg_ctl in a temporary directory, on a free port, so that restarting,
// killing and freezing it touches nothing else on the machine (not the
// shared test server other tests use). Run as root, it runs as the
// postgres user, as PostgreSQL requires.
type privatePG struct {
	t    *testing.T
	bin  string // the server's programs
	dir  string
	port int
	opts string              // the server's options, given again at each start
	cred *syscall.Credential // nil: as this process's user
}

func startPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	p := &privatePG{t: t, bin: pgBinDir(t)}
	dir, err := os.MkdirTemp("", "chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("PostgreSQL does not run as root, and there is no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	p.run("initdb", "-D", p.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	p.opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=32MB", p.port, p.dir)
	p.run("pg_ctl", "-D", p.data(), "-l", p.logFile(), "-o", p.opts, "-w", "-t", "60", "start")
	t.Cleanup(func() {
		p.resume() // in case a test stopped it frozen
		_ = p.cmd("pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop").Run()
		if t.Failed() {
			b, _ := os.ReadFile(p.logFile())
			t.Logf("private PostgreSQL log (last 4 KiB):\n%s", tail(b, 4096))
		}
	})
	conn, err := pgx.Connect(context.Background(), p.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "CREATE DATABASE chaos"); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *privatePG) data() string    { return filepath.Join(p.dir, "data") }
func (p *privatePG) logFile() string { return filepath.Join(p.dir, "server.log") }

// url is a connection URL for database db.
func (p *privatePG) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

func (p *privatePG) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(p.bin, name), args...)
	c.Dir = p.dir
	if p.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return c
}

func (p *privatePG) run(name string, args ...string) {
	p.t.Helper()
	if out, err := p.cmd(name, args...).CombinedOutput(); err != nil {
		p.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// restart: a clean restart (pg_ctl restart -m fast), as an upgrade or a
// configuration change does it.
func (p *privatePG) restart() {
	p.run("pg_ctl", "-D", p.data(), "-l", p.logFile(), "-m", "fast", "-w", "-t", "60", "-o", p.opts, "restart")
}

// crash: every server process killed at once (pg_ctl stop -m immediate)
// and started again, which recovers from the WAL: a crash, or the
// failover of a managed database to a standby with the same data.
func (p *privatePG) crash() {
	p.run("pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop")
	p.run("pg_ctl", "-D", p.data(), "-l", p.logFile(), "-o", p.opts, "-w", "-t", "60", "start")
}

// pause freezes the postmaster and every process it started (SIGSTOP):
// connections stay open and nothing answers, as with a hung server or a
// network that drops packets.
func (p *privatePG) pause() { p.signalAll(syscall.SIGSTOP) }

// resume lets a paused server go on (SIGCONT).
func (p *privatePG) resume() { p.signalAll(syscall.SIGCONT) }

func (p *privatePG) signalAll(sig syscall.Signal) {
	pm := p.postmasterPID()
	if pm == 0 {
		return
	}
	for _, pid := range append([]int{pm}, childrenOf(pm)...) {
		_ = syscall.Kill(pid, sig)
	}
}

func (p *privatePG) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(p.data(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// pgBinDir finds initdb and pg_ctl: pg_config's directory, or the newest
// of Debian's /usr/lib/postgresql/*/bin. Missing, the suite fails naming
// what to install (make chaos installs it).
func pgBinDir(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) < pgVersion(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	t.Fatal("the fault suite runs a PostgreSQL of its own and needs initdb and pg_ctl: install postgresql (Debian: apt-get install postgresql; make chaos installs it)")
	return ""
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
