package agent

import (
	"fmt"

	"go.uber.org/zap"
)

// Trouble that used to be silent until the agent stopped is logged as it
// happens, once per sweep (every second at most), with the count since
// the last report: spans dropped because the export queue was full, and
// returns whose entry was never seen. /readyz says which cause holds.

// Log field keys of the running counters.
const (
	LogKeyDroppedNow   = "spans_dropped"
	LogKeyLostEntryNow = "returns_without_entry"
)

// troubleCounts are the counters last reported.
type troubleCounts struct {
	dropped, lostEntry uint64
}

// reportTrouble logs the drops and lost entries since the last call.
func (m *manager) reportTrouble() {
	ex, st := m.pipe.Stats(), m.asm.Stats()
	if d := ex.Dropped - m.trouble.dropped; ex.Dropped > m.trouble.dropped {
		m.log.Warn("export queue full: spans dropped; the collector is slow or down, or raise routerscope.export.queue_size",
			zap.Uint64(LogKeyDroppedNow, d), zap.Uint64(LogKeyDropped, ex.Dropped), zap.Int("queue_size", m.cfg.Agent.Export.QueueSize))
		m.trouble.dropped = ex.Dropped
	}
	if d := st.LostEntry - m.trouble.lostEntry; st.LostEntry > m.trouble.lostEntry {
		m.log.Warn("returns without their entry: spans dropped (entry lost in the ring buffer, or sent before the agent attached)",
			zap.Uint64(LogKeyLostEntryNow, d), zap.Uint64("total", st.LostEntry))
		m.trouble.lostEntry = st.LostEntry
	}
}

// notReadyReason says why /readyz fails: the export, or which processes
// are not attached.
func (m *manager) notReadyReason() string {
	if !m.pipe.ExportHealthy() {
		return fmt.Sprintf("the last export to %s failed (see the agent's log for the error)", m.cfg.Tracing.Exporter.Endpoint)
	}
	return fmt.Sprintf("%d matching processes, %d attached (see the agent's log for the attach errors)", m.matched, len(m.atts))
}
