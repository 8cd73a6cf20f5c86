package testkit

import (
	"sync"
	"time"
)

// Clock is a clock that tests move by hand: what runs on it never depends
// on how fast the machine is. Its Now is the func() time.Time that the
// programs' packages take.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// T0 is where a NewClock starts: a whole second, as token times are, and
// far from any real date.
var T0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// NewClock returns a Clock at start, or at T0 if start is zero.
func NewClock(start time.Time) *Clock {
	if start.IsZero() {
		start = T0
	}
	return &Clock{now: start}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
