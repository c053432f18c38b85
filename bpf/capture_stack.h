// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// The per-goroutine span stack: popping stale frames, finding a parent,
// the sampling decision of a root, and the stack of a goroutine.
// Part of the capture object: included by capture.c only, in the order
// capture.c gives, after the headers it includes before this one.

#pragma once

// pop_stale pops, as abandoned, the open spans whose frames cannot be live
// any more: those at stack_depth >= depth when a function is entered at
// depth (inclusive), or > depth when one returns at depth. A function that
// is entered where an open span's frame was has replaced that frame: a panic
// unwound it, or the g ended and was reused for a new goroutine.
static __noinline void pop_stale(struct span_stack *st, __u64 g, __u64 depth, __u32 inclusive)
{
	for (__u32 i = 0; i < MAX_DEPTH; i++) {
		__u32 d = st->depth;
		if (d == 0 || d > MAX_DEPTH)
			break;
		struct span_entry *top = &st->e[(d - 1) & (MAX_DEPTH - 1)];
		if (top->stack_depth < depth || (!inclusive && top->stack_depth == depth))
			break;
		emit_abandoned(top, g);
		st->depth = d - 1;
	}
}

// find_parent returns the open span a new span nests under: the innermost
// span of probe parent_id when the probe declares one and it is open, else
// the innermost span.
static __noinline struct span_entry *find_parent(struct span_stack *st, __s32 parent_id)
{
	__u32 d = st->depth;
	if (d == 0 || d > MAX_DEPTH)
		return 0;
	if (parent_id >= 0) {
		for (__u32 i = 0; i < MAX_DEPTH; i++) {
			if (i >= d)
				break;
			struct span_entry *e = &st->e[(d - 1 - i) & (MAX_DEPTH - 1)];
			if (e->probe_id == (__u32)parent_id)
				return e;
		}
	}
	return &st->e[(d - 1) & (MAX_DEPTH - 1)];
}

static __always_inline int sampled_root(__u64 trace_lo)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return 0;
	return (trace_lo >> 1) < cfg->sample_bound;
}

static __always_inline struct span_stack *stack_of(__u64 g)
{
	struct gkey k = gkey_of(g);
	struct span_stack *st = bpf_map_lookup_elem(&stacks, &k);
	if (st)
		return st;
	__u32 zero = 0;
	struct span_stack *empty = bpf_map_lookup_elem(&empty_stack, &zero);
	if (!empty)
		return 0;
	bpf_map_update_elem(&stacks, &k, empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(&stacks, &k);
}
