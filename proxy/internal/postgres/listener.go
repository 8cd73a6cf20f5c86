package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Listener holds one dedicated connection that LISTENs for session changes
// (see migration 00003) and reports each changed session id. When the
// connection drops, notifications sent meanwhile are lost: it reports
// itself down at once, so that caches empty and every request is checked in
// the database, and reconnects with backoff.
type Listener struct {
	// URL is the database to listen on (the same DATABASE_URL as the pool).
	URL string
	// Changed receives the id of every session that changed.
	Changed func(sessionID string)
	// State is told true once LISTEN is in effect, false when the
	// connection is lost (or cannot be made).
	State func(up bool)
	// Ping is how often an idle connection is checked, so that a silently
	// dead one (no RST from a vanished host) is noticed. Default 2s.
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
	wasUp := false
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
		if wasUp {
			l.Log.Warn("lost the session-change listener; checking every request in the database until it is back", zap.Error(err))
			wasUp = false
		} else {
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

func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
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
	var channel string
	if err := conn.QueryRow(cctx, `SELECT 'authsidecar_' || left(md5(current_schema()), 16)`).Scan(&channel); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("listener channel: %w", err)
	}
	// Operators (and the fault tests) find this connection by its name.
	if _, err := conn.Exec(cctx, `SELECT set_config('application_name', $1, false)`, ListenerApplicationName+" "+channel); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("listener name: %w", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("listen: %w", err)
	}
	return conn, nil
}

func (l *Listener) listen(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, l.Ping)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			l.Changed(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, l.Ping)
			_, err = conn.Exec(pctx, "SELECT 1")
			cancel()
			if err != nil {
				return fmt.Errorf("listener ping: %w", err)
			}
		default:
			return err
		}
	}
}
