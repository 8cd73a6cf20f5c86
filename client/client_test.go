package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeClock is a clock that tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeProxy answers like the proxy and the storage backend together, with
// counters the tests check. Tokens are "tok-N"; invalidate() makes every
// token issued so far refused, as a revocation would.
type fakeProxy struct {
	t     *testing.T
	clock *fakeClock
	ttl   time.Duration

	loginDelay time.Duration // widens the window in which callers race
	// loginHeld, when not nil, is sent a value when a login arrives, and
	// that login is answered only once loginRelease is closed.
	loginHeld    chan struct{}
	loginRelease chan struct{}

	mu        sync.Mutex
	next      int
	valid     map[string]bool
	records   map[string]json.RawMessage
	logins    int
	refreshes int
	hits      map[string]int      // "METHOD path" → requests with a token
	bodies    map[string][]string // "METHOD path" → bodies received

	// override, when set, answers "METHOD path" requests instead of the
	// default handling (after the token check unless noAuth).
	override func(w http.ResponseWriter, r *http.Request) bool
	// loginOverride answers logins instead of issuing a token when set.
	loginOverride func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeProxy(t *testing.T) (*fakeProxy, *httptest.Server) {
	f := &fakeProxy{
		t: t, clock: newFakeClock(), ttl: time.Hour,
		valid: map[string]bool{}, records: map[string]json.RawMessage{},
		hits: map[string]int{}, bodies: map[string][]string{},
	}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeProxy) client(srv *httptest.Server, opts ...Option) *Client {
	opts = append([]Option{WithClock(f.clock.Now), WithHTTPClient(srv.Client())}, opts...)
	return New(srv.URL, Credentials{DeviceID: "VR-1", Username: "1111", Password: "1111"}, opts...)
}

func (f *fakeProxy) counts() (logins, refreshes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.refreshes
}

func (f *fakeProxy) hitsOf(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[key]
}

func (f *fakeProxy) invalidate() {
	f.mu.Lock()
	f.valid = map[string]bool{}
	f.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code, "message": code + " for a person"})
}

// issue makes a new token valid; the caller holds f.mu.
func (f *fakeProxy) issue() map[string]any {
	f.next++
	tok := fmt.Sprintf("tok-%d", f.next)
	f.valid[tok] = true
	return map[string]any{
		"token": tok, "expiresAt": f.clock.Now().Add(f.ttl).Format(time.RFC3339Nano),
		"user": map[string]any{"id": "u1", "username": "1111", "deviceId": "VR-1", "isAdmin": false},
	}
}

