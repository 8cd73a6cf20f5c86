package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authsidecar/authsidecar/client"
)

// Headset is one simulated headset's account.
type Headset struct {
	DeviceID string
	Username string
	Password string
}

// Config is one simulation run.
type Config struct {
	ProxyURL string
	Headsets []Headset
	// Duration is how long headsets keep writing; the final read-back of
	// every acknowledged write comes after it.
	Duration time.Duration
	// Interval is the pause between one headset's write+read pairs; 0 runs
	// them back to back.
	Interval time.Duration
	// RequestTimeout bounds one attempt of one operation.
	RequestTimeout time.Duration
	// VerifyTimeout bounds the final read-back, retries included.
	VerifyTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between retries of an
	// operation that met a transient error; it doubles from one to the other.
	BackoffMin, BackoffMax time.Duration
	// DeviceGrant signs the headsets in with the device grant instead of a
	// password login: each shows a code, and the simulator, playing the
	// person at the approval page, approves it with the headset's username
	// and password.
	DeviceGrant bool
}

func (c *Config) defaults() {
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = 30 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 50 * time.Millisecond
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = max(time.Second, c.BackoffMin)
	}
}

func (c *Config) validate() error {
	u, err := url.Parse(c.ProxyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-proxy %q: want a URL like http://127.0.0.1:8080", c.ProxyURL)
	}
	if len(c.Headsets) == 0 {
		return errors.New("no headsets to simulate")
	}
	if c.Duration <= 0 {
		return errors.New("-duration must be positive")
	}
	for _, h := range c.Headsets {
		if h.DeviceID == "" || h.Username == "" || h.Password == "" {
			return fmt.Errorf("headset %+v: device, username and password are all required", h.DeviceID)
		}
	}
	return nil
}

// Summary is what a run did. Failures never include transient errors that
// a retry cured (those are Retries); Passed is the exit status.
type Summary struct {
	Proxy          string  `json:"proxy"`
	Headsets       int     `json:"headsets"`
	ElapsedSeconds float64 `json:"elapsedSeconds"`

	Requests     int64 `json:"requests"`     // HTTP requests sent, logins and retries included
	Responses2xx int64 `json:"responses2xx"` // of which answered 2xx
	Logins       int64 `json:"logins"`       // successful logins (device grant: sessions received)
	Refreshes    int64 `json:"refreshes"`    // successful refreshes
	// DeviceApprovals are the codes approved, with -device-grant.
	DeviceApprovals int64 `json:"deviceApprovals"`

	Retries        int64            `json:"retries"`        // operations repeated after a transient error
	RetriesByKind  map[string]int64 `json:"retriesByKind"`  // connection_refused, http_503, …
	Failures       int64            `json:"failures"`       // operations that failed for good
	FailuresByKind map[string]int64 `json:"failuresByKind"` // http_429_locked_out, readback_mismatch, …
	FailureSamples []string         `json:"failureSamples,omitempty"`
	// Interrupted operations were still being retried when the duration
	// ended; they are neither acknowledged nor failures.
	Interrupted int64 `json:"interrupted"`

	WritesAcknowledged int64    `json:"writesAcknowledged"` // 2xx to POST /api/storage
	WritesReplaced     int64    `json:"writesReplaced"`     // of which 200 on a retry after a lost answer (the first attempt had landed)
	ReadsOK            int64    `json:"readsOK"`            // read right after the write, same data
	WritesReadBackOK   int64    `json:"writesReadBackOK"`   // final read-back, same data
	WritesLost         int64    `json:"writesLost"`         // final read-back: missing or different
	LostKeys           []string `json:"lostKeys,omitempty"`

	Passed bool `json:"passed"`
}

// sampleLimit bounds the failure messages and lost keys kept for the
// summary: enough to diagnose, never a flood.
const sampleLimit = 10

