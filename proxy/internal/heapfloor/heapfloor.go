// Package heapfloor keeps the garbage collector from running far more often
// than a small server needs.
//
// Go aims the next collection at twice the live heap (GOGC=100), but never
// below 4 MiB. A proxy's own live heap is about 2 MiB, and every request
// leaves several KiB of garbage: at the default, a busy proxy collects every
// couple of hundred requests, and each collection marks the whole live heap
// again and stops the world twice. A Floor raises the heap goal to at least
// a set size (tens of MiB, well inside any sidecar's memory request) by
// raising GOGC after each collection while the live heap is small, and
// lowers it back to 100 as the live heap (the session cache) grows past
// half the floor: beyond that, the default policy already collects rarely.
//
// It is what Go's missing "minimum heap" setting would do. GOMEMLIMIT still
// applies on top, and an operator who sets GOGC has decided for himself:
// Start then does nothing.
package heapfloor

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// DefaultBytes is the floor the proxy uses unless told otherwise.
const DefaultBytes = 32 << 20

// runtimeMinHeap is the Go runtime's own minimum heap goal at GOGC=100.
// The runtime scales it with GOGC (4 MiB × GOGC/100), so a GOGC above
// floor/4 MiB × 100 would by itself put the goal past the floor.
const runtimeMinHeap = 4 << 20

// Floor is a running heap floor; Stop ends it.
type Floor struct {
	bytes   uint64
	stopped atomic.Bool
	mu      sync.Mutex // serializes adjust and Stop
	samples []metrics.Sample
	percent int // last GOGC set
}

// Start keeps the heap goal at or above bytes from now on, and returns the
// running floor, or nil when it does nothing: bytes is 0, or GOGC is set in
// the environment. Where a memory limit (GOMEMLIMIT) is set, the floor is
// at most half of it, so that the floor never makes the runtime collect
// against its limit.
func Start(bytes uint64) *Floor {
	if bytes == 0 {
		return nil
	}
	if os.Getenv("GOGC") != "" {
		return nil
	}
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit != math.MaxInt64 && bytes > uint64(limit)/2 {
		bytes = uint64(limit) / 2
	}
	f := &Floor{
		bytes: bytes,
		samples: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/stack:bytes"},
			{Name: "/gc/scan/globals:bytes"},
		},
		percent: 100,
	}
	f.adjust()
	f.arm()
	return f
}

// Stop ends the floor and restores the default GOGC of 100. On the nil
// Floor that Start returns when it does nothing, it does nothing.
func (f *Floor) Stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(100)
}

// arm has adjust run after the next collection: the cleanup of an object
// that nothing references runs once a collection has found it unreachable,
// and re-arms itself.
func (f *Floor) arm() {
	p := new([16]byte) // 16 bytes: too large for the tiny allocator, whose blocks are shared
	runtime.AddCleanup(p, func(f *Floor) {
		if f.stopped.Load() {
			return
		}
		f.adjust()
		f.arm()
	}, f)
}

// adjust sets GOGC so that the heap goal is the floor while the live heap
// is small (see Percent). It runs after every collection, so the goal
// follows the live heap from one collection to the next. Between the end
// of a collection and this cleanup (milliseconds), the goal is the one the
// previous GOGC gives the new live heap: after a sudden jump in live heap
// it is briefly higher than the floor, which only delays the next
// collection by as long.
func (f *Floor) adjust() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Load() {
		return
	}
	metrics.Read(f.samples)
	var live, scan uint64
	for i, s := range f.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			continue
		}
		if i == 0 {
			live = s.Value.Uint64()
		}
		scan += s.Value.Uint64()
	}
	p := Percent(f.bytes, live, scan)
	if p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
}

// Percent is the GOGC that puts the heap goal at floor, for a live heap of
// live bytes and scannable memory (live heap, stacks, globals) of scan
// bytes, and at least 100 (Go's default). The runtime's goal is the larger
// of live + scan × GOGC/100 and its minimum heap, 4 MiB × GOGC/100: the
// GOGC returned keeps both at or below the floor, and one of them at it.
func Percent(floor, live, scan uint64) int {
	if live >= floor {
		return 100
	}
	p := floor * 100 / runtimeMinHeap // the minimum heap alone reaches the floor
	if scan > 0 {
		p = min(p, (floor-live)*100/scan)
	}
	return int(max(p, 100))
}
