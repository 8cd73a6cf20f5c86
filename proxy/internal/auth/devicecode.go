package auth

import "time"

// DeviceCodeStatus is where a device authorization request stands.
type DeviceCodeStatus string

// The states of a device authorization request. A request starts pending;
// a person approves or denies it once; an approved request is redeemed by
// the one poll that receives its token.
const (
	DeviceCodePending  DeviceCodeStatus = "pending"
	DeviceCodeApproved DeviceCodeStatus = "approved"
	DeviceCodeDenied   DeviceCodeStatus = "denied"
	DeviceCodeRedeemed DeviceCodeStatus = "redeemed"
)

// DeviceCode is one device authorization request (RFC 8628) as the store
// keeps it. The device code itself is never kept: only its SHA-256, by
// which polls find the request, and a public key derived from it, to which
// the approval seals the session's token. Only the device, which holds the
// device code, can open it.
type DeviceCode struct {
	ID       string // random, public: it names the request in notifications
	CodeHash string // SHA-256 of the device code, hex
	UserCode string // 8 letters, without the dash
	DeviceID string // the device that asked; unknown devices get codes too

	// PublicKey is the HPKE public key derived from the device code.
	PublicKey []byte
	// ClientAddr and UserAgent are the device's, from its request: the
	// session an approval starts is the device's, not the approver's.
	ClientAddr string
	UserAgent  string

	CreatedAt    time.Time
	ExpiresAt    time.Time
	Interval     time.Duration // whole seconds; grows by each slow_down
	LastPolledAt time.Time     // zero until the first poll

	Status    DeviceCodeStatus
	DecidedAt time.Time // zero while pending
	SessionID string    // the session an approval started
	// SealedToken is the approval's token, sealed to PublicKey; emptied
	// when it is redeemed.
	SealedToken []byte
}

// DeviceDecision is an approval or a denial of a pending request.
type DeviceDecision struct {
	Status      DeviceCodeStatus // DeviceCodeApproved or DeviceCodeDenied
	At          time.Time
	SessionID   string // approval only
	SealedToken []byte // approval only
}