func (f *fakeProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/api/auth/login" {
		if f.loginDelay > 0 {
			time.Sleep(f.loginDelay)
		}
		if f.loginHeld != nil {
			f.loginHeld <- struct{}{}
			<-f.loginRelease
		}
		if f.loginOverride != nil && f.loginOverride(w, r) {
			return
		}
		var req map[string]string
		if err := json.Unmarshal(body, &req); err != nil || req["deviceId"] != "VR-1" || req["password"] != "1111" {
			writeErr(w, http.StatusUnauthorized, "invalid_credentials")
			return
		}
		f.mu.Lock()
		f.logins++
		out := f.issue()
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	key := r.Method + " " + r.URL.Path
	f.mu.Lock()
	ok := f.valid[tok]
	f.hits[key]++
	f.bodies[key] = append(f.bodies[key], string(body))
	f.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeErr(w, http.StatusUnauthorized, "invalid_token")
		return
	}
	if f.override != nil && f.override(w, r) {
		return
	}
	switch {
	case r.URL.Path == "/api/auth/refresh":
		f.mu.Lock()
		f.refreshes++
		out := f.issue()
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case r.URL.Path == "/api/auth/logout":
		f.mu.Lock()
		delete(f.valid, tok)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/api/auth/session":
		writeJSON(w, http.StatusOK, map[string]any{"sessionId": "s-" + tok, "expiresAt": f.clock.Now().Add(f.ttl),
			"isAdmin": false, "user": map[string]any{"id": "u1", "username": "1111", "deviceId": "VR-1"}})
	case r.Method == http.MethodPost && r.URL.Path == "/api/storage":
		var rec struct {
			Key  string          `json:"key"`
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(body, &rec)
		f.mu.Lock()
		_, existed := f.records[rec.Key]
		f.records[rec.Key] = rec.Data
		f.mu.Unlock()
		status := http.StatusCreated
		if existed {
			status = http.StatusOK
		}
		writeJSON(w, status, map[string]any{"key": rec.Key, "createdAt": f.clock.Now(), "updatedAt": f.clock.Now()})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/storage/"):
		k := strings.TrimPrefix(r.URL.Path, "/api/storage/")
		f.mu.Lock()
		data, found := f.records[k]
		f.mu.Unlock()
		if !found {
			writeErr(w, http.StatusNotFound, "not_found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"key": k, "data": data, "meta": map[string]any{"m": 1},
			"createdAt": f.clock.Now(), "updatedAt": f.clock.Now()})
	case r.Method == http.MethodGet && r.URL.Path == "/api/storage":
		prefix := r.URL.Query().Get("prefix")
		var items []map[string]any
		f.mu.Lock()
		for k := range f.records {
			if strings.HasPrefix(k, prefix) {
				items = append(items, map[string]any{"key": k, "createdAt": f.clock.Now(), "updatedAt": f.clock.Now()})
			}
		}
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"items": items})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/storage/"):
		k := strings.TrimPrefix(r.URL.Path, "/api/storage/")
		f.mu.Lock()
		_, found := f.records[k]
		delete(f.records, k)
		f.mu.Unlock()
		if !found {
			writeErr(w, http.StatusNotFound, "not_found")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/api/admin/sessions":
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		writeErr(w, http.StatusForbidden, "insufficient_scope")
	default:
		writeErr(w, http.StatusNotFound, "not_found")
	}
}

func TestLazyLogin(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	c := f.client(srv)
	if l, _ := f.counts(); l != 0 {
		t.Fatalf("New logged in: %d logins", l)
	}
	if _, created, err := c.Put(context.Background(), "k1", map[string]int{"score": 42}, nil); err != nil || !created {
		t.Fatalf("first put: created=%v err=%v", created, err)
	}
	if _, err := c.Session(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, _ := f.counts(); l != 1 {
		t.Fatalf("%d logins for two calls, want 1 (lazy, then reused)", l)
	}
	if got := f.hitsOf("POST /api/storage"); got != 1 {
		t.Fatalf("%d storage requests, want 1", got)
	}
}

func TestProactiveRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name        string
		ttl         time.Duration
		opts        []Option
		quiet, busy time.Duration // elapsed times: before the margin, inside it
	}{
		// 24h: 10% is 2.4h, so the 5 minute cap applies.
		{"cap of 5 minutes", 24 * time.Hour, nil, 24*time.Hour - 6*time.Minute, 24*time.Hour - 4*time.Minute},
		// 10m: 10% is 1 minute, smaller than 5 minutes.
		{"10 percent", 10 * time.Minute, nil, 8*time.Minute + 50*time.Second, 9*time.Minute + 10*time.Second},
		{"explicit margin", time.Hour, []Option{WithRefreshMargin(30 * time.Minute)}, 29 * time.Minute, 31 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := newFakeProxy(t)
			f.ttl = tc.ttl
			c := f.client(srv, tc.opts...)
			if _, err := c.Session(ctx); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(tc.quiet)
			if _, err := c.Session(ctx); err != nil {
				t.Fatal(err)
			}
			if l, r := f.counts(); l != 1 || r != 0 {
				t.Fatalf("before the margin: %d logins, %d refreshes; want 1, 0", l, r)
			}
			f.clock.Advance(tc.busy - tc.quiet)
			info, err := c.Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if l, r := f.counts(); l != 1 || r != 1 {
				t.Fatalf("inside the margin: %d logins, %d refreshes; want 1, 1", l, r)
			}
			if info.SessionID != "s-tok-2" {
				t.Fatalf("request after the refresh used %q, want the refreshed token", info.SessionID)
			}
			// The refreshed token is good for another ttl: no second refresh.
			if _, err := c.Session(ctx); err != nil {
				t.Fatal(err)
			}
			if _, r := f.counts(); r != 1 {
				t.Fatalf("%d refreshes after one was due", r)
			}
		})
	}
}

