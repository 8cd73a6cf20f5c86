package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/login"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// MaxLoginBody bounds a login request: three short strings fit many times
// over, and a larger body is refused before it is read into memory.
const MaxLoginBody = 4 << 10

type userJSON struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	DeviceID string `json:"deviceId"`
	IsAdmin  bool   `json:"isAdmin"`
}

type tokenJSON struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	User      *userJSON `json:"user"`
}

type sessionJSON struct {
	SessionID string    `json:"sessionId"`
	ExpiresAt time.Time `json:"expiresAt"`
	IsAdmin   bool      `json:"isAdmin"`
	User      *userJSON `json:"user"`
}

func userOf(s auth.Session) *userJSON {
	if s.UserID == "" {
		return nil
	}
	return &userJSON{ID: s.UserID, Username: s.Username, DeviceID: s.DeviceID, IsAdmin: s.IsAdmin}
}

func tokenBody(is session.Issued) tokenJSON {
	return tokenJSON{Token: is.Token, ExpiresAt: is.Session.ExpiresAt.UTC(), User: userOf(is.Session)}
}

type loginRequest struct {
	DeviceID string `json:"deviceId"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func (g *Gateway) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeJSON(w, r, MaxLoginBody, &req); err != nil {
		g.cfg.Metrics.Login(login.Result(err))
		return err
	}
	addr := g.clientAddr(r)
	issued, err := g.cfg.Login.Login(auth.WithActor(r.Context(), auth.Actor{ClientAddr: addr}), login.Request{
		DeviceID: req.DeviceID, Username: req.Username, Password: req.Password,
		Client: session.Client{Addr: addr, UserAgent: r.UserAgent()},
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenBody(issued))
	return nil
}

func (g *Gateway) refresh(w http.ResponseWriter, r *http.Request) error {
	raw, err := bearerToken(r.Header)
	if err != nil {
		return err
	}
	issued, err := g.cfg.Sessions.RefreshToken(g.acting(r, ""), raw)
	if errors.Is(err, auth.ErrInvalidToken) {
		g.sessionsChanged() // a reused refresh token ends its session
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenBody(issued))
	return nil
}

func (g *Gateway) logout(w http.ResponseWriter, r *http.Request, c session.Caller) error {
	if err := g.cfg.Sessions.Logout(g.acting(r, c.Session.Username), c); err != nil {
		return err
	}
	g.SessionChanged(c.Session.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) session(w http.ResponseWriter, _ *http.Request, c session.Caller) error {
	s := c.Session
	writeJSON(w, http.StatusOK, sessionJSON{SessionID: s.ID, ExpiresAt: s.ExpiresAt.UTC(), IsAdmin: s.IsAdmin, User: userOf(s)})
	return nil
}

// callerHandler is a handler that runs only for a live session.
type callerHandler func(w http.ResponseWriter, r *http.Request, c session.Caller) error

// withCaller authenticates the request and passes its caller to h.
func (g *Gateway) withCaller(h callerHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := g.authenticate(r)
		if err != nil {
			return err
		}
		return h(w, r, c)
	}
}

// withAdmin is withCaller for admin sessions only.
func (g *Gateway) withAdmin(h callerHandler) handlerFunc {
	return g.withCaller(func(w http.ResponseWriter, r *http.Request, c session.Caller) error {
		if !c.Session.IsAdmin {
			return auth.ErrForbidden
		}
		return h(w, r, c)
	})
}

// authenticated forwards a request when decide lets it through.
func (g *Gateway) authenticated(w http.ResponseWriter, r *http.Request) error {
	s, named, err := g.decide(r)
	if err != nil {
		return err
	}
	g.forward(w, r, s, named)
	return nil
}

// verify is forward-auth: an ingress asks whether the request it holds may
// reach the backend, and as whom. The same decision as forwarding, on the
// original method and URI the ingress passes along; nothing is forwarded.
// 200 carries the identity headers for the ingress to copy onto the
// request (none for a public route without a live session).
func (g *Gateway) verify(w http.ResponseWriter, r *http.Request) error {
	orig, err := g.originalRequest(r)
	if err != nil {
		return err
	}
	if err := g.checkPath(orig); err != nil {
		return err
	}
	s, named, err := g.decide(orig)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	if named {
		setIdentity(w.Header(), s)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// originalRequest is the request an ingress asks about: its method and URI
// from X-Forwarded-Method / X-Forwarded-Uri (Traefik, Caddy),
// X-Original-Method / X-Original-URI (the nginx convention) or
// X-Original-URL (ingress-nginx); its headers (the token) are the verify
// request's.
//
// An ingress sets one of these and may pass the client's copies of the
// others through, so a client could name a harmless method or path in a
// header the ingress does not set: where they disagree, the request is
// refused rather than one of them believed. Without any of them the verify
// request itself is the original — unless route rules are set, which it
// would then silently escape.
func (g *Gateway) originalRequest(r *http.Request) (*http.Request, error) {
	method, err := agreed(r.Header, "method", "X-Forwarded-Method", "X-Original-Method")
	if err != nil {
		return nil, err
	}
	uri, err := agreed(r.Header, "URI", "X-Forwarded-Uri", "X-Original-Uri")
	if err != nil {
		return nil, err
	}
	if full := r.Header.Get("X-Original-Url"); full != "" {
		u, err := url.Parse(full)
		if err != nil || u.Path == "" {
			return nil, auth.InvalidInputf("X-Original-URL is not a URL")
		}
		if uri != "" && uri != u.RequestURI() {
			return nil, auth.InvalidInputf("the original URI headers disagree")
		}
		uri = u.RequestURI()
	}
	if uri == "" && g.cfg.Rules != nil {
		return nil, auth.InvalidInputf("no original URI (X-Forwarded-Uri, X-Original-URI or X-Original-URL): route rules cannot be applied")
	}
	if method == "" {
		method = r.Method
	}
	u := r.URL
	if uri != "" {
		if u, err = url.ParseRequestURI(uri); err != nil {
			return nil, auth.InvalidInputf("the original URI is not a request URI")
		}
	}
	orig := new(http.Request)
	*orig = *r
	orig.Method, orig.URL = method, u
	return orig, nil
}

// agreed returns the one value that the named headers give (each at most
// once), or "" when none is set.
func agreed(h http.Header, what string, names ...string) (string, error) {
	v := ""
	for _, n := range names {
		vals := h.Values(n)
		if len(vals) > 1 {
			return "", auth.InvalidInputf("%s is sent more than once", n)
		}
		if len(vals) == 0 || vals[0] == "" {
			continue
		}
		if v != "" && vals[0] != v {
			return "", auth.InvalidInputf("the original %s headers disagree", what)
		}
		v = vals[0]
	}
	return v, nil
}

// decide is the one decision on a request that would be forwarded: the
// route rules and the caller's session. named reports that s is a live
// session the request goes as; a public route goes unnamed when no live
// session came with it, whatever the reason.
func (g *Gateway) decide(r *http.Request) (s auth.Session, named bool, err error) {
	acc := g.cfg.Rules.access(r)
	c, err := g.authenticate(r)
	switch {
	case acc == public && err != nil:
		return auth.Session{}, false, nil
	case err != nil:
		return auth.Session{}, false, err
	case acc == adminOnly && !c.Session.IsAdmin:
		return auth.Session{}, false, auth.ErrForbidden
	}
	return c.Session, true, nil
}

// MaxAuthorizationBytes bounds the Authorization header the proxy will
// look at; a token is a few hundred bytes.
const MaxAuthorizationBytes = 4 << 10

func (g *Gateway) authenticate(r *http.Request) (session.Caller, error) {
	raw, err := bearerToken(r.Header)
	if err != nil {
		return session.Caller{}, err
	}
	return g.cfg.Sessions.Authenticate(r.Context(), raw)
}

// bearerToken extracts the token of an "Authorization: Bearer" header
// (RFC 6750 §2.1; the scheme is case-insensitive). Several Authorization
// headers are refused: which one a backend would read is unclear.
func bearerToken(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		return "", errMissingToken
	}
	if len(vals) > 1 || len(vals[0]) > MaxAuthorizationBytes {
		return "", auth.ErrInvalidToken
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errMissingToken
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", auth.ErrInvalidToken
	}
	return tok, nil
}

// decodeJSON reads one JSON object of at most limit bytes into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return auth.InvalidInputf("the body is larger than %d bytes", limit)
		}
		return auth.InvalidInputf("the body could not be read")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		// A headset app that sends "password": 1111 must learn what to fix.
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			return auth.InvalidInputf("%s must be a JSON %s, not a %s", typ.Field, jsonKind(typ.Type.Kind()), typ.Value)
		}
		return auth.InvalidInputf("the body is not a valid JSON object of the expected shape")
	}
	if dec.More() {
		return auth.InvalidInputf("the body has data after the JSON object")
	}
	return nil
}

// jsonKind names a Go kind as JSON calls it.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "number"
}
