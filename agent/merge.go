package agent

import (
	"github.com/routerscope/routerscope/probes"
)

// maxMergedAttributes bounds the attributes into_parent probes may add to
// one span: a function called in a loop under the parent must not grow
// the agent's memory without end.
const maxMergedAttributes = 64

// mergeIntoParent handles the end of an into_parent probe's call: its
// attributes go to its parent span, if that is still open, and the probe
// itself makes no span. A call whose parent is not open (it ran outside
// the parent's function, or the parent's entry was lost) is dropped; an
// abandoned call carries no return values but its entry values still
// count.
func (a *Assembler) mergeIntoParent(entry, ev probes.Event) {
	var ret *probes.Event
	if ev.Kind == probes.EventReturn {
		ret = &ev
	}
	attrs := buildRecord(entry, ret, ev.Time, false, "").Attributes
	parent := spanKey{pid: entry.PID, span: entry.ParentSpanID}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, open := a.open[parent]; !open {
		a.unmerged.Add(1)
		return
	}
	room := maxMergedAttributes - len(a.merged[parent])
	if len(attrs) > room {
		attrs = attrs[:max(room, 0)]
		a.unmerged.Add(1)
	}
	if len(attrs) > 0 {
		a.merged[parent] = append(a.merged[parent], attrs...)
	}
}

// addMerged appends the attributes into_parent probes added to r, after
// r's own, so the value of the latest call wins for a repeated key.
func (a *Assembler) addMerged(r *SpanRecord) {
	key := spanKey{pid: r.PID, span: r.SpanID}
	a.mu.Lock()
	extra, ok := a.merged[key]
	delete(a.merged, key)
	a.mu.Unlock()
	if ok {
		r.Attributes = append(r.Attributes, extra...)
	}
}