// stats are the counters the headsets share.
type stats struct {
	requests, ok2xx, logins, refreshes atomic.Int64
	approvals                          atomic.Int64
	retries, interrupted               atomic.Int64
	acked, replaced, readsOK           atomic.Int64
	readBackOK, lost                   atomic.Int64

	mu             sync.Mutex
	retriesByKind  map[string]int64
	failuresByKind map[string]int64
	samples        []string
	lostKeys       []string
}

func (s *stats) retry(kind string) {
	s.retries.Add(1)
	s.mu.Lock()
	s.retriesByKind[kind]++
	s.mu.Unlock()
}

func (s *stats) fail(kind, device string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failuresByKind[kind]++
	if len(s.samples) < sampleLimit {
		s.samples = append(s.samples, device+": "+err.Error())
	}
}

func (s *stats) lose(key, why string) {
	s.lost.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lostKeys) < sampleLimit {
		s.lostKeys = append(s.lostKeys, key+" ("+why+")")
	}
}

// countingTransport counts every HTTP exchange, so that the summary's
// requests include the client's own logins, refreshes and 401 retries, which
// the simulator never sees as calls.
type countingTransport struct {
	base http.RoundTripper
	s    *stats
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.s.requests.Add(1)
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		t.s.ok2xx.Add(1)
		switch req.URL.Path {
		case "/api/auth/login", "/api/auth/device/token":
			t.s.logins.Add(1)
		case "/api/auth/refresh":
			t.s.refreshes.Add(1)
		}
	}
	return resp, err
}

// record is what a headset writes: the nonce makes each run's data differ
// from any earlier run's, so that a stale record is not mistaken for ours.
type record struct {
	Device string `json:"device"`
	Seq    int    `json:"seq"`
	Nonce  string `json:"nonce"`
}

type ackedWrite struct {
	key string
	rec record
}

// headset is one simulated headset: its own client (and connections), as a
// real one would have.
type headset struct {
	cfg   *Config
	s     *stats
	h     Headset
	hc    *http.Client
	c     *client.Client
	nonce string
	acked []ackedWrite

	approving sync.WaitGroup // approvals of the codes it showed (DeviceGrant)
}

// errInterrupted: the duration ended while an operation was still being
// retried.
var errInterrupted = errors.New("interrupted by the end of the run")

// Run simulates the headsets for cfg.Duration, then reads back every
// acknowledged write. Its error is about the configuration only; what went
// wrong during the run is in the Summary.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	s := &stats{retriesByKind: map[string]int64{}, failuresByKind: map[string]int64{}}
	started := time.Now()
	deadline := started.Add(cfg.Duration)

	hs := make([]*headset, len(cfg.Headsets))
	for i, h := range cfg.Headsets {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: countingTransport{base: tr, s: s}}
		hd := &headset{cfg: &cfg, s: s, h: h, hc: hc, nonce: nonce()}
		opts := []client.Option{client.WithHTTPClient(hc)}
		if cfg.DeviceGrant {
			opts = append(opts, client.WithDeviceGrant(func(dc client.DeviceCode) {
				hd.approving.Add(1)
				go func() { defer hd.approving.Done(); hd.approve(ctx, dc) }()
			}))
		}
		hd.c = client.New(cfg.ProxyURL, client.Credentials{DeviceID: h.DeviceID, Username: h.Username, Password: h.Password}, opts...)
		hs[i] = hd
	}

	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.write(ctx, deadline)
			h.approving.Wait()
		}()
	}
	wg.Wait()

	// The read-back runs even after an interrupt (Ctrl-C): what was
	// acknowledged is what matters most.
	verifyCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.VerifyTimeout)
	defer cancel()
	verifyDeadline := time.Now().Add(cfg.VerifyTimeout)
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.verify(verifyCtx, verifyDeadline)
		}()
	}
	wg.Wait()

	return s.summary(cfg, time.Since(started)), nil
}

