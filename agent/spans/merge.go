package spans

import (
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/routerscope/routerscope/probes"
)

// Bounds on what into_parent probes leave waiting in the agent: the
// attributes added to one span (a function called in a loop under the
// parent must not grow memory without end), and the spans waiting for
// their parent's record (a parent whose record never comes is forgotten
// after the assembler's maximum age, and beyond this count at once).
const (
	maxMergedAttributes = 64
	maxPendingMerges    = 4096
)

// pendingMerge is what into_parent probes added to a parent span whose
// record has not arrived yet.
type pendingMerge struct {
	attrs []attribute.KeyValue
	since time.Time
}

// mergeIntoParent handles the end of an into_parent probe's call: its
// attributes wait for its parent span's record and are added to it there
// (finish); the probe itself makes no span. The capture engine sends a
// span's record when it ends, after its children's, so the parent is not
// known to be live: when the call's parent is local and set, its
// attributes wait up to the maximum age. When the events come apart
// (parentOpen is then meaningful), a parent that is not open is known to
// be gone. A call with no local parent (it ran outside the parent's
// function) is dropped. ret is nil for an abandoned call, whose entry
// values still count.
func (a *Assembler) mergeIntoParent(entry probes.Event, ret *probes.Event, end time.Time, paired bool) {
	if entry.ParentSpanID == ([8]byte{}) || entry.RemoteParent {
		a.unmerged.Add(1)
		return
	}
	attrs := buildRecord(entry, ret, end, false, "").Attributes
	parent := spanKey{pid: entry.PID, span: entry.ParentSpanID}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, open := a.open[parent]; paired && !open {
		a.unmerged.Add(1)
		return
	}
	pm, ok := a.merged[parent]
	if !ok {
		if len(a.merged) >= maxPendingMerges {
			a.unmerged.Add(1)
			return
		}
		pm = &pendingMerge{since: end}
		a.merged[parent] = pm
		a.pendingMerges.Add(1)
	}
	room := maxMergedAttributes - len(pm.attrs)
	if len(attrs) > room {
		attrs = attrs[:max(room, 0)]
		a.unmerged.Add(1)
	}
	pm.attrs = append(pm.attrs, attrs...)
}

// addMerged appends the attributes into_parent probes added to r, after
// r's own, so the value of the latest call wins for a repeated key. With
// nothing waiting it takes no lock.
func (a *Assembler) addMerged(r *SpanRecord) {
	if a.pendingMerges.Load() == 0 {
		return
	}
	key := spanKey{pid: r.PID, span: r.SpanID}
	a.mu.Lock()
	pm, ok := a.merged[key]
	if ok {
		delete(a.merged, key)
		a.pendingMerges.Add(-1)
	}
	a.mu.Unlock()
	if ok {
		r.Attributes = append(r.Attributes, pm.attrs...)
	}
}

// PendingMerges returns how many spans have into_parent attributes
// waiting for their record, without taking the lock: a caller deciding
// whether there is work left (an expiry to run) reads it often.
func (a *Assembler) PendingMerges() int { return int(a.pendingMerges.Load()) }

// expireMerges forgets attributes whose parent's record did not come
// within the maximum age.
func (a *Assembler) expireMerges(now time.Time) {
	if a.pendingMerges.Load() == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, pm := range a.merged {
		if now.Sub(pm.since) > a.maxAge {
			delete(a.merged, k)
			a.pendingMerges.Add(-1)
			a.unmerged.Add(1)
		}
	}
}
