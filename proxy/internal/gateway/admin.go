package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/audit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
	"github.com/authsidecar/authsidecar/proxy/internal/session"
)

type adminSessionJSON struct {
	ID        string    `json:"id"`
	User      *userJSON `json:"user"`
	DeviceID  string    `json:"deviceId"`
	IsAdmin   bool      `json:"isAdmin"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// An admin sees and acts on its own device only: every call below is scoped
// to the caller's device, and another device's session is simply not found.

func (g *Gateway) adminList(w http.ResponseWriter, r *http.Request, c session.Caller) error {
	list, err := g.cfg.Sessions.List(r.Context(), c.Session.DeviceID)
	if err != nil {
		return err
	}
	out := make([]adminSessionJSON, 0, len(list))
	for _, s := range list {
		out = append(out, adminSessionJSON{ID: s.ID, User: userOf(s), DeviceID: s.DeviceID, IsAdmin: s.IsAdmin,
			CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": out})
	return nil
}

func (g *Gateway) adminDelete(w http.ResponseWriter, r *http.Request, c session.Caller) error {
	err := g.cfg.Sessions.Revoke(g.acting(r, c.Session.Username), r.PathValue("id"), c.Session.DeviceID, c.Session.Username, "admin api")
	if err != nil {
		return err
	}
	g.SessionChanged(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type revokeRequest struct {
	Username string `json:"username"`
}

func (g *Gateway) adminRevoke(w http.ResponseWriter, r *http.Request, c session.Caller) error {
	var req revokeRequest
	// An empty body means {}: the whole device.
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, MaxLoginBody, &req); err != nil {
			return err
		}
	}
	if req.Username != "" {
		if err := identity.ValidateName("username", req.Username); err != nil {
			return err
		}
	}
	n, err := g.cfg.Sessions.RevokeDevice(g.acting(r, c.Session.Username), c.Session.DeviceID, req.Username, c.Session.Username, "admin api")
	if err != nil {
		return err
	}
	g.sessionsChanged()
	writeJSON(w, http.StatusOK, map[string]int64{"revoked": n})
	return nil
}

type eventJSON struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	DeviceID   string    `json:"deviceId"`
	Username   string    `json:"username"`
	SessionID  string    `json:"sessionId"`
	By         string    `json:"by"`
	Reason     string    `json:"reason"`
	ClientAddr string    `json:"clientAddr"`
}

// EventJSON is an audit event as the admin API and the CLI's --json
// print it.
func EventJSON(ev auth.Event) any {
	return eventJSON{Time: ev.Time.UTC(), Type: string(ev.Type), DeviceID: ev.DeviceID, Username: ev.Username,
		SessionID: ev.SessionID, By: ev.By, Reason: ev.Reason, ClientAddr: ev.ClientAddr}
}

// adminEvents lists the audit events of the admin's device, oldest first:
// since (a duration back from now, or an RFC 3339 time), type, limit
// (default 100, at most audit.MaxList).
func (g *Gateway) adminEvents(w http.ResponseWriter, r *http.Request, c session.Caller) error {
	if g.cfg.Audit == nil {
		return errRouteNotFound
	}
	q := r.URL.Query()
	f := auth.EventFilter{DeviceID: c.Session.DeviceID, Type: auth.EventType(q.Get("type")), Limit: 100}
	if v := q.Get("since"); v != "" {
		since, err := ParseSince(v, g.cfg.Sessions.Now())
		if err != nil {
			return err
		}
		f.Since = since
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxList {
			return auth.InvalidInputf("limit must be a whole number from 1 to %d", audit.MaxList)
		}
		f.Limit = n
	}
	events, err := g.cfg.Audit.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]any, len(events))
	for i, ev := range events {
		out[i] = EventJSON(ev)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
	return nil
}

// ParseSince reads a "since": a duration back from now (24h) or an RFC
// 3339 time.
func ParseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, auth.InvalidInputf("since must be a duration such as 24h or an RFC 3339 time such as 2026-01-02T15:04:05Z")
}