func (s *stats) summary(cfg Config, elapsed time.Duration) Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Summary{
		Proxy: cfg.ProxyURL, Headsets: len(cfg.Headsets), ElapsedSeconds: elapsed.Seconds(),
		Requests: s.requests.Load(), Responses2xx: s.ok2xx.Load(),
		Logins: s.logins.Load(), Refreshes: s.refreshes.Load(), DeviceApprovals: s.approvals.Load(),
		Retries: s.retries.Load(), RetriesByKind: s.retriesByKind,
		FailuresByKind: s.failuresByKind, FailureSamples: s.samples,
		Interrupted:        s.interrupted.Load(),
		WritesAcknowledged: s.acked.Load(), WritesReplaced: s.replaced.Load(), ReadsOK: s.readsOK.Load(),
		WritesReadBackOK: s.readBackOK.Load(), WritesLost: s.lost.Load(), LostKeys: s.lostKeys,
	}
	for _, n := range s.failuresByKind {
		out.Failures += n
	}
	// A run that acknowledged nothing proved nothing, so it does not pass.
	out.Passed = out.Failures == 0 && out.WritesLost == 0 && out.WritesAcknowledged > 0
	return out
}

// write is one headset's loop: store a record, read it straight back,
// pause, until the deadline.
func (h *headset) write(ctx context.Context, deadline time.Time) {
	meta := map[string]any{"source": "simulator"}
	for seq := 0; ; seq++ {
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			return
		}
		key := fmt.Sprintf("%s-%d", h.h.DeviceID, seq)
		rec := record{Device: h.h.DeviceID, Seq: seq, Nonce: h.nonce}
		var created bool
		answerLost, err := h.retry(ctx, deadline, func(ctx context.Context) error {
			var err error
			_, created, err = h.c.Put(ctx, key, rec, meta)
			return err
		})
		if err != nil {
			if h.failed(ctx, deadline, err) {
				return
			}
			continue
		}
		// Only a 2xx acknowledges a write; from here on it must never be
		// lost.
		h.acked = append(h.acked, ackedWrite{key, rec})
		h.s.acked.Add(1)
		// A 200 replaced a record. After a lost answer, that record is
		// most likely this very write's first attempt, which had landed:
		// what the counter is for. A 200 on a first attempt replaced a
		// record an earlier run left under the same key, and says nothing
		// about this run.
		if !created && answerLost {
			h.s.replaced.Add(1)
		}

		var got record
		_, err = h.retry(ctx, deadline, func(ctx context.Context) error {
			got = record{}
			_, err := h.c.Get(ctx, key, &got)
			return err
		})
		switch {
		case errors.Is(err, client.ErrNotFound):
			h.s.fail("readback_missing", h.h.DeviceID, fmt.Errorf("%s acknowledged but not found right after: %w", key, err))
		case err != nil:
			if h.failed(ctx, deadline, err) {
				return
			}
			continue
		case got != rec:
			h.s.fail("readback_mismatch", h.h.DeviceID, fmt.Errorf("%s: wrote %+v, read %+v", key, rec, got))
		default:
			h.s.readsOK.Add(1)
		}
		if h.cfg.Interval > 0 && !sleepUntil(ctx, time.Now().Add(h.cfg.Interval), deadline) {
			return
		}
	}
}

// failed records an operation that failed for good and says whether this
// headset should stop. A 401 that a fresh login did not cure, or a 403,
// stops it: trying again would only add failed logins and lock the account.
// A lockout is waited out (Retry-After); anything else pauses a moment so
// that a persistent error does not become a busy loop.
func (h *headset) failed(ctx context.Context, deadline time.Time, err error) (stop bool) {
	if errors.Is(err, errInterrupted) {
		h.s.interrupted.Add(1)
		return true
	}
	if ctx.Err() != nil {
		return true
	}
	h.s.fail(kindOf(err), h.h.DeviceID, err)
	switch {
	case errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrForbidden), errors.Is(err, client.ErrAccessDenied):
		return true
	case errors.Is(err, client.ErrLockedOut):
		wait, _ := client.RetryAfter(err)
		return !sleepUntil(ctx, time.Now().Add(max(wait, h.cfg.BackoffMax)), deadline)
	}
	return !sleepUntil(ctx, time.Now().Add(h.cfg.BackoffMax), deadline)
}

