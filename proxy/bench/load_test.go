package main

import (
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"none", nil, .5, 0},
		{"one", []time.Duration{7}, .99, 7},
		{"p50 of 1..100", hundred, .50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, .99, 99 * time.Millisecond},
		{"p100 of 1..100", hundred, 1, 100 * time.Millisecond},
		{"tiny q is the minimum", hundred, 0.0001, time.Millisecond},
		{"p50 of two is the lower (nearest rank)", []time.Duration{1, 2}, .5, 1},
		{"p99 of ten is the maximum", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, .99, 10},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.q); got != tt.want {
			t.Errorf("%s: percentile(q=%v) = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
}

func TestAggregate(t *testing.T) {
	t.Parallel()
	first := errors.New("first")
	m := aggregate([]connResult{
		{latencies: []time.Duration{30, 10}, status: map[int]int{201: 2}, total: 5, errors: 1, firstErr: first},
		{latencies: []time.Duration{20}, status: map[int]int{201: 1}, total: 3},
		{latencies: []time.Duration{40}, status: map[int]int{503: 1}, total: 1, errors: 2, firstErr: errors.New("second")},
	}, 2*time.Second)

	if m.conns != 3 || m.count() != 4 || m.total != 9 || m.errors != 3 {
		t.Errorf("conns %d, count %d, total %d, errors %d; want 3, 4, 9, 3", m.conns, m.count(), m.total, m.errors)
	}
	for i, want := range []time.Duration{10, 20, 30, 40} {
		if m.latencies[i] != want {
			t.Fatalf("latencies %v, want sorted 10 20 30 40", m.latencies)
		}
	}
	if m.rate() != 2 || m.rateOf(201) != 1.5 || m.success() != 3 {
		t.Errorf("rate %v, rate of 201 %v, success %d; want 2, 1.5, 3", m.rate(), m.rateOf(201), m.success())
	}
	if m.p(.5) != 20 || m.p(.99) != 40 {
		t.Errorf("p50 %v, p99 %v; want 20, 40", m.p(.5), m.p(.99))
	}
	if !errors.Is(m.firstErr, first) {
		t.Errorf("firstErr %v, want the first connection's", m.firstErr)
	}
	if got, want := m.statuses(), "201×3 503×1 errors×3"; got != want {
		t.Errorf("statuses() = %q, want %q", got, want)
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		87 * time.Microsecond:    "87 µs",
		1234 * time.Microsecond:  "1.23 ms",
		45600 * time.Microsecond: "45.6 ms",
		2500 * time.Millisecond:  "2.50 s",
		-12 * time.Microsecond:   "-12 µs",
	} {
		if got := dur(d); got != want {
			t.Errorf("dur(%v) = %q, want %q", d, got, want)
		}
	}
	for f, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4200: "-4,200"} {
		if got := num(f); got != want {
			t.Errorf("num(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	a := aggregate([]connResult{{latencies: []time.Duration{5, 1}, status: map[int]int{201: 2}, total: 3}}, time.Second)
	b := aggregate([]connResult{{latencies: []time.Duration{3}, status: map[int]int{201: 1}, total: 2, errors: 1}}, time.Second)
	m := merge(a, b)
	if m.window != 2*time.Second || m.count() != 3 || m.total != 5 || m.errors != 1 || m.status[201] != 3 {
		t.Errorf("merged window %v, count %d, total %d, errors %d, 201s %d; want 2s, 3, 5, 1, 3",
			m.window, m.count(), m.total, m.errors, m.status[201])
	}
	if m.latencies[0] != 1 || m.latencies[1] != 3 || m.latencies[2] != 5 {
		t.Errorf("merged latencies %v, want sorted 1 3 5", m.latencies)
	}
	if m.rate() != 1.5 {
		t.Errorf("rate %v, want 1.5 (3 answers in 2 s)", m.rate())
	}
}
