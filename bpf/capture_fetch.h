// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Fetching values: the registers of an event, ids, frame depth, and the
// reads that copy a value a fetch_desc names out of the traced process.
// Part of the capture object: included by capture.c only, in the order
// capture.c gives, after the headers it includes before this one.

#pragma once

// regs holds the registers a fetch can name, indexed by probes.Reg. They are
// copied out of the context once per event: the verifier only allows context
// reads at constant offsets, and clang turns a switch over the fields into a
// single load from a computed address.
struct regs {
	__u64 r[NUM_REGS];
};

static __always_inline void load_regs(struct pt_regs *ctx, struct regs *r)
{
	// goregs.h: on arm64 the same slots hold R0-R8, RSP and g (R28).
	r->r[REG_RAX] = GO_ARG(ctx, 0);
	r->r[REG_RBX] = GO_ARG(ctx, 1);
	r->r[REG_RCX] = GO_ARG(ctx, 2);
	r->r[REG_RDI] = GO_ARG(ctx, 3);
	r->r[REG_RSI] = GO_ARG(ctx, 4);
	r->r[REG_R8] = GO_ARG(ctx, 5);
	r->r[REG_R9] = GO_ARG(ctx, 6);
	r->r[REG_R10] = GO_ARG(ctx, 7);
	r->r[REG_R11] = GO_ARG(ctx, 8);
	r->r[REG_SP] = GO_SP(ctx);
	r->r[REG_R14] = GO_G(ctx);
}

static __always_inline __u64 reg_value(struct regs *r, __u32 idx)
{
	return idx < NUM_REGS ? r->r[idx] : 0;
}

static __always_inline __u64 rand64(void)
{
	__u64 v = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
	return v ? v : 1; // an all-zero id is invalid in OpenTelemetry
}

// frame_depth computes g.stack.hi - sp. runtime.g starts with
// `stack stack` and stack is {lo, hi uintptr}, so stack.hi is at offset 8
// (runtime/runtime2.go, stable since Go 1.4).
static __always_inline int frame_depth(__u64 g, __u64 sp, __u64 *depth)
{
	__u64 hi = 0;
	if (!g || bpf_probe_read_user(&hi, sizeof(hi), (void *)(g + 8)))
		return -1;
	if (hi < sp)
		return -1;
	*depth = hi - sp;
	return 0;
}

// copy_string copies at most max bytes of a Go string into dst.
static __always_inline void copy_string(struct value *v, __u64 ptr, __u64 len, __u32 max)
{
	__u32 n = len > max ? max : (__u32)len;
	if (len > max)
		v->flags |= VAL_TRUNCATED;
	if (n > STR_MAX)
		n = STR_MAX; // keeps the verifier's bound explicit
	if (ptr == 0 || n == 0)
		return;
	if (bpf_probe_read_user(v->data, n, (void *)ptr)) {
		v->flags |= VAL_MISSING;
		return;
	}
	v->len = n;
}

// copy_string_list copies at most LIST_MAX elements of a []string into v,
// end to end, and returns the data bytes used.
static __noinline __u32 copy_string_list(struct value *v, __u64 ptr, __u64 len)
{
	__u64 hdr[2];
	__u32 pos = 0;
	__u32 n = len > LIST_MAX ? LIST_MAX : (__u32)len;
	if (len > LIST_MAX)
		v->flags |= VAL_TRUNCATED;
	for (__u32 i = 0; i < LIST_MAX; i++) {
		if (i >= n || ptr == 0 || pos > DATA_SIZE - ELEM_MAX)
			break;
		// A string header is {data *byte, len int}: 16 bytes.
		if (bpf_probe_read_user(hdr, sizeof(hdr), (void *)(ptr + 16 * i))) {
			v->flags |= VAL_MISSING;
			break;
		}
		__u32 el = hdr[1] > ELEM_MAX ? ELEM_MAX : (__u32)hdr[1];
		if (hdr[1] > ELEM_MAX)
			v->flags |= VAL_TRUNCATED;
		if (el > ELEM_MAX)
			el = ELEM_MAX;
		if (el && hdr[0] && bpf_probe_read_user(&v->data[pos], el, (void *)hdr[0]))
			el = 0;
		v->elem_len[i & (LIST_MAX - 1)] = el;
		pos += el;
		v->len = i + 1;
	}
	return pos;
}

