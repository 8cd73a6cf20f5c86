package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgbouncer is a PgBouncer in transaction mode in front of the bench's
// schema, for the replicas scenario: many replicas share a few server
// connections through it, as the operations guide recommends, while each
// keeps one direct LISTEN connection.
type pgbouncer struct {
	proc  *proc
	addr  string
	alias string // the database name that selects the bench's schema
}

// url is the proxy's DATABASE_URL through PgBouncer.
func (p *pgbouncer) url() string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.addr, p.alias)
}

// startPgBouncer starts PgBouncer with one database, alias, that leads to
// the bench's database and selects its schema: PgBouncer refuses
// search_path as a startup parameter, so each new server connection sets
// it (connect_query); transaction pooling never mixes the alias's server
// connections with another database's.
func startPgBouncer(dir string, db *database) (*pgbouncer, error) {
	bin, err := pgbouncerBinary()
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(db.base)
	if err != nil {
		return nil, err
	}
	port := base.Port()
	if port == "" {
		port = "5432"
	}
	dbname := base.Path[1:]
	pdir := filepath.Join(dir, "pgbouncer")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return nil, err
	}
	var args []string
	if os.Geteuid() == 0 { // PgBouncer refuses to run as root
		u, err := osuser.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgbouncer does not run as root and there is no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(pdir, uid, gid); err != nil {
			return nil, err
		}
		args = append(args, "-u", "postgres")
	}
	if err := os.WriteFile(filepath.Join(pdir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return nil, err
	}
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	_, lport, _ := net.SplitHostPort(listen)
	p := &pgbouncer{addr: listen, alias: "authsidecar_bench"}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%s dbname=%s connect_query='SET search_path TO %s'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = trust
auth_file = %s
admin_users = postgres
pool_mode = transaction
default_pool_size = 10
max_client_conn = 1000
log_connections = 0
log_disconnections = 0
`, p.alias, base.Hostname(), port, dbname, db.schema, lport, filepath.Join(pdir, "users.txt"))
	cfg := filepath.Join(pdir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		return nil, err
	}
	if p.proc, err = startProc("pgbouncer", bin, append(args, cfg), nil, nil); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := p.proc.exited(); err != nil {
			return nil, err
		}
		if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
			_ = c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.proc.stop()
			return nil, fmt.Errorf("pgbouncer did not listen on %s: %s", listen, p.proc.out.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverConns is how many server connections PgBouncer holds for the
// alias (its admin console's SHOW POOLS).
func (p *pgbouncer) serverConns(ctx context.Context) (int, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://postgres@%s/pgbouncer?sslmode=disable", p.addr))
	if err != nil {
		return 0, err
	}
	// The console speaks the simple protocol only.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("pgbouncer console: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SHOW POOLS")
	if err != nil {
		return 0, fmt.Errorf("SHOW POOLS: %w", err)
	}
	defer rows.Close()
	total := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return 0, err
		}
		fields := rows.FieldDescriptions()
		row := map[string]any{}
		for i, f := range fields {
			row[f.Name] = vals[i]
		}
		if row["database"] != p.alias {
			continue
		}
		for _, k := range []string{"sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"} {
			if n, ok := toInt(row[k]); ok {
				total += n
			}
		}
	}
	return total, rows.Err()
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int64:
		return int(n), true
	case int32:
		return int(n), true
	case string:
		i, err := strconv.Atoi(n)
		return i, err == nil
	}
	return 0, false
}

// pgbouncerBinary finds pgbouncer on PATH or where Debian puts it.
func pgbouncerBinary() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("the replicas scenario runs its replicas through PgBouncer, which is not installed: install pgbouncer (Debian: apt-get install pgbouncer, or scripts/scale-tools.sh)")
}
