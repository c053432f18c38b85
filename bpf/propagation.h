// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// W3C trace context in the capture object (included by capture.c after
// capture_types.h and capture_maps.h, which define span_entry and the stacks
// map this file uses). Two halves:
//
// Extract: net/http parses each request header line in
// net/textproto.readMIMEHeader on the connection's goroutine, the same
// goroutine that then runs the handler (HTTP/1.x). A uprobe on its call of
// net/textproto.canonicalMIMEHeaderKey sees every header name, with the rest
// of its line behind it in memory; a valid traceparent becomes the
// goroutine's pending remote parent, which the next root span opened on that
// goroutine consumes (take_remote_parent). net/textproto.readMIMEHeader's
// entry clears it, so a header block without a traceparent (the next request
// on a keep-alive connection, a reused goroutine) never inherits one.
//
// Inject (capture side): net/http.(*persistConn).roundTrip runs on the
// goroutine that called Client.Do, inside the caller's spans; it records the
// innermost open span keyed by the connection (*persistConn), which carries
// one request at a time. The connection's writeLoop goroutine later writes
// that request and flushes it through net/http.persistConnWriter.Write,
// whose receiver holds the same *persistConn (entry: the context moves to
// the current thread, inject_tids), where the sk_msg program of inject.c
// picks it up during the write syscall.

#include "tracecontext.h"

// remote_ctx is a parsed incoming traceparent waiting for its root span.
struct remote_ctx {
	__u64 trace_hi;
	__u64 trace_lo;
	__u64 span_id;
	__u64 flags; // FLAG_SAMPLED from the header's flags; REMOTE_UNUSABLE
};

// A remote_ctx flag: this header block had an invalid traceparent, or more
// than one. W3C Trace Context (level 1, 3.2: traceparent is a single
// value, and several headers combine into one invalid value; the spec's
// test suite expects a new trace for two) treats that as no traceparent,
// and a later line of the same block cannot make it valid again.
#define REMOTE_UNUSABLE 0x100

// traceparent: "vv-" + 32 + "-" + 16 + "-" + "ff": 55 characters.
#define TP_NAME_LEN 12 // "traceparent:"
#define TP_VALUE_LEN 55
#define TP_LINE_MAX 96 // name, optional whitespace, value, room to spot a longer value

#define TS_NAME_LEN 11 // "tracestate:"

// tracestate of the request being read, per goroutine, until its root
// span takes it together with the traceparent.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct gkey);
	__type(value, struct trace_state);
} pending_states SEC(".maps");

// state_join is a trace_state with room to append one more line's value
// at any length up to TS_MAX: its head is a struct trace_state, which is
// what pending_states keeps of it.
struct state_join {
	__u32 len;
	__u32 _pad;
	char v[2 * TS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct state_join);
} state_scratch SEC(".maps");

// Pending remote parent per goroutine (g pointer). LRU: a connection that
// closes between header and handler leaves one behind.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct gkey);
	__type(value, struct remote_ctx);
} remote_parents SEC(".maps");

// Span context of an outgoing request, keyed by the connection it goes out
// on, its *persistConn (and the process, struct gkey: addresses repeat
// across processes), from roundTrip (caller goroutine) to the connection
// write (writeLoop goroutine). net/http's HTTP/1 transport sends one
// request at a time on a connection: the next roundTrip on it starts only
// after the previous request was written (readLoop waits for the write
// before it returns the connection to the idle pool).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct gkey);
	__type(value, struct inject_ctx);
} inject_reqs SEC(".maps");

// Counters of the propagation programs, for tests and stats.
struct propagation_counters {
	__u64 extracted;  // valid traceparent headers seen
	__u64 invalid;    // traceparent headers ignored as invalid
	__u64 consumed;   // root spans that took a remote parent
	__u64 recorded;   // outgoing requests given a span context
	__u64 handed;     // connection writes that armed their thread
	__u64 duplicate;  // header blocks with more than one traceparent (new trace)
	__u64 ts_dropped; // tracestate headers dropped whole (combined past TS_MAX)
};

// Per process (tgid); user space deletes a process's entry when it detaches.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct propagation_counters);
} prop_counters SEC(".maps");

// Zeroed counters, the value a new prop_counters entry starts from.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct propagation_counters);
} empty_prop_counters SEC(".maps");

static __always_inline struct propagation_counters *prop_counts(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct propagation_counters *pc = bpf_map_lookup_elem(&prop_counters, &tgid);
	if (pc)
		return pc;
	__u32 zero = 0;
	struct propagation_counters *empty = bpf_map_lookup_elem(&empty_prop_counters, &zero);
	if (!empty)
		return 0;
	bpf_map_update_elem(&prop_counters, &tgid, empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(&prop_counters, &tgid);
}

static __always_inline int lower_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

// parse_hex64 reads 16 lowercase hex digits at s; -1 on any other byte.
static __always_inline int parse_hex64(const char *s, __u64 *out)
{
	__u64 v = 0;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		int d = lower_hex(s[i]);
		if (d < 0)
			return -1;
		v = (v << 4) | (__u64)d;
	}
	*out = v;
	return 0;
}

// parse_traceparent validates a traceparent value of n bytes at v as the W3C
// Trace Context spec (level 1) says: version two lowercase hex digits, not
// ff; for version 00 exactly 55 characters, for a later version at least 55
// with a '-' after the flags; ids lowercase hex and not all zero.
static __noinline int parse_traceparent(const char *v, __u32 n, struct remote_ctx *out)
{
	if (n < TP_VALUE_LEN)
		return -1;
	int v0 = lower_hex(v[0]), v1 = lower_hex(v[1]);
	if (v0 < 0 || v1 < 0 || (v0 == 15 && v1 == 15))
		return -1;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-')
		return -1;
	if (v0 == 0 && v1 == 0) {
		if (n != TP_VALUE_LEN)
			return -1;
	} else if (n > TP_VALUE_LEN && v[TP_VALUE_LEN] != '-') {
		return -1;
	}
	if (parse_hex64(v + 3, &out->trace_hi) || parse_hex64(v + 19, &out->trace_lo) ||
	    parse_hex64(v + 36, &out->span_id))
		return -1;
	if ((out->trace_hi | out->trace_lo) == 0 || out->span_id == 0)
		return -1;
	int f0 = lower_hex(v[53]), f1 = lower_hex(v[54]);
	if (f0 < 0 || f1 < 0)
		return -1;
	out->flags = (f1 & 1) ? FLAG_SAMPLED : 0;
	return 0;
}

struct header_line {
	char b[TP_LINE_MAX];
};

// Scratch for one header line (96 bytes plus the parse would crowd the
// 512-byte BPF stack next to the callers' frames).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct header_line);
} header_scratch SEC(".maps");

// key_scan holds the bytes after a header name, to find the line's end.
#define KEY_SCAN 512 // name, colon, whitespace and a tracestate of TS_MAX; a power of two
struct key_scan {
	char b[KEY_SCAN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct key_scan);
} key_scratch SEC(".maps");

static __always_inline char lower_ascii(char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

// read_tracestate adds the value of a "tracestate:" line of len bytes at
// ptr to the goroutine's pending tracestate. Several tracestate lines are
// one list joined with commas (RFC 9110 5.3, as W3C Trace Context says);
// a list that grows past TS_MAX is dropped whole (kept as length 0, so a
// later line does not start it again) rather than cut inside an entry.
static __noinline void read_tracestate(__u64 g, __u64 ptr, __u64 len)
{
	char head[TS_NAME_LEN + 8] = {};
	__u32 n = len > sizeof(head) ? sizeof(head) : (__u32)len;
	if (n > sizeof(head))
		n = sizeof(head);
	if (n == 0 || bpf_probe_read_user(head, n, (void *)ptr))
		return;
	__u32 start = TS_NAME_LEN;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (start < n && (head[start] == ' ' || head[start] == '\t'))
			start++;
	}
	__u64 vlen = len - start;
	if (vlen == 0)
		return; // an empty line adds nothing to the list
	__u32 zero = 0;
	struct state_join *sj = bpf_map_lookup_elem(&state_scratch, &zero);
	if (!sj)
		return;
	__u32 have = 0;
	struct gkey gk = gkey_of(g);
	struct trace_state *prev = bpf_map_lookup_elem(&pending_states, &gk);
	if (prev) {
		have = prev->len;
		if (have == 0 || have > TS_MAX)
			return; // already dropped
		__builtin_memcpy(sj, prev, sizeof(*prev));
	}
	__u64 total = have + (have ? 1 : 0) + vlen;
	struct propagation_counters *pc = prop_counts();
	if (vlen > TS_MAX || total > TS_MAX) {
		sj->len = 0;
		bpf_map_update_elem(&pending_states, &gk, sj, BPF_ANY);
		if (pc)
			pc->ts_dropped++;
		return;
	}
	__u32 at = have;
	if (have) {
		sj->v[have & (TS_MAX - 1)] = ',';
		at = have + 1;
	}
	__u32 vl = (__u32)vlen;
	// Both bounds explicit for the verifier: at < TS_MAX, vl <= TS_MAX,
	// and v has room for 2 * TS_MAX.
	at &= TS_MAX - 1;
	if (vl > TS_MAX)
		return;
	if (bpf_probe_read_user(sj->v + at, vl, (void *)(ptr + start)))
		return;
	sj->len = (__u32)total;
	bpf_map_update_elem(&pending_states, &gk, sj, BPF_ANY);
}

// handle_header_line looks at one request header line of len bytes at ptr
// (name, colon, value; no line ending) read on goroutine g. Global, so the
// verifier checks it once whatever the caller's loop states.
__noinline int handle_header_line(__u64 g, __u64 ptr, __u64 len)
{
	if (!ptr || len <= TS_NAME_LEN || len > 4096)
		return 0;
	// Both names start "trace": one small read rejects other lines.
	char head[TP_NAME_LEN] = {};
	if (bpf_probe_read_user(head, sizeof(head), (void *)ptr))
		return 0;
	const char state[] = "tracestate:";
	int is_state = 1;
#pragma unroll
	for (int i = 0; i < TS_NAME_LEN; i++)
		if (lower_ascii(head[i]) != state[i])
			is_state = 0;
	if (is_state) {
		read_tracestate(g, ptr, len);
		return 0;
	}
	// A traceparent line too short to be valid still counts: it makes a
	// later one in the block a duplicate (parse_traceparent rejects it on
	// its length before reading past it).
	__u32 zero = 0;
	struct header_line *l = bpf_map_lookup_elem(&header_scratch, &zero);
	if (!l)
		return 0;
	__u32 n = len > TP_LINE_MAX ? TP_LINE_MAX : (__u32)len;
	if (n > TP_LINE_MAX)
		n = TP_LINE_MAX; // keeps the verifier's bound explicit
	if (bpf_probe_read_user(l->b, n, (void *)ptr))
		return 0;
	const char name[] = "traceparent:";
#pragma unroll
	for (int i = 0; i < TP_NAME_LEN; i++)
		if (lower_ascii(l->b[i]) != name[i])
			return 0;
	struct propagation_counters *pc = prop_counts();
	struct gkey gk = gkey_of(g);
	struct remote_ctx *prev = bpf_map_lookup_elem(&remote_parents, &gk);
	if (prev) {
		// A second traceparent line in this header block: no traceparent.
		if (pc && !(prev->flags & REMOTE_UNUSABLE))
			pc->duplicate++;
		prev->flags |= REMOTE_UNUSABLE;
		return 0;
	}
	// Optional whitespace after the colon; the value runs to the line's end.
	__u32 start = TP_NAME_LEN;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (start < n && (l->b[start] == ' ' || l->b[start] == '\t'))
			start++;
	}
	struct remote_ctx rc = {};
	// start <= 20, so the 56 bytes the parse may look at (value and the
	// byte after it, copied whenever the value is longer) lie in l->b.
	__u64 vlen = len - start;
	if (start > TP_NAME_LEN + 8 ||
	    parse_traceparent(&l->b[start], vlen > 0xffff ? 0xffff : (__u32)vlen, &rc)) {
		if (pc)
			pc->invalid++;
		// An invalid value is ignored, as if absent (W3C Trace Context
		// level 1, section 3.2.2): the request starts a fresh trace. It
		// is remembered, so a valid line after it counts as a second.
		struct remote_ctx bad = {.flags = REMOTE_UNUSABLE};
		bpf_map_update_elem(&remote_parents, &gk, &bad, BPF_ANY);
		return 0;
	}
	bpf_map_update_elem(&remote_parents, &gk, &rc, BPF_ANY);
	if (pc)
		pc->extracted++;
	return 0;
}

// line_end returns where the header line in sc ends (the first CR or LF at
// or after the name), less trailing whitespace, or 0 when there is none in
// the first got bytes. Global, so the verifier checks its loop once.
__noinline int line_end(struct key_scan *sc, __u32 got)
{
	if (!sc)
		return 0;
	__u32 end = 0;
	for (__u32 i = TS_NAME_LEN; i < KEY_SCAN; i++) {
		if (i >= got)
			break;
		char c = sc->b[i];
		if (c == '\r' || c == '\n') {
			end = i;
			break;
		}
	}
	for (int i = 0; i < 8; i++) {
		if (end <= TS_NAME_LEN)
			break;
		char c = sc->b[(end - 1) & (KEY_SCAN - 1)];
		if (c != ' ' && c != '\t')
			break;
		end--;
	}
	return end;
}

