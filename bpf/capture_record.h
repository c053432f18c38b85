// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Records: building a span's record in the scratch buffer and handing it
// to the ring buffer, including the record of an abandoned span.
// Part of the capture object: included by capture.c only, in the order
// capture.c gives, after the headers it includes before this one.

#pragma once

// rebase_stack_regs moves the entry registers that pointed into the
// goroutine's stack to where that memory is now. The runtime copies a
// growing (or, at a GC, shrinking) stack to a new place and frees the old
// one, adjusting every pointer into it by the change of stack.hi; a register
// saved at entry is not adjusted, and a state struct escape analysis kept on
// the caller's stack (the router's RequestState is one) would be read where
// it was: stale, or another goroutine's frame once the old stack is reused.
// At entry the live part of the stack was [SP, hi) with hi = SP +
// stack_depth; no heap pointer lies in it. g must be the span's goroutine.
static __always_inline void rebase_stack_regs(struct regs *saved, struct span_entry *s, __u64 g)
{
	__u64 sp = saved->r[REG_SP];
	__u64 hi_then = sp + s->stack_depth;
	__u64 hi_now = 0;
	if (!g || bpf_probe_read_user(&hi_now, sizeof(hi_now), (void *)(g + 8)) || hi_now == 0 ||
	    hi_now == hi_then || hi_then < sp)
		return;
	for (__u32 i = 0; i < NUM_REGS; i++) {
		__u64 r = saved->r[i];
		if (r >= sp && r < hi_then)
			saved->r[i] = hi_now - (hi_then - r);
	}
}

// begin_record writes a record's header and the span's entry values (taken
// out of entry_vals) into the scratch buffer and returns the offset after
// them. saved, when given, receives the registers as at entry, those that
// pointed into g's stack rebased to where it is now (rebase_stack_regs).
static __noinline __u32 begin_record(struct scratch *sc, __u8 kind, struct span_entry *s, __u64 g, struct regs *saved)
{
	struct event *ev = (struct event *)sc->buf;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	ev->kind = kind;
	ev->flags = s->flags & (FLAG_SAMPLED | FLAG_REMOTE_PARENT);
	ev->n_entry = 0;
	ev->n_return = 0;
	ev->probe_id = s->probe_id;
	ev->pid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->goroutine = g;
	ev->start_ns = s->start_ns;
	ev->end_ns = bpf_ktime_get_ns();
	ev->trace_hi = s->trace_hi;
	ev->trace_lo = s->trace_lo;
	ev->span_id = s->span_id;
	ev->parent_span_id = s->parent_span_id;
	ev->size = 0;
	ev->entry_len = 0;
	ev->has_err = 0;
	if (!(s->flags & FLAG_ENTRY_VALS))
		return sizeof(struct event);
	void *map = &entry_vals;
	__u32 max = ENTRY_VALS_MAX;
	if (s->flags & FLAG_ENTRY_SMALL) {
		map = &entry_small;
		max = ENTRY_SMALL_MAX;
	}
	// Both layouts share their header; data is only read up to max.
	struct entry_vals *ent = bpf_map_lookup_elem(map, &s->span_id);
	if (!ent) {
		ev->flags |= FLAG_ENTRY_LOST;
		return sizeof(struct event);
	}
	if (saved) {
		__builtin_memcpy(saved->r, ent->regs, sizeof(saved->r));
		rebase_stack_regs(saved, s, g);
	}
	__u32 len = ent->len;
	if (len > max)
		len = max;
	if (len > ENTRY_VALS_MAX)
		len = ENTRY_VALS_MAX;
	if (bpf_probe_read_kernel(sc->buf + sizeof(struct event), len, ent->data)) {
		ev->flags |= FLAG_ENTRY_LOST;
		len = 0;
	} else {
		ev->n_entry = ent->n;
		ev->entry_len = len;
	}
	bpf_map_delete_elem(map, &s->span_id);
	return sizeof(struct event) + len;
}

// send copies the record built in the scratch buffer, size bytes, into the
// ring buffer. Waking the reader for every record costs more than writing
// it (the wake-up is an irq_work, an interrupt, a VM exit on a virtual
// machine), so records are batched: the reader is woken once wakeup_bytes
// have accumulated, or when it has gone to sleep on an empty ring; otherwise
// it polls with a short deadline. A full ring drops the whole record.
// (Not inlined: its struct event parameter also keeps the record layout in
// the object's BTF, where the layout test reads it.)
static __noinline void send(struct event *ev, __u32 size, struct probe_counters *c)
{
	// Records are shorter than SCRATCH_SIZE (RECORD_MAX): the mask changes
	// nothing but is a bound the verifier keeps (clang reorders a compare).
	size &= SCRATCH_SIZE - 1;
	ev->size = size;
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (!cfg) {
		flags = BPF_RB_FORCE_WAKEUP;
	} else if (cfg->reader_idle) {
		cfg->reader_idle = 0;
		flags = BPF_RB_FORCE_WAKEUP;
	} else if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= cfg->wakeup_bytes) {
		flags = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, ev, size, flags)) {
		count_lost();
		return;
	}
	if (c)
		c->emitted++;
}

// end_values appends a span's end values (ret[], err) to the record built
// in the scratch buffer at off, read with regs, and sends it.
//
// Global functions (emit_abandoned too) are verified once, not once per
// call site and loop iteration: pop_stale calls them in a loop.
__noinline int end_values(struct scratch *sc, __u32 off, struct regs *regs, struct probe_desc *desc, struct probe_counters *c)
{
	if (!sc || !regs || !desc)
		return 0;
	if (off > sizeof(struct event) + ENTRY_VALS_MAX)
		off = sizeof(struct event) + ENTRY_VALS_MAX;
	__u32 n = desc->n_return;
	if (n > MAX_FETCHES)
		n = MAX_FETCHES;
	((struct event *)sc->buf)->n_return = n;
	off = pack_values(regs, desc->ret, n, sc->buf, off);
	if (desc->has_error && off <= SCRATCH_SIZE - sizeof(struct value)) {
		__u32 used = read_value(regs, &desc->err, (struct value *)(sc->buf + off));
		if (used > DATA_SIZE)
			used = DATA_SIZE;
		off += VALUE_HDR_SIZE + ((used + 7) & ~7U);
		((struct event *)sc->buf)->has_err = 1;
	}
	send((struct event *)sc->buf, off, c);
	return 0;
}

// emit_abandoned reports a span whose frame is gone, with its entry values.
// For an end: next probe that is its end: the span is sent finished, with
// its end values read through the registers saved at entry.
__noinline int emit_abandoned(struct span_entry *s, __u64 g)
{
	if (!s)
		return 0;
	struct probe_counters *c = probe_counters(s->probe_id);
	if (s->flags & FLAG_END_NEXT) {
		if (c)
			c->returns++;
	} else if (c) {
		c->abandoned++;
	}
	if (!(s->flags & FLAG_SAMPLED))
		return 0;
	struct scratch *sc = scratch_buf();
	if (!sc)
		return 0;
	if (!(s->flags & FLAG_END_NEXT)) {
		__u32 off = begin_record(sc, EVENT_ABANDONED, s, g, 0);
		send((struct event *)sc->buf, off, c);
		return 0;
	}
	__u32 id = s->probe_id;
	struct probe_desc *desc = bpf_map_lookup_elem(&descs, &id);
	if (!desc)
		return 0;
	struct regs saved = {};
	__u32 off = begin_record(sc, EVENT_SPAN, s, g, &saved);
	end_values(sc, off, &saved, desc, c);
	return 0;
}
