package auth

import (
	"context"
	"time"
)

// EventType names what an audit event records.
type EventType string

// The events of the audit trail. Each is written by the store in the same
// transaction as the change it records, so that an event exists exactly
// when its change committed.
const (
	EventUserAdded       EventType = "user_added"
	EventUserRemoved     EventType = "user_removed"
	EventPasswordChanged EventType = "password_changed"
	EventUserImported    EventType = "user_imported"
	EventLogin           EventType = "login"
	EventLoginFailed     EventType = "login_failed"
	EventLockout         EventType = "lockout"
	EventUnlock          EventType = "unlock"
	EventRefresh         EventType = "refresh"
	EventRefreshReused   EventType = "refresh_reused"
	EventLogout          EventType = "logout"
	EventRevoke          EventType = "revoke"
	EventDeviceApproved  EventType = "device_approved"
	EventDeviceDenied    EventType = "device_denied"
)

// EventTypes are every type, in the order above.
var EventTypes = []EventType{
	EventUserAdded, EventUserRemoved, EventPasswordChanged, EventUserImported,
	EventLogin, EventLoginFailed, EventLockout, EventUnlock, EventRefresh, EventRefreshReused,
	EventLogout, EventRevoke, EventDeviceApproved, EventDeviceDenied,
}

// Event is one row of the audit trail: who did what to which session or
// account, and from where. Never a token, a PIN or a hash.
type Event struct {
	ID         int64 // assigned by the store
	Time       time.Time
	Type       EventType
	DeviceID   string
	Username   string
	SessionID  string
	By         string // the user, "admin NAME", "cli" or "system"
	Reason     string
	ClientAddr string
}

// Actor is who acts in a context and from where: the gateway sets it per
// request, the commands as "cli".
type Actor struct {
	By         string
	ClientAddr string
}

type actorKey struct{}
type eventKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor of ctx, if any.
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// Recording returns ctx for one store call that makes a change, carrying
// the event that records it: the store writes the event in that change's
// transaction, or not at all if the change fails. By and ClientAddr, when
// not set, come from the actor of ctx (by default "system"). Attach it to
// the one call that makes the change, never to a context that reaches
// other store calls.
func Recording(ctx context.Context, ev Event) context.Context {
	if a, ok := ActorFrom(ctx); ok {
		if ev.By == "" {
			ev.By = a.By
		}
		if ev.ClientAddr == "" {
			ev.ClientAddr = a.ClientAddr
		}
	}
	if ev.By == "" {
		ev.By = "system"
	}
	return context.WithValue(ctx, eventKey{}, ev)
}

// RecordedEvent returns the event a store call is to write, if any.
func RecordedEvent(ctx context.Context) (Event, bool) {
	ev, ok := ctx.Value(eventKey{}).(Event)
	return ev, ok
}

// EventFilter selects events to list.
type EventFilter struct {
	DeviceID string
	Username string
	Type     EventType
	Since    time.Time
	Limit    int // 0: no limit
}
