package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/authsidecar/authsidecar/client"
)

// The device authorization grant (RFC 8628) against the real binaries: a
// headset asks for a code and polls; a person approves or denies on the
// approval page in a real browser, or through the API.

// The approval page is HTML: its answers are checked against the document
// as text (status, headers), like any other.
func init() { openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.FileBodyDecoder) }

// deviceAuthorization is the answer of POST /api/auth/device/code.
type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

func requestDeviceCode(t *testing.T, p *process, device string) deviceAuthorization {
	t.Helper()
	r := do(t, "POST", p.URL()+"/api/auth/device/code", "", map[string]string{"deviceId": device})
	if r.Status != http.StatusOK {
		t.Fatalf("device code: %d %s", r.Status, r.Body)
	}
	var a deviceAuthorization
	r.JSON(t, &a)
	if a.VerificationURIComplete != p.URL()+"/device?user_code="+url.QueryEscape(a.UserCode) {
		t.Fatalf("verification_uri_complete %q on %s", a.VerificationURIComplete, p.URL())
	}
	return a
}

// sendJSON is do for a goroutine: the error is returned, not fatal. The
// exchange is recorded for the check against docs/openapi.yaml.
func sendJSON(ctx context.Context, t *testing.T, u string, body any) (response, error) {
	j, err := json.Marshal(body)
	if err != nil {
		return response{}, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(j))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	record(t, req, body, resp, b)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// pollToken polls the token endpoint of p as a device does — waiting the
// interval between polls, 5 s more after each slow_down — until the answer
// is other than authorization_pending, and delivers that answer.
func pollToken(t *testing.T, p *process, a deviceAuthorization) <-chan response {
	out := make(chan response, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		interval := time.Duration(a.Interval) * time.Second
		for {
			r, err := sendJSON(ctx, t, p.URL()+"/api/auth/device/token", map[string]string{"device_code": a.DeviceCode})
			if err != nil {
				if ctx.Err() == nil {
					out <- response{Status: 0, Body: []byte(err.Error())}
				}
				return
			}
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(r.Body, &e)
			switch {
			case r.Status == http.StatusBadRequest && e.Error == "authorization_pending":
			case r.Status == http.StatusBadRequest && e.Error == "slow_down":
				interval += 5 * time.Second
			default:
				out <- r
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
	return out
}

// answer waits for what pollToken delivers.
func answer(t *testing.T, polled <-chan response) response {
	t.Helper()
	select {
	case r := <-polled:
		if r.Status == 0 {
			t.Fatalf("poll: %s", r.Body)
		}
		return r
	case <-time.After(2 * time.Minute):
		t.Fatal("the device's poll got no final answer")
	}
	return response{}
}

// wantSession checks that a token answer is a session of username on
// device, and that its token works.
func wantSession(t *testing.T, p *process, r response, device, username string) loginBody {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("token: %d %s", r.Status, r.Body)
	}
	var lb loginBody
	r.JSON(t, &lb)
	if lb.Token == "" || lb.User.DeviceID != device || lb.User.Username != username {
		t.Fatalf("token answer %s, want a session of %s on %s", r.Body, username, device)
	}
	if s := do(t, "GET", p.URL()+"/api/auth/session", lb.Token, nil); s.Status != http.StatusOK {
		t.Fatalf("the device's token: %d %s", s.Status, s.Body)
	}
	return lb
}

// The approval page in a real browser, with the keyboard only: the page
// names the device, a wrong PIN is said on the page, the right one approves
// and the device's poll gets its session; another request is denied, and
// its poll gets access_denied. Nothing on the page breaks its
// Content-Security-Policy.
func TestDeviceApprovalPageInBrowser(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, nil)
	s.AddUser("HS-BROWSER", "1111", "4321", false)
	b := newBrowser(t)

	a := requestDeviceCode(t, s.Proxy, "HS-BROWSER")
	polled := pollToken(t, s.Proxy, a)
	b.do(chromedp.Navigate(a.VerificationURIComplete), chromedp.WaitVisible("#username"))
	if got := b.text("#device-id"); got != "HS-BROWSER" {
		t.Fatalf("the page names device %q", got)
	}
	if got := b.text("#user-code"); got != a.UserCode {
		t.Fatalf("the page shows code %q, want %q", got, a.UserCode)
	}
	// The username field has the focus; Tab to the PIN, Enter submits.
	b.do(chromedp.KeyEvent("1111"), chromedp.KeyEvent("\t"), chromedp.KeyEvent("0000"), chromedp.KeyEvent(kb.Enter))
	b.waitText("#problem", "wrong")
	// The PIN field is emptied and focused again.
	b.do(chromedp.KeyEvent("4321"), chromedp.KeyEvent(kb.Enter))
	b.waitText("#status", "Approved: HS-BROWSER is signed in as 1111")
	wantSession(t, s.Proxy, answer(t, polled), "HS-BROWSER", "1111")

	d := requestDeviceCode(t, s.Proxy, "HS-BROWSER")
	polled = pollToken(t, s.Proxy, d)
	// From the address bar's URL without the code: type it, in lower case
	// and without the dash, and continue with Enter.
	b.do(chromedp.Navigate(d.VerificationURI), chromedp.WaitVisible("#user_code"),
		chromedp.KeyEvent(strings.ToLower(strings.Replace(d.UserCode, "-", "", 1))), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible("#username"))
	if got := b.text("#user-code"); got != d.UserCode {
		t.Fatalf("the page shows code %q, want %q", got, d.UserCode)
	}
	// Tab past the fields and Approve to Deny; Enter presses it.
	b.do(chromedp.KeyEvent("\t"), chromedp.KeyEvent("\t"), chromedp.KeyEvent("\t"), chromedp.KeyEvent(kb.Enter))
	b.waitText("#status", "Denied")
	r := answer(t, polled)
	wantTokenError(t, r, "access_denied")

	// A code that is not (any more) waiting is said on the page.
	b.do(chromedp.Navigate(d.VerificationURIComplete))
	b.waitText("#problem", "already approved or denied")
	if c := b.Console(); strings.Contains(c, "Content Security Policy") || strings.Contains(c, "Refused") {
		t.Fatalf("the page broke its Content-Security-Policy:\n%s", c)
	}
}

// wantTokenError checks an RFC 8628 error of the token endpoint.
func wantTokenError(t *testing.T, r response, code string) {
	t.Helper()
	wantError(t, r, http.StatusBadRequest, code)
	var e struct {
		Description string `json:"error_description"`
	}
	r.JSON(t, &e)
	if e.Description == "" {
		t.Fatalf("%s without error_description: %s", code, r.Body)
	}
}

// A device polls one replica; the person approves on another: the waiting
// poll answers with the session (the approval's notification wakes it),
// and the audit trail shows who approved which session. A denial on one
// replica reaches a poll on the other the same way.
func TestDeviceGrantAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser("HS-REPLICAS", "1111", "4321", false)
	s.AddUser("HS-REPLICAS", "admin", "9999", true)
	other := s.StartProxy()

	a := requestDeviceCode(t, s.Proxy, "HS-REPLICAS")
	// The approval page of either replica names the device.
	page := do(t, "GET", a.VerificationURIComplete, "", nil)
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), "HS-REPLICAS") ||
		!strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("approval page: %d %s", page.Status, page.Body)
	}
	if page := do(t, "GET", other.URL()+"/device?user_code=ZZZZ-ZZZZ", "", nil); page.Status != http.StatusNotFound &&
		a.UserCode != "ZZZZ-ZZZZ" {
		t.Fatalf("approval page of an unknown code: %d %s", page.Status, page.Body)
	}
	polled := pollToken(t, other, a)
	waitPolled(t, s, a)
	r := do(t, "POST", s.Proxy.URL()+"/api/auth/device/approve", "", map[string]string{
		"user_code": a.UserCode, "username": "1111", "password": "4321"})
	if r.Status != http.StatusNoContent {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	lb := wantSession(t, s.Proxy, answer(t, polled), "HS-REPLICAS", "1111")
	// One session per device code.
	again := do(t, "POST", other.URL()+"/api/auth/device/token", "", map[string]string{"device_code": a.DeviceCode})
	wantTokenError(t, again, "invalid_grant")

	admin := login(t, s.Proxy, "HS-REPLICAS", "admin", "9999")
	ev := do(t, "GET", s.Proxy.URL()+"/api/admin/events?type=device_approved", admin.Token, nil)
	var evs struct {
		Events []struct {
			Type      string `json:"type"`
			Username  string `json:"username"`
			SessionID string `json:"sessionId"`
			By        string `json:"by"`
		} `json:"events"`
	}
	ev.JSON(t, &evs)
	sess := do(t, "GET", s.Proxy.URL()+"/api/auth/session", lb.Token, nil)
	var si struct {
		SessionID string `json:"sessionId"`
	}
	sess.JSON(t, &si)
	if len(evs.Events) != 1 || evs.Events[0].By != "1111" || evs.Events[0].SessionID != si.SessionID {
		t.Fatalf("device_approved events %s, want one by 1111 for session %s", ev.Body, si.SessionID)
	}

	d := requestDeviceCode(t, other, "HS-REPLICAS")
	polled = pollToken(t, s.Proxy, d)
	waitPolled(t, s, d)
	if r := do(t, "POST", other.URL()+"/api/auth/device/deny", "", map[string]string{"user_code": d.UserCode}); r.Status != http.StatusNoContent {
		t.Fatalf("deny: %d %s", r.Status, r.Body)
	}
	wantTokenError(t, answer(t, polled), "access_denied")
	ev = do(t, "GET", s.Proxy.URL()+"/api/admin/events?type=device_denied", admin.Token, nil)
	if !strings.Contains(string(ev.Body), `"device_denied"`) {
		t.Fatalf("no device_denied event: %s", ev.Body)
	}
}

