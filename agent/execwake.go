package agent

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/agent/discovery"
)

// Discovery's schedule. Polling /proc every discovery.interval costs an
// idle node a walk of /proc (~1.2 ms for 90 processes) and a wake-up twice
// a second, forever. Nothing in /proc can come to match a rule without a
// program being executed first, so where the kernel reports execs
// (ExecSource) discovery looks at the processes that executed instead:
// each is checked at once and then every interval for discovery.settle
// (it must still open its port, a container's files must still appear),
// a few reads per process. /proc is walked only at the start and after a
// reload (every interval for the settle window, for the processes already
// running), while attach retries are pending, when the kernel dropped
// exec records, and as a safety rescan every discovery.rescan_interval.
// Where execs cannot be watched (no CAP_PERFMON, an old kernel), the agent
// says why once and walks /proc every interval as before.

// ExecSource tells discovery which processes executed a program; the
// capture engine's probes.ExecWatcher satisfies it.
type ExecSource interface {
	// Wait blocks until a program was executed, and returns its pid; it
	// returns an error once the source is closed.
	Wait() (uint32, error)
	// Flush makes Wait return the execs recorded but not yet announced
	// (the source wakes its reader at most once per gap).
	Flush() error
	// Dropped counts the execs the source could not record: when it
	// grows, /proc is walked.
	Dropped() uint64
	// Close ends a pending Wait; it is idempotent.
	Close() error
}

// WithExecSource lets exec notifications drive discovery: open is called
// once, when discovery rules are first configured, with the shortest time
// between two wake-ups (discovery.interval then); when it fails,
// discovery polls every interval and the log says why.
func WithExecSource(open func(minGap time.Duration) (ExecSource, error)) Option {
	return func(o *runOptions) { o.openExecs = open }
}

// LogKeyDiscoveryMode says whether discovery is woken by execs or polls.
const LogKeyDiscoveryMode = "discovery_mode"

// maxPendingExecs bounds the pids waiting for the run loop; past it the
// loop walks /proc instead.
const maxPendingExecs = 4096

// execWake owns the exec source and its reader goroutine.
type execWake struct {
	src ExecSource
	// ch has one slot: any number of execs between two loop turns is one
	// wake-up.
	ch   chan struct{}
	done sync.WaitGroup

	mu       sync.Mutex
	pending  []int
	overflow bool
}

