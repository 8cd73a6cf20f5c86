//go:build chaos || soak

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The load the fault suite (make chaos) and the soak (make soak) drive
// through the real programs: clients that log in, write records through
// the proxy to the storage backend, refresh their tokens and log in again,
// and a revoker that logs a session out and checks that no replica accepts
// it any more. Every answer is kept as evidence for the checks: every
// acknowledged write is readable afterwards, a 401 is only ever given for
// a token the database no longer holds valid, and a logged-out token is
// refused everywhere within the bound.

const chaosDevice = "CHAOS-DEVICE"

// workload is the clients and the revoker, and what they saw.
type workload struct {
	t        *testing.T
	db       string            // the proxies' database, for the checks
	proxies  func() []*process // the replicas the clients use, as they are now
	accounts []string          // usernames on chaosDevice; the password is the name
	// refreshEvery and loginEvery: a client refreshes its token every
	// refreshEvery writes and starts a new session every loginEvery.
	refreshEvery, loginEvery int
	// revokeWindow: how long after a logout's 204 a replica may still
	// accept the token (the listener's health bound, and some slack).
	revokeWindow time.Duration

	mu      sync.Mutex
	acked   map[string]string // key → the data written, for every 201/200
	events  []event
	refused []refusal // 401s, checked against the database at the end
	late    []string  // revoked tokens accepted after revokeWindow
	odd     []string  // answers that no fault explains (4xx other than a checked 401)
	revokes int       // logouts checked on every replica
	lastOK  map[int]time.Time
}

// event is one answer a client got.
type event struct {
	at     time.Time
	what   string // "write", "refresh", "login", "logout"
	status int    // 0: no answer (connection refused, reset, timeout)
}

// refusal is a 401 and the token it refused.
type refusal struct {
	at        time.Time
	what      string
	sessionID string
	gen       int64
}

func newWorkload(t *testing.T, db string, proxies func() []*process, accounts []string) *workload {
	return &workload{
		t: t, db: db, proxies: proxies, accounts: accounts,
		refreshEvery: 20, loginEvery: 60, revokeWindow: 3 * time.Second,
		acked: map[string]string{}, lastOK: map[int]time.Time{},
	}
}

func (w *workload) record(what string, status int) {
	w.mu.Lock()
	w.events = append(w.events, event{time.Now(), what, status})
	w.mu.Unlock()
}

// run starts clients clients and the revoker until ctx ends, and waits for
// them.
func (w *workload) run(ctx context.Context, clients int) {
	var wg sync.WaitGroup
	for id := range clients {
		wg.Go(func() { w.client(ctx, id) })
	}
	wg.Go(func() { w.revoker(ctx) })
	wg.Wait()
}

// proxyFor picks a client's replica: its own, or the next one after an
// answerless request.
func (w *workload) proxyFor(id, misses int) *process {
	ps := w.proxies()
	return ps[(id+misses)%len(ps)]
}

