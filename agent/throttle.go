package agent

import (
	"context"
	"sync"
	"time"
)

// errorThrottle reports export errors at most once per interval, counting
// the ones in between, so an unreachable collector yields one clear log
// line every interval instead of one per batch.
type errorThrottle struct {
	interval time.Duration
	now      func() time.Time
	report   func(err error, failedSpans int, suppressed int)

	mu          sync.Mutex
	last        time.Time
	suppressed  int
	spansHidden int
}

func newErrorThrottle(interval time.Duration, report func(err error, failedSpans, suppressed int)) *errorThrottle {
	return &errorThrottle{interval: interval, now: time.Now, report: report}
}

// observe records one failed export of n spans and reports it unless one
// was reported within the interval.
func (t *errorThrottle) observe(err error, n int) {
	t.mu.Lock()
	now := t.now()
	if !t.last.IsZero() && now.Sub(t.last) < t.interval {
		t.suppressed++
		t.spansHidden += n
		t.mu.Unlock()
		return
	}
	t.last = now
	suppressed, hidden := t.suppressed, t.spansHidden
	t.suppressed, t.spansHidden = 0, 0
	t.mu.Unlock()
	t.report(err, n+hidden, suppressed)
}

// exportContext bounds a shutdown flush.
func exportContext(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(parent), d)
}
