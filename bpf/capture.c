//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// The capture engine's kernel side: one generic entry program and one generic
// return program, attached as uprobes to the functions a probe spec names.
// What each probe reads comes from a descriptor that user space writes into
// the descs map; which probe fired comes from the uprobe's bpf cookie. See
// doc.go for the overall design; this file explains the details where they
// are used.

#include "vmlinux.h"
#include "bpf_helpers.h"
#include "goregs.h"

char __license[] SEC("license") = "Dual BSD/GPL";

// The object is split by concern; each header relies on the ones before it.
#include "capture_types.h"
#include "capture_maps.h"
#include "capture_fetch.h"
#include "capture_record.h"
#include "capture_stack.h"

// W3C trace context: extraction (take_remote_parent) and the capture side
// of injection; kept apart so the generic programs stay readable.
#include "propagation.h"

#include "capture_handoff.h"

// keep_entry_values reads a sampled span's entry values and parks them in
// entry_small or entry_vals until the span ends: the span's one record
// carries them. It returns the span flags to add.
static __noinline int keep_entry_values(struct pt_regs *ctx, struct probe_desc *desc, __u64 span_id)
{
	struct scratch *sc = scratch_buf();
	if (!sc)
		return 0;
	struct regs regs;
	load_regs(ctx, &regs);
	__u32 n = desc->n_entry;
	if (n > MAX_FETCHES)
		n = MAX_FETCHES;
	struct entry_vals *ent = (struct entry_vals *)sc->buf;
	__builtin_memcpy(ent->regs, regs.r, sizeof(ent->regs));
	__u32 off = pack_values(&regs, desc->entry, n, sc->buf, __builtin_offsetof(struct entry_vals, data));
	ent->len = off - __builtin_offsetof(struct entry_vals, data);
	ent->n = n;
	if (ent->len <= ENTRY_SMALL_MAX)
		return bpf_map_update_elem(&entry_small, &span_id, ent, BPF_ANY) ? 0 : FLAG_ENTRY_VALS | FLAG_ENTRY_SMALL;
	return bpf_map_update_elem(&entry_vals, &span_id, ent, BPF_ANY) ? 0 : FLAG_ENTRY_VALS;
}

// probe_frame reads what both ends of a span start from: probe id's
// descriptor (returned; NULL when there is none or the frame's depth
// cannot be read), its counters (*c, NULL when the counters map has no
// room), the goroutine (*g) and the frame's stack depth (*depth).
static __always_inline struct probe_desc *probe_frame(struct pt_regs *ctx, __u32 id,
						       struct probe_counters **c, __u64 *g, __u64 *depth)
{
	struct probe_desc *desc = bpf_map_lookup_elem(&descs, &id);
	if (!desc)
		return 0;
	*c = probe_counters(id);
	*g = GO_G(ctx);
	if (frame_depth(*g, GO_SP(ctx), depth))
		return 0;
	return desc;
}