func TestExpiredTokenLogsInInsteadOfRefreshing(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	c := f.client(srv)
	if _, err := c.Session(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Hour)
	if _, err := c.Session(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, r := f.counts(); l != 2 || r != 0 {
		t.Fatalf("%d logins, %d refreshes; want 2, 0 (an expired token cannot be refreshed)", l, r)
	}
}

func TestUnauthorizedLogsInAgainAndRetriesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, srv := newFakeProxy(t)
	c := f.client(srv)
	if _, _, err := c.Put(ctx, "k1", "v1", nil); err != nil {
		t.Fatal(err)
	}
	f.invalidate() // as if an admin revoked the session
	stored, created, err := c.Put(ctx, "k2", map[string]any{"n": 2}, map[string]any{"m": "x"})
	if err != nil || !created || stored.Key != "k2" {
		t.Fatalf("put after revocation: %+v created=%v err=%v", stored, created, err)
	}
	if l, _ := f.counts(); l != 2 {
		t.Fatalf("%d logins, want 2 (lazy, then one after the 401)", l)
	}
	f.mu.Lock()
	bodies := f.bodies["POST /api/storage"]
	f.mu.Unlock()
	if len(bodies) != 3 || bodies[1] != bodies[2] || !strings.Contains(bodies[2], `"k2"`) {
		t.Fatalf("retry did not replay the same body: %q", bodies)
	}
}

func TestSecond401IsErrUnauthorizedWithoutLooping(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	f.override = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/api/storage/k" {
			writeErr(w, http.StatusUnauthorized, "invalid_token")
			return true
		}
		return false
	}
	c := f.client(srv)
	_, err := c.Get(context.Background(), "k", nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err %v, want ErrUnauthorized", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "invalid_token" {
		t.Fatalf("err %#v, want an *APIError 401 invalid_token", err)
	}
	if l, _ := f.counts(); l != 2 {
		t.Fatalf("%d logins, want 2 (lazy + one re-login)", l)
	}
	if n := f.hitsOf("GET /api/storage/k"); n != 2 {
		t.Fatalf("%d requests, want 2 (the request and one retry)", n)
	}
}

func TestWrongPasswordIsErrUnauthorized(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	c := New(srv.URL, Credentials{DeviceID: "VR-1", Username: "1111", Password: "nope"}, WithHTTPClient(srv.Client()))
	_, _, err := c.Put(context.Background(), "k", 1, nil)
	var ae *APIError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ae) || ae.Code != "invalid_credentials" {
		t.Fatalf("err %v, want ErrUnauthorized invalid_credentials", err)
	}
	if n := f.hitsOf("POST /api/storage"); n != 0 {
		t.Fatalf("%d storage requests without a token", n)
	}
}

func TestLockedOutCarriesRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		want         time.Duration
	}{
		{"seconds", "7", 7 * time.Second},
		{"http date", "", 90 * time.Second}, // filled in below from the fake clock
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := newFakeProxy(t)
			var attempts atomic.Int32
			f.loginOverride = func(w http.ResponseWriter, r *http.Request) bool {
				attempts.Add(1)
				h := tc.header
				if h == "" {
					h = f.clock.Now().Add(tc.want).Format(http.TimeFormat)
				}
				w.Header().Set("Retry-After", h)
				writeErr(w, http.StatusTooManyRequests, "locked_out")
				return true
			}
			c := f.client(srv)
			_, err := c.Get(context.Background(), "k", nil)
			if !errors.Is(err, ErrLockedOut) {
				t.Fatalf("err %v, want ErrLockedOut", err)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != 429 || ae.RetryAfter != tc.want {
				t.Fatalf("err %#v, want 429 with RetryAfter %s", err, tc.want)
			}
			if d, ok := RetryAfter(err); !ok || d != tc.want {
				t.Fatalf("RetryAfter(err) = %s, %v", d, ok)
			}
			if n := attempts.Load(); n != 1 {
				t.Fatalf("%d login attempts, want 1: a 429 is never retried by the client", n)
			}
		})
	}
}

func TestServerErrorsAreReturnedNotRetried(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	f.override = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/api/storage" {
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusServiceUnavailable, "unavailable")
			return true
		}
		return false
	}
	c := f.client(srv)
	_, _, err := c.Put(context.Background(), "k", 1, nil)
	var ae *APIError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ae) || ae.Status != 503 || ae.RetryAfter != time.Second {
		t.Fatalf("err %v, want a 503 APIError with RetryAfter 1s", err)
	}
	if n := f.hitsOf("POST /api/storage"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestAny2xxIsSuccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, srv := newFakeProxy(t)
	// Set before any request: the server's goroutines read it.
	f.override = func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/custom/accepted":
			writeJSON(w, http.StatusAccepted, map[string]string{"state": "queued"})
		case "/custom/empty":
			w.WriteHeader(http.StatusOK)
		default:
			return false
		}
		return true
	}
	c := f.client(srv)

	if _, created, err := c.Put(ctx, "rec-1", map[string]int{"score": 1}, nil); err != nil || !created {
		t.Fatalf("201: created=%v err=%v", created, err)
	}
	if _, created, err := c.Put(ctx, "rec-1", map[string]int{"score": 2}, nil); err != nil || created {
		t.Fatalf("200: created=%v err=%v, want replaced", created, err)
	}
	var got struct{ Score int }
	rec, err := c.Get(ctx, "rec-1", &got)
	if err != nil || got.Score != 2 || rec.Key != "rec-1" || rec.Meta["m"] != float64(1) {
		t.Fatalf("get: %+v %+v %v", rec, got, err)
	}
	if _, _, err := c.Put(ctx, "other", 3, nil); err != nil {
		t.Fatal(err)
	}
	items, err := c.List(ctx, "rec-", 10)
	if err != nil || len(items) != 1 || items[0].Key != "rec-1" {
		t.Fatalf("list: %+v %v", items, err)
	}
	if err := c.Delete(ctx, "rec-1"); err != nil { // 204
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "rec-1", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}

	// 202 and an empty 200 are success too.
	var out struct{ State string }
	if status, err := c.Do(ctx, http.MethodPost, "/custom/accepted", map[string]int{"a": 1}, &out); err != nil || status != 202 || out.State != "queued" {
		t.Fatalf("202: %d %+v %v", status, out, err)
	}
	if status, err := c.Do(ctx, http.MethodGet, "/custom/empty", nil, &out); err != nil || status != 200 {
		t.Fatalf("empty 200: %d %v", status, err)
	}
}

func TestForbiddenIsErrForbidden(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	_, err := f.client(srv).AdminSessions(context.Background())
	if !errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err %v, want ErrForbidden only", err)
	}
	if l, _ := f.counts(); l != 1 {
		t.Fatalf("%d logins: a 403 must not cause a re-login", l)
	}
}

func TestLogoutThenNextCallLogsInAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, srv := newFakeProxy(t)
	c := f.client(srv)
	if err := c.Logout(ctx); err != nil { // nothing to end yet
		t.Fatal(err)
	}
	if n := f.hitsOf("POST /api/auth/logout"); n != 0 {
		t.Fatalf("logout without a session sent %d requests", n)
	}
	first, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := f.counts(); l != 2 || first.SessionID == second.SessionID {
		t.Fatalf("%d logins, sessions %q and %q; want a new login after logout", l, first.SessionID, second.SessionID)
	}
	// Only one 401-free request per session: the client did not send the
	// logged-out token first.
	if n := f.hitsOf("GET /api/auth/session"); n != 2 {
		t.Fatalf("%d session requests, want 2", n)
	}
}

func TestExplicitRefreshAndLogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, srv := newFakeProxy(t)
	c := f.client(srv)
	s1, err := c.Refresh(ctx) // without a token: a login
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Refresh(ctx)
	if err != nil || s2.Token == s1.Token || !s2.ExpiresAt.Equal(f.clock.Now().Add(time.Hour)) {
		t.Fatalf("refresh: %+v %v", s2, err)
	}
	f.invalidate()
	s3, err := c.Refresh(ctx) // refused: logs in instead
	if err != nil || s3.Token == s2.Token {
		t.Fatalf("refresh of a revoked token: %+v %v", s3, err)
	}
	if l, r := f.counts(); l != 2 || r != 1 {
		t.Fatalf("%d logins, %d refreshes; want 2, 1", l, r)
	}
	s4, err := c.Login(ctx)
	if err != nil || s4.User.Username != "1111" || s4.User.DeviceID != "VR-1" {
		t.Fatalf("login: %+v %v", s4, err)
	}
}

func TestConcurrentCallersShareOneLogin(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	f.loginDelay = 50 * time.Millisecond
	c := f.client(srv)
	run := func() {
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := c.Put(context.Background(), fmt.Sprintf("k-%d", i), i, nil); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	run() // all 50 need the lazy login at once
	if l, _ := f.counts(); l != 1 {
		t.Fatalf("%d logins for 50 concurrent first calls, want 1", l)
	}
	f.invalidate() // all 50 meet a 401 at once
	run()
	if l, _ := f.counts(); l != 2 {
		t.Fatalf("%d logins after 50 concurrent 401s, want 2 in all", l)
	}
}

// A caller waiting behind another goroutine's login gives up when its own
// context ends. The login is held until the end of the test, so a caller
// that waited for it would never return.
func TestContextEndsWaitForLogin(t *testing.T) {
	t.Parallel()
	f, srv := newFakeProxy(t)
	f.loginHeld, f.loginRelease = make(chan struct{}), make(chan struct{})
	c := f.client(srv)
	loggedIn := make(chan error, 1)
	go func() {
		_, err := c.Login(context.Background())
		loggedIn <- err
	}()
	<-f.loginHeld // the login above holds the guard now
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	_, err := c.Session(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	close(f.loginRelease)
	if err := <-loggedIn; err != nil {
		t.Fatalf("the held login: %v", err)
	}
}

// A proxy that is not there (restarting, say) refuses the connection: that
// is ErrUnavailable, like a 502 or 503, and still the transport's error.
func TestRefusedConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	c := New("http://"+addr, Credentials{DeviceID: "VR-1", Username: "1111", Password: "1111"})
	_, err = c.Login(context.Background())
	var ue *url.Error
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &ue) {
		t.Fatalf("login against a closed port: %v, want ErrUnavailable wrapping the refused connection", err)
	}
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) {
		t.Fatalf("%v matches another sentinel too", err)
	}
}

// The caller's own deadline is not the proxy's unavailability.
func TestOwnDeadlineIsNotUnavailable(t *testing.T) {
	t.Parallel()
	_, srv := newFakeProxy(t)
	c := New(srv.URL, Credentials{DeviceID: "VR-1", Username: "1111", Password: "1111"}, WithHTTPClient(srv.Client()))
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel()
	_, err := c.Login(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err %v, want the context's deadline and not ErrUnavailable", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":    0,
		"0":   0,
		"-3":  0,
		"120": 2 * time.Minute,
		"abc": 0,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}
