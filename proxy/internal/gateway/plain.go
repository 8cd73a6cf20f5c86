package gateway

import (
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// plainForwarder forwards a request that asks for no protocol upgrade,
// which is nearly every request. It does what httputil.ReverseProxy does
// for such a request, with the proxy's own rules (see newReverseProxy),
// but builds the outbound request once instead of cloning the inbound one
// and editing the copy: one header map, sized for what is sent, with the
// caller's identity written straight from the session. ReverseProxy, for
// all its generality, costs a proxied request more CPU than authenticating
// it does; what it does beyond this (relaying 1xx responses and protocol
// upgrades) is kept for upgrade requests, which go to it (see
// authenticated).
//
// What differs from ReverseProxy, on purpose: informational 1xx responses
// other than 100 Continue (103 Early Hints) are not relayed, the final
// response is; and a client's request trailers are not sent on (where
// ReverseProxy sends their names without values).
type plainForwarder struct {
	upstream  *url.URL
	transport http.RoundTripper
	onError   func(http.ResponseWriter, *http.Request, error)
	log       *zap.Logger
}

// hopHeaders are the hop-by-hop headers (RFC 9110 §7.6.1 and the older
// list ReverseProxy also drops): they describe one connection, and are
// neither forwarded to the upstream nor returned from it.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHopHeader(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// isHopByHop reports whether header k of a message whose Connection
// header is connection belongs to one hop only: one of hopHeaders, or named
// in connection.
func isHopByHop(k string, connection []string) bool {
	return isHopHeader(k) || (connection != nil && listedInConnection(connection, k))
}

// listedInConnection reports whether a Connection header names k, which
// makes k hop-by-hop too.
func listedInConnection(connection []string, k string) bool {
	for _, v := range connection {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" && strings.EqualFold(f, k) {
				return true
			}
		}
	}
	return false
}

