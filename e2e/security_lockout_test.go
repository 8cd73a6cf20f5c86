package e2e

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientFrom returns a client whose connections come from the local
// address ip (any of 127.0.0.0/8 reaches the proxy on Linux), so that a test
// can be several clients at once.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// attempt is one login; hdr may claim another client address.
func attempt(t *testing.T, client *http.Client, p *process, device, username, password string, hdr http.Header) response {
	t.Helper()
	return send(t, client, "POST", p.URL()+"/api/auth/login", "", loginJSON(device, username, password), hdr)
}

// wantLockedOut checks a lockout answer and returns its Retry-After.
func wantLockedOut(t *testing.T, r response) int {
	t.Helper()
	wantError(t, r, http.StatusTooManyRequests, "locked_out")
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 {
		t.Fatalf("Retry-After %q: want whole seconds, at least 1", r.Header.Get("Retry-After"))
	}
	return secs
}

// spoofs are what a guesser rotates to look like many clients.
var spoofs = []http.Header{
	{"X-Forwarded-For": {"203.0.113.1"}},
	{"X-Forwarded-For": {"203.0.113.2, 10.0.0.1"}, "X-Real-Ip": {"203.0.113.2"}},
	{"Forwarded": {"for=198.51.100.3"}},
	{"X-Forwarded-For": {"198.51.100.4"}, "X_Forwarded_For": {"198.51.100.5"}},
	{},
	{"X-Forwarded-For": {"192.0.2.6"}},
}

