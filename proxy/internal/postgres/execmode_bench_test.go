package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/postgres"
)

// BenchmarkExecModes: what postgres.PooledExecMode costs over pgx's default
// (named prepared statements) on the proxy's most frequent query, a
// session lookup on a cache miss, on one connection:
//
//	go test -run '^$' -bench ExecModes ./proxy/internal/postgres
func BenchmarkExecModes(b *testing.B) {
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, postgres.PooledExecMode, pgx.QueryExecModeExec} {
		b.Run(mode.String(), func(b *testing.B) {
			ctx := context.Background()
			cfg, err := pgxpool.ParseConfig(testkit.URL(b))
			if err != nil {
				b.Fatal(err)
			}
			cfg.MaxConns = 1
			cfg.ConnConfig.DefaultQueryExecMode = mode
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			m, err := postgres.NewMigrator(ctx, pool)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			if _, err := m.Up(ctx); err != nil {
				b.Fatal(err)
			}
			s := postgres.NewStore(pool)
			u, err := s.AddUser(ctx, "BENCH", "u", "hash", false)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			sess := auth.Session{ID: "bench-session", DeviceID: "BENCH", UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateSession(ctx, sess); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Session(ctx, sess.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
