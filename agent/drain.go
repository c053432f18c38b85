package agent

import (
	"time"

	"go.uber.org/zap"
)

// Bounds of the drain at stop.
const (
	// drainQuiet ends the drain once no event came for this long: the
	// ring buffer and the capture's queue are empty.
	drainQuiet = 100 * time.Millisecond
	// drainMax ends it in any case: while the router serves, events never
	// stop, and shutdown must not wait for them.
	drainMax = time.Second
)

// drain keeps the readers going after the stop signal until every open
// span has returned, no event came for drainQuiet, or drainMax passed.
// A SIGTERM just after a burst used to stop reading at once, and the
// returns still in the ring buffer were lost: their spans were exported
// as failed ("agent stopped before the span returned").
func (m *manager) drain() {
	if len(m.atts) == 0 || m.asm.Open() == 0 {
		return
	}
	start := time.Now()
	last, quietSince := m.handled.Load(), start
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		now := time.Now()
		if n := m.handled.Load(); n != last {
			last, quietSince = n, now
		}
		if m.asm.Open() == 0 || now.Sub(quietSince) >= drainQuiet || now.Sub(start) >= drainMax {
			break
		}
	}
	m.log.Debug("drained events after the stop signal", zap.Duration("took", time.Since(start)), zap.Int(LogKeyCount, m.asm.Open()))
}