// forward sends r to the upstream as the caller s and copies the answer to
// w.
func (f *plainForwarder) forward(w http.ResponseWriter, r *http.Request, s auth.Session) {
	out := new(http.Request)
	*out = *r // the context, method, protocol and body stay those of r
	// A client's request trailers arrive after the body, unannounced ones
	// too, into r.Trailer: forwarded, they would pass X-Auth-* or
	// Authorization around every check above. None are sent on.
	out.Trailer = nil
	out.RequestURI = ""
	out.Close = false
	u := *r.URL
	u.RawQuery = cleanQuery(u.RawQuery)
	out.URL = &u
	out.Header = outboundHeader(r.Header, s)
	if r.ContentLength == 0 {
		out.Body = nil // lets the transport retry a request on a stale connection
	}
	if out.Body != nil {
		// The transport may still read the body after this handler
		// returned (a failed write races the response), and the server
		// then reuses the connection: reads past that point must fail.
		// Closing it must not close the client's body early either.
		b := &handlerBody{ReadCloser: out.Body}
		out.Body = b
		defer b.done.Store(true)
	}
	pr := httputil.ProxyRequest{In: r, Out: out}
	pr.SetURL(f.upstream) // scheme, host, joined path and query; Host is the upstream's
	pr.SetXForwarded()

	resp, err := f.transport.RoundTrip(out)
	if err != nil {
		f.onError(w, r, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Nothing asked for an upgrade (those go to the ReverseProxy).
		resp.Body.Close()
		f.onError(w, r, errors.New("the upstream switched protocols unasked"))
		return
	}

	h := w.Header()
	connection := resp.Header["Connection"]
	for k, v := range resp.Header {
		if isHopByHop(k, connection) {
			continue
		}
		h[k] = v // resp is ours alone: no copy needed
	}
	// The transport keeps the announced trailer names out of the headers;
	// announce them again so that the client can expect them.
	announced := len(resp.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	streaming := resp.ContentLength == -1 || isEventStream(resp.Header.Get("Content-Type"))
	rc := http.NewResponseController(w)
	if streaming {
		_ = rc.Flush() // the status and headers now, whenever the first byte comes
	}
	if upstream, err := copyBody(w, resp.Body, streaming, rc); err != nil {
		resp.Body.Close()
		// A client that hangs up on a stream cancels the request, and the
		// upstream's body then fails to read: that is the client's doing.
		if upstream && r.Context().Err() == nil {
			f.log.Warn("upstream body cut short", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		} else {
			f.log.Debug("client went away during the response", zap.String("path", r.URL.Path), zap.Error(err))
		}
		// The status is sent; all that is left is to cut the connection so
		// that the client cannot take a truncated body for a whole one.
		panic(http.ErrAbortHandler)
	}
	resp.Body.Close() // now, not deferred: it fills in resp.Trailer

	if len(resp.Trailer) == 0 {
		return
	}
	_ = rc.Flush() // a response with trailers must be chunked
	if len(resp.Trailer) == announced {
		for k, v := range resp.Trailer {
			h[k] = append(h[k], v...)
		}
		return
	}
	for k, v := range resp.Trailer {
		h[http.TrailerPrefix+k] = append(h[http.TrailerPrefix+k], v...)
	}
}

// outboundHeader is what the upstream is sent: the client's headers less
// the hop-by-hop ones, the token and every claim the client made about
// who it is or where it connected from (see stripClientClaims), plus the
// caller's identity. X-Forwarded-* follow (SetXForwarded).
func outboundHeader(in http.Header, s auth.Session) http.Header {
	// The identity, the three X-Forwarded-* and perhaps Te and User-Agent:
	// room for them all at once, so that the map never grows.
	out := make(http.Header, len(in)+10)
	connection := in["Connection"]
	for k, v := range in {
		if isHopByHop(k, connection) || k == "Authorization" || isClientClaim(k) {
			continue
		}
		out[k] = v
	}
	// A client that can take trailers says so hop by hop; say it again on
	// this hop, as ReverseProxy does.
	if httpguts.HeaderValuesContainsToken(in["Te"], "trailers") {
		out["Te"] = []string{"trailers"}
	}
	// No User-Agent from the client: send none, rather than Go's.
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = []string{""}
	}
	setIdentity(out, s)
	return out
}

// isEventStream reports whether a Content-Type is text/event-stream, whose
// events must reach the client as they come.
func isEventStream(ct string) bool {
	base, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(base), "text/event-stream")
}

// copyBody copies the upstream's body to the client in a pooled buffer,
// flushing after every write when streaming. It returns write errors and
// read errors other than EOF, and whether the error was the upstream's
// (a read) rather than the client's (a write).
func copyBody(w io.Writer, body io.Reader, streaming bool, rc *http.ResponseController) (upstream bool, err error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false, werr
			}
			if streaming {
				if err := rc.Flush(); err != nil {
					return false, err
				}
			}
		}
		if rerr == io.EOF {
			return false, nil
		}
		if rerr != nil {
			return true, rerr
		}
	}
}

// handlerBody is the client's request body as the transport sees it: Close
// does not close the client's body, and no read succeeds once the handler
// has returned.
type handlerBody struct {
	io.ReadCloser
	done atomic.Bool
}

var errHandlerReturned = errors.New("read from a request body after its handler returned")

func (b *handlerBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, errHandlerReturned
	}
	return b.ReadCloser.Read(p)
}

func (b *handlerBody) Close() error { return nil }

// maxQueryParams is where net/url stops parsing a query.
const maxQueryParams = 10000

// queryLimitChanged: GODEBUG=urlmaxqueryparams=N moves net/url's limit, so
// ReverseProxy then re-encodes every query; so does cleanQuery. Only the
// environment is read: a godebug line in go.mod would move the limit
// without this seeing it (the module sets none).
var queryLimitChanged = strings.Contains(os.Getenv("GODEBUG"), "urlmaxqueryparams=")

// cleanQuery drops from a raw query what Go's own parser would not accept
// (";" separators, broken escapes, too many parameters), as ReverseProxy
// does: a backend must not read a parameter the proxy's side of the
// exchange would not see.
func cleanQuery(q string) string {
	reencode := func() string {
		v, _ := url.ParseQuery(q)
		return v.Encode()
	}
	if queryLimitChanged || strings.Count(q, "&")+1 > maxQueryParams {
		return reencode()
	}
	for i := 0; i < len(q); {
		switch q[i] {
		case ';':
			return reencode()
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reencode()
			}
			i += 3
		default:
			i++
		}
	}
	return q
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