func (w *workload) client(ctx context.Context, id int) {
	user := w.accounts[id%len(w.accounts)]
	var tok string
	misses, n := 0, 0
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		p := w.proxyFor(id, misses)
		if tok == "" || (w.loginEvery > 0 && n > 0 && n%w.loginEvery == 0 && tok != "") {
			status, body := call("POST", p.URL()+"/api/auth/login", "", map[string]string{"deviceId": chaosDevice, "username": user, "password": user})
			w.record("login", status)
			switch {
			case status == http.StatusOK:
				var lb loginBody
				_ = json.Unmarshal(body, &lb)
				tok = lb.Token
			case status == 0:
				misses++
				pause()
				continue
			case status >= 500:
				pause()
				continue
			default:
				w.oddAnswer("login", status, body)
				pause()
				continue
			}
		}
		n++
		if w.refreshEvery > 0 && n%w.refreshEvery == 0 {
			status, body := call("POST", p.URL()+"/api/auth/refresh", tok, nil)
			w.record("refresh", status)
			switch {
			case status == http.StatusOK:
				var lb loginBody
				_ = json.Unmarshal(body, &lb)
				tok = lb.Token
			case status == http.StatusUnauthorized:
				w.refusedToken("refresh", tok)
				tok = ""
			case status == 0:
				misses++
			case status < 500:
				w.oddAnswer("refresh", status, body)
			}
			continue
		}
		key := fmt.Sprintf("c%d-%d-%s", id, n, randomTag())
		value := randomTag()
		status, body := call("POST", p.URL()+"/api/storage", tok, map[string]any{"key": key, "data": map[string]string{"v": value}})
		w.record("write", status)
		switch {
		case status == http.StatusCreated || status == http.StatusOK:
			w.mu.Lock()
			w.acked[key] = value
			w.lastOK[id] = time.Now()
			w.mu.Unlock()
		case status == http.StatusUnauthorized:
			w.refusedToken("write", tok)
			tok = ""
		case status == 0:
			misses++
			pause()
		case status >= 500:
			pause()
		default:
			w.oddAnswer("write", status, body)
		}
	}
}

// revoker, in a loop: log a session in, make every replica cache it, log
// it out, and then ask every replica until revokeWindow has passed with
// it refused everywhere. A replica that accepts it after the window is a
// failure. Rounds whose steps the faults refuse (503, no answer) are
// skipped: only an acknowledged logout makes a promise.
func (w *workload) revoker(ctx context.Context) {
	user := w.accounts[0]
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		ps := w.proxies()
		status, body := call("POST", ps[0].URL()+"/api/auth/login", "", map[string]string{"deviceId": chaosDevice, "username": user, "password": user})
		if status != http.StatusOK {
			continue
		}
		var lb loginBody
		_ = json.Unmarshal(body, &lb)
		cached := true
		for _, p := range ps {
			if s, _ := call("GET", p.URL()+"/api/auth/session", lb.Token, nil); s != http.StatusOK {
				cached = false
			}
		}
		if !cached {
			continue
		}
		status, _ = call("POST", ps[0].URL()+"/api/auth/logout", lb.Token, nil)
		w.record("logout", status)
		if status != http.StatusNoContent {
			continue
		}
		revokedAt := time.Now()
		// A replica that has refused the token once refuses it for good
		// (it caches the answer, and the database agrees): ask each until
		// it does, or until the window has passed.
		refused := make([]bool, len(ps))
		for left := len(ps); left > 0 && time.Since(revokedAt) < w.revokeWindow+time.Second; {
			for i, p := range ps {
				if refused[i] {
					continue
				}
				s, _ := call("GET", p.URL()+"/api/auth/session", lb.Token, nil)
				switch {
				case s == http.StatusUnauthorized:
					refused[i] = true
					left--
				case s == http.StatusOK && time.Since(revokedAt) > w.revokeWindow:
					w.mu.Lock()
					w.late = append(w.late, fmt.Sprintf("replica %d accepted a token %s after its logout", i+1, time.Since(revokedAt).Round(time.Millisecond)))
					w.mu.Unlock()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		w.mu.Lock()
		w.revokes++
		w.mu.Unlock()
	}
}

func (w *workload) oddAnswer(what string, status int, body []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.odd = append(w.odd, fmt.Sprintf("%s: %d %s", what, status, strings.TrimSpace(string(body))))
}

// refusedToken keeps a 401 with the session and generation of the token
// it refused.
func (w *workload) refusedToken(what, tok string) {
	r := refusal{at: time.Now(), what: what}
	parts := strings.Split(tok, ".")
	if len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var c struct {
				SID string `json:"sid"`
				Gen int64  `json:"gen"`
			}
			_ = json.Unmarshal(payload, &c)
			r.sessionID, r.gen = c.SID, c.Gen
		}
	}
	w.mu.Lock()
	w.refused = append(w.refused, r)
	w.mu.Unlock()
}

// check runs the workload's checks once its load has stopped and the
// database answers: every acknowledged write is read back through a
// replica, every 401 was for a token the database no longer holds valid
// at the time, no revoked token was accepted late, nothing else odd.
func (w *workload) check(ctx context.Context) (lost []string, unexplained []string) {
	w.t.Helper()
	p := w.proxies()[0]
	var tok string
	waitFor(w.t, 60*time.Second, "a login for the checks", func() bool {
		status, body := call("POST", p.URL()+"/api/auth/login", "", map[string]string{"deviceId": chaosDevice, "username": w.accounts[0], "password": w.accounts[0]})
		if status != http.StatusOK {
			return false
		}
		var lb loginBody
		_ = json.Unmarshal(body, &lb)
		tok = lb.Token
		return true
	})
	w.mu.Lock()
	keys := make([]string, 0, len(w.acked))
	for k := range w.acked {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		var status int
		var body []byte
		for range 20 { // a read may meet the database still settling
			if status, body = call("GET", p.URL()+"/api/storage/"+k, tok, nil); status < 500 && status != 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		var rec struct {
			Data struct{ V string } `json:"data"`
		}
		_ = json.Unmarshal(body, &rec)
		if status != http.StatusOK || rec.Data.V != w.acked[k] {
			lost = append(lost, fmt.Sprintf("%s: %d %s", k, status, body))
		}
	}

	conn, err := pgx.Connect(ctx, w.db)
	if err != nil {
		w.t.Fatalf("checks: %v", err)
	}
	defer conn.Close(context.Background())
	for _, r := range w.refused {
		var gen int64
		var revoked, prevUntil *time.Time
		var expires time.Time
		err := conn.QueryRow(ctx, `SELECT generation, revoked_at, prev_valid_until, expires_at FROM sessions WHERE id = $1`, r.sessionID).
			Scan(&gen, &revoked, &prevUntil, &expires)
		if err == pgx.ErrNoRows {
			continue // gone: a removed or cleaned-up session
		}
		if err != nil {
			w.t.Fatalf("checks: session %s: %v", r.sessionID, err)
		}
		// A small margin for the two clocks' readings of one moment.
		at := r.at.Add(-time.Second)
		current := r.gen == gen
		if r.what != "refresh" {
			// A token a refresh replaced still works for its grace, but
			// is never refreshed again (one token, one chain): a refresh
			// whose answer was lost leaves the client with such a token.
			current = current || (r.gen == gen-1 && prevUntil != nil && prevUntil.After(r.at.Add(time.Second)))
		}
		live := (revoked == nil || revoked.After(r.at)) && expires.After(at) && current
		if live {
			unexplained = append(unexplained, fmt.Sprintf("%s refused with 401 at %s for a live session %s (token generation %d, session %d)",
				r.what, r.at.Format("15:04:05.000"), r.sessionID, r.gen, gen))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	unexplained = append(unexplained, w.late...)
	unexplained = append(unexplained, w.odd...)
	return lost, unexplained
}

// tally counts the answers between from and to: by kind of answer.
type tally struct {
	ok, refused, unavailable, otherErr, noAnswer int
	byStatus                                     map[int]int
}

func (w *workload) tally(from, to time.Time) tally {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := tally{byStatus: map[int]int{}}
	for _, e := range w.events {
		if e.at.Before(from) || e.at.After(to) {
			continue
		}
		t.byStatus[e.status]++
		switch {
		case e.status == 0:
			t.noAnswer++
		case e.status < 300:
			t.ok++
		case e.status == http.StatusUnauthorized:
			t.refused++
		case e.status == http.StatusServiceUnavailable || e.status == http.StatusBadGateway:
			t.unavailable++
		default:
			t.otherErr++
		}
	}
	return t
}

func (t tally) statuses() string {
	codes := make([]int, 0, len(t.byStatus))
	for c := range t.byStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		name := fmt.Sprint(c)
		if c == 0 {
			name = "no answer"
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", name, t.byStatus[c]))
	}
	return strings.Join(parts, ", ")
}

func randomTag() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
