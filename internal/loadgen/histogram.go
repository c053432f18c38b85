package loadgen

import (
	"math"
	"slices"
	"time"
)

// Histogram holds every latency of a run. Runs have fixed request counts
// (thousands, not billions), so keeping the samples gives exact quantiles
// instead of bucket approximations.
type Histogram struct {
	samples []time.Duration
	sorted  bool
}

// NewHistogram returns a histogram sized for n samples.
func NewHistogram(n int) *Histogram {
	return &Histogram{samples: make([]time.Duration, 0, max(n, 0))}
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	h.samples = append(h.samples, d)
	h.sorted = false
}

// Merge adds every sample of o.
func (h *Histogram) Merge(o *Histogram) {
	h.samples = append(h.samples, o.samples...)
	h.sorted = false
}

// Count is the number of samples.
func (h *Histogram) Count() int { return len(h.samples) }

// Quantile returns the nearest-rank q-quantile (0 < q <= 1): the smallest
// sample with at least q of the samples at or below it. q <= 0 gives the
// minimum; an empty histogram gives 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if len(h.samples) == 0 {
		return 0
	}
	if !h.sorted {
		slices.Sort(h.samples)
		h.sorted = true
	}
	rank := int(math.Ceil(q * float64(len(h.samples))))
	rank = min(max(rank, 1), len(h.samples))
	return h.samples[rank-1]
}

// Mean is the arithmetic mean, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if len(h.samples) == 0 {
		return 0
	}
	var sum time.Duration
	for _, s := range h.samples {
		sum += s
	}
	return sum / time.Duration(len(h.samples))
}

// Buckets counts the samples in power-of-two microsecond buckets: the
// result's key i holds samples in [2^i us, 2^(i+1) us), key 0 also holds
// everything under 1 us. For printing a latency histogram.
func (h *Histogram) Buckets() map[int]int {
	out := map[int]int{}
	for _, s := range h.samples {
		us := s.Microseconds()
		i := 0
		for us >= 2 {
			us >>= 1
			i++
		}
		out[i]++
	}
	return out
}