// The call of net/textproto.canonicalMIMEHeaderKey in readMIMEHeader, with
// each header line's name (Go 1.26, net/textproto/reader.go):
//
//	func canonicalMIMEHeaderKey(a []byte) (_ string, ok bool)
//
// a (RAX pointer, RBX length) is a prefix of the line readMIMEHeader read, so
// the colon and the value follow it in memory and the line ends at CR or
// LF. Only names as long as "traceparent" or "tracestate" read anything.
// The probe sits on the CALL instruction (probes.Binary.CallSites), which
// the kernel emulates, with the argument registers already set: it fires
// once per header line read from a connection, and not for the Header.Get,
// Set and Add calls that reach canonicalMIMEHeaderKey's entry with names
// of the program's own (a dozen a request in a router). Where readMIMEHeader
// has no direct call, the probe is at the entry, after the stack check.
static __always_inline int do_uprobe_header_line(struct pt_regs *ctx)
{
	__u64 ptr = GO_ARG(ctx, 0), klen = GO_ARG(ctx, 1);
	if (!ptr || (klen != TP_NAME_LEN - 1 && klen != TS_NAME_LEN - 1))
		return 0;
	__u32 zero = 0;
	struct key_scan *sc = bpf_map_lookup_elem(&key_scratch, &zero);
	if (!sc)
		return 0;
	__u32 got = KEY_SCAN;
	if (bpf_probe_read_user(sc->b, KEY_SCAN, (void *)ptr)) {
		// The buffer may end closer than KEY_SCAN to an unmapped page.
		got = TP_LINE_MAX;
		if (bpf_probe_read_user(sc->b, TP_LINE_MAX, (void *)ptr))
			return 0;
	}
	// Constant indexes: the verifier does not bound klen from the compares.
	char colon = klen == TP_NAME_LEN - 1 ? sc->b[TP_NAME_LEN - 1] : sc->b[TS_NAME_LEN - 1];
	if (colon != ':')
		return 0;
	__u32 end = line_end(sc, got);
	if (end == 0)
		return 0; // no line end in reach: longer than any value we keep
	return handle_header_line(GO_G(ctx), ptr, end);
}

// Entry of net/textproto.readMIMEHeader: a new header block starts on this
// goroutine, so a remote parent left by an earlier one is stale.
static __always_inline int do_uprobe_header_block(struct pt_regs *ctx)
{
	struct gkey gk = gkey_of(GO_G(ctx));
	bpf_map_delete_elem(&remote_parents, &gk);
	bpf_map_delete_elem(&pending_states, &gk);
	return 0;
}

// take_remote_parent makes ne the child of the goroutine's pending remote
// parent, if any, and consumes it: one incoming header, one root span.
static __always_inline int take_remote_parent(__u64 g, struct span_entry *ne)
{
	struct gkey gk = gkey_of(g);
	struct remote_ctx *rc = bpf_map_lookup_elem(&remote_parents, &gk);
	if (!rc)
		return 0;
	if (rc->flags & REMOTE_UNUSABLE) {
		// No valid traceparent: a new trace, and the tracestate goes too
		// (W3C: only with a valid traceparent).
		bpf_map_delete_elem(&remote_parents, &gk);
		bpf_map_delete_elem(&pending_states, &gk);
		return 0;
	}
	ne->trace_hi = rc->trace_hi;
	ne->trace_lo = rc->trace_lo;
	ne->parent_span_id = rc->span_id;
	// Parent-based sampling: the caller's decision wins over the ratio.
	ne->flags = (rc->flags & FLAG_SAMPLED) | FLAG_REMOTE_PARENT;
	bpf_map_delete_elem(&remote_parents, &gk);
	// The caller's tracestate goes with its trace (W3C: only with a valid
	// traceparent), for the injector.
	// A request of the same trace without one (or with one dropped as too
	// long) clears what an earlier request left, so it is not passed on
	// with a tracestate its caller did not send.
	struct trace_key k = {.trace_hi = ne->trace_hi, .trace_lo = ne->trace_lo};
	struct trace_state *ts = bpf_map_lookup_elem(&pending_states, &gk);
	if (ts && ts->len) // 0: dropped whole, too long
		bpf_map_update_elem(&trace_states, &k, ts, BPF_ANY);
	else
		bpf_map_delete_elem(&trace_states, &k);
	if (ts)
		bpf_map_delete_elem(&pending_states, &gk);
	struct propagation_counters *pc = prop_counts();
	if (pc)
		pc->consumed++;
	return 1;
}

