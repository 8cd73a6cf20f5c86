//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package sqlite

// Where flock exists (flock_unix.go), TryExclusive excludes other
// processes too; elsewhere it is exclusive within the process only, and
// this test is not built.

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// The lock holds against another process too, and goes with it when it
// dies: the test runs itself as a child that takes the lock.
func TestTryExclusiveAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("AUTHSIDECAR_SQLITE_LOCK_CHILD"); dir != "" {
		lockChild(dir)
		return
	}
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir)

	child := exec.Command(os.Args[0], "-test.run=^TestTryExclusiveAcrossProcesses$")
	child.Env = append(os.Environ(), "AUTHSIDECAR_SQLITE_LOCK_CHILD="+dir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child said %q, %v", line, err)
	}

	if _, ok, err := s.TryExclusive(ctx, "janitor"); err != nil || ok {
		t.Fatalf("while another process holds it = %v, %v; want not ok", ok, err)
	}
	// The child dies without releasing: the lock goes with it.
	_ = stdin.Close()
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	release, ok, err := s.TryExclusive(ctx, "janitor")
	if err != nil || !ok {
		t.Fatalf("after the holder died = %v, %v; want the lock", ok, err)
	}
	release()
}

// lockChild takes the lock of the store in dir, says so, and waits to be
// killed.
func lockChild(dir string) {
	s, err := Open(context.Background(), dir)
	if err != nil {
		os.Stdout.WriteString("open: " + err.Error() + "\n")
		os.Exit(1)
	}
	if _, ok, err := s.TryExclusive(context.Background(), "janitor"); err != nil || !ok {
		os.Stdout.WriteString("not locked\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}
