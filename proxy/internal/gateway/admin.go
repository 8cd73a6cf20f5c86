package gateway

import (
	"net/http"
	"time"

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
	err := g.cfg.Sessions.Revoke(r.Context(), r.PathValue("id"), c.Session.DeviceID, "admin "+c.Session.Username, "admin api")
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
	n, err := g.cfg.Sessions.RevokeDevice(r.Context(), c.Session.DeviceID, req.Username, "admin "+c.Session.Username, "admin api")
	if err != nil {
		return err
	}
	g.sessionsChanged()
	writeJSON(w, http.StatusOK, map[string]int64{"revoked": n})
	return nil
}
