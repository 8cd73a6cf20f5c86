package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStack is the proxy and storage backend in one handler, with knobs to
// misbehave. Its records outlive the servers that serve it, as PostgreSQL
// outlives a proxy restart.
type fakeStack struct {
	mu      sync.Mutex
	records map[string]json.RawMessage // device + "/" + key
	tokens  map[string]string          // token → device

	fail503   atomic.Int64 // answer 503 to every n-th storage request (0: never)
	storeReqs atomic.Int64
	dropEvery int // acknowledge but do not keep every n-th write (0: never)
	// loseAnswerEvery keeps every n-th write and then closes the
	// connection without an answer (0: never), as a proxy killed at the
	// wrong moment would.
	loseAnswerEvery int
	writes          int
	wrote           chan struct{}   // when not nil, sent to after each write (never blocking)
	lostAnswers     int             // writes kept but not answered
	unanswered      map[string]bool // keys whose last write was not answered
	retried200      int             // writes answered 200 after a lost answer for their key
	answered200     int             // writes answered 200: the key existed
}

func newFakeStack() *fakeStack {
	return &fakeStack{records: map[string]json.RawMessage{}, tokens: map[string]string{}, unanswered: map[string]bool{}}
}

func errJSON(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q,"message":"fake"}`, code)
}

func (f *fakeStack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/api/auth/login" {
		var req struct{ DeviceID, Password string }
		_ = json.Unmarshal(body, &req)
		if req.Password != "pw" {
			errJSON(w, 401, "invalid_credentials")
			return
		}
		f.mu.Lock()
		tok := fmt.Sprintf("tok-%d", len(f.tokens)+1)
		f.tokens[tok] = req.DeviceID
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q,"expiresAt":%q,"user":{"deviceId":%q}}`, tok,
			time.Now().Add(time.Hour).UTC().Format(time.RFC3339), req.DeviceID)
		return
	}
	f.mu.Lock()
	device, ok := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	f.mu.Unlock()
	if !ok {
		errJSON(w, 401, "invalid_token")
		return
	}
	if n := f.fail503.Load(); n > 0 && f.storeReqs.Add(1)%n == 0 {
		errJSON(w, 503, "unavailable")
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/storage":
		var rec struct {
			Key  string          `json:"key"`
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(body, &rec)
		f.mu.Lock()
		_, existed := f.records[device+"/"+rec.Key]
		f.writes++
		if f.dropEvery == 0 || f.writes%f.dropEvery != 0 {
			f.records[device+"/"+rec.Key] = rec.Data
		}
		if f.wrote != nil {
			select {
			case f.wrote <- struct{}{}:
			default:
			}
		}
		lose := f.loseAnswerEvery > 0 && f.writes%f.loseAnswerEvery == 0
		id := device + "/" + rec.Key
		switch {
		case lose:
			f.lostAnswers++
			f.unanswered[id] = true
		case existed:
			f.answered200++
			if f.unanswered[id] {
				f.retried200++
			}
		}
		if !lose {
			delete(f.unanswered, id)
		}
		f.mu.Unlock()
		if lose {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		status := 201
		if existed {
			status = 200
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"key":%q}`, rec.Key)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/storage/"):
		key := strings.TrimPrefix(r.URL.Path, "/api/storage/")
		f.mu.Lock()
		data, found := f.records[device+"/"+key]
		f.mu.Unlock()
		if !found {
			errJSON(w, 404, "not_found")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"key":%q,"data":%s}`, key, data)
	default:
		errJSON(w, 404, "not_found")
	}
}

func quickConfig(url string, hs []Headset) Config {
	return Config{ProxyURL: url, Headsets: hs, Duration: 700 * time.Millisecond, Interval: 5 * time.Millisecond,
		RequestTimeout: 2 * time.Second, VerifyTimeout: 5 * time.Second}
}

