package heapfloor

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// The tests change the process's garbage collector settings, so they run
// one after another (the package has no others).

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		floor, live, scan uint64
		want              int
	}{
		{32 * mib, 2 * mib, 2 * mib, 800},    // the minimum heap at 800 is 32 MiB; 2 + 2×8 = 18 is below
		{32 * mib, 2 * mib, 4 * mib, 750},    // 2 + 4×7.5 = 32 MiB, the minimum heap 30 MiB
		{32 * mib, 16 * mib, 17 * mib, 100},  // 16 + 17 × 0.94 would be below the default: keep 100
		{32 * mib, 40 * mib, 41 * mib, 100},  // past the floor: the default
		{32 * mib, 0, 64 << 10, 800},         // nothing live yet (at start): the minimum heap alone
		{32 * mib, 1 * mib, 0, 800},          // nothing scannable read
		{32 * mib, 4 * mib, 5 * mib, 560},    // (32-4)/5
		{64 * mib, 32 * mib, 32 * mib, 100},  // exactly double: the default
		{64 * mib, 31 * mib, 32 * mib, 103},  // just above the default
		{1 * mib, 512 << 10, 512 << 10, 100}, // a floor below Go's own minimum changes nothing
		{8 * mib, 1 * mib, 1 * mib, 200},     // minimum heap 4 MiB × 2 = 8 MiB
		{8 * mib, 7 * mib, 8 * mib, 100},     // live heap near the floor
		{8 * mib, 8 * mib, 9 * mib, 100},     // at the floor
		{8 * mib, 9 * mib, 10 * mib, 100},    // over it
		{4096 * mib, 2 * mib, 2 * mib, 102400},
	} {
		if got := Percent(c.floor, c.live, c.scan); got != c.want {
			t.Errorf("Percent(floor %d, live %d, scan %d) = %d, want %d", c.floor, c.live, c.scan, got, c.want)
		}
		// What the runtime makes of it: never past the floor unless the
		// default would be, and at the floor when there is room.
		goal := max(runtimeMinHeap*uint64(c.want)/100, c.live+c.scan*uint64(c.want)/100)
		if c.want > 100 && (goal > c.floor || goal < c.floor*99/100) {
			t.Errorf("floor %d MiB, live %d, scan %d: GOGC %d makes a goal of %.1f MiB",
				c.floor>>20, c.live, c.scan, c.want, float64(goal)/mib)
		}
	}
}

func read(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// collect runs collections until the floor's cleanups have had their turn.
func collect() {
	for range 3 {
		runtime.GC()
		runtime.Gosched()
	}
}

func TestFloorFollowsTheLiveHeap(t *testing.T) {
	unsetGOGC(t)
	old := debug.SetMemoryLimit(math.MaxInt64) // a GOMEMLIMIT in the environment would lower the floor
	defer debug.SetMemoryLimit(old)
	const floor = 24 << 20
	f := Start(floor)
	if f == nil {
		t.Fatal("Start returned nil with GOGC unset")
	}
	defer f.Stop()

	collect()
	if p := read("/gc/gogc:percent"); p <= 100 {
		t.Fatalf("GOGC %d with a small live heap, want above 100", p)
	}
	if goal := read("/gc/heap/goal:bytes"); goal < floor*9/10 || goal > floor*11/10 {
		t.Errorf("heap goal %.1f MiB, want the floor, %d MiB", float64(goal)/(1<<20), floor>>20)
	}

	// A live heap past the floor: the default policy again.
	big := make([]*[1 << 10]byte, 32<<10) // 32 MiB live, reached through pointers
	for i := range big {
		big[i] = new([1 << 10]byte)
	}
	collect()
	if p := read("/gc/gogc:percent"); p != 100 {
		t.Errorf("GOGC %d with a live heap past the floor, want 100", p)
	}
	runtime.KeepAlive(big)
	big = nil

	collect()
	if p := read("/gc/gogc:percent"); p <= 100 {
		t.Errorf("GOGC %d once the heap shrank, want above 100 again", p)
	}

	f.Stop()
	collect()
	if p := read("/gc/gogc:percent"); p != 100 {
		t.Errorf("GOGC %d after Stop, want 100", p)
	}
}

func TestOperatorGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "100")
	if f := Start(DefaultBytes); f != nil {
		f.Stop()
		t.Fatal("Start ran although GOGC is set")
	}
	t.Setenv("GOGC", "") // set but empty: the runtime's default, so the floor's
	f := Start(DefaultBytes)
	if f == nil {
		t.Fatal("Start did not run with GOGC empty")
	}
	f.Stop()
}

func TestZeroIsOff(t *testing.T) {
	unsetGOGC(t)
	if f := Start(0); f != nil {
		f.Stop()
		t.Fatal("Start(0) ran")
	}
}

func TestFloorIsAtMostHalfTheMemoryLimit(t *testing.T) {
	unsetGOGC(t)
	old := debug.SetMemoryLimit(20 << 20)
	defer debug.SetMemoryLimit(old)
	f := Start(DefaultBytes)
	if f == nil {
		t.Fatal("Start returned nil")
	}
	defer f.Stop()
	if f.bytes != 10<<20 {
		t.Errorf("floor %d MiB under a 20 MiB limit, want 10 MiB", f.bytes>>20)
	}
	collect()
	if goal := read("/gc/heap/goal:bytes"); goal > 11<<20 {
		t.Errorf("heap goal %.1f MiB under a 20 MiB limit, want at most half of it", float64(goal)/(1<<20))
	}
	debug.SetMemoryLimit(math.MaxInt64)
}

// unsetGOGC removes GOGC from the environment for the test, as if the
// operator had not set it.
func unsetGOGC(t *testing.T) {
	t.Setenv("GOGC", "") // restores the old value at the end
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
}