// Entry of net/http.(*persistConn).roundTrip:
//
//	func (pc *persistConn) roundTrip(req *transportRequest) (resp *Response, err error)
//
// RAX is pc, the connection whose writeLoop writes req. R14 is the calling
// goroutine, whose innermost open span becomes the outgoing request's
// parent. A request sent while no span is open clears what an earlier one
// left on the connection (a write that failed before reaching the socket),
// so the next request on it never carries a stale header.
static __always_inline int do_uprobe_client_roundtrip(struct pt_regs *ctx)
{
	__u64 g = GO_G(ctx), conn = GO_ARG(ctx, 0);
	if (!conn)
		return 0;
	struct inject_ctx ic = {};
	struct gkey gk = gkey_of(g), rk = gkey_of(conn);
	// An unsampled trace is passed on too, with its sampled flag clear, so
	// the callee drops it as well.
	struct unsampled_req *u = bpf_map_lookup_elem(&unsampled, &gk);
	if (u) {
		ic.trace_hi = u->trace_hi;
		ic.trace_lo = u->trace_lo;
		ic.span_id = u->span_id;
	} else {
		struct span_stack *st = bpf_map_lookup_elem(&stacks, &gk);
		__u32 d = st ? st->depth : 0;
		if (d == 0 || d > MAX_DEPTH) {
			bpf_map_delete_elem(&inject_reqs, &rk);
			return 0;
		}
		struct span_entry *top = &st->e[(d - 1) & (MAX_DEPTH - 1)];
		ic.trace_hi = top->trace_hi;
		ic.trace_lo = top->trace_lo;
		ic.span_id = top->span_id;
		ic.flags = top->flags & FLAG_SAMPLED;
	}
	bpf_map_update_elem(&inject_reqs, &rk, &ic, BPF_ANY);
	struct propagation_counters *pc = prop_counts();
	if (pc)
		pc->recorded++;
	return 0;
}

// Entry of net/http.persistConnWriter.Write, the connection write under
// the transport's bufio.Writer (writeLoop goroutine):
//
//	type persistConnWriter struct{ pc *persistConn }
//	func (w persistConnWriter) Write(p []byte) (n int, err error)
//
// The receiver, one pointer, is in RAX: the connection roundTrip keyed the
// context by. Request.write only fills the buffer, and writeLoop flushes it
// after Request.write returned. Here, just before the write syscall, the
// context moves to the thread, the only identity the sk_msg program has.
// The first write of a request carries the request line; later ones (a
// long body) find nothing.
static __always_inline int do_uprobe_conn_write(struct pt_regs *ctx)
{
	struct gkey ck = gkey_of(GO_ARG(ctx, 0));
	struct inject_ctx *ic = bpf_map_lookup_elem(&inject_reqs, &ck);
	if (!ic)
		return 0;
	__u64 tid = bpf_get_current_pid_tgid();
	struct inject_ctx copy = *ic;
	copy.armed_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&inject_tids, &tid, &copy, BPF_ANY);
	bpf_map_delete_elem(&inject_reqs, &ck);
	struct propagation_counters *pc = prop_counts();
	if (pc)
		pc->handed++;
	return 0;
}

// As in capture.c, each program comes as a perf-event uprobe and as an
// uprobe_multi program; user space loads the set of its link mode.

SEC("uprobe")
int uprobe_header_line(struct pt_regs *ctx)
{
	return do_uprobe_header_line(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_header_line(struct pt_regs *ctx)
{
	return do_uprobe_header_line(ctx);
}

SEC("uprobe")
int uprobe_header_block(struct pt_regs *ctx)
{
	return do_uprobe_header_block(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_header_block(struct pt_regs *ctx)
{
	return do_uprobe_header_block(ctx);
}

SEC("uprobe")
int uprobe_client_roundtrip(struct pt_regs *ctx)
{
	return do_uprobe_client_roundtrip(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_client_roundtrip(struct pt_regs *ctx)
{
	return do_uprobe_client_roundtrip(ctx);
}

SEC("uprobe")
int uprobe_conn_write(struct pt_regs *ctx)
{
	return do_uprobe_conn_write(ctx);
}

SEC("uprobe.multi")
int uprobe_multi_conn_write(struct pt_regs *ctx)
{
	return do_uprobe_conn_write(ctx);
}
