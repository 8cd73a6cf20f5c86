package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// deadlineTracer gives every statement a deadline of its own (a pgx
// QueryTracer's returned context is the one the statement runs with), and
// so every wait for one of the pool's connections (an AcquireTracer's
// likewise; the pool pings a connection that was idle, and a ping is no
// statement), so
// that a database that stops answering — a hung server, a network that
// drops packets without a reset — fails each call within limit instead of
// leaving it to wait forever. It is the guarantee where the server's own
// statement_timeout cannot help: a server that does not answer enforces
// nothing, and through a pooler in transaction mode the setting cannot be
// made to stick to a connection at all. Every call of the store passes
// through here, those added later too.
//
// A statement that hits the deadline breaks its connection (pgx cannot
// tell where the server was), which the pool then replaces; the store
// reports auth.ErrUnavailable.
type deadlineTracer struct {
	limit time.Duration
	next  pgx.QueryTracer // may be nil
}

type deadlineCancelKey struct{}

type acquireCancelKey struct{}

var _ pgxpool.AcquireTracer = (*deadlineTracer)(nil)

func (t *deadlineTracer) TraceAcquireStart(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireStartData) context.Context {
	ctx, cancel := context.WithTimeout(ctx, t.limit)
	ctx = context.WithValue(ctx, acquireCancelKey{}, cancel)
	if next, ok := t.next.(pgxpool.AcquireTracer); ok {
		ctx = next.TraceAcquireStart(ctx, pool, data)
	}
	return ctx
}

func (t *deadlineTracer) TraceAcquireEnd(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if next, ok := t.next.(pgxpool.AcquireTracer); ok {
		next.TraceAcquireEnd(ctx, pool, data)
	}
	if cancel, ok := ctx.Value(acquireCancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}

func (t *deadlineTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	ctx, cancel := context.WithTimeout(ctx, t.limit)
	ctx = context.WithValue(ctx, deadlineCancelKey{}, cancel)
	if t.next != nil {
		ctx = t.next.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

func (t *deadlineTracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, conn, data)
	}
	if cancel, ok := ctx.Value(deadlineCancelKey{}).(context.CancelFunc); ok {
		cancel()
	}
}
