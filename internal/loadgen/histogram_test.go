package loadgen

import (
	"testing"
	"time"
)

func TestQuantileNearestRank(t *testing.T) {
	h := NewHistogram(0)
	// Recorded out of order: Quantile must sort.
	for _, ms := range []int{5, 1, 4, 2, 3, 10, 9, 8, 7, 6} {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
		{0.11, 2 * time.Millisecond},
		{0.5, 5 * time.Millisecond},
		{0.51, 6 * time.Millisecond},
		{0.99, 10 * time.Millisecond},
		{1, 10 * time.Millisecond},
		{2, 10 * time.Millisecond},
	}
	for _, c := range cases {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got, want := h.Mean(), 5500*time.Microsecond; got != want {
		t.Errorf("Mean = %v, want %v", got, want)
	}
}

func TestQuantileAfterMoreRecords(t *testing.T) {
	h := NewHistogram(4)
	h.Record(3 * time.Second)
	if got := h.Quantile(0.5); got != 3*time.Second {
		t.Fatalf("p50 of one sample = %v", got)
	}
	h.Record(time.Second) // invalidates the sorted order
	if got := h.Quantile(0.5); got != time.Second {
		t.Fatalf("p50 after a smaller sample = %v, want 1s", got)
	}
	o := NewHistogram(1)
	o.Record(2 * time.Second)
	h.Merge(o)
	if h.Count() != 3 || h.Quantile(0.5) != 2*time.Second {
		t.Fatalf("after merge: count %d p50 %v, want 3 and 2s", h.Count(), h.Quantile(0.5))
	}
}

func TestEmptyHistogram(t *testing.T) {
	h := NewHistogram(-1)
	if h.Quantile(0.99) != 0 || h.Mean() != 0 || h.Count() != 0 || len(h.Buckets()) != 0 {
		t.Fatal("an empty histogram must give zeros")
	}
}

func TestBuckets(t *testing.T) {
	h := NewHistogram(0)
	for _, us := range []int{0, 1, 2, 3, 4, 1023, 1024} {
		h.Record(time.Duration(us) * time.Microsecond)
	}
	want := map[int]int{0: 2, 1: 2, 2: 1, 9: 1, 10: 1}
	got := h.Buckets()
	if len(got) != len(want) {
		t.Fatalf("Buckets = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("bucket %d = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
