package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// access is what a forwarded path asks of its caller.
type access uint8

const (
	needsSession access = iota // the default: a live session
	public                     // PUBLIC_ROUTES: none, but a live one is named
	adminOnly                  // ADMIN_ROUTES: an admin session
)

// accessHandler marks a route rule's pattern in the rules' mux; it is never
// served, only looked up.
type accessHandler access

func (accessHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}

// Rules say what each forwarded path asks of its caller: the operator's
// PUBLIC_ROUTES and ADMIN_ROUTES, compiled once into a ServeMux, so that
// patterns mean what they mean to Go's router and the most specific one
// wins. A nil *Rules asks a live session everywhere.
type Rules struct {
	mux *http.ServeMux
}

// RuleError says which list holds a pattern that cannot be used.
type RuleError struct {
	Admin   bool // in the admin list, else the public one
	Pattern string
	Err     error
}

func (e *RuleError) Error() string { return fmt.Sprintf("pattern %q: %v", e.Pattern, e.Err) }
func (e *RuleError) Unwrap() error { return e.Err }

// NewRules compiles the public and admin patterns. A pattern that Go's
// router refuses, one listed twice, or one that would match any of the
// proxy's own routes is a *RuleError: a rule over /api/auth/ would
// otherwise read as if it changed who may log in.
func NewRules(publicPatterns, adminPatterns []string) (*Rules, error) {
	if len(publicPatterns)+len(adminPatterns) == 0 {
		return nil, nil
	}
	probes := ownProbes()
	ru := &Rules{mux: http.NewServeMux()}
	for _, list := range []struct {
		patterns []string
		access   access
	}{{publicPatterns, public}, {adminPatterns, adminOnly}} {
		for _, p := range list.patterns {
			fail := func(err error) error { return &RuleError{Admin: list.access == adminOnly, Pattern: p, Err: err} }
			alone := http.NewServeMux()
			if err := register(alone, p, accessHandler(list.access)); err != nil {
				return nil, fail(err)
			}
			if own, ok := covers(alone, probes); ok {
				return nil, fail(fmt.Errorf("it covers the proxy's own route %s", own))
			}
			if err := register(ru.mux, p, accessHandler(list.access)); err != nil {
				return nil, fail(err)
			}
		}
	}
	return ru, nil
}

// register adds pattern ("[METHOD ]/path") to mux, turning the router's
// panic on a bad or conflicting pattern into an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	method, path, hasMethod := strings.Cut(pattern, " ")
	if !hasMethod {
		path = method
	} else if !slices.Contains(methods, method) {
		return fmt.Errorf("%q is not an HTTP method (write the pattern as [METHOD ]/path)", method)
	}
	path = strings.TrimLeft(path, " ")
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t") {
		return errors.New("not a pattern of the form [METHOD ]/path")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
			if strings.Contains(err.Error(), "conflicts with") {
				err = errors.New("matches the same requests as another pattern of PUBLIC_ROUTES or ADMIN_ROUTES")
			}
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// methods are the methods a pattern may name.
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func isRule(h http.Handler) bool { _, ok := h.(accessHandler); return ok }

// access returns what r's path asks of its caller.
func (ru *Rules) access(r *http.Request) access {
	if ru == nil {
		return needsSession
	}
	h, _ := ru.mux.Handler(r)
	// Anything but a rule's own marker (the router's 404, 405 or a
	// redirect to a cleaner path) is the default.
	if a, ok := h.(accessHandler); ok {
		return access(a)
	}
	return needsSession
}

// ownPatterns are the patterns of every route the proxy serves itself, as
// New registers them: the router is the one list of them.
func ownPatterns() []string {
	var patterns []string
	(&Gateway{}).register(func(pattern string, _ http.Handler) { patterns = append(patterns, pattern) })
	return patterns
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// ownProbes are paths that the proxy's own routes serve: one per pattern,
// with its wildcards filled and a subtree's inside it.
func ownProbes() []string {
	var probes []string
	for _, p := range ownPatterns() {
		if p == "/" {
			continue // the forwarding catch-all
		}
		p = wildcard.ReplaceAllString(p, "x")
		if strings.HasSuffix(p, "/") {
			p += "x"
		}
		probes = append(probes, p)
	}
	return probes
}

// covers reports whether mux matches one of the probes, by any method.
func covers(mux *http.ServeMux, probes []string) (string, bool) {
	for _, p := range probes {
		for _, m := range methods {
			if h, _ := mux.Handler(&http.Request{Method: m, URL: &url.URL{Path: p}, Host: "x"}); isRule(h) {
				return p, true
			}
		}
	}
	return "", false
}

// errAmbiguousPath: a path that another component could read as a
// different one.
var errAmbiguousPath = auth.InvalidInputf("the path is ambiguous: it has an encoded slash or backslash, a backslash, a ';', an empty, '.' or '..' segment, or would name another route in another case or without a trailing dot; send it in its plain form")

// checkPath refuses a path that some component between the client and the
// backend could read differently from the proxy, so that no spelling of a
// path slips past a rule — or past the proxy's own routes — that its plain
// form would meet:
//
//   - an encoded slash or backslash (%2F, %5C): some servers decode it into
//     a separator, the proxy's router does not;
//   - a backslash, which Windows servers and some frameworks read as '/';
//   - a ';', which Java servers read as the start of path parameters
//     (/admin;x/ is /admin/ to Tomcat);
//   - an empty, "." or ".." segment, which every server resolves its own way;
//   - a path that, lower-cased or with its segments' trailing dots and
//     spaces removed (what case-insensitive and Windows servers do), would
//     meet a different rule or route than as sent.
func (g *Gateway) checkPath(r *http.Request) error {
	p := r.URL.Path
	if p == "" || p[0] != '/' || strings.ContainsAny(p, "\\;\x00") {
		return errAmbiguousPath
	}
	if raw := r.URL.RawPath; raw != "" && (containsFold(raw, "%2f") || containsFold(raw, "%5c")) {
		return errAmbiguousPath
	}
	folded, foldable := false, false
	for i := 1; i <= len(p); {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			j = len(p) - i
		}
		seg := p[i : i+j]
		if (seg == "" && i+j < len(p)) || seg == "." || seg == ".." {
			return errAmbiguousPath
		}
		if n := len(seg); n > 0 && (seg[n-1] == '.' || seg[n-1] == ' ') {
			foldable = true
		}
		i += j + 1
	}
	for i := 0; i < len(p); i++ {
		if 'A' <= p[i] && p[i] <= 'Z' {
			folded = true
			break
		}
	}
	if !folded && !foldable {
		return nil // the common case: nothing to read differently
	}
	own, acc := g.classify(r, p)
	for _, alt := range []string{strings.ToLower(p), trimSegmentDots(p), strings.ToLower(trimSegmentDots(p))} {
		if alt == p {
			continue
		}
		if o, a := g.classify(r, alt); o != own || a != acc {
			return errAmbiguousPath
		}
	}
	return nil
}

// classify reports whether path names one of the proxy's own routes, and
// what it asks of a caller when forwarded.
func (g *Gateway) classify(r *http.Request, path string) (own bool, acc access) {
	t := &http.Request{Method: r.Method, Host: r.Host, URL: &url.URL{Path: path}}
	_, pattern := g.mux.Handler(t)
	return pattern != "/", g.cfg.Rules.access(t)
}

// trimSegmentDots removes trailing dots and spaces from every segment.
func trimSegmentDots(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = strings.TrimRight(s, ". ")
	}
	return strings.Join(segs, "/")
}

// containsFold reports whether s contains the lower-case ASCII substr in
// any case.
func containsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(substr)], substr) {
			return true
		}
	}
	return false
}
