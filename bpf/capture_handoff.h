// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Goroutine hand-off: a new goroutine inherits its creator's open span
// (uprobe_newproc1 and its return), and span_open tells whether that span
// is still open.
// Part of the capture object: included by capture.c only, in the order
// capture.c gives, after the headers it includes before this one.

#pragma once

// span_open reports whether span_id is still open on the goroutine
// creator (same process): on its span stack, or the root of its unsampled
// trace. A goroutine inherits its creator's span only while it is open.
// Span ids are random, so a reused g cannot match by accident.
static __noinline int span_open(__u64 creator, __u64 span_id)
{
	struct gkey k = gkey_of(creator);
	struct unsampled_req *u = bpf_map_lookup_elem(&unsampled, &k);
	if (u && u->span_id == span_id)
		return 1;
	struct span_stack *st = bpf_map_lookup_elem(&stacks, &k);
	if (!st)
		return 0;
	__u32 d = st->depth;
	for (__u32 i = 0; i < MAX_DEPTH; i++) {
		if (i >= d)
			break;
		if (st->e[i & (MAX_DEPTH - 1)].span_id == span_id)
			return 1;
	}
	return 0;
}

// Goroutine hand-off. Go 1.26 (runtime/proc.go):
//
//	func newproc1(fn *funcval, callergp *g, callerpc uintptr, parked bool, waitreason waitReason) *g
//
// newproc calls it on the system stack (R14 is then g0, not the caller), so
// the creating goroutine comes from the second integer argument, RBX, and
// the new goroutine is the result, in RAX at each RET.
static __always_inline int do_uprobe_newproc1(struct pt_regs *ctx)
{
	__u64 tid = bpf_get_current_pid_tgid();
	__u64 caller = GO_ARG(ctx, 1);
	bpf_map_update_elem(&newproc_callers, &tid, &caller, BPF_ANY);
	return 0;
}

static __always_inline int do_uprobe_newproc1_return(struct pt_regs *ctx)
{
	__u64 tid = bpf_get_current_pid_tgid();
	__u64 *callerp = bpf_map_lookup_elem(&newproc_callers, &tid);
	if (!callerp)
		return 0;
	__u64 caller = *callerp;
	bpf_map_delete_elem(&newproc_callers, &tid);
	__u64 newg = GO_ARG(ctx, 0);
	if (!newg)
		return 0;

	// newproc1 may hand out a g of a goroutine that has exited: whatever is
	// still on its span stack belongs to frames that are gone.
	struct gkey newk = gkey_of(newg), callerk = gkey_of(caller);
	struct span_stack *old = bpf_map_lookup_elem(&stacks, &newk);
	if (old)
		pop_stale(old, newg, 0, 1);

	// The new goroutine carries on the caller's unsampled trace, if any,
	// as long as its root runs.
	bpf_map_delete_elem(&unsampled, &newk);
	struct unsampled_req *u = bpf_map_lookup_elem(&unsampled, &callerk);
	if (u) {
		struct inherit_ctx uin = {
			.trace_hi = u->trace_hi,
			.trace_lo = u->trace_lo,
			.span_id = u->span_id,
			.flags = 0,
			.creator = caller,
		};
		bpf_map_update_elem(&inherit, &newk, &uin, BPF_ANY);
		return 0;
	}
	struct span_stack *st = bpf_map_lookup_elem(&stacks, &callerk);
	__u32 d = st ? st->depth : 0;
	if (d == 0 || d > MAX_DEPTH) {
		bpf_map_delete_elem(&inherit, &newk);
		return 0;
	}
	struct span_entry *top = &st->e[(d - 1) & (MAX_DEPTH - 1)];
	struct inherit_ctx in = {
		.trace_hi = top->trace_hi,
		.trace_lo = top->trace_lo,
		.span_id = top->span_id,
		.flags = top->flags & FLAG_SAMPLED,
		.creator = caller,
	};
	bpf_map_update_elem(&inherit, &newk, &in, BPF_ANY);
	return 0;
}