// read_value fills v from the registers and memory f describes and returns
// how many bytes of v->data it used. It is a global function so the verifier
// checks it once, not once per call site: with sixteen fetches at entry and
// at return, verifying it inline doubled the programs' load time.
__noinline int read_value(struct regs *regs, struct fetch_desc *f, struct value *v)
{
	__u64 w[2] = {0, 0};
	__u32 used = 0;
	if (!regs || !f || !v)
		return 0;
	__u8 kind = f->kind;

	v->word = 0;
	v->word2 = 0;
	v->len = 0;
	v->flags = 0;
	v->kind = kind;
	__builtin_memset(v->elem_len, 0, sizeof(v->elem_len));

	if (f->in_regs) {
		if (f->nregs > 0)
			w[0] = reg_value(regs, f->regs[0]);
		if (f->nregs > 1)
			w[1] = reg_value(regs, f->regs[1]);
		// A slice's third word (capacity) is never needed.
	} else {
		__u64 addr = reg_value(regs, f->base);
		__u32 n = f->noffsets;
		if (n > MAX_OFFSETS)
			n = MAX_OFFSETS;
		for (__u32 i = 0; i + 1 < MAX_OFFSETS; i++) {
			if (i + 1 >= n)
				break;
			__u64 next = 0;
			if (bpf_probe_read_user(&next, sizeof(next), (void *)(addr + f->offsets[i])) ||
			    next == 0) {
				v->flags = VAL_MISSING;
				return 0;
			}
			addr = next;
		}
		if (n > 0)
			addr += f->offsets[(n - 1) & (MAX_OFFSETS - 1)];
		if (kind == KIND_INT || kind == KIND_UINT || kind == KIND_BOOL || kind == KIND_FLOAT) {
			__u32 size = f->size;
			if (size == 0 || size > 8)
				size = 8;
			if (bpf_probe_read_user(&w[0], size, (void *)addr)) {
				v->flags = VAL_MISSING;
				return 0;
			}
		} else if (bpf_probe_read_user(w, sizeof(w), (void *)addr)) {
			v->flags = VAL_MISSING;
			return 0;
		}
	}

	switch (kind) {
	case KIND_STRING:
		v->word = w[1];
		copy_string(v, w[0], w[1], STR_MAX);
		used = v->len;
		break;
	case KIND_STRING_SLICE:
		v->word = w[1];
		used = copy_string_list(v, w[0], w[1]);
		break;
	case KIND_ERROR:
		// An interface is {itab, data}: non-nil iff itab != 0. When data
		// points at a struct that starts with a string (*errors.errorString,
		// *fmt.wrapError), its header is the first 16 bytes; user space keeps
		// the text only when the itab's type says so.
		v->word = w[0];
		v->word2 = w[1];
		if (w[0] && w[1]) {
			__u64 hdr[2] = {0, 0};
			if (!bpf_probe_read_user(hdr, sizeof(hdr), (void *)w[1]) && hdr[0] &&
			    hdr[1] > 0 && hdr[1] <= ERR_LEN_SANE)
				copy_string(v, hdr[0], hdr[1], STR_MAX);
		}
		used = v->len;
		break;
	default:
		// Scalars: in a register the whole word, in memory the low size
		// bytes; user space truncates and sign-extends to Size.
		v->word = w[0];
	}
	return used;
}

static __always_inline struct scratch *scratch_buf(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

// pack_values reads the first n (at most MAX_FETCHES) values f describes
// into buf at off, each cut after the data it used, and returns the offset
// after the last one.
static __always_inline __u32 pack_values(struct regs *regs, struct fetch_desc *f, __u32 n, char *buf, __u32 off)
{
	if (n > MAX_FETCHES)
		n = MAX_FETCHES;
	for (__u32 i = 0; i < MAX_FETCHES; i++) {
		if (i >= n || off > SCRATCH_SIZE - sizeof(struct value))
			break;
		__u32 used = read_value(regs, &f[i], (struct value *)(buf + off));
		if (used > DATA_SIZE)
			used = DATA_SIZE;
		off += VALUE_HDR_SIZE + ((used + 7) & ~7U);
	}
	return off;
}
