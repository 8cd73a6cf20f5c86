package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// deviceProxy answers the device grant's endpoints with the answers a test
// lines up, one per poll, and everything else as the fake proxy does.
type deviceProxy struct {
	*fakeProxy
	mu      sync.Mutex
	answers []func(w http.ResponseWriter) // one per poll, in order
	polls   []map[string]string           // the bodies of the polls
	codes   int
}

func newDeviceProxy(t *testing.T, answers ...func(w http.ResponseWriter)) (*deviceProxy, *httptest.Server) {
	f, _ := newFakeProxy(t)
	d := &deviceProxy{fakeProxy: f, answers: answers}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/auth/device/code":
			var req map[string]string
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req["deviceId"] != "VR-1" {
				writeErr(w, http.StatusBadRequest, "invalid_request")
				return
			}
			d.mu.Lock()
			d.codes++
			d.mu.Unlock()
			writeJSON(w, http.StatusOK, map[string]any{"device_code": "dc-secret", "user_code": "BCDF-GHJK",
				"verification_uri": "http://proxy/device", "verification_uri_complete": "http://proxy/device?user_code=BCDF-GHJK",
				"expires_in": 600, "interval": 5})
		case "/api/auth/device/token":
			var req map[string]string
			b, _ := io.ReadAll(r.Body)
			_ = json.Unmarshal(b, &req)
			d.mu.Lock()
			d.polls = append(d.polls, req)
			n := len(d.polls)
			d.mu.Unlock()
			if n > len(d.answers) {
				t.Errorf("poll %d: the test lined up %d answers", n, len(d.answers))
				writeErr(w, http.StatusBadRequest, "invalid_grant")
				return
			}
			d.answers[n-1](w)
		default:
			f.serve(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return d, srv
}

func pending(w http.ResponseWriter)  { writeErr(w, http.StatusBadRequest, "authorization_pending") }
func slowDown(w http.ResponseWriter) { writeErr(w, http.StatusBadRequest, "slow_down") }

// approved issues a token of the fake proxy, as an approval's poll answer.
func (d *deviceProxy) approved(w http.ResponseWriter) {
	d.mu.Lock()
	out := d.issue()
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// deviceClient is a client on the device grant whose waits are recorded,
// not slept, and whose shown codes are kept.
func (d *deviceProxy) deviceClient(srv *httptest.Server) (*Client, *[]time.Duration, *[]DeviceCode) {
	var waits []time.Duration
	var shown []DeviceCode
	c := d.client(srv, WithDeviceGrant(func(dc DeviceCode) { shown = append(shown, dc) }))
	c.sleep = func(_ context.Context, wait time.Duration) error {
		waits = append(waits, wait)
		return nil
	}
	return c, &waits, &shown
}

// The flow: the code shown once, polls every interval, each slow_down 5 s
// more from then on, the approval's session kept and used.
func TestDeviceGrantPollsAndHonoursSlowDown(t *testing.T) {
	t.Parallel()
	var d *deviceProxy
	d, srv := newDeviceProxy(t, pending, slowDown, pending, slowDown, func(w http.ResponseWriter) { d.approved(w) })
	c, waits, shown := d.deviceClient(srv)

	s, err := c.Login(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Token == "" {
		t.Fatalf("session %+v", s)
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 10 * time.Second, 15 * time.Second}
	if len(*waits) != len(want) {
		t.Fatalf("waits %v, want %v", *waits, want)
	}
	for i := range want {
		if (*waits)[i] != want[i] {
			t.Fatalf("waits %v, want %v", *waits, want)
		}
	}
	if len(*shown) != 1 || (*shown)[0].UserCode != "BCDF-GHJK" || (*shown)[0].VerificationURI != "http://proxy/device" ||
		(*shown)[0].Interval != 5*time.Second || !(*shown)[0].ExpiresAt.Equal(d.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("shown %+v", *shown)
	}
	for _, p := range d.polls {
		if p["device_code"] != "dc-secret" || p["client_id"] != "VR-1" {
			t.Fatalf("poll %v", p)
		}
	}
	// The session is the client's: calls use its token, no password login.
	if _, err := c.Session(context.Background()); err != nil {
		t.Fatal(err)
	}
	if logins, _ := d.counts(); logins != 0 {
		t.Fatalf("%d password logins", logins)
	}
}

// A denial and an expired code end the wait at once, each with its
// sentinel; nothing is polled after them.
func TestDeviceGrantStopsOnDeniedAndExpired(t *testing.T) {
	t.Parallel()
	for code, sentinel := range map[string]error{"access_denied": ErrAccessDenied, "expired_token": ErrExpiredToken} {
		d, srv := newDeviceProxy(t, pending, func(w http.ResponseWriter) { writeErr(w, http.StatusBadRequest, code) })
		c, waits, _ := d.deviceClient(srv)
		_, err := c.Login(context.Background())
		if !errors.Is(err, sentinel) {
			t.Fatalf("%s: %v, want %v", code, err, sentinel)
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != code || len(d.polls) != 2 || len(*waits) != 1 {
			t.Fatalf("%s: %v after %d polls and %d waits", code, err, len(d.polls), len(*waits))
		}
	}
}

// A proxy restarting while the person types the code does not end the
// wait: the request lives in the database.
func TestDeviceGrantPollsThroughUnavailable(t *testing.T) {
	t.Parallel()
	var d *deviceProxy
	d, srv := newDeviceProxy(t, pending, func(w http.ResponseWriter) { writeErr(w, http.StatusServiceUnavailable, "unavailable") },
		func(w http.ResponseWriter) { d.approved(w) })
	c, _, _ := d.deviceClient(srv)
	if _, err := c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Lazily: the first call that needs a token runs the device grant; a 401
// later runs it again, with a new code.
func TestDeviceGrantIsTheLogin(t *testing.T) {
	t.Parallel()
	var d *deviceProxy
	approve := func(w http.ResponseWriter) { d.approved(w) }
	d, srv := newDeviceProxy(t, approve, approve)
	c, _, shown := d.deviceClient(srv)
	if _, _, err := c.Put(context.Background(), "k", 1, nil); err != nil {
		t.Fatal(err)
	}
	d.invalidate()
	if _, _, err := c.Put(context.Background(), "k", 2, nil); err != nil {
		t.Fatal(err)
	}
	if len(*shown) != 2 || d.codes != 2 {
		t.Fatalf("%d codes shown, %d asked for; want 2", len(*shown), d.codes)
	}
}

// The caller's context bounds the wait for the person.
func TestDeviceGrantContextEndsTheWait(t *testing.T) {
	t.Parallel()
	d, srv := newDeviceProxy(t, pending)
	c := d.client(srv, WithDeviceGrant(func(DeviceCode) {}))
	ctx, cancel := context.WithCancel(context.Background())
	c.sleep = func(context.Context, time.Duration) error { cancel(); return sleepCtx(ctx, time.Hour) }
	if _, err := c.Login(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want context.Canceled", err)
	}
}