// TestLockoutIsPerAccountWhateverTheClientAddress: five wrong PINs for one
// account, each from another source address and another X-Forwarded-For,
// lock that account; the sixth attempt, with the right PIN and yet another
// address, gets 429 locked_out with Retry-After. Another account on the same
// device, from the same addresses, is not locked.
func TestLockoutIsPerAccountWhateverTheClientAddress(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)
	addrs := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	for i := 0; i < 5; i++ {
		r := attempt(t, clientFrom(t, addrs[i]), s.Proxy, device, "1111", "000"+strconv.Itoa(i), spoofs[i])
		wantError(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	secs := wantLockedOut(t, attempt(t, clientFrom(t, addrs[5]), s.Proxy, device, "1111", "1111", spoofs[5]))
	if secs > 60 {
		t.Fatalf("Retry-After %d for a first lockout of LOGIN_LOCKOUT=1m", secs)
	}
	for _, a := range addrs {
		if r := attempt(t, clientFrom(t, a), s.Proxy, device, "2222", "2222", nil); r.Status != http.StatusOK {
			t.Fatalf("another account from %s: %d %s", a, r.Status, r.Body)
		}
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

// TestLockoutOfUnknownAccountLooksTheSame: an unknown user and an unknown
// device lock after the same number of failures, with the same answers, as
// a known account, so a lockout tells a guesser nothing about which
// accounts exist.
func TestLockoutOfUnknownAccountLooksTheSame(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	s.AddUser(device, "1111", "1111", false)
	accounts := [][2]string{{device, "1111"}, {device, "9999"}, {"VR-NO-SUCH-DEVICE", "1111"}}
	answers := make([][]response, len(accounts))
	for i := 0; i < 6; i++ {
		for a, acc := range accounts {
			answers[a] = append(answers[a], attempt(t, nil, s.Proxy, acc[0], acc[1], "4242", nil))
		}
	}
	for i := range answers[0] {
		known := answers[0][i]
		if i < 5 {
			wantError(t, known, http.StatusUnauthorized, "invalid_credentials")
		} else {
			wantLockedOut(t, known)
		}
		for a := 1; a < len(accounts); a++ {
			got := answers[a][i]
			// Retry-After and the seconds in the message may differ by the
			// time between the attempts; everything else is identical.
			if got.Status != known.Status || digits.ReplaceAllString(string(got.Body), "N") != digits.ReplaceAllString(string(known.Body), "N") ||
				(got.Header.Get("Retry-After") == "") != (known.Header.Get("Retry-After") == "") {
				t.Errorf("attempt %d on %v: %d %s; the known account got %d %s", i+1, accounts[a], got.Status, got.Body, known.Status, known.Body)
			}
		}
	}
}

// TestLockoutCountedAtomicallyAcrossReplicas: 25 wrong PINs at once, spread
// over two proxy processes, get no more than LOGIN_MAX_FAILURES password
// checks (401); every other attempt is refused unevaluated (429). A counter
// read and written in two steps, or kept per process, lets more through.
func TestLockoutCountedAtomicallyAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	second := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	replicas := []*process{s.Proxy, second}

	const guesses, maxFailures = 25, 5
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		ready    = make(chan struct{})
	)
	for i := 0; i < guesses; i++ {
		client := clientFrom(t, "127.0.0.1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			pin := strconv.Itoa(1000 + i)
			r, err := client.Post(replicas[i%2].URL()+"/api/auth/login", "application/json",
				strings.NewReader(loginJSON(device, "1111", pin)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses[-1]++
				return
			}
			r.Body.Close()
			statuses[r.StatusCode]++
		}()
	}
	close(ready)
	wg.Wait()
	if n := statuses[http.StatusUnauthorized]; n < 1 || n > maxFailures {
		t.Errorf("%d of %d parallel guesses were evaluated (401); at most %d may be", n, guesses, maxFailures)
	}
	// A guess that found every hashing slot taken for its whole wait (a
	// busy machine) is answered 503 and not evaluated: it counts for
	// nothing, which is also right.
	if statuses[http.StatusUnauthorized]+statuses[http.StatusTooManyRequests]+statuses[http.StatusServiceUnavailable] != guesses {
		t.Errorf("answers %v: want only 401, 429 and 503 (busy)", statuses)
	}
	for _, p := range replicas {
		wantLockedOut(t, attempt(t, nil, p, device, "1111", "1111", nil))
	}
}

// TestLockoutSurvivesRestartUntilUnlocked: a lockout is kept in the
// database, so a restarted proxy still refuses the right PIN; `proxy user
// unlock` ends it at once.
func TestLockoutSurvivesRestartUntilUnlocked(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	s.AddUser(device, "1111", "1111", false)
	for i := 0; i < 5; i++ {
		wantError(t, attempt(t, nil, s.Proxy, device, "1111", "0000", nil), http.StatusUnauthorized, "invalid_credentials")
	}
	wantLockedOut(t, attempt(t, nil, s.Proxy, device, "1111", "1111", nil))

	s.Proxy.Stop()
	restarted := s.StartProxy()
	wantLockedOut(t, attempt(t, nil, restarted, device, "1111", "1111", nil))

	if out, code := s.Command("", "user", "unlock", "--device", device, "--username", "1111"); code != 0 {
		t.Fatalf("proxy user unlock: exit %d: %s", code, out)
	}
	if r := attempt(t, nil, restarted, device, "1111", "1111", nil); r.Status != http.StatusOK {
		t.Fatalf("the right PIN after unlock: %d %s", r.Status, r.Body)
	}
}

// TestLoginSuccessResetsFailureCount: only consecutive failures count. Four
// wrong PINs, a right one, four wrong again: no lockout.
func TestLoginSuccessResetsFailureCount(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	s.AddUser(device, "1111", "1111", false)
	for round := 0; round < 2; round++ {
		for i := 0; i < 4; i++ {
			wantError(t, attempt(t, nil, s.Proxy, device, "1111", "0000", nil), http.StatusUnauthorized, "invalid_credentials")
		}
		if r := attempt(t, nil, s.Proxy, device, "1111", "1111", nil); r.Status != http.StatusOK {
			t.Fatalf("round %d: the right PIN after 4 failures: %d %s", round+1, r.Status, r.Body)
		}
	}
}

// TestLockoutDoubles runs with LOGIN_LOCKOUT=2s: the first lockout lasts
// 2 s; once it has ended, five more failures lock the account for 4 s.
// Retry-After counts down from the moment of the lock, so each check only
// asks for more than the lockout before could give (the second lockout
// shows 3 or 4 s when checked within two seconds of it): a busy machine
// that is slow to ask still sees the doubling.
func TestLockoutDoubles(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, map[string]string{"LOGIN_LOCKOUT": "2s"})
	s.AddUser(device, "1111", "1111", false)
	for _, lockout := range []int{2, 4} {
		for i := 0; i < 5; i++ {
			wantError(t, attempt(t, nil, s.Proxy, device, "1111", "0000", nil), http.StatusUnauthorized, "invalid_credentials")
		}
		if got := wantLockedOut(t, attempt(t, nil, s.Proxy, device, "1111", "1111", nil)); got > lockout || got <= lockout/2 {
			t.Fatalf("lockout of %d s: Retry-After %d, want more than %d and at most %d", lockout, got, lockout/2, lockout)
		}
		if lockout == 2 {
			// Wait the lockout out: polling is no option, since every
			// attempt during the lock is itself a login attempt.
			time.Sleep(2*time.Second + 200*time.Millisecond)
		}
	}
}