// approve plays the person at the approval page for a code this headset
// shows: it approves it with the headset's username and password, retrying
// what a restarting proxy answers, until the code expires. A refusal (a
// wrong password) is a failure, and the code is denied, so that the
// headset's wait ends (access_denied) rather than at the code's expiry.
func (h *headset) approve(ctx context.Context, dc client.DeviceCode) {
	approval := map[string]string{"user_code": dc.UserCode, "username": h.h.Username, "password": h.h.Password}
	_, err := h.retry(ctx, dc.ExpiresAt, func(ctx context.Context) error {
		return h.post(ctx, "/api/auth/device/approve", approval)
	})
	if err == nil {
		h.s.approvals.Add(1)
		return
	}
	if ctx.Err() != nil {
		return
	}
	h.s.fail("approve_"+kindOf(err), h.h.DeviceID, err)
	_ = h.post(context.WithoutCancel(ctx), "/api/auth/device/deny", map[string]string{"user_code": dc.UserCode})
}

// post sends body as JSON to path on the proxy; an answer other than 2xx is
// a *client.APIError, as the client's own calls return them.
func (h *headset) post(ctx context.Context, path string, body any) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(h.cfg.ProxyURL, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	ae := &client.APIError{Status: resp.StatusCode, Method: http.MethodPost, Path: path, Message: http.StatusText(resp.StatusCode)}
	var eb struct{ Error, Message string }
	if json.Unmarshal(data, &eb) == nil {
		ae.Code = eb.Error
		if eb.Message != "" {
			ae.Message = eb.Message
		}
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		ae.RetryAfter = time.Duration(secs) * time.Second
	}
	return ae
}

// verify reads back every write this headset had acknowledged.
func (h *headset) verify(ctx context.Context, deadline time.Time) {
	for _, w := range h.acked {
		var got record
		_, err := h.retry(ctx, deadline, func(ctx context.Context) error {
			got = record{}
			_, err := h.c.Get(ctx, w.key, &got)
			return err
		})
		switch {
		case err == nil && got == w.rec:
			h.s.readBackOK.Add(1)
		case err == nil:
			h.s.lose(w.key, fmt.Sprintf("different: %+v", got))
		case errors.Is(err, client.ErrNotFound):
			h.s.lose(w.key, "missing")
		default:
			// Could not tell: a failure, not a loss.
			h.s.fail("verify_"+kindOf(err), h.h.DeviceID, fmt.Errorf("read back %s: %w", w.key, err))
		}
	}
}

// retry runs op until it succeeds, fails for good, or the deadline passes.
// Transient errors (the proxy restarting: connection refused or reset, 502,
// 503, a timeout) are retried with a doubling backoff; writing the same key
// with the same data again is harmless, so a write whose answer was lost
// may be repeated. answerLost says whether an earlier attempt may have
// reached the backend without its answer coming back (see answerLost).
func (h *headset) retry(ctx context.Context, deadline time.Time, op func(context.Context) error) (lost bool, err error) {
	backoff := h.cfg.BackoffMin
	for {
		opCtx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
		err := op(opCtx)
		cancel()
		if err == nil {
			return lost, nil
		}
		if ctx.Err() != nil {
			return lost, fmt.Errorf("%w: %w", errInterrupted, err)
		}
		kind, ok := transient(err)
		if !ok {
			return lost, err
		}
		lost = lost || answerLost(err)
		wait := backoff
		if d, ok := client.RetryAfter(err); ok && d > wait {
			wait = min(d, h.cfg.BackoffMax)
		}
		if !time.Now().Add(wait).Before(deadline) {
			return lost, fmt.Errorf("%w: %w", errInterrupted, err)
		}
		h.s.retry(kind)
		if !sleepUntil(ctx, time.Now().Add(wait), deadline) {
			return lost, fmt.Errorf("%w: %w", errInterrupted, err)
		}
		backoff = min(backoff*2, h.cfg.BackoffMax)
	}
}

