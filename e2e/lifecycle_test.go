package e2e

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func refresh(t *testing.T, p *process, tok string) response {
	t.Helper()
	return do(t, "POST", p.URL()+"/api/auth/refresh", tok, nil)
}

// works reports whether tok is accepted on p.
func works(t *testing.T, p *process, tok string) bool {
	t.Helper()
	r := do(t, "GET", p.URL()+"/api/auth/session", tok, nil)
	switch r.Status {
	case http.StatusOK:
		return true
	case http.StatusUnauthorized:
		return false
	}
	t.Fatalf("session check: %d %s", r.Status, r.Body)
	return false
}

// The grace is long enough that the checks inside it are done well within
// it even on a busy machine; the check after it only waits longer.
func TestRefreshWithGrace(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"REFRESH_GRACE": "5s"})
	s.AddUser(device, "1111", "1111", false)
	old := login(t, s.Proxy, device, "1111", "1111")
	r := refresh(t, s.Proxy, old.Token)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	var fresh loginBody
	r.JSON(t, &fresh)
	if fresh.Token == "" || fresh.Token == old.Token || fresh.User.Username != "1111" {
		t.Fatalf("refresh body %s", r.Body)
	}
	if !works(t, s.Proxy, fresh.Token) {
		t.Fatal("new token refused")
	}
	if !works(t, s.Proxy, old.Token) {
		t.Fatal("old token refused inside the grace period")
	}
	time.Sleep(5500 * time.Millisecond)
	if works(t, s.Proxy, old.Token) {
		t.Fatal("old token still works after the grace period")
	}
	if !works(t, s.Proxy, fresh.Token) {
		t.Fatal("new token refused after the grace period")
	}
}

func TestRefreshWithoutGrace(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"REFRESH_GRACE": "0s"})
	s.AddUser(device, "1111", "1111", false)
	old := login(t, s.Proxy, device, "1111", "1111")
	if r := refresh(t, s.Proxy, old.Token); r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	if works(t, s.Proxy, old.Token) {
		t.Fatal("with REFRESH_GRACE=0 the old token must stop at once")
	}
}

// TestConcurrentRefreshOnTwoReplicas: one token refreshed many times at once
// on two proxy processes yields one successor; every other caller gets 401.
func TestConcurrentRefreshOnTwoReplicas(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	old := login(t, s.Proxy, device, "1111", "1111")

	var wg sync.WaitGroup
	results := make(chan response, 16)
	for i := range 16 {
		p := s.Proxy
		if i%2 == 1 {
			p = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- refresh(t, p, old.Token)
		}()
	}
	wg.Wait()
	close(results)
	var winners []string
	for r := range results {
		switch r.Status {
		case http.StatusOK:
			var lb loginBody
			r.JSON(t, &lb)
			winners = append(winners, lb.Token)
		case http.StatusUnauthorized:
		default:
			t.Fatalf("refresh: %d %s", r.Status, r.Body)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d refreshes succeeded, want exactly 1", len(winners))
	}
	if !works(t, b, winners[0]) || !works(t, s.Proxy, winners[0]) {
		t.Fatal("the successor token is refused")
	}
	// The superseded token cannot start a second chain, even inside its grace.
	if r := refresh(t, b, old.Token); r.Status != http.StatusUnauthorized {
		t.Fatalf("second refresh of the old token: %d %s", r.Status, r.Body)
	}
}

func TestRefreshOfRefusedTokenIs401(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/logout", lb.Token, nil); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	wantError(t, refresh(t, s.Proxy, lb.Token), http.StatusUnauthorized, "invalid_token")
	wantError(t, refresh(t, s.Proxy, "garbage"), http.StatusUnauthorized, "invalid_token")
}

func TestLogoutOnOneReplicaIsRefusedOnAnother(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if !works(t, b, lb.Token) {
		t.Fatal("token refused on replica B before logout")
	}
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/logout", lb.Token, nil); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	refusedSoon(t, b, lb.Token) // by the database's notification
	if works(t, s.Proxy, lb.Token) {
		t.Fatal("replica A accepts a logged-out token")
	}
}

// The refresh comes 3 s after the login: uncapped, it would give the
// session TOKEN_TTL (6 s) from then, 2 s past SESSION_MAX_AGE (7 s), which
// the check below tells apart even with expiresAt in whole seconds. The
// sleep never ends early, and the token lasts 3 s more, for a busy
// machine to be late.
func TestSessionMaxAgeCapsRefresh(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"TOKEN_TTL": "6s", "SESSION_MAX_AGE": "7s"})
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	loginAt := lb.ExpiresAt.Add(-6 * time.Second)
	time.Sleep(3 * time.Second)
	r := refresh(t, s.Proxy, lb.Token)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	var fresh loginBody
	r.JSON(t, &fresh)
	if limit := loginAt.Add(7 * time.Second); fresh.ExpiresAt.After(limit.Add(time.Second)) {
		t.Fatalf("refresh extended the session to %s, past SESSION_MAX_AGE (%s)", fresh.ExpiresAt, limit)
	}
	time.Sleep(time.Until(fresh.ExpiresAt) + 200*time.Millisecond)
	if works(t, s.Proxy, fresh.Token) {
		t.Fatal("session outlived SESSION_MAX_AGE")
	}
}

