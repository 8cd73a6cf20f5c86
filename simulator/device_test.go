package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// deviceFake adds the device grant to fakeStack: codes, approvals with the
// password "pw", denials, and polls held until the code is decided, as the
// proxy holds them.
type deviceFake struct {
	*fakeStack
	mu      sync.Mutex
	next    int
	devices map[string]string // user code → device
	state   map[string]string // user code → "", "approved", "denied"
}

func newDeviceFake() *deviceFake {
	return &deviceFake{fakeStack: newFakeStack(), devices: map[string]string{}, state: map[string]string{}}
}

func (d *deviceFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/api/auth/device/") {
		d.fakeStack.ServeHTTP(w, r)
		return
	}
	var req map[string]string
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &req)
	switch r.URL.Path {
	case "/api/auth/device/code":
		d.mu.Lock()
		d.next++
		code := fmt.Sprintf("CODE-%04d", d.next)
		d.devices[code] = req["deviceId"]
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"device_code":%q,"user_code":%q,"verification_uri":"http://x/device","verification_uri_complete":"http://x/device?user_code=%s","expires_in":600,"interval":1}`,
			"dc-"+code, code, code)
	case "/api/auth/device/approve", "/api/auth/device/deny":
		d.mu.Lock()
		defer d.mu.Unlock()
		code := req["user_code"]
		if _, ok := d.devices[code]; !ok || d.state[code] != "" {
			errJSON(w, 409, "already_decided")
			return
		}
		if r.URL.Path == "/api/auth/device/deny" {
			d.state[code] = "denied"
		} else if req["password"] != "pw" {
			errJSON(w, 401, "invalid_credentials")
			return
		} else {
			d.state[code] = "approved"
		}
		w.WriteHeader(http.StatusNoContent)
	case "/api/auth/device/token":
		code := strings.TrimPrefix(req["device_code"], "dc-")
		for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
			d.mu.Lock()
			st, device := d.state[code], d.devices[code]
			d.mu.Unlock()
			switch {
			case st == "approved":
				d.fakeStack.mu.Lock()
				tok := fmt.Sprintf("tok-%d", len(d.tokens)+1)
				d.tokens[tok] = device
				d.fakeStack.mu.Unlock()
				d.mu.Lock()
				d.state[code] = "redeemed"
				d.mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"token":%q,"expiresAt":%q,"user":{"deviceId":%q}}`, tok,
					time.Now().Add(time.Hour).UTC().Format(time.RFC3339), device)
				return
			case st == "denied":
				errJSON(w, 400, "access_denied")
				return
			case st == "redeemed":
				errJSON(w, 400, "invalid_grant")
				return
			case time.Now().After(deadline):
				errJSON(w, 400, "authorization_pending")
				return
			}
		}
	}
}

// With -device-grant every headset signs in with a code the simulator
// approves, and writes as after a login.
func TestRunWithDeviceGrant(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newDeviceFake())
	defer srv.Close()
	cfg := quickConfig(srv.URL, numbered("SIM", "1111", "pw", 3))
	cfg.DeviceGrant = true
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Passed || sum.Failures != 0 || sum.Logins != 3 || sum.DeviceApprovals != 3 || sum.WritesAcknowledged == 0 {
		t.Fatalf("summary %+v", sum)
	}
}

// A code approved with a wrong password is a failure; the simulator denies
// it, and that headset stops rather than lock its account.
func TestRunWithDeviceGrantWrongPassword(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newDeviceFake())
	defer srv.Close()
	cfg := quickConfig(srv.URL, []Headset{{"SIM-1", "1111", "pw"}, {"SIM-2", "1111", "wrong"}})
	cfg.DeviceGrant = true
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed || sum.FailuresByKind["approve_http_401_invalid_credentials"] != 1 ||
		sum.FailuresByKind["http_400_access_denied"] != 1 || sum.DeviceApprovals != 1 || sum.WritesAcknowledged == 0 {
		t.Fatalf("summary %+v: want one refused approval, its headset stopped, the other writing", sum)
	}
}