func TestRunPassesAgainstAHealthyProxy(t *testing.T) {
	t.Parallel()
	f := newFakeStack()
	srv := httptest.NewServer(f)
	defer srv.Close()
	sum, err := Run(context.Background(), quickConfig(srv.URL, numbered("SIM", "1111", "pw", 3)))
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Passed || sum.Failures != 0 || sum.WritesLost != 0 || sum.WritesAcknowledged == 0 ||
		sum.WritesReadBackOK != sum.WritesAcknowledged || sum.ReadsOK != sum.WritesAcknowledged || sum.Logins != 3 {
		t.Fatalf("summary %+v", sum)
	}
	// Every write, read and login went over HTTP and was counted.
	if want := sum.Logins + 2*sum.WritesAcknowledged + sum.WritesReadBackOK; sum.Requests != want || sum.Responses2xx != want {
		t.Fatalf("requests %d, 2xx %d; want %d", sum.Requests, sum.Responses2xx, want)
	}
}

func TestRunRetriesTransient503s(t *testing.T) {
	t.Parallel()
	f := newFakeStack()
	f.fail503.Store(4)
	srv := httptest.NewServer(f)
	defer srv.Close()
	sum, err := Run(context.Background(), quickConfig(srv.URL, numbered("SIM", "1111", "pw", 2)))
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Passed || sum.Retries == 0 || sum.RetriesByKind["http_503"] != sum.Retries || sum.WritesLost != 0 {
		t.Fatalf("summary %+v", sum)
	}
}

