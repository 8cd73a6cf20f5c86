package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetricsAddrEmptyTurnsTheListenerOff: METRICS_ADDR set and empty
// means no metrics listener (an unset one gets the default port).
func TestMetricsAddrEmptyTurnsTheListenerOff(t *testing.T) {
	t.Parallel()
	s := newEmbeddedStack(t, map[string]string{"METRICS_ADDR": ""})
	if r := do(t, "GET", s.Proxy.URL()+"/healthz", "", nil); r.Status != http.StatusOK {
		t.Fatalf("healthz: %d", r.Status)
	}
	if logs := s.Proxy.Logs(); strings.Contains(logs, `"metrics listening"`) || s.Proxy.MetricsAddr != "" {
		t.Fatalf("a metrics listener with METRICS_ADDR empty:\n%s", logs)
	}
}
