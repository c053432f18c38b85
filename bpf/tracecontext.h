// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// What the capture object (propagation.h) and the injector (inject.c)
// share: user space makes inject.c's inject_tids and trace_states the
// capture object's maps (MapReplacements), so both objects must declare
// them, and their values, exactly alike. Both include this file.

#ifndef ROUTERSCOPE_TRACECONTEXT_H
#define ROUTERSCOPE_TRACECONTEXT_H

// inject_ctx is the span context a request's traceparent carries.
struct inject_ctx {
	__u64 trace_hi;
	__u64 trace_lo;
	__u64 span_id;
	__u64 flags;    // FLAG_SAMPLED
	__u64 armed_ns; // when a thread was armed with it (inject_tids only)
};

// tracestate: the value as received, carried only when it fits in TS_MAX
// bytes (the spec's limit is 512); a longer one is dropped whole rather than
// cut inside an entry.
#define TS_MAX 256

struct trace_state {
	__u32 len;
	__u32 _pad;
	char v[TS_MAX];
};

struct trace_key {
	__u64 trace_hi;
	__u64 trace_lo;
};

// tracestate of each trace that joined an incoming traceparent, for the
// injector to pass on with the trace's outgoing requests.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct trace_key);
	__type(value, struct trace_state);
} trace_states SEC(".maps");

// Span context to inject, keyed by the thread writing the request (its
// pid_tgid: one map serves every traced process, and a thread id is reused
// once its thread exits); read and deleted by inject.c's sk_msg program,
// which sees the thread but no g.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct inject_ctx);
} inject_tids SEC(".maps");

#endif
