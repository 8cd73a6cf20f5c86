package session

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/token"
)

// traced is Authenticate with tracing on: a span for the whole decision,
// and a child span for each step that does real work — the signature
// check when the token is not cached, the store lookup when the session
// is not — so that a trace shows where a slow request spent its time.
func (m *Manager) traced(ctx context.Context, raw string) (Caller, error) {
	tr := m.cfg.Tracer
	ctx, span := tr.Start(ctx, "session.authenticate")
	defer span.End()
	verify := func(raw string) (token.Claims, error) {
		_, s := tr.Start(ctx, "token.verify")
		defer s.End()
		claims, err := m.tokens.Verify(raw)
		s.SetAttributes(attribute.Bool("authsidecar.token.valid", err == nil))
		return claims, err
	}
	load := func(ctx context.Context, id string) (auth.Session, error) {
		ctx, s := tr.Start(ctx, "session.lookup", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("authsidecar.session_id", id)))
		defer s.End()
		sess, err := m.store.Session(ctx, id)
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			s.RecordError(err)
			s.SetStatus(codes.Error, "the store did not answer")
		}
		return sess, err
	}
	c, err := m.authenticate(ctx, raw, verify, load)
	switch {
	case err == nil:
		span.SetAttributes(attribute.String("authsidecar.device_id", c.Session.DeviceID),
			attribute.String("authsidecar.session_id", c.Session.ID))
	case errors.Is(err, auth.ErrInvalidToken):
		// A refusal is an answer, not a failure of the proxy.
		span.SetAttributes(attribute.String("authsidecar.refused", "invalid_token"))
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, "the session could not be checked")
	}
	return c, err
}