// TestRunSurvivesARestartOnTheSameAddress stops the server once writes
// have been acknowledged, leaves the port closed (connection refused), and
// serves again on the same address. Whenever that happens, during the run
// or during the final read-back, the simulator must retry through it and
// lose nothing.
func TestRunSurvivesARestartOnTheSameAddress(t *testing.T) {
	t.Parallel()
	f := newFakeStack()
	f.wrote = make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	first := &http.Server{Handler: f}
	go first.Serve(ln)

	restarted := make(chan *http.Server, 1)
	go func() {
		for range 6 { // writes answered before the stop
			<-f.wrote
		}
		first.Shutdown(context.Background())
		time.Sleep(300 * time.Millisecond) // a gap for connections to be refused, not a deadline
		ln2, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			restarted <- nil
			return
		}
		second := &http.Server{Handler: f}
		go second.Serve(ln2)
		restarted <- second
	}()

	cfg := quickConfig("http://"+addr, numbered("SIM", "1111", "pw", 3))
	cfg.Duration = 1200 * time.Millisecond
	sum, err := Run(context.Background(), cfg)
	if second := <-restarted; second != nil {
		defer second.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Passed || sum.Retries == 0 || sum.RetriesByKind["connection_refused"] == 0 || sum.WritesLost != 0 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestRunCountsLostWrites(t *testing.T) {
	t.Parallel()
	f := newFakeStack()
	f.dropEvery = 3
	srv := httptest.NewServer(f)
	defer srv.Close()
	sum, err := Run(context.Background(), quickConfig(srv.URL, numbered("SIM", "1111", "pw", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed || sum.WritesLost == 0 || len(sum.LostKeys) == 0 || sum.FailuresByKind["readback_missing"] == 0 {
		t.Fatalf("summary %+v: want lost writes and a failed run", sum)
	}
	if sum.WritesLost+sum.WritesReadBackOK != sum.WritesAcknowledged {
		t.Fatalf("lost %d + ok %d != acknowledged %d", sum.WritesLost, sum.WritesReadBackOK, sum.WritesAcknowledged)
	}
}

// replaced counts the writes whose first answer was lost and whose retry
// found the first attempt landed (200); a second run under the same device
// prefix, whose writes all meet keys of the first, replaces nothing of its
// own.
func TestReplacedCountsOnlyRetriesAfterALostAnswer(t *testing.T) {
	t.Parallel()
	f := newFakeStack()
	f.loseAnswerEvery = 4
	srv := httptest.NewServer(f)
	defer srv.Close()
	hs := numbered("SIM", "1111", "pw", 2)
	first, err := Run(context.Background(), quickConfig(srv.URL, hs))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	lost, retried := f.lostAnswers, int64(f.retried200)
	f.loseAnswerEvery, f.answered200 = 0, 0
	f.mu.Unlock()
	if !first.Passed || lost == 0 || first.RetriesByKind["eof"] == 0 {
		t.Fatalf("first run: %+v (%d answers lost): want lost answers retried and a pass", first, lost)
	}
	if first.WritesReplaced == 0 || first.WritesReplaced != retried {
		t.Fatalf("first run: %d replaced, want the %d writes answered 200 on a retry after a lost answer",
			first.WritesReplaced, retried)
	}

	second, err := Run(context.Background(), quickConfig(srv.URL, hs))
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	met := f.answered200
	f.mu.Unlock()
	if !second.Passed || met == 0 {
		t.Fatalf("second run: %+v, %d writes met a key of the first run: want some", second, met)
	}
	if second.WritesReplaced != 0 {
		t.Fatalf("second run: %d replaced with no answer lost, want 0", second.WritesReplaced)
	}
}

func TestRunStopsAHeadsetWithAWrongPassword(t *testing.T) {
	t.Parallel()
	f := newFakeStack()
	srv := httptest.NewServer(f)
	defer srv.Close()
	hs := []Headset{{"SIM-1", "1111", "pw"}, {"SIM-2", "1111", "wrong"}}
	sum, err := Run(context.Background(), quickConfig(srv.URL, hs))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Passed || sum.FailuresByKind["http_401_invalid_credentials"] != 1 || sum.WritesAcknowledged == 0 {
		t.Fatalf("summary %+v: want exactly one failed login, then that headset stopped", sum)
	}
}

func TestRunExitCodesAndSummary(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(newFakeStack())
	defer srv.Close()
	var out, errOut bytes.Buffer
	args := []string{"-proxy", srv.URL, "-headsets", "2", "-duration", "300ms", "-interval", "10ms", "-password", "pw", "-json"}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	var sum Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || !sum.Passed || sum.Headsets != 2 {
		t.Fatalf("json summary %s: %v", out.String(), err)
	}

	out.Reset()
	args = []string{"-proxy", srv.URL, "-headsets", "1", "-duration", "200ms", "-password", "nope"}
	if code := run(context.Background(), args, &out, &errOut); code != 1 {
		t.Fatalf("exit %d with a wrong password, want 1", code)
	}
	if !strings.Contains(out.String(), "result: FAIL") || !strings.Contains(out.String(), "http_401_invalid_credentials=1") {
		t.Fatalf("text summary:\n%s", out.String())
	}

	for _, bad := range [][]string{
		{"-proxy", "127.0.0.1:8080"},
		{"-headsets", "0"},
		{"-duration", "24x"},
		{"-users-file", filepath.Join(t.TempDir(), "missing")},
		{"extra"},
	} {
		if code := run(context.Background(), bad, io.Discard, io.Discard); code != 2 {
			t.Errorf("%q: exit %d, want 2", bad, code)
		}
	}
}

func TestParseUsers(t *testing.T) {
	t.Parallel()
	hs, err := parseUsers(strings.NewReader("# device user password\nVR-1 1111 1111\n\n  VR-2,2222,2222\nVR-3\t3333\t3333\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Headset{{"VR-1", "1111", "1111"}, {"VR-2", "2222", "2222"}, {"VR-3", "3333", "3333"}}
	if fmt.Sprint(hs) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", hs, want)
	}
	for _, bad := range []string{"", "# only a comment\n", "VR-1 1111\n", "VR-1 1111 1111 extra\n"} {
		if _, err := parseUsers(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestCreateUsers runs a stand-in for the proxy binary that records its
// arguments and stdin, and refuses the second account as existing.
func TestCreateUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "calls")
	script := filepath.Join(dir, "proxy")
	body := `#!/bin/sh
read pw
echo "$* pw=$pw" >> ` + logFile + `
case "$*" in
  "user add --device SIM-2 --username 1111") echo "user 1111 already exists on device SIM-2" >&2; exit 1;;
esac
exit 0
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := createUsers(context.Background(), script, numbered("SIM", "1111", "s3cret", 2)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(logFile)
	want := "user add --device SIM-1 --username 1111 pw=s3cret\n" +
		"user add --device SIM-2 --username 1111 pw=s3cret\n" +
		"user passwd --device SIM-2 --username 1111 pw=s3cret\n"
	if string(got) != want {
		t.Fatalf("calls:\n%s\nwant:\n%s", got, want)
	}

	failing := filepath.Join(dir, "failing")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'DATABASE_URL: required' >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := createUsers(context.Background(), failing, numbered("SIM", "1111", "pw", 1))
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL: required") {
		t.Fatalf("err %v, want the command's message", err)
	}
}
