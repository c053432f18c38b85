package agent

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Discovery's schedule. Polling /proc every discovery.interval costs an
// idle node a scan (~1.2 ms for 90 processes) and a wake-up twice a
// second, forever. Nothing in /proc can come to match a rule without a
// program being executed first, so where the kernel reports execs
// (ExecSource) discovery sleeps until one: an exec scans at once (at most
// one scan per interval) and starts a settle window of discovery.settle
// in which it scans every interval (the new process
// must still open its port, a container's files must still appear), and
// outside it only a safety rescan runs, every discovery.rescan_interval.
// Attach retries keep the interval scans going while they are pending.
// Where execs cannot be watched (no CAP_PERFMON, an old kernel), the agent
// says why once and polls as before.

// ExecSource tells discovery that programs are being executed on the node;
// the capture engine's probes.ExecWatcher satisfies it.
type ExecSource interface {
	// Wait blocks until a program was executed, and returns its pid; it
	// returns an error once the source is closed.
	Wait() (uint32, error)
	// Close ends a pending Wait; it is idempotent.
	Close() error
}

// WithExecSource lets exec notifications drive discovery: open is called
// once, when discovery rules are first configured, with the shortest time
// between two notifications (discovery.interval then: execs closer
// together are found by the scans the first one starts); when it fails,
// discovery polls every interval and the log says why.
func WithExecSource(open func(minGap time.Duration) (ExecSource, error)) Option {
	return func(o *runOptions) { o.openExecs = open }
}

// LogKey of the exec source's state.
const LogKeyDiscoveryMode = "discovery_mode"

// execWake owns the exec source and its reader goroutine.
type execWake struct {
	src ExecSource
	// ch has one slot: any number of execs between two loop turns is one
	// wake-up.
	ch   chan struct{}
	done sync.WaitGroup
}

// startExecWake opens the exec source when discovery needs one and none
// was tried yet; without one, discovery polls.
func (m *manager) startExecWake() {
	if m.execTried || !discovering(m.cfg) {
		return
	}
	m.execTried = true
	if m.o.openExecs == nil {
		return
	}
	src, err := m.o.openExecs(m.cfg.Agent.Discovery.Interval)
	if err != nil {
		m.log.Info("discovery polls /proc every interval: exec notifications are not available",
			zap.Duration(LogKeyTimeout, m.cfg.Agent.Discovery.Interval), zap.String(LogKeyDiscoveryMode, "polling"), ErrorField(err))
		return
	}
	w := &execWake{src: src, ch: make(chan struct{}, 1)}
	w.done.Go(func() {
		for {
			if _, err := src.Wait(); err != nil {
				return
			}
			m.met.execs.Inc()
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	})
	m.execs = w
	m.log.Info("discovery scans /proc when programs are executed",
		zap.Duration("settle", m.cfg.Agent.Discovery.Settle), zap.Duration("rescan_interval", m.cfg.Agent.Discovery.Rescan),
		zap.String(LogKeyDiscoveryMode, "exec"))
}

// stopExecWake closes the exec source and waits for its reader.
func (m *manager) stopExecWake() {
	if m.execs == nil {
		return
	}
	_ = m.execs.src.Close()
	m.execs.done.Wait()
	m.execs = nil
}

// execCh is the exec wake-up channel, nil (never ready) when polling.
func (m *manager) execCh() <-chan struct{} {
	if m.execs == nil {
		return nil
	}
	return m.execs.ch
}

// scanSchedule decides when discovery scans next.
type scanSchedule struct {
	// settleUntil ends the current window of scans every interval.
	settleUntil time.Time
	// lastScan is when discovery last scanned: an exec scans at once
	// unless it was less than an interval ago.
	lastScan time.Time
}

// scanPeriod is the scan ticker's period now: 0 stops it (no discovery).
// With exec notifications, the interval while the settle window lasts or
// retries are pending, else the safety rescan; without them, the interval.
func (m *manager) scanPeriod(now time.Time) time.Duration {
	d := m.cfg.Agent.Discovery
	switch {
	case !discovering(m.cfg):
		return 0
	case m.execs == nil, now.Before(m.sched.settleUntil), len(m.retryAt) > 0:
		return d.Interval
	default:
		return d.Rescan
	}
}

// settleWindow is how long discovery scans every interval after an exec:
// discovery.settle, but at least two intervals. The kernel sends at most
// one exec notification per interval (the watcher's gap), so an exec it
// left out came less than an interval after the notified one, and the
// scan an interval after that one must still be inside the window to
// see it.
func (m *manager) settleWindow() time.Duration {
	d := m.cfg.Agent.Discovery
	return max(d.Settle, 2*d.Interval)
}