// take returns the pids read since the last call, and whether some were
// left out (too many).
func (w *execWake) take() ([]int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pids, over := w.pending, w.overflow
	w.pending, w.overflow = nil, false
	return pids, over
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
			pid, err := src.Wait()
			if err != nil {
				return
			}
			m.met.execs.Inc()
			w.mu.Lock()
			if len(w.pending) < maxPendingExecs {
				w.pending = append(w.pending, int(pid))
			} else {
				w.overflow = true
			}
			w.mu.Unlock()
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	})
	m.execs = w
	m.sched.dropped = src.Dropped()
	m.log.Info("discovery checks the processes that execute a program",
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

// scanSchedule is what discovery's schedule remembers.
type scanSchedule struct {
	// walkUntil ends the window after the start or a reload in which
	// /proc is walked every interval.
	walkUntil time.Time
	// lastWalk is when /proc was last walked.
	lastWalk time.Time
	// watch holds the processes that executed recently and may still
	// come to match (a port rule selects them but for the port), each
	// until the end of its settle window: they are checked every
	// interval.
	watch map[int]time.Time
	// flushUntil keeps the ticks going for two intervals after an exec
	// wake-up: the source announces the execs after it only at a tick.
	flushUntil time.Time
	// walkDue is set when execs went unrecorded: walk at the next tick.
	walkDue bool
	// dropped is the source's Dropped count last seen.
	dropped uint64
}

// settleWindow is how long a process is checked every interval after it
// executed (and /proc walked after a start or reload): discovery.settle,
// but at least two intervals. The kernel wakes the agent at most once per
// interval and the records in between are read at the next tick, so an
// exec can be seen up to an interval late.
func (m *manager) settleWindow() time.Duration {
	d := m.cfg.Agent.Discovery
	return max(d.Settle, 2*d.Interval)
}

// scanPeriod is the scan ticker's period now: 0 stops it (no discovery).
// With exec notifications, the interval while there is something to check
// (a settle window, a watched process, a pending retry or walk), else the
// safety rescan; without them, the interval.
func (m *manager) scanPeriod(now time.Time) time.Duration {
	d := m.cfg.Agent.Discovery
	switch {
	case !discovering(m.cfg):
		return 0
	case m.execs == nil, now.Before(m.sched.walkUntil), now.Before(m.sched.flushUntil), len(m.sched.watch) > 0, len(m.retryAt) > 0, m.sched.walkDue:
		return d.Interval
	default:
		return d.Rescan
	}
}

// mustWalk tells whether this tick walks /proc rather than checking the
// watched processes.
func (m *manager) mustWalk(now time.Time) bool {
	s := &m.sched
	if m.execs == nil || s.walkDue || now.Before(s.walkUntil) || len(m.retryAt) > 0 {
		return true
	}
	if n := m.execs.src.Dropped(); n != s.dropped {
		s.dropped = n
		return true
	}
	// The safety rescan, also due when the watched processes kept the
	// ticker at the interval.
	return now.Sub(s.lastWalk) >= m.cfg.Agent.Discovery.Rescan
}

// tick is one discovery tick: a walk of /proc, or a check of the
// processes that executed recently; it first asks the source for the
// execs it recorded without waking the agent.
func (m *manager) tick(ctx context.Context) {
	now := time.Now()
	if m.execs != nil {
		_ = m.execs.src.Flush()
	}
	if m.mustWalk(now) {
		m.walk(ctx, now)
	} else if len(m.sched.watch) > 0 {
		pids := make([]int, 0, len(m.sched.watch))
		for pid, until := range m.sched.watch {
			if now.After(until) {
				delete(m.sched.watch, pid)
			} else {
				pids = append(pids, pid)
			}
		}
		m.check(ctx, pids)
	}
	if m.o.scanned != nil {
		m.o.scanned()
	}
}

// walk walks /proc and reconciles (scan).
func (m *manager) walk(ctx context.Context, now time.Time) {
	m.sched.lastWalk, m.sched.walkDue = now, false
	if discovering(m.cfg) {
		m.scan(ctx)
	}
}

// execed handles the pids the source announced: each is checked now and
// watched for its settle window.
func (m *manager) execed(ctx context.Context) {
	pids, over := m.execs.take()
	if over {
		m.sched.walkDue = true
	}
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		for key := range m.atts {
			if key.PID == pid {
				// An attached process executed another program: it may
				// no longer match, which only a walk (reconcile) acts on.
				m.sched.walkDue = true
			}
		}
	}
	now := time.Now()
	m.sched.flushUntil = now.Add(2 * m.cfg.Agent.Discovery.Interval)
	until := now.Add(m.settleWindow())
	if m.sched.watch == nil {
		m.sched.watch = map[int]time.Time{}
	}
	for _, pid := range pids {
		if len(m.sched.watch) >= maxPendingExecs {
			m.sched.walkDue = true
			break
		}
		m.sched.watch[pid] = until
	}
	m.check(ctx, pids)
}

// check matches the given processes, those not attached yet, against the
// rules and attaches the new matches. Only the processes that may still
// come to match stay watched: the others are gone, attached, or selected
// by no rule whatever they listen on.
func (m *manager) check(ctx context.Context, pids []int) {
	if m.paused || !discovering(m.cfg) {
		for _, pid := range pids {
			delete(m.sched.watch, pid)
		}
		return
	}
	attached := map[int]bool{}
	for key := range m.atts {
		attached[key.PID] = true
	}
	pids = slices.DeleteFunc(slices.Clone(pids), func(pid int) bool {
		if attached[pid] {
			delete(m.sched.watch, pid)
			return true
		}
		return false
	})
	if len(pids) == 0 {
		return
	}
	m.met.checks.Inc()
	a := m.cfg.Agent
	rules := append(config.TargetRules(a.Targets), a.Discovery.Rules...)
	found, waiting := discovery.ScanPIDs(m.o.procRoot, pids, rules, a.Discovery.Exclude, a.Probes, m.o.self, m.procs)
	keep := map[int]bool{}
	for _, pid := range waiting {
		keep[pid] = true
	}
	for key := range found {
		// Attached below, or waiting for its retry (the walks retry it).
		delete(keep, key.PID)
	}
	for _, pid := range pids {
		if !keep[pid] {
			delete(m.sched.watch, pid)
		}
	}
	if len(found) == 0 {
		return
	}
	_ = m.attachNew(ctx, found, false)
	// What is wanted now, as far as this check knows (the next walk
	// counts exactly): readiness compares it with what is attached.
	unattached := 0
	for key := range found {
		if _, ok := m.atts[key]; !ok {
			unattached++
		}
	}
	m.matched = max(m.matched, len(m.atts)+unattached)
	m.met.attached.Set(float64(len(m.atts)))
}