// open_span opens a span for probe id and keeps its entry values.
static __always_inline int open_span(struct pt_regs *ctx, __u32 id)
{
	struct probe_counters *c;
	__u64 g, depth;
	struct probe_desc *desc = probe_frame(ctx, id, &c, &g, &depth);
	if (!desc)
		return 0;
	struct span_stack *st = stack_of(g);
	if (!st)
		return 0;
	pop_stale(st, g, depth, 1);

	struct span_entry ne = {};
	struct span_entry *parent = find_parent(st, desc->parent_id);
	if (parent) {
		ne.trace_hi = parent->trace_hi;
		ne.trace_lo = parent->trace_lo;
		ne.parent_span_id = parent->span_id;
		ne.flags = parent->flags & FLAG_SAMPLED;
	} else {
		struct gkey gk = gkey_of(g);
		struct inherit_ctx *in = bpf_map_lookup_elem(&inherit, &gk);
		if (in && span_open(in->creator, in->span_id)) {
			ne.trace_hi = in->trace_hi;
			ne.trace_lo = in->trace_lo;
			ne.parent_span_id = in->span_id;
			ne.flags = in->flags & FLAG_SAMPLED;
		} else {
			// The creator's span has closed: this goroutine (a pooled worker,
			// say) is on its own from now on.
			if (in)
				bpf_map_delete_elem(&inherit, &gk);
			// A root: it joins the caller's trace when the request
			// carried a valid traceparent (propagation.h).
			if (!take_remote_parent(g, &ne)) {
				ne.trace_hi = rand64();
				ne.trace_lo = rand64();
				ne.flags = sampled_root(ne.trace_lo) ? FLAG_SAMPLED : 0;
			}
		}
	}
	ne.span_id = rand64();
	ne.stack_depth = depth;
	ne.probe_id = id;

	__u32 d = st->depth;
	if (d >= MAX_DEPTH) {
		if (c)
			c->overflow++;
		return 0;
	}
	if (c)
		c->entries++;
	// Only sampled spans go on the stack: a span without a sampled parent
	// on it is the root of its goroutine's part of the trace, and when the
	// sampler dropped that trace the goroutine switches to the cheap path
	// (unsampled_req) until this frame returns.
	if (!(ne.flags & FLAG_SAMPLED)) {
		struct unsampled_req u = {
			.trace_hi = ne.trace_hi,
			.trace_lo = ne.trace_lo,
			.span_id = ne.span_id,
			.stack_depth = depth,
			.probe_id = id,
		};
		struct gkey gk = gkey_of(g);
		bpf_map_update_elem(&unsampled, &gk, &u, BPF_ANY);
		return 0;
	}
	if (desc->flags & DESC_END_NEXT)
		ne.flags |= FLAG_END_NEXT;
	if (desc->n_entry > 0 || (desc->flags & DESC_END_FROM_ENTRY))
		ne.flags |= keep_entry_values(ctx, desc, ne.span_id);
	ne.start_ns = bpf_ktime_get_ns();
	st->e[d & (MAX_DEPTH - 1)] = ne;
	st->depth = d + 1;
	return 0;
}

// close_span closes the span of probe id opened in this frame and sends its
// one record: entry values, return values, error. At a RET, SP points at the
// return address, exactly as at the entry probe (before the frame is set
// up), so the frame's stack_depth equals its entry's.
static __always_inline int close_span(struct pt_regs *ctx, __u32 id)
{
	struct probe_counters *c;
	__u64 g, depth;
	struct probe_desc *desc = probe_frame(ctx, id, &c, &g, &depth);
	if (!desc)
		return 0;
	struct gkey gk = gkey_of(g);
	struct span_stack *st = bpf_map_lookup_elem(&stacks, &gk);
	if (!st)
		return 0;
	pop_stale(st, g, depth, 0);

	__u32 d = st->depth;
	if (d == 0 || d > MAX_DEPTH) {
		if (c)
			c->unmatched++;
		return 0;
	}
	struct span_entry *top = &st->e[(d - 1) & (MAX_DEPTH - 1)];
	if (top->probe_id != id || top->stack_depth != depth) {
		if (c)
			c->unmatched++;
		return 0;
	}
	struct span_entry s = *top;
	st->depth = d - 1;
	if (c)
		c->returns++;

	struct scratch *sc = scratch_buf();
	if (!sc)
		return 0;
	struct regs regs;
	__u32 off;
	if (desc->flags & DESC_END_FROM_ENTRY) {
		__builtin_memset(&regs, 0, sizeof(regs));
		off = begin_record(sc, EVENT_SPAN, &s, g, &regs);
	} else {
		off = begin_record(sc, EVENT_SPAN, &s, g, 0);
		load_regs(ctx, &regs);
	}
	end_values(sc, off, &regs, desc, c);
	return 0;
}

// end_unsampled ends a goroutine's unsampled trace: its root returned, or
// its frame is gone.
static __always_inline void end_unsampled(__u64 g, struct unsampled_req *u)
{
	struct gkey gk = gkey_of(g);
	bpf_map_delete_elem(&unsampled, &gk);
}

// in_unsampled_entry reports whether an entry at the current frame belongs
// to the goroutine's unsampled trace and is to be skipped: it does when it
// is deeper than the root's frame. An entry at or above the root's frame
// means that frame is gone (a panic unwound it, or the g was reused), so
// the unsampled trace ends and the entry is handled as usual.
static __always_inline int in_unsampled_entry(struct pt_regs *ctx, __u64 g, __u32 id)
{
	struct gkey gk = gkey_of(g);
	struct unsampled_req *u = bpf_map_lookup_elem(&unsampled, &gk);
	if (!u)
		return 0;
	__u64 depth;
	if (frame_depth(g, GO_SP(ctx), &depth))
		return 1;
	if (depth > u->stack_depth) {
		struct probe_counters *c = probe_counters(id);
		if (c)
			c->skipped++;
		return 1;
	}
	end_unsampled(g, u);
	return 0;
}

