package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// AdminSession is one live session as an admin sees it.
type AdminSession struct {
	ID        string    `json:"id"`
	User      User      `json:"user"`
	DeviceID  string    `json:"deviceId"`
	IsAdmin   bool      `json:"isAdmin"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// The admin calls need an admin account (proxy user add --admin) and act on
// the admin's own device only. A non-admin session gets ErrForbidden.

// AdminSessions lists the live sessions of the admin's device.
func (c *Client) AdminSessions(ctx context.Context) ([]AdminSession, error) {
	var out struct {
		Sessions []AdminSession `json:"sessions"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/api/admin/sessions", nil, &out); err != nil {
		return nil, err
	}
	return out.Sessions, nil
}

// RevokeSession ends one session of the admin's device; another device's
// session is ErrNotFound.
func (c *Client) RevokeSession(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/admin/sessions/"+url.PathEscape(id), nil, nil)
	return err
}

// RevokeSessions ends the sessions of username on the admin's device, or of
// the whole device when username is empty, and returns how many.
func (c *Client) RevokeSessions(ctx context.Context, username string) (int, error) {
	body, err := json.Marshal(map[string]string{})
	if username != "" {
		body, err = json.Marshal(map[string]string{"username": username})
	}
	if err != nil {
		return 0, err
	}
	var out struct {
		Revoked int `json:"revoked"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/api/admin/sessions/revoke", body, &out); err != nil {
		return 0, err
	}
	return out.Revoked, nil
}
