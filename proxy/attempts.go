package main

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/store"
)

// outageSafeAttempts keeps a database outage from locking anyone out.
//
// A login counts its attempt in the database before the password is
// checked, and takes it back when it could not check it (see
// identity.Service.Authenticate). When the database stops answering, both
// can go wrong: a counting statement the proxy gave up waiting for may
// still be executed by the server once it answers again (a frozen server
// reads what was sent to it before the client left), and the statement
// that would take it back cannot run at all. Headsets retry logins every
// few seconds; after a ten-second freeze the fault suite saw accounts
// locked (429) that had never had a wrong password.
//
// So every attempt whose fate is unknown is remembered here, per account,
// and taken back once the database answers: before that account's next
// login on this replica, and by Run every second (another replica's login
// may come first, within that second). A login that proved the password
// but could not reset the count has its reset remembered the same way.
// What is remembered is bounded: 100 take-backs per account, 10,000
// accounts.
//
// The price: an attempt that never reached the database is taken back
// too, lowering a count that an evaluated attempt made. A take-back never
// lowers a count below zero nor touches a locked account, so whoever
// guesses during an outage gains at most the guesses already counted
// against the account (fewer than LOGIN_MAX_FAILURES), once per outage.
type outageSafeAttempts struct {
	store.Store
	log *zap.Logger

	mu      sync.Mutex
	pending map[account]*undo
}

type account struct{ device, username string }

// undo is what is owed to an account's count.
type undo struct {
	releases int
	reset    bool
}

const (
	maxPendingAccounts = 10_000
	maxPendingReleases = 100 // per account
)

func newOutageSafeAttempts(st store.Store, log *zap.Logger) *outageSafeAttempts {
	return &outageSafeAttempts{Store: st, log: log, pending: map[account]*undo{}}
}

func (s *outageSafeAttempts) ReserveLoginAttempt(ctx context.Context, deviceID, username string, now time.Time) (int, time.Time, error) {
	a := account{deviceID, username}
	// What is owed first, so that the count this attempt reads is fair; a
	// database that is still away costs this login a second at most.
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	s.settle(sctx, a)
	cancel()
	attempt, until, err := s.Store.ReserveLoginAttempt(ctx, deviceID, username, now)
	if err != nil {
		s.owe(a, func(u *undo) { u.releases = min(u.releases+1, maxPendingReleases) })
	}
	return attempt, until, err
}

func (s *outageSafeAttempts) ReleaseLoginAttempt(ctx context.Context, deviceID, username string) error {
	err := s.Store.ReleaseLoginAttempt(ctx, deviceID, username)
	if err != nil {
		s.owe(account{deviceID, username}, func(u *undo) { u.releases = min(u.releases+1, maxPendingReleases) })
	}
	return err
}

func (s *outageSafeAttempts) ResetLoginFailures(ctx context.Context, deviceID, username string) (bool, error) {
	ok, err := s.Store.ResetLoginFailures(ctx, deviceID, username)
	if err != nil {
		s.owe(account{deviceID, username}, func(u *undo) { u.reset = true })
	}
	return ok, err
}

func (s *outageSafeAttempts) owe(a account, change func(*undo)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.pending[a]
	if u == nil {
		if len(s.pending) >= maxPendingAccounts {
			return
		}
		u = &undo{}
		s.pending[a] = u
	}
	change(u)
}

// settle pays what is owed to a: a reset, or the take-backs.
func (s *outageSafeAttempts) settle(ctx context.Context, a account) {
	s.mu.Lock()
	u, ok := s.pending[a]
	if ok {
		delete(s.pending, a)
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	left := *u
	if left.reset {
		if _, err := s.Store.ResetLoginFailures(ctx, a.device, a.username); err != nil {
			s.owe(a, func(u *undo) { u.reset = true })
			return
		}
		left.releases = 0 // nothing left to take back
	}
	for ; left.releases > 0; left.releases-- {
		if err := s.Store.ReleaseLoginAttempt(ctx, a.device, a.username); err != nil {
			n := left.releases
			s.owe(a, func(u *undo) { u.releases = min(u.releases+n, maxPendingReleases) })
			return
		}
	}
	s.log.Info("login attempts taken back after a database outage",
		zap.String("device_id", a.device), zap.String("username", a.username), zap.Int("released", u.releases), zap.Bool("reset", u.reset))
}

// Run settles what is owed every second until ctx ends.
func (s *outageSafeAttempts) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		owed := make([]account, 0, len(s.pending))
		for a := range s.pending {
			owed = append(owed, a)
		}
		s.mu.Unlock()
		for _, a := range owed {
			if ctx.Err() != nil {
				return
			}
			s.settle(ctx, a)
		}
	}
}
