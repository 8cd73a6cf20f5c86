package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/client"
)

// The Go client (package client) against the real proxy and storage
// backend: what a headset app built on it would see.

const clientDevice = "CLI-DEVICE-1"

func newTestClient(s *stack, username, password string) *client.Client {
	return client.New(s.Proxy.URL(), client.Credentials{DeviceID: clientDevice, Username: username, Password: password},
		client.WithHTTPClient(&http.Client{Timeout: 10 * time.Second}))
}

// TestClientStorageAndSessionFlow: login, 201 then 200, get, list, delete,
// refresh, logout — and after the logout the next call logs in by itself.
func TestClientStorageAndSessionFlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, nil)
	s.AddUser(clientDevice, "1111", "1111", false)
	c := newTestClient(s, "1111", "1111")

	sess, err := c.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Token == "" || sess.User.Username != "1111" || sess.User.DeviceID != clientDevice || sess.User.IsAdmin {
		t.Fatalf("login: %+v", sess)
	}
	if d := time.Until(sess.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour+time.Minute {
		t.Fatalf("expiresAt %s is not 24h away", sess.ExpiresAt)
	}

	stored, created, err := c.Put(ctx, "cli-1", map[string]int{"score": 42}, map[string]any{"level": "a"})
	if err != nil || !created || stored.Key != "cli-1" || stored.CreatedAt.IsZero() {
		t.Fatalf("first put: %+v created=%v err=%v; want 201", stored, created, err)
	}
	if _, created, err := c.Put(ctx, "cli-1", map[string]int{"score": 43}, nil); err != nil || created {
		t.Fatalf("second put: created=%v err=%v; want 200 (replaced)", created, err)
	}
	var got struct{ Score int }
	rec, err := c.Get(ctx, "cli-1", &got)
	if err != nil || got.Score != 43 || rec.Key != "cli-1" {
		t.Fatalf("get: %+v %+v %v", rec, got, err)
	}
	for _, k := range []string{"cli-2", "other-1"} {
		if _, _, err := c.Put(ctx, k, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	items, err := c.List(ctx, "cli-", 10)
	if err != nil || len(items) != 2 || items[0].Key+items[1].Key != "cli-1cli-2" && items[0].Key+items[1].Key != "cli-2cli-1" {
		t.Fatalf("list cli-: %+v %v", items, err)
	}
	if err := c.Delete(ctx, "cli-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "cli-2", nil); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "cli-2"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}

	info, err := c.Session(ctx)
	if err != nil || info.SessionID == "" || info.User.Username != "1111" || info.IsAdmin {
		t.Fatalf("session: %+v %v", info, err)
	}
	refreshed, err := c.Refresh(ctx)
	if err != nil || refreshed.Token == "" || refreshed.Token == sess.Token {
		t.Fatalf("refresh: %+v %v", refreshed, err)
	}
	if _, err := c.Get(ctx, "cli-1", nil); err != nil {
		t.Fatalf("get with the refreshed token: %v", err)
	}

	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", s.Proxy.URL()+"/api/auth/session", refreshed.Token, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("token after logout: %d %s", r.Status, r.Body)
	}
	again, err := c.Session(ctx) // logs in again by itself
	if err != nil || again.SessionID == "" || again.SessionID == info.SessionID {
		t.Fatalf("session after logout: %+v %v; want a new session", again, err)
	}
	if _, err := c.Get(ctx, "cli-1", &got); err != nil || got.Score != 43 {
		t.Fatalf("get after logging in again: %+v %v", got, err)
	}
}

// TestClientLogsInAgainAfterRevocation: an operator revokes the device's
// sessions; the client's next call meets a 401, logs in once and succeeds.
func TestClientLogsInAgainAfterRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, nil)
	s.AddUser(clientDevice, "1111", "1111", false)
	c := newTestClient(s, "1111", "1111")
	sess, err := c.Login(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, code := s.Command("", "sessions", "revoke", "--device", clientDevice); code != 0 {
		t.Fatalf("sessions revoke: %d %s", code, out)
	}
	// Revocation reaches the proxy's cache by a notification: wait for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if do(t, "GET", s.Proxy.URL()+"/api/auth/session", sess.Token, nil).Status == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked token is still accepted")
		}
	}
	if _, created, err := c.Put(ctx, "after-revoke", 1, nil); err != nil || !created {
		t.Fatalf("put after revocation: created=%v err=%v", created, err)
	}
	if info, err := c.Session(ctx); err != nil || info.SessionID == "" {
		t.Fatalf("session after revocation: %+v %v", info, err)
	}
	// One login at the start and one after the 401: never a loop.
	created := func() int { return strings.Count(s.Proxy.Logs(), `"session created"`) }
	for deadline := time.Now().Add(3 * time.Second); created() < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the log is read from a pipe
	}
	if n := created(); n != 2 {
		t.Fatalf("%d sessions created, want 2", n)
	}
}

