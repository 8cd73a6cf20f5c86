package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
)

// Listener holds one dedicated connection that LISTENs for session changes
// (see migration 00003) and reports each changed session id. When the
// connection drops, notifications sent meanwhile are lost: it reports
// itself down at once, so that caches empty and every request is checked in
// the database, and reconnects with backoff.
type Listener struct {
	// URL is the database to listen on: DATABASE_LISTEN_URL, a session of
	// its own on PostgreSQL (a pooler in transaction mode would pass the
	// LISTEN to a server connection and then lend that connection to
	// others).
	URL string
	// Pool, if not nil, is the pool that changes are committed through
	// (DATABASE_URL). The listener's health check then sends its probe
	// notification through it, and so proves the whole way a revocation
	// travels, not only that its own connection answers: a LISTEN made
	// through a transaction pooler by mistake, or on another database,
	// never hears the probe, and the listener stays down (caches off)
	// instead of caching sessions it will never hear revoked.
	Pool *pgxpool.Pool
	// Changed receives the id of every session that changed.
	Changed func(sessionID string)
	// State is told true once LISTEN is in effect, false when the
	// connection is lost (or cannot be made).
	State func(up bool)
	// Ping is how long the connection may stay silent before it is
	// checked, and how long the check may take before the listener gives
	// up on the connection (reporting itself down, which empties the
	// caches): a silently dead connection (a hung server, no RST from a
	// vanished host) is noticed within twice this. Default 2s.
	Ping time.Duration
	Log  *zap.Logger
}

// ListenerApplicationName starts the application_name of listener
// connections in pg_stat_activity; the channel name follows it.
const ListenerApplicationName = "authsidecar-listener"

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) {
	if l.Ping <= 0 {
		l.Ping = 2 * time.Second
	}
	backoff := 100 * time.Millisecond
	wasUp, warnedProbe := false, false
	for ctx.Err() == nil {
		conn, err := l.connect(ctx)
		if err == nil {
			l.State(true)
			if !wasUp {
				l.Log.Info("listening for session changes; caching sessions")
			}
			wasUp = true
			backoff = 100 * time.Millisecond
			err = l.listen(ctx, conn)
			_ = conn.Close(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			break
		}
		l.State(false)
		switch {
		case wasUp:
			l.Log.Warn("lost the session-change listener; checking every request in the database until it is back", zap.Error(err))
			wasUp = false
		case errors.Is(err, errProbeLost) && !warnedProbe:
			// A connection that works but never hears what is committed
			// is a setting to fix, not a database restarting: say so once.
			l.Log.Warn("the session-change listener does not hear what is committed through DATABASE_URL; sessions are not cached. If DATABASE_URL goes through a pooler in transaction mode, set DATABASE_LISTEN_URL to a direct connection to the same database", zap.Error(err))
			warnedProbe = true
		default:
			l.Log.Debug("session-change listener not connected", zap.Error(err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	l.State(false)
}

// errProbeLost is a probe notification that did not come back in time.
var errProbeLost = errors.New("the probe notification did not arrive")

func (l *Listener) connect(ctx context.Context) (*listenConn, error) {
	// Parsed as the pool parses it, so that pool settings in DATABASE_URL
	// (pool_max_conns and the like) are understood rather than sent to the
	// server as unknown parameters.
	pcfg, err := pgxpool.ParseConfig(l.URL)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	cfg := pcfg.ConnConfig
	// A deadline, not a cancel request, ends a wait that timed out: the
	// connection stays usable for the ping that follows.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("listener connect: %w", err)
	}
	fail := func(what string, err error) (*listenConn, error) {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var channel string
	if err := conn.QueryRow(cctx, `SELECT 'authsidecar_' || left(md5(current_schema()), 16)`).Scan(&channel); err != nil {
		return fail("listener channel", err)
	}
	// Operators (and the fault tests) find this connection by its name.
	if _, err := conn.Exec(cctx, `SELECT set_config('application_name', $1, false)`, ListenerApplicationName+" "+channel); err != nil {
		return fail("listener name", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fail("listen", err)
	}
	lc := &listenConn{Conn: conn}
	if l.Pool != nil {
		// The probe channel is this listener's own, so that no other
		// replica hears its probes.
		lc.probe = "authsidecar_probe_" + randomHex(8)
		if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{lc.probe}.Sanitize()); err != nil {
			return fail("listen", err)
		}
		// Up only once what is committed through the pool is heard here.
		pctx, cancel := context.WithTimeout(ctx, l.Ping)
		defer cancel()
		if err := l.check(pctx, lc); err != nil {
			return fail("listener check", err)
		}
	}
	return lc, nil
}

// listenConn is the listener's connection and its probe channel.
type listenConn struct {
	*pgx.Conn
	probe string // "" without a Pool
}

func (l *Listener) listen(ctx context.Context, conn *listenConn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, l.Ping)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Channel != conn.probe { // a late probe answer is not a session
				l.changed(n.Payload)
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, l.Ping)
			err = l.check(pctx, conn)
			cancel()
			if err != nil {
				return fmt.Errorf("listener check: %w", err)
			}
		default:
			return err
		}
	}
}

// check proves within ctx that the connection still hears what is
// committed: with a Pool, a probe notification sent through it must come
// back here (session changes heard meanwhile are passed on); without one,
// or when the pool itself fails at once, a ping on the connection must
// answer. A check that runs out of time fails: nothing is known.
func (l *Listener) check(ctx context.Context, conn *listenConn) error {
	if conn.probe != "" {
		token := randomHex(8)
		// Not counted in the query metrics: the listener's own upkeep, not
		// work done for a request (a replica at rest would look busy).
		_, err := l.Pool.Exec(metrics.Untraced(ctx), `SELECT pg_notify($1, $2)`, conn.probe, token)
		if err == nil {
			for {
				n, err := conn.WaitForNotification(ctx)
				if err != nil {
					if ctx.Err() != nil || pgconn.Timeout(err) {
						return fmt.Errorf("%w within %s: %w", errProbeLost, l.Ping, err)
					}
					return err
				}
				if n.Channel != conn.probe {
					l.changed(n.Payload)
				} else if n.Payload == token {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("send the probe: %w", err)
		}
		// The pool failed at once (its database refused, say): the
		// listener's own connection is all there is to check.
	}
	_, err := conn.Exec(ctx, "SELECT 1")
	return err
}

// changed passes on a session change and then logs it at debug level: the
// line says the replica has acted on it (the benchmark times revocations
// across replicas by it).
func (l *Listener) changed(sessionID string) {
	l.Changed(sessionID)
	if ce := l.Log.Check(zap.DebugLevel, "session change heard"); ce != nil {
		ce.Write(zap.String("session_id", sessionID))
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
