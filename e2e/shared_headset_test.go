package e2e

import (
	"testing"
	"time"
)

// TestIdleTimeoutAcrossReplicas runs with SESSION_IDLE_TIMEOUT=8s, wide
// against a busy machine (a second between uses leaves seven to spare): a
// session used on replica A every second stays live on replica B, which
// never saw those uses; left idle for more than 1.5 × the timeout, it is
// refused on both.
func TestIdleTimeoutAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"SESSION_IDLE_TIMEOUT": "8s"})
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	lb := login(t, s.Proxy, device, "1111", "1111")
	if !works(t, b, lb.Token) { // B caches the session as it was then
		t.Fatal("refused on B at once")
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if !works(t, s.Proxy, lb.Token) {
			t.Fatal("a session in use was refused on A")
		}
	}
	if !works(t, b, lb.Token) {
		t.Fatal("replica B refused a session used on A within the timeout")
	}
	time.Sleep(12500 * time.Millisecond) // more than 1.5 × the timeout
	if works(t, b, lb.Token) {
		t.Fatal("replica B accepted a session idle for 1.5 × the timeout")
	}
	if works(t, s.Proxy, lb.Token) {
		t.Fatal("replica A accepted a session idle for 1.5 × the timeout")
	}
}

// TestOneUserPerDeviceAcrossReplicas: the next patient signing in on
// replica B ends the previous one's session on every replica.
func TestOneUserPerDeviceAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := newStack(t, map[string]string{"ONE_USER_PER_DEVICE": "true"})
	b := s.StartProxy()
	s.AddUser(device, "1111", "1111", false)
	s.AddUser(device, "2222", "2222", false)
	first := login(t, s.Proxy, device, "1111", "1111")
	if !works(t, s.Proxy, first.Token) || !works(t, b, first.Token) {
		t.Fatal("the first patient's session refused before the second signed in")
	}
	second := login(t, b, device, "2222", "2222")
	for deadline := time.Now().Add(10 * time.Second); works(t, s.Proxy, first.Token) || works(t, b, first.Token); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the previous patient's session still works after the next signed in")
		}
	}
	if !works(t, s.Proxy, second.Token) {
		t.Fatal("the new patient's session refused")
	}
}
