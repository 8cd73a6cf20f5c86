package e2e

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// simulatorSummary is the part of `simulator -json` the test checks.
type simulatorSummary struct {
	Requests           int64            `json:"requests"`
	Responses2xx       int64            `json:"responses2xx"`
	Logins             int64            `json:"logins"`
	Retries            int64            `json:"retries"`
	RetriesByKind      map[string]int64 `json:"retriesByKind"`
	Failures           int64            `json:"failures"`
	FailuresByKind     map[string]int64 `json:"failuresByKind"`
	WritesAcknowledged int64            `json:"writesAcknowledged"`
	WritesReadBackOK   int64            `json:"writesReadBackOK"`
	WritesLost         int64            `json:"writesLost"`
	Passed             bool             `json:"passed"`
}

// TestSimulatorSurvivesProxyRestart runs four simulated headsets for four
// seconds and, in the middle, stops the proxy and starts a new one on the
// same address, leaving the port closed for a moment. Every write the
// simulator saw acknowledged must read back afterwards, and nothing may fail
// beyond the retried connection errors.
func TestSimulatorSurvivesProxyRestart(t *testing.T) {
	t.Parallel()
	simulatorSurvivesRestart(t, newStack(t, nil))
}

// The same on the embedded store: sessions live in DATA_DIR.
func TestSimulatorSurvivesProxyRestartEmbedded(t *testing.T) {
	t.Parallel()
	simulatorSurvivesRestart(t, newEmbeddedStack(t, nil))
}

func simulatorSurvivesRestart(t *testing.T, s *stack) {
	// The simulator creates its accounts with `proxy user add`, which reads
	// DATABASE_URL (or DATA_DIR) from the environment it passes on.
	cmd := exec.Command(simulatorBin, "-proxy", s.Proxy.URL(), "-headsets", "4", "-duration", "4s",
		"-interval", "20ms", "-device-prefix", "SIM", "-username", "1111", "-password", "1111",
		"-create-users-with", proxyBin, "-json")
	if s.DB != "" {
		cmd.Env = env(map[string]string{"DATABASE_URL": s.DB})
	} else {
		cmd.Env = env(map[string]string{"DATA_DIR": s.DataDir})
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed once waitErr is set
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	// Restart only once every headset has logged in and is writing.
	for deadline := time.Now().Add(time.Minute); strings.Count(s.Proxy.Logs(), `"session created"`) < 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the simulator's headsets did not log in; simulator stderr:\n%s", stderr.String())
		}
	}
	time.Sleep(700 * time.Millisecond)

	addr := s.Proxy.Addr
	s.Proxy.Stop()
	if code := s.Proxy.ExitCode(); code != 0 {
		t.Fatalf("proxy exited %d on SIGTERM", code)
	}
	time.Sleep(300 * time.Millisecond) // connection refused meanwhile
	vars := map[string]string{}
	for k, v := range s.proxyEnv {
		vars[k] = v
	}
	vars["LISTEN_ADDR"] = addr
	restarted := start(t, proxyBin, vars)
	if restarted.Addr != addr {
		t.Fatalf("restarted proxy listens on %s, want %s", restarted.Addr, addr)
	}

	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the simulator did not finish")
	}
	t.Logf("simulator summary:\n%s", stdout.String())
	var sum simulatorSummary
	if jerr := json.Unmarshal(stdout.Bytes(), &sum); jerr != nil {
		t.Fatalf("summary is not JSON (%v):\n%s\nstderr:\n%s", jerr, stdout.String(), stderr.String())
	}
	if waitErr != nil {
		t.Errorf("simulator exited with %v (want 0); stderr:\n%s", waitErr, stderr.String())
	}
	if sum.WritesAcknowledged <= 0 || sum.WritesLost != 0 || sum.Failures != 0 || sum.Retries < 0 || !sum.Passed {
		t.Fatalf("summary: %+v", sum)
	}
	if sum.WritesReadBackOK != sum.WritesAcknowledged {
		t.Fatalf("%d of %d acknowledged writes read back", sum.WritesReadBackOK, sum.WritesAcknowledged)
	}
	// The closed port was seen, and cured by retrying.
	if sum.Retries == 0 {
		t.Fatalf("no retries: the restart went unnoticed, so it proved nothing: %+v", sum)
	}
}