// in_unsampled_return reports whether a RET belongs to the goroutine's
// unsampled trace; the root's own RET ends that trace.
static __always_inline int in_unsampled_return(struct pt_regs *ctx, __u64 g, __u32 id)
{
	struct gkey gk = gkey_of(g);
	struct unsampled_req *u = bpf_map_lookup_elem(&unsampled, &gk);
	if (!u)
		return 0;
	if (u->probe_id != id)
		return 1;
	__u64 depth;
	if (frame_depth(g, GO_SP(ctx), &depth) || depth != u->stack_depth)
		return 1;
	struct probe_counters *c = probe_counters(id);
	if (c)
		c->returns++;
	end_unsampled(g, u);
	return 1;
}

// end_at runs at the entry of probe id's end_at function, a function its
// caller runs after it returned (net/http's finishRequest after the
// handler). Every open span of the goroutine whose frame is at this frame's
// depth or deeper has returned: they are popped as pop_stale does at any
// entry, so the probe's span (end: next) is closed finished, its end values
// read through the registers saved at its entry, and a RET-mode span
// without a RET seen is abandoned. An unsampled trace whose root frame is
// gone ends too. Called deeper (from inside the probed function) it ends
// nothing: its frame is below theirs.
static __always_inline int end_at(struct pt_regs *ctx, __u32 id)
{
	__u64 g = GO_G(ctx), depth;
	struct probe_counters *c = probe_counters(id);
	if (c)
		c->end_at++;
	if (frame_depth(g, GO_SP(ctx), &depth))
		return 0;
	struct gkey gk = gkey_of(g);
	struct unsampled_req *u = bpf_map_lookup_elem(&unsampled, &gk);
	if (u && depth <= u->stack_depth)
		end_unsampled(g, u);
	struct span_stack *st = bpf_map_lookup_elem(&stacks, &gk);
	if (st)
		pop_stale(st, g, depth, 1);
	return 0;
}

// Generic entry program, attached at Resolved.EntryOffset (after the
// stack-growth check) so a function whose stack grows does not fire twice.
static __always_inline int do_uprobe_entry(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	if (cookie & COOKIE_END_AT)
		return end_at(ctx, (__u32)cookie);
	if (in_unsampled_entry(ctx, GO_G(ctx), (__u32)cookie))
		return 0;
	open_span(ctx, (__u32)cookie);
	// A function whose first instruction is a RET (an empty body) has its
	// entry and return at one address; the kernel gives no order between
	// two uprobes there, so user space attaches only the entry program and
	// sets this bit, and the span closes right away.
	if (cookie & COOKIE_ENTRY_IS_RETURN && !in_unsampled_return(ctx, GO_G(ctx), (__u32)cookie))
		close_span(ctx, (__u32)cookie);
	return 0;
}

// Generic return program, attached at every RET of the function (never a
// uretprobe: it replaces the return address on the stack, which the Go
// runtime copies when it grows the stack).
static __always_inline int do_uprobe_return(struct pt_regs *ctx)
{
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);
	if (in_unsampled_return(ctx, GO_G(ctx), id))
		return 0;
	return close_span(ctx, id);
}

// Each program comes twice: as a perf-event uprobe (one link per offset)
// and as an uprobe_multi program (Linux 6.6+: one BPF link carries every
// offset of a program with its cookies and the PID filter, and creating it
// needs CAP_BPF + CAP_PERFMON where a perf-event uprobe needs CAP_SYS_ADMIN
// on current kernels). User space loads one set or the other
// (probes/attach.go), never both.

SEC("uprobe")
int uprobe_entry(struct pt_regs *ctx)
{
	return do_uprobe_entry(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_entry(struct pt_regs *ctx)
{
	return do_uprobe_entry(ctx);
}

SEC("uprobe")
int uprobe_return(struct pt_regs *ctx)
{
	return do_uprobe_return(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_return(struct pt_regs *ctx)
{
	return do_uprobe_return(ctx);
}

SEC("uprobe")
int uprobe_newproc1(struct pt_regs *ctx)
{
	return do_uprobe_newproc1(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_newproc1(struct pt_regs *ctx)
{
	return do_uprobe_newproc1(ctx);
}

SEC("uprobe")
int uprobe_newproc1_return(struct pt_regs *ctx)
{
	return do_uprobe_newproc1_return(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_newproc1_return(struct pt_regs *ctx)
{
	return do_uprobe_newproc1_return(ctx);
}