// answerLost reports whether a transient error may have hidden an answer:
// the request may have reached the backend and done its work. A refused
// connection sent nothing, and a 503 from the proxy forwarded nothing; a
// timeout, a reset or closed connection, a 502 or a 504 may have come after
// the backend had acted.
func answerLost(err error) bool {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Status != http.StatusServiceUnavailable
	}
	return !errors.Is(err, syscall.ECONNREFUSED)
}

// transient says whether err is worth retrying and names its kind.
func transient(err error) (string, bool) {
	var ae *client.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return "http_" + strconv.Itoa(ae.Status), true
		}
		return "", false
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection_reset", true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof", true
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout", true
	}
	// Any other transport failure (a connection the old process closed,
	// "server closed idle connection") is as passing as these.
	var ue *url.Error
	if errors.As(err, &ue) {
		return "network", true
	}
	return "", false
}

// kindOf names a failure for the summary.
func kindOf(err error) string {
	var ae *client.APIError
	if errors.As(err, &ae) {
		k := "http_" + strconv.Itoa(ae.Status)
		if ae.Code != "" {
			k += "_" + ae.Code
		}
		return k
	}
	if k, ok := transient(err); ok {
		return k
	}
	return "error"
}

// sleepUntil sleeps until t, but not past deadline nor the context's end;
// it reports whether the run should go on.
func sleepUntil(ctx context.Context, t, deadline time.Time) bool {
	if t.After(deadline) {
		t = deadline
	}
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return time.Now().Before(deadline)
	case <-ctx.Done():
		return false
	}
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Text writes the summary for a person.
func (s Summary) Text(w io.Writer) {
	kinds := func(m map[string]int64) string {
		if len(m) == 0 {
			return ""
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s=%d", k, m[k])
		}
		return " (" + strings.Join(parts, " ") + ")"
	}
	result := "PASS"
	if !s.Passed {
		result = "FAIL"
	}
	fmt.Fprintf(w, "simulator: %d headsets against %s for %.1fs\n", s.Headsets, s.Proxy, s.ElapsedSeconds)
	fmt.Fprintf(w, "  requests             %d\n", s.Requests)
	fmt.Fprintf(w, "  2xx                  %d\n", s.Responses2xx)
	fmt.Fprintf(w, "  logins               %d\n", s.Logins)
	fmt.Fprintf(w, "  refreshes            %d\n", s.Refreshes)
	if s.DeviceApprovals > 0 {
		fmt.Fprintf(w, "  device approvals     %d\n", s.DeviceApprovals)
	}
	fmt.Fprintf(w, "  retries              %d%s\n", s.Retries, kinds(s.RetriesByKind))
	fmt.Fprintf(w, "  failures             %d%s\n", s.Failures, kinds(s.FailuresByKind))
	fmt.Fprintf(w, "  interrupted          %d\n", s.Interrupted)
	fmt.Fprintf(w, "  writes acknowledged  %d (%d replaced)\n", s.WritesAcknowledged, s.WritesReplaced)
	fmt.Fprintf(w, "  reads right after    %d ok\n", s.ReadsOK)
	fmt.Fprintf(w, "  writes read back OK  %d\n", s.WritesReadBackOK)
	fmt.Fprintf(w, "  writes lost          %d\n", s.WritesLost)
	for _, m := range s.FailureSamples {
		fmt.Fprintf(w, "  failure: %s\n", m)
	}
	for _, k := range s.LostKeys {
		fmt.Fprintf(w, "  lost: %s\n", k)
	}
	fmt.Fprintf(w, "result: %s\n", result)
}