// TestClientAdminOnlyCallIsErrForbidden: a non-admin session calling an admin
// route gets 403, which the client reports as ErrForbidden without logging
// in again; an admin session gets the list.
func TestClientAdminOnlyCallIsErrForbidden(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, nil)
	s.AddUser(clientDevice, "1111", "1111", false)
	s.AddUser(clientDevice, "admin", "9999", true)

	_, err := newTestClient(s, "1111", "1111").AdminSessions(ctx)
	var ae *client.APIError
	if !errors.Is(err, client.ErrForbidden) || !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "insufficient_scope" {
		t.Fatalf("admin call as a user: %v, want ErrForbidden insufficient_scope", err)
	}

	admin := newTestClient(s, "admin", "9999")
	list, err := admin.AdminSessions(ctx)
	if err != nil || len(list) < 2 {
		t.Fatalf("admin sessions: %+v %v; want the user's and the admin's", list, err)
	}
	for _, se := range list {
		if se.DeviceID != clientDevice {
			t.Fatalf("admin sees a session of %s", se.DeviceID)
		}
	}
}

// TestClientWrongPasswordIsErrUnauthorized: 401 invalid_credentials, as a
// typed error, after one login attempt (no retry that would count against
// the lockout).
func TestClientWrongPasswordIsErrUnauthorized(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(clientDevice, "1111", "1111", false)
	_, _, err := newTestClient(s, "1111", "1112").Put(context.Background(), "k", 1, nil)
	var ae *client.APIError
	if !errors.Is(err, client.ErrUnauthorized) || !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "invalid_credentials" || ae.Message == "" {
		t.Fatalf("wrong password: %v, want ErrUnauthorized invalid_credentials", err)
	}
	if errors.Is(err, client.ErrLockedOut) || errors.Is(err, client.ErrForbidden) {
		t.Fatalf("%v matches another sentinel", err)
	}
}

// TestClientLockoutIsErrLockedOut: after LOGIN_MAX_FAILURES wrong passwords
// even the right one gets 429, reported as ErrLockedOut with the wait.
func TestClientLockoutIsErrLockedOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStack(t, map[string]string{"LOGIN_MAX_FAILURES": "2"})
	s.AddUser(clientDevice, "1111", "1111", false)
	wrong := newTestClient(s, "1111", "0000")
	for i := 0; i < 2; i++ {
		if _, err := wrong.Login(ctx); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("wrong password #%d: %v", i+1, err)
		}
	}
	_, err := newTestClient(s, "1111", "1111").Session(ctx)
	if !errors.Is(err, client.ErrLockedOut) {
		t.Fatalf("right password on a locked account: %v, want ErrLockedOut", err)
	}
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "locked_out" || ae.RetryAfter <= 0 || ae.RetryAfter > time.Minute {
		t.Fatalf("lockout error %#v: want 429 locked_out with 0 < RetryAfter <= 1m", err)
	}
	if d, ok := client.RetryAfter(err); !ok || d != ae.RetryAfter {
		t.Fatalf("client.RetryAfter = %s, %v", d, ok)
	}
}
