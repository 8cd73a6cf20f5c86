package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// A headset without a keyboard signs in with the device authorization grant
// (RFC 8628): it shows a short code, a person approves it on the proxy's
// approval page with the username and PIN of a user of the headset's
// device, and the headset receives that user's session. WithDeviceGrant
// makes a Client sign in so, wherever it would log in with a password.

// DeviceCode is what a headset shows while it waits to be approved.
type DeviceCode struct {
	// UserCode is what the person types on the approval page, XXXX-XXXX.
	UserCode string
	// VerificationURI is the approval page; VerificationURIComplete has
	// the code filled in, for a QR code.
	VerificationURI         string
	VerificationURIComplete string
	// ExpiresAt is when the code stops working, by the client's clock.
	ExpiresAt time.Time
	// Interval is how long the client waits between polls.
	Interval time.Duration
}

// WithDeviceGrant makes the client sign in with the device grant instead
// of a password: whenever it must log in (lazily, on a 401, or by Login),
// it asks the proxy for a code, calls show with it for the headset to
// display, and polls until someone approves or denies, or the code
// expires. Only Credentials.DeviceID is used. show is called once per
// code, before the first poll; it must return quickly (hand the code to
// the UI).
//
// The call that needed the login waits meanwhile (bounded by its context):
// call Login first, at a moment the headset can show the code. A denial
// ends the wait with ErrAccessDenied and an expired code with
// ErrExpiredToken; call Login again for a new code.
func WithDeviceGrant(show func(DeviceCode)) Option {
	return func(c *Client) { c.deviceShow = show }
}

// Sentinels of the device grant, for errors.Is on what Login returns.
var (
	// ErrAccessDenied: the person denied the request on the approval page.
	ErrAccessDenied = errors.New("authsidecar: access denied")
	// ErrExpiredToken: nobody approved the code before it expired.
	ErrExpiredToken = errors.New("authsidecar: device code expired")
)

// slowDownStep is what each slow_down adds to the interval (RFC 8628 §3.5).
const slowDownStep = 5 * time.Second

type deviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// deviceLoginLocked runs the device grant; the caller holds authSem.
func (c *Client) deviceLoginLocked(ctx context.Context) (Session, error) {
	body, err := json.Marshal(map[string]string{"deviceId": c.creds.DeviceID})
	if err != nil {
		return Session{}, err
	}
	var a deviceAuthorization
	if _, err := c.send(ctx, http.MethodPost, "/api/auth/device/code", "", body, &a); err != nil {
		return Session{}, err
	}
	interval := time.Duration(a.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second // RFC 8628 §3.2's default
	}
	code := DeviceCode{UserCode: a.UserCode, VerificationURI: a.VerificationURI, VerificationURIComplete: a.VerificationURIComplete,
		ExpiresAt: c.now().Add(time.Duration(a.ExpiresIn) * time.Second), Interval: interval}
	c.deviceShow(code)

	poll, err := json.Marshal(map[string]string{"device_code": a.DeviceCode, "client_id": c.creds.DeviceID})
	if err != nil {
		return Session{}, err
	}
	// The first poll goes at once: the proxy holds a poll open until the
	// request is decided or the interval passes, so the headset learns of
	// the approval the moment it is given.
	for {
		var s Session
		_, err := c.send(ctx, http.MethodPost, "/api/auth/device/token", "", poll, &s)
		if err == nil {
			c.store(s)
			return s, nil
		}
		var ae *APIError
		switch {
		case errors.As(err, &ae) && ae.Code == "authorization_pending":
		case errors.As(err, &ae) && ae.Code == "slow_down":
			interval += slowDownStep
		case errors.Is(err, ErrUnavailable) && c.now().Before(code.ExpiresAt):
			// A proxy restarting while the person types the code: the
			// request lives in the database, keep polling.
		default:
			return Session{}, err
		}
		if err := c.sleep(ctx, interval); err != nil {
			return Session{}, err
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
