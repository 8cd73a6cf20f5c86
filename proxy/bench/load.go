package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// requestTimeout bounds every single request the bench sends, so that a
// stuck process can never hang a run.
const requestTimeout = 10 * time.Second

// maxRequestsPerConn bounds a load run in count as well as in time.
const maxRequestsPerConn = 1 << 21

// maxErrorsPerConn ends a connection's loop when the target is clearly
// broken rather than retrying for the whole run.
const maxErrorsPerConn = 100

// client is one persistent HTTP/1.1 keep-alive connection. It writes
// prepared request bytes and parses the response itself instead of going
// through an http.Transport: a Transport runs two goroutines per connection
// and hands every request between them, CPU that the load generator would
// take from the processes it measures on this 2-core machine.
type client struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	body bytes.Buffer
}

func newClient(addr string) *client { return &client{addr: addr} }

// do sends req and returns the status and the body, which stays valid until
// the next call. On any error the connection is closed; the next call dials
// again.
func (c *client) do(req []byte) (int, []byte, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, nil, fmt.Errorf("dial %s: %w", c.addr, err)
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	if err := c.conn.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		c.close()
		return 0, nil, fmt.Errorf("set deadline: %w", err)
	}
	if _, err := c.conn.Write(req); err != nil {
		c.close()
		return 0, nil, fmt.Errorf("write to %s: %w", c.addr, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, nil, fmt.Errorf("read response from %s: %w", c.addr, err)
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		c.close()
		return 0, nil, fmt.Errorf("read body from %s: %w", c.addr, err)
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, c.body.Bytes(), nil
}

// once is do for a single request outside a load loop: a keep-alive
// connection the server closed while idle gets one retry.
func (c *client) once(req []byte) (int, []byte, error) {
	reused := c.conn != nil
	status, body, err := c.do(req)
	if err != nil && reused {
		return c.do(req)
	}
	return status, body, err
}

func (c *client) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// rawRequest is the wire form of one HTTP/1.1 request. A nil body sends no
// body headers; an empty one sends Content-Length: 0.
func rawRequest(method, host, path, token string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: authsidecar-bench\r\n", method, path, host)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	if body != nil {
		if len(body) > 0 {
			b.WriteString("Content-Type: application/json\r\n")
		}
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// load is a closed-loop run: conns connections, each sending its next
// request as soon as the previous answer arrived.
type load struct {
	addr     string
	conns    int
	warmup   time.Duration // sent but not recorded: connections, caches and pools fill up
	duration time.Duration // recorded
	// request returns the bytes of a connection's n-th request.
	request func(conn, n int) []byte
	// rate, when not zero, is how many requests per second each connection
	// sends (an open loop): requests go out on a schedule whatever the
	// answers, and a latency counts from the scheduled time, so a stall
	// shows in full instead of slowing the load down.
	rate float64
}

// same returns a request function that always sends req.
func same(req []byte) func(int, int) []byte { return func(int, int) []byte { return req } }

// connResult is what one connection of a load run saw.
type connResult struct {
	latencies []time.Duration // of answers to requests started in the recorded window
	status    map[int]int     // likewise
	errors    int             // failed requests (no answer), warm-up included
	total     int             // requests sent, warm-up included
	firstErr  error
}

// measurement is a load run's result, all connections together.
type measurement struct {
	conns     int
	window    time.Duration   // length of the recorded window
	latencies []time.Duration // sorted
	status    map[int]int
	errors    int
	total     int
	firstErr  error
}

// aggregate merges the connections' results.
func aggregate(parts []connResult, window time.Duration) measurement {
	m := measurement{conns: len(parts), window: window, status: map[int]int{}}
	n := 0
	for _, p := range parts {
		n += len(p.latencies)
	}
	m.latencies = make([]time.Duration, 0, n)
	for _, p := range parts {
		m.latencies = append(m.latencies, p.latencies...)
		for s, c := range p.status {
			m.status[s] += c
		}
		m.errors += p.errors
		m.total += p.total
		if m.firstErr == nil {
			m.firstErr = p.firstErr
		}
	}
	slices.Sort(m.latencies)
	return m
}

// merge combines measurements of one target taken in several rounds.
func merge(ms ...measurement) measurement {
	parts := make([]connResult, 0, len(ms))
	var window time.Duration
	for _, m := range ms {
		parts = append(parts, connResult{latencies: m.latencies, status: m.status, errors: m.errors, total: m.total, firstErr: m.firstErr})
		window += m.window
	}
	out := aggregate(parts, window)
	if len(ms) > 0 {
		out.conns = ms[0].conns
	}
	return out
}

// percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted
// latencies, or 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

func (m measurement) p(q float64) time.Duration { return percentile(m.latencies, q) }

// count is how many answers were recorded.
func (m measurement) count() int { return len(m.latencies) }

// rate is recorded answers per second.
func (m measurement) rate() float64 {
	if m.window <= 0 {
		return 0
	}
	return float64(m.count()) / m.window.Seconds()
}

// rateOf is answers with one status per second.
func (m measurement) rateOf(status int) float64 {
	if m.window <= 0 {
		return 0
	}
	return float64(m.status[status]) / m.window.Seconds()
}

// success counts 2xx answers.
func (m measurement) success() int {
	n := 0
	for s, c := range m.status {
		if s >= 200 && s < 300 {
			n += c
		}
	}
	return n
}

// statuses describes the answers ("200×120 503×4") and failures.
func (m measurement) statuses() string {
	codes := make([]int, 0, len(m.status))
	for s := range m.status {
		codes = append(codes, s)
	}
	slices.Sort(codes)
	var b bytes.Buffer
	for _, s := range codes {
		fmt.Fprintf(&b, "%d×%d ", s, m.status[s])
	}
	if m.errors > 0 {
		fmt.Fprintf(&b, "errors×%d ", m.errors)
	}
	return string(bytes.TrimSpace(b.Bytes()))
}

// runLoad runs l and measures it. It fails only when nothing was answered
// at all: a few failed requests are reported, not fatal.
func runLoad(ctx context.Context, l load) (measurement, error) {
	clients := make([]*client, l.conns)
	for i := range clients {
		clients[i] = newClient(l.addr)
	}
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	start := time.Now()
	warmEnd := start.Add(l.warmup)
	end := warmEnd.Add(l.duration)
	parts := make([]connResult, l.conns)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { parts[i] = loop(ctx, clients[i], i, l.request, l.rate, start, warmEnd, end) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return measurement{}, err
	}
	m := aggregate(parts, l.duration)
	if m.count() == 0 {
		return m, fmt.Errorf("load on %s: no answer in %s (%d failed requests): %w", l.addr, l.duration, m.errors, m.firstErr)
	}
	return m, nil
}

// loop is one connection's part of a load run.
func loop(ctx context.Context, c *client, id int, request func(int, int) []byte, rate float64, start, warmEnd, end time.Time) connResult {
	r := connResult{status: map[int]int{}, latencies: make([]time.Duration, 0, 1<<12)}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
		// Spread the connections' schedules over one interval.
		start = start.Add(interval * time.Duration(id) / 64)
	}
	for n := 0; n < maxRequestsPerConn && ctx.Err() == nil; n++ {
		t0 := time.Now()
		if interval > 0 {
			t0 = start.Add(time.Duration(n) * interval)
			if d := time.Until(t0); d > 0 {
				time.Sleep(d)
			}
		}
		if !t0.Before(end) {
			break
		}
		status, _, err := c.do(request(id, n))
		lat := time.Since(t0)
		r.total++
		if err != nil {
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			if r.errors >= maxErrorsPerConn {
				break
			}
			time.Sleep(5 * time.Millisecond) // no hot loop on a refused connection
			continue
		}
		if t0.Before(warmEnd) {
			continue
		}
		r.latencies = append(r.latencies, lat)
		r.status[status]++
	}
	return r
}
