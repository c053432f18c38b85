package agent

import (
	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/agent/spans"
)

// The sweep (run.go) ends the spans of exited processes and expired
// spans, polls the liveness of processes no pidfd watches, and reports
// lost events and dropped spans. Once a second is cheap under load, but
// an idle agent woken every second for it, with /proc reads, is not
// idle: so the sweep stops when a pass finds nothing it could act on, and
// the first event read afterwards (or an exit watcher that falls back to
// polling) starts it again.

// activity is what a sweep pass looks at: when none of it moved between
// two passes and nothing is pending, a further pass would find nothing.
type activity struct {
	handled uint64
	asm     spans.AssemblerStats
	export  export.Stats
}

func (m *manager) activity() activity {
	return activity{handled: m.handled.Load(), asm: m.asm.Stats(), export: m.pipe.Stats()}
}

// sweepPending tells whether a later pass may have work although no event
// arrives: spans open (expiry, exits), into-parent attributes waiting for
// their parent, spans queued or in flight to the exporter (an export's
// failure changes readiness), or a process whose exit only polling sees.
func (m *manager) sweepPending() bool {
	if m.asm.Open() > 0 || m.asm.PendingMerges() > 0 || m.pipe.Stats().Queued > 0 {
		return true
	}
	for _, a := range m.atts {
		if !a.exitWatched.Load() {
			return true
		}
	}
	return false
}

// sweepMayStop is called after each pass: it tells whether the pass found
// the agent idle, in which case the sweep is marked stopped and the
// caller stops its ticker. Events are read concurrently, so the stop is
// announced first and the state checked again: a reader that handled an
// event before the announcement is seen by the second check, one after
// it finds sweepIdle set and wakes the loop.
func (m *manager) sweepMayStop() bool {
	cur := m.activity()
	moved := cur != m.seen
	m.seen = cur
	if moved || m.sweepPending() {
		return false
	}
	m.sweepIdle.Store(true)
	if m.activity() == cur && !m.sweepPending() {
		return true
	}
	// Something arrived meanwhile: keep sweeping. If a reader already
	// cleared the flag, its wake only resets the running ticker.
	m.sweepIdle.CompareAndSwap(true, false)
	return false
}

// wakeSweep restarts a stopped sweep.
func (m *manager) wakeSweep() {
	if m.sweepIdle.CompareAndSwap(true, false) {
		select {
		case m.wake <- struct{}{}:
		default: // one is pending already
		}
	}
}