func TestSessionEndpoint(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	r := do(t, "GET", s.Proxy.URL()+"/api/auth/session", lb.Token, nil)
	var body struct {
		SessionID string    `json:"sessionId"`
		ExpiresAt time.Time `json:"expiresAt"`
		IsAdmin   bool      `json:"isAdmin"`
		User      struct {
			Username string `json:"username"`
			DeviceID string `json:"deviceId"`
		} `json:"user"`
	}
	r.JSON(t, &body)
	if r.Status != 200 || body.SessionID == "" || !body.ExpiresAt.Equal(lb.ExpiresAt) || body.IsAdmin ||
		body.User.Username != "1111" || body.User.DeviceID != device {
		t.Fatalf("session: %d %s", r.Status, r.Body)
	}
}

func TestAdminSessionFromAdminUser(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "admin", "9999", true)
	lb := login(t, s.Proxy, device, "admin", "9999")
	if !lb.User.IsAdmin {
		t.Fatalf("admin login: %+v", lb)
	}
	r := do(t, "GET", s.Proxy.URL()+"/api/admin/sessions", lb.Token, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("admin list: %d %s", r.Status, r.Body)
	}
}

func TestNonAdminGets403OnAdminAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/admin/sessions"},
		{"DELETE", "/api/admin/sessions/abc"},
		{"POST", "/api/admin/sessions/revoke"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]string{}
		}
		wantError(t, do(t, c.method, s.Proxy.URL()+c.path, lb.Token, body), http.StatusForbidden, "insufficient_scope")
	}
	if !works(t, s.Proxy, lb.Token) {
		t.Fatal("403 must not end the caller's session")
	}
}

// adminSessions lists the sessions an admin sees.
func adminSessions(t *testing.T, p *process, tok string) []struct {
	ID       string `json:"id"`
	DeviceID string `json:"deviceId"`
	User     struct {
		Username string `json:"username"`
	} `json:"user"`
} {
	t.Helper()
	r := do(t, "GET", p.URL()+"/api/admin/sessions", tok, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("admin list: %d %s", r.Status, r.Body)
	}
	var body struct {
		Sessions []struct {
			ID       string `json:"id"`
			DeviceID string `json:"deviceId"`
			User     struct {
				Username string `json:"username"`
			} `json:"user"`
		} `json:"sessions"`
	}
	r.JSON(t, &body)
	return body.Sessions
}

func sessionID(t *testing.T, p *process, tok string) string {
	t.Helper()
	r := do(t, "GET", p.URL()+"/api/auth/session", tok, nil)
	var body struct {
		SessionID string `json:"sessionId"`
	}
	r.JSON(t, &body)
	return body.SessionID
}

// TestAdminSeesOnlyOwnDevice: the admin API acts on the admin's own device;
// another device's session is 404, in both directions.
func TestAdminSeesOnlyOwnDevice(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser("VR-A", "admin", "9999", true)
	s.AddUser("VR-A", "1111", "1111", false)
	s.AddUser("VR-B", "admin", "9999", true)
	s.AddUser("VR-B", "1111", "1111", false)
	adminA := login(t, s.Proxy, "VR-A", "admin", "9999")
	adminB := login(t, s.Proxy, "VR-B", "admin", "9999")
	userA := login(t, s.Proxy, "VR-A", "1111", "1111")
	userB := login(t, s.Proxy, "VR-B", "1111", "1111")

	for _, sess := range adminSessions(t, s.Proxy, adminA.Token) {
		if sess.DeviceID != "VR-A" {
			t.Fatalf("admin of VR-A sees a session of %s", sess.DeviceID)
		}
	}
	if n := len(adminSessions(t, s.Proxy, adminA.Token)); n != 2 {
		t.Fatalf("admin of VR-A sees %d sessions, want 2", n)
	}

	idB := sessionID(t, s.Proxy, userB.Token)
	wantError(t, do(t, "DELETE", s.Proxy.URL()+"/api/admin/sessions/"+idB, adminA.Token, nil), http.StatusNotFound, "not_found")
	if !works(t, s.Proxy, userB.Token) {
		t.Fatal("admin of VR-A ended a session of VR-B")
	}
	idA := sessionID(t, s.Proxy, userA.Token)
	wantError(t, do(t, "DELETE", s.Proxy.URL()+"/api/admin/sessions/"+idA, adminB.Token, nil), http.StatusNotFound, "not_found")

	if r := do(t, "DELETE", s.Proxy.URL()+"/api/admin/sessions/"+idA, adminA.Token, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete own device's session: %d %s", r.Status, r.Body)
	}
	if works(t, s.Proxy, userA.Token) {
		t.Fatal("deleted session still works")
	}
}

