// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Maps of the capture object and the per-process, per-probe counters.
// Part of the capture object: included by capture.c only, in the order
// capture.c gives, after the headers it includes before this one.

#pragma once

// Every map size below is a default: user space sets max_entries at load
// from its configuration (probes.MapSizes), which documents what each
// entry costs.

// Ring buffer size is set by user space before load (Options.RingBufferBytes).
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_PROBES);
	__type(key, __u32);
	__type(value, struct probe_desc);
} descs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

// Open spans per goroutine, keyed by the g pointer. LRU so goroutines that
// die with spans open cannot fill it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct gkey);
	__type(value, struct span_stack);
} stacks SEC(".maps");

// A never-written entry: the zeroed value a new goroutine's stack starts
// from (a span_stack does not fit on the 512-byte BPF stack).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct span_stack);
} empty_stack SEC(".maps");

// Span a goroutine was created under, keyed by the new g pointer.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct gkey);
	__type(value, struct inherit_ctx);
} inherit SEC(".maps");

// callergp of a runtime.newproc1 call in progress, keyed by pid_tgid:
// newproc1 runs on the system stack of the caller's thread and does not
// block, so the thread joins its entry to its RETs.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} newproc_callers SEC(".maps");

// Goroutines running an unsampled trace, keyed by the g pointer and the
// process. LRU like stacks: a goroutine that dies inside one cannot keep
// its slot.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct gkey);
	__type(value, struct unsampled_req);
} unsampled SEC(".maps");

// Entry values of open sampled spans, keyed by span id (random, so unique
// across processes), until the span's one record takes them along. LRU: a
// span whose end is never seen cannot keep its slot; a span that outlives
// its slot ends with its entry values marked missing.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2048);
	__type(key, __u64);
	__type(value, struct entry_vals);
} entry_vals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct entry_small);
} entry_small SEC(".maps");

// Where a record is built. A uprobe program runs to its end on one CPU
// (migration disabled), so one buffer per CPU serves every program.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// Records dropped because the ring buffer was full (whole spans), per
// process (tgid).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

// Counters per process and probe. User space deletes a process's entries
// when it detaches, and sizes the map for its process limit times the
// probes per process.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct counter_key);
	__type(value, struct probe_counters);
} counters SEC(".maps");

// Zeroed counters, the value a new counters entry starts from.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_counters);
} empty_counters SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 *n = bpf_map_lookup_elem(&lost, &tgid);
	if (n) {
		(*n)++;
		return;
	}
	// First loss of this process (or the map is full: then it goes
	// uncounted, which user space's sizing avoids).
	__u64 one = 1;
	bpf_map_update_elem(&lost, &tgid, &one, BPF_NOEXIST);
}

static __always_inline struct probe_counters *probe_counters(__u32 id)
{
	struct counter_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .probe_id = id};
	struct probe_counters *c = bpf_map_lookup_elem(&counters, &k);
	if (c)
		return c;
	__u32 zero = 0;
	struct probe_counters *empty = bpf_map_lookup_elem(&empty_counters, &zero);
	if (!empty)
		return 0;
	// Fails when another CPU added it first (then the lookup finds it) or
	// when the map is full (then this process goes uncounted).
	bpf_map_update_elem(&counters, &k, empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(&counters, &k);
}
