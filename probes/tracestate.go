package probes

import (
	"encoding/binary"

	"github.com/routerscope/routerscope/bpf"
)

// traceState returns the tracestate that came in with the traceparent of
// trace id, as the kernel stored it when the trace's root span opened (see
// take_remote_parent in bpf/propagation.h), or "" when there was none. The
// value is the caller's bytes, bounded by the kernel to TS_MAX; callers
// validate it before exporting it.
func (t *Tracer) traceState(id [16]byte) string {
	if t.c.maps.TraceStates == nil {
		return ""
	}
	key := bpf.CaptureTraceKey{
		TraceHi: binary.BigEndian.Uint64(id[:8]),
		TraceLo: binary.BigEndian.Uint64(id[8:]),
	}
	var v bpf.CaptureTraceState
	if err := t.c.maps.TraceStates.Lookup(&key, &v); err != nil {
		return ""
	}
	n := min(int(v.Len), len(v.V))
	b := make([]byte, n)
	for i := range n {
		b[i] = byte(v.V[i])
	}
	return string(b)
}