func TestAdminRevokesByUsernameAndDevice(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "admin", "9999", true)
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)
	s.AddUser("VR-OTHER", "1111", "1111", false)
	admin := login(t, s.Proxy, device, "admin", "9999")
	u1a := login(t, s.Proxy, device, "1111", "1111")
	u1b := login(t, s.Proxy, device, "1111", "1111")
	u2 := login(t, s.Proxy, device, "2222", "2222")
	other := login(t, s.Proxy, "VR-OTHER", "1111", "1111")

	r := do(t, "POST", s.Proxy.URL()+"/api/admin/sessions/revoke", admin.Token, map[string]string{"username": "1111"})
	var got struct {
		Revoked int `json:"revoked"`
	}
	r.JSON(t, &got)
	if r.Status != http.StatusOK || got.Revoked != 2 {
		t.Fatalf("revoke by username: %d %s, want revoked 2", r.Status, r.Body)
	}
	if works(t, s.Proxy, u1a.Token) || works(t, s.Proxy, u1b.Token) {
		t.Fatal("revoked user's sessions still work")
	}
	if !works(t, s.Proxy, u2.Token) || !works(t, s.Proxy, other.Token) {
		t.Fatal("revoke by username hit another user")
	}

	r = do(t, "POST", s.Proxy.URL()+"/api/admin/sessions/revoke", admin.Token, map[string]string{})
	r.JSON(t, &got)
	if r.Status != http.StatusOK || got.Revoked != 2 { // 2222 and the admin itself
		t.Fatalf("revoke device: %d %s, want revoked 2", r.Status, r.Body)
	}
	if works(t, s.Proxy, u2.Token) || works(t, s.Proxy, admin.Token) {
		t.Fatal("device revoke left a session alive")
	}
	if !works(t, s.Proxy, other.Token) {
		t.Fatal("device revoke hit another device")
	}
}

// TestOperatorRevokesLostHeadset: one command ends every session of a
// device on every replica.
func TestOperatorRevokesLostHeadset(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	s.AddUser("VR-KEEP", "1111", "1111", false)
	lost := login(t, s.Proxy, device, "1111", "1111")
	keep := login(t, b, "VR-KEEP", "1111", "1111")
	out, code := s.Command("", "sessions", "revoke", "--device", device)
	if code != 0 || !strings.Contains(out, "revoked 1 session") {
		t.Fatalf("sessions revoke: exit %d: %s", code, out)
	}
	refusedSoon(t, s.Proxy, lost.Token)
	refusedSoon(t, b, lost.Token)
	if !works(t, b, keep.Token) {
		t.Fatal("another device was revoked")
	}
}

func TestOperatorRevokesOneSession(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	one := login(t, s.Proxy, device, "1111", "1111")
	two := login(t, s.Proxy, device, "1111", "1111")
	out, code := s.Command("", "sessions", "list", "--device", device)
	id := sessionID(t, s.Proxy, one.Token)
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("sessions list: exit %d: %s", code, out)
	}
	if out, code := s.Command("", "sessions", "revoke", "--id", id); code != 0 {
		t.Fatalf("sessions revoke --id: exit %d: %s", code, out)
	}
	refusedSoon(t, s.Proxy, one.Token)
	if !works(t, s.Proxy, two.Token) {
		t.Fatal("revoke --id ended the wrong session")
	}
	if out, code := s.Command("", "sessions", "revoke", "--id", "nosuch"); code != 1 {
		t.Fatalf("revoke of an unknown id: exit %d: %s", code, out)
	}
}

func TestUserRemovalRevokesSessions(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	out, code := s.Command("", "user", "remove", "--device", device, "--username", "1111")
	if code != 0 {
		t.Fatalf("user remove: exit %d: %s", code, out)
	}
	refusedSoon(t, b, lb.Token)
	refusedSoon(t, s.Proxy, lb.Token)
	wantError(t, do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"}),
		http.StatusUnauthorized, "invalid_credentials")
	if out, code := s.Command("", "user", "remove", "--device", device, "--username", "1111"); code != 1 {
		t.Fatalf("removing a missing user: exit %d: %s", code, out)
	}
}

func TestPasswordChangeRevokesSessions(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if out, code := s.Command("4321\n", "user", "passwd", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("user passwd: exit %d: %s", code, out)
	}
	refusedSoon(t, s.Proxy, lb.Token)
	wantError(t, do(t, "POST", s.Proxy.URL()+"/api/auth/login", "", map[string]string{"deviceId": device, "username": "1111", "password": "1111"}),
		http.StatusUnauthorized, "invalid_credentials")
	login(t, s.Proxy, device, "1111", "4321")
}

func TestUserListCommand(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "admin", "9999", true)
	s.AddUser("VR-OTHER", "3333", "3333", false)
	out, code := s.Command("", "user", "list", "--device", device)
	if code != 0 || !strings.Contains(out, "1111") || !strings.Contains(out, "admin") || strings.Contains(out, "3333") {
		t.Fatalf("user list: exit %d: %s", code, out)
	}
	if out, code := s.Command("9999\n", "user", "add", "--device", device, "--username", "1111"); code != 1 || !strings.Contains(out, "already exists") {
		t.Fatalf("duplicate user add: exit %d: %s", code, out)
	}
}
