package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestRefreshTokenReuseEndsTheSessionOnEveryReplica: a thief refreshes a
// stolen token first; when the owner then refreshes the same token, after
// its grace, the session ends: the thief's new token is refused on the
// other replica too.
func TestRefreshTokenReuseEndsTheSessionOnEveryReplica(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"REFRESH_GRACE": "1s"})
	b := s.StartProxy() // a second replica on the same database
	s.AddUser(device, "1111", "1111", false)
	stolen := login(t, s.Proxy, device, "1111", "1111")
	r := refresh(t, s.Proxy, stolen.Token)
	if r.Status != http.StatusOK {
		t.Fatalf("the thief's refresh: %d %s", r.Status, r.Body)
	}
	var thief loginBody
	r.JSON(t, &thief)
	if !works(t, b, thief.Token) {
		t.Fatal("the thief's token refused on replica B before any reuse")
	}
	time.Sleep(1500 * time.Millisecond) // past the stolen token's grace
	wantError(t, refresh(t, s.Proxy, stolen.Token), http.StatusUnauthorized, "invalid_token")
	for deadline := time.Now().Add(10 * time.Second); works(t, b, thief.Token); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("replica B still accepts the thief's token after the reuse")
		}
	}
	if works(t, s.Proxy, thief.Token) {
		t.Fatal("replica A still accepts the thief's token after the reuse")
	}
}
