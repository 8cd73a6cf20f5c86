package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

type auditEvent struct {
	Time       string `json:"time"`
	Type       string `json:"type"`
	DeviceID   string `json:"deviceId"`
	Username   string `json:"username"`
	SessionID  string `json:"sessionId"`
	By         string `json:"by"`
	Reason     string `json:"reason"`
	ClientAddr string `json:"clientAddr"`
}

// TestAuditTrail drives every kind of change through the real proxy and
// its commands, and reads the trail back with proxy events list --json and
// the admin API: each change is there, with who acted and from where
// (X-Forwarded-For believed from a trusted proxy), and no token, PIN or
// hash anywhere.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"LOGIN_MAX_FAILURES": "2", "REFRESH_GRACE": "0s", "TRUSTED_PROXIES": "127.0.0.0/8"})
	s.AddUser(device, "admin", "9999", true)
	s.AddUser(device, "1111", "1111", false)
	via := http.Header{"X-Forwarded-For": {"203.0.113.9"}}

	for range 2 {
		wantError(t, attempt(t, nil, s.Proxy, device, "1111", "0000", via), http.StatusUnauthorized, "invalid_credentials")
	}
	wantLockedOut(t, attempt(t, nil, s.Proxy, device, "1111", "1111", via)) // refused unchecked: no row
	if out, code := s.Command("", "user", "unlock", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("unlock: %s", out)
	}
	if r := attempt(t, nil, s.Proxy, device, "1111", "1111", via); r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	first := login(t, s.Proxy, device, "1111", "1111")
	r := refresh(t, s.Proxy, first.Token)
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d", r.Status)
	}
	// REFRESH_GRACE=0s: the replaced token, presented again, is a reuse.
	wantError(t, refresh(t, s.Proxy, first.Token), http.StatusUnauthorized, "invalid_token")
	second := login(t, s.Proxy, device, "1111", "1111")
	do(t, "POST", s.Proxy.URL()+"/api/auth/logout", second.Token, nil)
	third := login(t, s.Proxy, device, "1111", "1111")
	root := login(t, s.Proxy, device, "admin", "9999")
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	do(t, "GET", s.Proxy.URL()+"/api/auth/session", third.Token, nil).JSON(t, &sess)
	if r := do(t, "DELETE", s.Proxy.URL()+"/api/admin/sessions/"+sess.SessionID, root.Token, nil); r.Status != http.StatusNoContent {
		t.Fatalf("admin revoke: %d", r.Status)
	}
	if out, code := s.Command("2222\n", "user", "passwd", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("passwd: %s", out)
	}
	hash := djangoUsers(t)["django-pbkdf2_sha256"]
	if out, code := s.Command(fmt.Sprintf(`{"deviceId": %q, "username": "imported", "passwordHash": %q}`, device, hash), "user", "import", "-"); code != 0 {
		t.Fatalf("import: %s", out)
	}
	if out, code := s.Command("", "user", "remove", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("remove: %s", out)
	}

	stdout, stderr, code := s.CommandOutput("", "events", "list", "--json")
	if code != 0 {
		t.Fatalf("events list: %d %s", code, stderr)
	}
	for _, secret := range []string{first.Token, second.Token, root.Token, hash, `"0000"`, "9999"} {
		if strings.Contains(stdout, secret) {
			t.Fatalf("the trail holds a token, PIN or hash: %q", secret)
		}
	}
	var events []auditEvent
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		events = append(events, ev)
	}
	count := map[string]int{}
	for _, ev := range events {
		count[ev.Type]++
	}
	for typ, want := range map[string]int{
		"user_added": 2, "login_failed": 2, "lockout": 1, "unlock": 1, "login": 5, "refresh": 1,
		"refresh_reused": 1, "logout": 1, "revoke": 1, "password_changed": 1, "user_imported": 1, "user_removed": 1,
	} {
		if count[typ] != want {
			t.Errorf("%d %s events, want %d", count[typ], typ, want)
		}
	}
	find := func(typ string) auditEvent {
		for _, ev := range events {
			if ev.Type == typ {
				return ev
			}
		}
		t.Fatalf("no %s event", typ)
		return auditEvent{}
	}
	if ev := find("login_failed"); ev.ClientAddr != "203.0.113.9" || ev.Username != "1111" || ev.DeviceID != device {
		t.Errorf("login_failed: %+v, want the client behind the trusted proxy", ev)
	}
	if ev := find("user_added"); ev.By != "cli" {
		t.Errorf("user_added by %q, want cli", ev.By)
	}
	if ev := find("revoke"); ev.By != "admin" || ev.SessionID != sess.SessionID {
		t.Errorf("revoke: %+v, want by admin of session %s", ev, sess.SessionID)
	}
	if ev := find("refresh_reused"); ev.By != "system" || ev.SessionID == "" {
		t.Errorf("refresh_reused: %+v", ev)
	}
	if ev := find("logout"); ev.By != "1111" || ev.ClientAddr == "" {
		t.Errorf("logout: %+v", ev)
	}

	// The admin API: the admin's device only, filtered; not for a user.
	r = do(t, "GET", s.Proxy.URL()+"/api/admin/events?type=login&limit=2", root.Token, nil)
	var page struct{ Events []auditEvent }
	r.JSON(t, &page)
	if r.Status != http.StatusOK || len(page.Events) != 2 || page.Events[0].Type != "login" {
		t.Fatalf("admin events: %d %s", r.Status, r.Body)
	}
	user := login(t, s.Proxy, device, "imported", "1234")
	wantError(t, do(t, "GET", s.Proxy.URL()+"/api/admin/events", user.Token, nil), http.StatusForbidden, "insufficient_scope")
	wantError(t, do(t, "GET", s.Proxy.URL()+"/api/admin/events?since=yesterday", root.Token, nil), http.StatusBadRequest, "invalid_request")
	other := newStackOn(t, s.DB, nil) // another device's admin sees none of it
	other.AddUser("OTHER-DEVICE", "boss", "5555", true)
	boss := login(t, other.Proxy, "OTHER-DEVICE", "boss", "5555")
	r = do(t, "GET", other.Proxy.URL()+"/api/admin/events", boss.Token, nil)
	r.JSON(t, &page)
	for _, ev := range page.Events {
		if ev.DeviceID != "OTHER-DEVICE" {
			t.Fatalf("an admin sees another device's event: %+v", ev)
		}
	}
}
