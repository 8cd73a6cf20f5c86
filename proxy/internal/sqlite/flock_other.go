//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package sqlite

import "os"

// lockFile only makes sure that path can be created: without flock(2) the
// lock is exclusive within this process only (see tryLock), which is what
// the embedded store, meant for one process, needs.
func lockFile(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	return func() { _ = f.Close() }, true, nil
}