// waitPolled waits until the request of a has been polled once, so that an
// approval comes while the poll is held.
func waitPolled(t *testing.T, s *stack, a deviceAuthorization) {
	t.Helper()
	code := strings.Replace(a.UserCode, "-", "", 1)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var polled bool
		query(t, s.DB, `SELECT last_polled_at IS NOT NULL FROM device_codes WHERE user_code = $1`, []any{code}, &polled)
		if polled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the device never polled")
		}
	}
}

// An OAuth library speaks the RFC's form encoding to both endpoints; the
// errors are RFC 8628's.
func TestDeviceGrantFormEncoding(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, nil)
	s.AddUser("HS-FORM", "1111", "4321", false)
	post := func(path, form string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(s.Proxy.URL()+path, "application/x-www-form-urlencoded", strings.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}
	status, a := post("/api/auth/device/code", "client_id=HS-FORM")
	if status != http.StatusOK || a["device_code"] == nil || a["interval"] != float64(5) || a["expires_in"] != float64(600) {
		t.Fatalf("code: %d %v", status, a)
	}
	dc := fmt.Sprint(a["device_code"])
	grant := "grant_type=" + url.QueryEscape("urn:ietf:params:oauth:grant-type:device_code") + "&client_id=HS-FORM&device_code=" + url.QueryEscape(dc)
	if status, m := post("/api/auth/device/token", grant); status != http.StatusBadRequest || m["error"] != "authorization_pending" {
		t.Fatalf("pending: %d %v", status, m)
	}
	if status, m := post("/api/auth/device/token", "grant_type=password&device_code="+url.QueryEscape(dc)); status != http.StatusBadRequest || m["error"] != "unsupported_grant_type" {
		t.Fatalf("another grant: %d %v", status, m)
	}
	r := do(t, "POST", s.Proxy.URL()+"/api/auth/device/approve", "", map[string]string{
		"user_code": fmt.Sprint(a["user_code"]), "username": "1111", "password": "4321"})
	if r.Status != http.StatusNoContent {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	if status, m := post("/api/auth/device/token", grant); status != http.StatusOK || m["token"] == nil {
		t.Fatalf("token: %d %v", status, m)
	}
}

// The Go client signs in with the device grant against the real proxy:
// Login shows the code, waits while a person approves it, and the client
// then stores records as that user; a denial ends Login with
// ErrAccessDenied.
func TestClientDeviceGrant(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser("HS-CLIENT", "1111", "4321", false)
	shown := make(chan client.DeviceCode, 2)
	c := client.New(s.Proxy.URL(), client.Credentials{DeviceID: "HS-CLIENT"},
		client.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}),
		client.WithDeviceGrant(func(dc client.DeviceCode) { shown <- dc }))

	type result struct {
		s   client.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		sess, err := c.Login(context.Background())
		done <- result{sess, err}
	}()
	dc := <-shown
	waitPolled(t, s, deviceAuthorization{UserCode: dc.UserCode})
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/device/approve", "",
		map[string]string{"user_code": dc.UserCode, "username": "1111", "password": "4321"}); r.Status != http.StatusNoContent {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Login did not return after the approval")
	}
	if res.err != nil || res.s.User.Username != "1111" || res.s.User.DeviceID != "HS-CLIENT" {
		t.Fatalf("Login: %+v, %v", res.s, res.err)
	}
	if _, created, err := c.Put(context.Background(), "device-grant-1", map[string]int{"score": 1}, nil); err != nil || !created {
		t.Fatalf("put as the approved user: created=%v, %v", created, err)
	}

	go func() {
		sess, err := c.Login(context.Background())
		done <- result{sess, err}
	}()
	dc = <-shown
	waitPolled(t, s, deviceAuthorization{UserCode: dc.UserCode})
	if r := do(t, "POST", s.Proxy.URL()+"/api/auth/device/deny", "", map[string]string{"user_code": dc.UserCode}); r.Status != http.StatusNoContent {
		t.Fatalf("deny: %d %s", r.Status, r.Body)
	}
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Login did not return after the denial")
	}
	if !errors.Is(res.err, client.ErrAccessDenied) {
		t.Fatalf("Login after a denial: %v, want ErrAccessDenied", res.err)
	}
}

// The simulator's headsets sign in with the device grant against the real
// proxy: each shows a code, the simulator approves it on the proxy as the
// person would, and the headset writes as that user.
func TestSimulatorWithDeviceGrant(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, nil)
	cmd := exec.Command(simulatorBin, "-proxy", s.Proxy.URL(), "-headsets", "2", "-duration", "2s", "-interval", "20ms",
		"-device-prefix", "SIMDEV", "-username", "1111", "-password", "4321", "-create-users-with", proxyBin,
		"-device-grant", "-json")
	cmd.Env = env(map[string]string{"DATA_DIR": s.DataDir})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var sum struct {
		simulatorSummary
		DeviceApprovals int64 `json:"deviceApprovals"`
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &sum); jerr != nil {
		t.Fatalf("summary is not JSON (%v):\n%s\nstderr:\n%s", jerr, stdout.String(), stderr.String())
	}
	if err != nil || !sum.Passed || sum.DeviceApprovals != 2 || sum.Logins != 2 || sum.WritesAcknowledged == 0 {
		t.Fatalf("simulator: %v; summary %s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if n := strings.Count(s.Proxy.Logs(), `"device approved"`); n != 2 {
		t.Fatalf("%d approvals in the proxy's log, want 2", n)
	}
}
