// Package login is the login use case: check a device's user's
// credentials, start a session, and make sure no change to the account
// raced the check. Every way in (the login API, and any later grant that
// ends in a session) goes through Service.Login, so the rules live once.
package login

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/metrics"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// Request is one login attempt.
type Request struct {
	DeviceID, Username, Password string
	Client                       session.Client
}

// Service logs users in.
type Service struct {
	identity *identity.Service
	sessions *session.Manager
	metrics  *metrics.Metrics // may be nil
	log      *zap.Logger
	// OneUserPerDevice ends the sessions of every other user of a device
	// when one signs in on it (a shared headset: the previous patient's).
	OneUserPerDevice bool
}

// New returns a Service; m may be nil.
func New(ids *identity.Service, sessions *session.Manager, m *metrics.Metrics, log *zap.Logger) *Service {
	return &Service{identity: ids, sessions: sessions, metrics: m, log: log}
}

// Login checks the credentials and starts a session. Its errors are the
// domain's: auth.ErrInvalidInput, auth.ErrInvalidCredentials,
// *auth.LockedOutError, auth.ErrBusy, auth.ErrUnavailable.
func (s *Service) Login(ctx context.Context, req Request) (session.Issued, error) {
	issued, err := s.login(ctx, req)
	s.metrics.Login(Result(err))
	return issued, err
}

func (s *Service) login(ctx context.Context, req Request) (session.Issued, error) {
	if err := identity.ValidateCredentials(req.DeviceID, req.Username, req.Password); err != nil {
		return session.Issued{}, err
	}
	user, err := s.identity.Authenticate(ctx, req.DeviceID, req.Username, req.Password)
	if err != nil {
		return session.Issued{}, err
	}
	issued, err := s.sessions.Create(ctx, user, req.Client)
	if errors.Is(err, auth.ErrNotFound) {
		return session.Issued{}, auth.ErrInvalidCredentials // the user was removed meanwhile
	}
	if err != nil {
		return session.Issued{}, err
	}
	// A password change or removal that committed while the password was
	// being checked revoked only the sessions that existed then: end the
	// new one if the account changed under it.
	if err := s.identity.Confirm(ctx, user); err != nil {
		if rerr := s.sessions.Revoke(context.WithoutCancel(ctx), issued.Session.ID, "", "system",
			"credentials changed during the login"); rerr != nil && !errors.Is(rerr, auth.ErrNotFound) {
			s.log.Error("could not end a session whose login lost a race", zap.String("session_id", issued.Session.ID), zap.Error(rerr))
		}
		return session.Issued{}, err
	}
	if s.OneUserPerDevice {
		if _, err := s.sessions.EndOtherUsers(ctx, user.DeviceID, user.ID); err != nil {
			// The previous user's sessions must not outlive this sign-in:
			// rather no new session than two users on one headset.
			if rerr := s.sessions.Revoke(context.WithoutCancel(ctx), issued.Session.ID, "", "system",
				"the other users' sessions could not be ended"); rerr != nil && !errors.Is(rerr, auth.ErrNotFound) {
				s.log.Error("could not end a session whose sign-in failed", zap.String("session_id", issued.Session.ID), zap.Error(rerr))
			}
			return session.Issued{}, err
		}
	}
	if user.UpgradedHash != "" {
		s.log.Info("password hash upgraded", zap.String("device_id", user.DeviceID), zap.String("username", user.Username))
	}
	s.log.Info("login succeeded", zap.String("device_id", user.DeviceID), zap.String("username", user.Username),
		zap.String("session_id", issued.Session.ID), zap.String("client_addr", req.Client.Addr))
	return issued, nil
}

// Result names a login's outcome, as the metrics count it.
func Result(err error) string {
	var locked *auth.LockedOutError
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, auth.ErrInvalidCredentials):
		return "invalid_credentials"
	case errors.As(err, &locked):
		return "locked_out"
	case errors.Is(err, auth.ErrInvalidInput):
		return "invalid_request"
	}
	return "unavailable"
}
