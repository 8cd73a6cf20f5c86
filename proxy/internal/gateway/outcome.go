package gateway

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// What the proxy did with a request, as the request metrics count it: one
// of these, or the error code of the JSON body it answered with (the
// "error" a client sees: invalid_token, unavailable, bad_gateway, …), so
// that a dashboard and a client's bug report speak of the same thing.
const (
	outcomeForwarded = "forwarded" // the upstream answered, and its status went back
	outcomeAnswered  = "answered"  // one of the proxy's own routes answered
)

// recorder is the response writer of a request while the metrics are on:
// it notes the status sent and the outcome that the code writing the
// answer names (see setOutcome). Pooled: it runs on every request.
type recorder struct {
	http.ResponseWriter
	status  int
	outcome string
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

// serveCounted serves r and counts it in the request metrics.
func (g *Gateway) serveCounted(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := recorders.Get().(*recorder)
	rec.ResponseWriter, rec.status, rec.outcome = w, 0, outcomeAnswered
	g.serve(rec, r)
	status := rec.status
	if status == 0 {
		status = http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	g.cfg.Metrics.Request(rec.outcome, status, time.Since(start))
	rec.ResponseWriter = nil
	recorders.Put(rec)
}

// setOutcome names what became of the request w answers; the last word
// counts (a forwarded request that met an unreachable upstream is a
// bad_gateway).
func setOutcome(w http.ResponseWriter, outcome string) {
	if rec, ok := w.(*recorder); ok {
		rec.outcome = outcome
	}
}

// setAbandoned notes a request whose client went away before anything was
// written: nobody reads an answer, and the metrics count it as 499, as
// writeError answers it.
func setAbandoned(w http.ResponseWriter) {
	if rec, ok := w.(*recorder); ok {
		rec.outcome = "canceled"
		if rec.status == 0 {
			rec.status = 499
		}
	}
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && code >= 200 { // 1xx are interim answers
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.ResponseWriter.Write(b)
}

// Flush and Hijack reach the server's writer (ReverseProxy streams and
// switches protocols through http.ResponseController, which also finds
// them by Unwrap; these note the status on the way).
func (rec *recorder) Flush() {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	_ = http.NewResponseController(rec.ResponseWriter).Flush()
}

func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(rec.ResponseWriter).Hijack()
	if err == nil && rec.status == 0 {
		rec.status = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }
