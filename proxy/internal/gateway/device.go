package gateway

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/devicegrant"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

// The device authorization grant (RFC 8628): a headset asks for a code
// (/api/auth/device/code) and polls for its session
// (/api/auth/device/token); a person approves or denies it on the approval
// page (/device), which calls /api/auth/device/approve and
// /api/auth/device/deny. The two endpoints a device calls take the RFC's
// form encoding as well as JSON, for OAuth libraries.

// deviceGrantType is the grant_type of a form-encoded token request.
const deviceGrantType = "urn:ietf:params:oauth:grant-type:device_code"

// devicePagePath is the approval page: the verification URI.
const devicePagePath = "/device"

type deviceAuthorizationJSON struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

func (g *Gateway) deviceCode(w http.ResponseWriter, r *http.Request) error {
	if g.cfg.Device == nil {
		return errRouteNotFound
	}
	var req struct {
		DeviceID string `json:"deviceId"`
	}
	form, err := decodeDeviceRequest(w, r, &req)
	if err != nil {
		return err
	}
	if form != nil {
		req.DeviceID = form.Get("client_id")
	}
	a, err := g.cfg.Device.Start(r.Context(), req.DeviceID, session.Client{Addr: g.clientAddr(r), UserAgent: r.UserAgent()})
	if err != nil {
		return err
	}
	verify := g.publicBase(r) + devicePagePath
	writeJSON(w, http.StatusOK, deviceAuthorizationJSON{
		DeviceCode: a.DeviceCode, UserCode: a.UserCode,
		VerificationURI: verify, VerificationURIComplete: verify + "?user_code=" + url.QueryEscape(a.UserCode),
		ExpiresIn: int(a.ExpiresIn.Seconds()), Interval: int(a.Interval.Seconds()),
	})
	return nil
}

func (g *Gateway) deviceToken(w http.ResponseWriter, r *http.Request) error {
	if g.cfg.Device == nil {
		return errRouteNotFound
	}
	var req struct {
		GrantType  string `json:"grant_type"`
		DeviceCode string `json:"device_code"`
		ClientID   string `json:"client_id"`
	}
	form, err := decodeDeviceRequest(w, r, &req)
	if err != nil {
		return err
	}
	if form != nil {
		req.GrantType, req.DeviceCode, req.ClientID = form.Get("grant_type"), form.Get("device_code"), form.Get("client_id")
		if req.GrantType == "" {
			return auth.InvalidInputf("grant_type is required")
		}
	}
	// JSON may leave grant_type out: the endpoint has one grant.
	if req.GrantType != "" && req.GrantType != deviceGrantType {
		return devicegrant.ErrUnsupportedGrantType
	}
	issued, err := g.cfg.Device.Poll(r.Context(), req.DeviceCode, req.ClientID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenBody(issued))
	return nil
}

type deviceDecisionRequest struct {
	UserCode string `json:"user_code"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func (g *Gateway) deviceApprove(w http.ResponseWriter, r *http.Request) error {
	if g.cfg.Device == nil {
		return errRouteNotFound
	}
	var req deviceDecisionRequest
	if err := decodeJSON(w, r, MaxLoginBody, &req); err != nil {
		return err
	}
	addr := g.clientAddr(r)
	if _, err := g.cfg.Device.Approve(g.acting(r, ""), devicegrant.Approval{
		UserCode: req.UserCode, Username: req.Username, Password: req.Password, ClientAddr: addr,
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) deviceDeny(w http.ResponseWriter, r *http.Request) error {
	if g.cfg.Device == nil {
		return errRouteNotFound
	}
	var req struct {
		UserCode string `json:"user_code"`
	}
	if err := decodeJSON(w, r, MaxLoginBody, &req); err != nil {
		return err
	}
	if err := g.cfg.Device.Deny(g.acting(r, ""), req.UserCode, g.clientAddr(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodeDeviceRequest reads a request of a device: a form
// (application/x-www-form-urlencoded, as RFC 8628 and OAuth libraries send
// it), returned as form, or else a JSON object into v (form is nil).
func decodeDeviceRequest(w http.ResponseWriter, r *http.Request, v any) (form url.Values, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, decodeJSON(w, r, MaxLoginBody, v)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxLoginBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, auth.InvalidInputf("the body is larger than %d bytes", MaxLoginBody)
		}
		return nil, auth.InvalidInputf("the body could not be read")
	}
	form, err = url.ParseQuery(string(body))
	if err != nil {
		return nil, auth.InvalidInputf("the body is not a valid form")
	}
	// RFC 6749 §3.2: a parameter sent twice makes the request invalid;
	// which one a library meant is unclear.
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, auth.InvalidInputf("%s is sent more than once", k)
		}
	}
	return form, nil
}

// publicBase is the scheme and host the client reached the proxy at, for
// the absolute verification URI: the request's own, or, from a trusted
// proxy in front (TRUSTED_PROXIES), its X-Forwarded-Proto and
// X-Forwarded-Host — a load balancer that ends TLS reaches the proxy over
// plain HTTP, but the person must be sent to https.
func (g *Gateway) publicBase(r *http.Request) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	peer := r.RemoteAddr
	if h, _, err := net.SplitHostPort(peer); err == nil {
		peer = h
	}
	if g.trusted(peer) {
		if p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); validHost(h) {
			host = h
		}
	}
	return scheme + "://" + host
}

// firstValue is the first of a comma-separated header's values: the one
// the proxy nearest the client wrote.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// validHost reports whether h can be the host of a URL the proxy hands
// out: a name or an address, with an optional port; nothing that could
// start a path, a query or userinfo.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
		if !ok {
			return false
		}
	}
	return true
}

// The approval page: html/template and its script and style embedded in
// the binary, no build step and nothing loaded from elsewhere. The inline
// script and style are allowed by their hashes in the Content-Security-
// Policy, so that nothing else can run on the page.
var (
	//go:embed devicepage
	devicePageFiles embed.FS
	devicePage      = template.Must(template.ParseFS(devicePageFiles, "devicepage/page.html"))
	devicePageJS    = mustRead("devicepage/page.js")
	devicePageCSS   = mustRead("devicepage/page.css")
	devicePageCSP   = "default-src 'none'; script-src '" + cspHash(devicePageJS) + "'; style-src '" + cspHash(devicePageCSS) +
		"'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

func mustRead(name string) string {
	b, err := devicePageFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// devicePageData is what the page shows.
type devicePageData struct {
	Script template.JS
	Style  template.CSS
	// Pending is the request of the user code given, to approve or deny.
	Pending *devicegrant.Pending
	// Typed is the user code as given, to correct it.
	Typed string
	// Problem says why the code given cannot be approved.
	Problem string
}

// devicePageHTML serves the approval page. With ?user_code= it looks the
// request up (counted like every use of a user code) and asks for the
// username and PIN of a user of the device that asked; without one, or with
// one that cannot be approved, it asks for the code. Its errors are the
// page itself, with the status the JSON API would give.
func (g *Gateway) devicePageHTML(w http.ResponseWriter, r *http.Request) error {
	if g.cfg.Device == nil {
		return errRouteNotFound
	}
	data := devicePageData{Script: template.JS(devicePageJS), Style: template.CSS(devicePageCSS)}
	status := http.StatusOK
	if r.URL.Query().Has("user_code") {
		data.Typed = r.URL.Query().Get("user_code")
		p, err := g.cfg.Device.Lookup(g.acting(r, ""), data.Typed, g.clientAddr(r))
		if err != nil {
			var code string
			status, code, data.Problem = g.errorStatus(w, r, err)
			if code == "internal" || status == http.StatusServiceUnavailable {
				data.Problem = "The proxy cannot look the code up right now; try again in a moment."
			}
		} else {
			data.Pending = &p
		}
	}
	var buf bytes.Buffer
	if err := devicePage.Execute(&buf, data); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", devicePageCSP)
	h.Set("Cache-Control", "no-store")
	// The URL carries the user code; no other site should see it.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}
