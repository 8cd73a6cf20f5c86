package testkit

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// Relay is a TCP relay between a program and a server that a test can
// pause: paused, it stops passing bytes either way but keeps every
// connection open, which is what a hung database or a network that drops
// packets without a reset looks like to a client. New connections are
// accepted and then hang as well.
type Relay struct {
	Addr   string // host:port to connect to instead of the server's
	target string
	ln     net.Listener

	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed by Resume
	conns  map[net.Conn]struct{}
}

// StartRelay relays connections to target (host:port) until t ends.
func StartRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// RelayDatabase starts a Relay in front of the server of dbURL and returns
// it with dbURL pointing through it.
func RelayDatabase(t testing.TB, dbURL string) (*Relay, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	r := StartRelay(t, net.JoinHostPort(u.Hostname(), port))
	u.Host = r.Addr
	return r, u.String()
}

// Pause stops every byte from moving, on open and new connections alike.
func (r *Relay) Pause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.paused {
		r.paused, r.resume = true, make(chan struct{})
	}
}

// Resume lets bytes move again; what was held back is delivered.
func (r *Relay) Resume() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused {
		r.paused = false
		close(r.resume)
	}
}

// gate waits while the relay is paused.
func (r *Relay) gate() {
	r.mu.Lock()
	paused, resume := r.paused, r.resume
	r.mu.Unlock()
	if paused {
		<-resume
	}
}

func (r *Relay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.serve(c)
	}
}

func (r *Relay) serve(client net.Conn) {
	r.gate()
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !r.track(client, server) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				r.gate() // held here while paused: nothing reaches dst
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	_ = client.Close()
	_ = server.Close()
	<-done
	r.untrack(client, server)
}

func (r *Relay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil { // closed
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

func (r *Relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

// close stops accepting, lets anything held go, and closes every
// connection.
func (r *Relay) close() {
	_ = r.ln.Close()
	r.Resume()
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
}
