//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// traceparent injection into outgoing HTTP/1.x requests without writing to
// user memory (kernel lockdown refuses bpf_probe_write_user). A sock_ops
// program on a cgroup adds every client TCP socket that becomes established
// to a SOCKHASH; an sk_msg program on that map runs in each sendmsg. When
// the sending thread was armed by the capture object (propagation.h:
// net/http.(*Request).write entry put a span context in inject_tids), and
// the message starts with an HTTP/1.x request line, the program inserts
// "traceparent: 00-<trace>-<span>-<flags>\r\n" right after that line with
// bpf_msg_push_data, then disarms the thread. Everything else passes
// untouched. See doc.go for what this covers (HTTP/1.x over plain TCP).

#include "vmlinux.h"
#include "sockets.h"
#include "bpf_helpers.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define SK_PASS 1
#define SK_DROP 0
#define AF_INET 2
#define AF_INET6 10

#define FLAG_SAMPLED 1

// Bytes scanned for the request line's CRLF: method, target and version of
// a router's upstream request are far shorter.
#define LINE_SCAN 256
// An arming older than this belongs to a write that never reached a socket
// on this thread (an error, or the goroutine moved to another thread while
// blocked): the connection write's entry and its syscall are microseconds
// apart, and a later request on the thread must not carry a stale header.
#define ARM_TTL_NS (50ULL * 1000 * 1000)

// "traceparent: 00-" + 32 hex + "-" + 16 hex + "-" + 2 hex + "\r\n"
#define TP_HDR_LEN 70

// "tracestate: " ahead of the value in the header pushed.
#define TS_HDR_NAME_LEN 12

#include "tracecontext.h"

// Client sockets, keyed by socket cookie. A socket leaves the map by itself
// when it closes.
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} client_socks SEC(".maps");

struct inject_counters {
	__u64 injected;   // headers inserted
	__u64 not_http;   // armed thread wrote something that is no request line
	__u64 push_error; // bpf_msg_push_data or pull failed
	__u64 sockets;    // sockets added to client_socks
	__u64 stale;      // armings too old to belong to the write at hand
	__u64 undone;     // pushed bytes popped again because they could not be written
	__u64 dropped;    // messages dropped because a pop failed (never sent half-written)
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inject_counters);
} inject_counters SEC(".maps");

// Failure switches, for tests only: inject_fault[0] is a set of FAULT_*
// bits, each making one check after a push act as if it had failed, so a
// test can drive every undo path. The agent never writes it (always 0).
#define FAULT_TP_PULL (1 << 0)   // pull of the pushed traceparent bytes
#define FAULT_TP_BOUNDS (1 << 1) // data_end check of those bytes
#define FAULT_TS_PULL (1 << 2)   // pull of the pushed tracestate bytes
#define FAULT_TS_BOUNDS (1 << 3) // data_end check of the whole tracestate line
#define FAULT_TS_COPY (1 << 4)   // per-byte check in the tracestate value copy
#define FAULT_TS_END (1 << 5)    // data_end check of the tracestate line's CRLF
#define FAULT_POP (1 << 6)       // the undo (bpf_msg_pop_data) itself

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} inject_fault SEC(".maps");

static __always_inline __u32 faults(void)
{
	__u32 zero = 0;
	__u32 *f = bpf_map_lookup_elem(&inject_fault, &zero);
	return f ? *f : 0;
}

// Process whose writes are considered; 0 means any (set before load).
volatile const __u32 target_tgid = 0;

static __always_inline struct inject_counters *counts(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&inject_counters, &zero);
}

// undo removes n bytes pushed at off that could not be written: the kernel
// does not clear pushed space, so sending it would put stale kernel memory
// into the request. When even the pop fails the message is dropped (the
// write fails in the target) rather than sent with those bytes in it.
static __always_inline int undo(struct sk_msg_md *msg, __u32 off, __u32 n, struct inject_counters *c,
				__u32 fault)
{
	if (c)
		c->push_error++;
	if ((fault & FAULT_POP) || bpf_msg_pop_data(msg, off, n, 0)) {
		if (c)
			c->dropped++;
		return SK_DROP;
	}
	if (c)
		c->undone++;
	return SK_PASS;
}

// Sockets the target is connecting, keyed by socket cookie, between the
// connect call and the handshake's end.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} connecting SEC(".maps");

SEC("sockops")
int sockops_track(struct bpf_sock_ops *skops)
{
	__u64 key;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		// Runs in the connect() call, in the connecting task: the only
		// place that knows the process. Another tracer's target is left
		// to its own injector (a socket takes one sk_msg program).
		if (target_tgid && (bpf_get_current_pid_tgid() >> 32) != target_tgid)
			return 1;
		key = bpf_get_socket_cookie(skops);
		__u8 one = 1;
		bpf_map_update_elem(&connecting, &key, &one, BPF_ANY);
		return 1;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		// Runs in softirq context when the handshake completes; only a
		// socket in the map may be added (established sockets only).
		if (skops->family != AF_INET && skops->family != AF_INET6)
			return 1;
		key = bpf_get_socket_cookie(skops);
		if (!bpf_map_lookup_elem(&connecting, &key))
			return 1;
		bpf_map_delete_elem(&connecting, &key);
		if (!bpf_sock_hash_update(skops, &client_socks, &key, BPF_ANY)) {
			struct inject_counters *c = counts();
			if (c)
				c->sockets++;
		}
		return 1;
	}
	return 1;
}

static __always_inline char hex(__u64 v)
{
	v &= 0xf;
	return v < 10 ? '0' + v : 'a' + (v - 10);
}

static __always_inline void put_hex64(char *d, __u64 v)
{
#pragma unroll
	for (int i = 0; i < 16; i++)
		d[i] = hex(v >> (60 - 4 * i));
}

// request_line_end returns the offset just past the request line's CRLF,
// or 0 when the message does not start like "METHOD target HTTP/1.x\r\n".
static __always_inline __u32 request_line_end(struct sk_msg_md *msg)
{
	char *data = msg->data, *end = msg->data_end;
	if (data + 1 > end || data[0] < 'A' || data[0] > 'Z')
		return 0;
	for (__u32 i = 9; i < LINE_SCAN - 1; i++) {
		if (data + i + 2 > end)
			return 0;
		if (data[i] != '\r')
			continue;
		if (data[i + 1] != '\n')
			return 0;
		// "HTTP/1." then a digit right before the CRLF.
		char *v = data + i - 8;
		if (v < data || v + 8 > end)
			return 0;
		if (v[0] != 'H' || v[1] != 'T' || v[2] != 'T' || v[3] != 'P' || v[4] != '/' ||
		    v[5] != '1' || v[6] != '.')
			return 0;
		return i + 2;
	}
	return 0;
}

// push_tracestate inserts "tracestate: <value>\r\n" at off when the trace
// came with one; SK_PASS, or SK_DROP when bytes it pushed could be neither
// written nor removed.
static __noinline int push_tracestate(struct sk_msg_md *msg, __u32 off, struct inject_ctx *ic,
				      struct inject_counters *c, __u32 fault)
{
	struct trace_key k = {.trace_hi = ic->trace_hi, .trace_lo = ic->trace_lo};
	struct trace_state *ts = bpf_map_lookup_elem(&trace_states, &k);
	if (!ts)
		return SK_PASS;
	__u32 n = ts->len;
	if (n == 0 || n > TS_MAX)
		return SK_PASS;
	__u32 total = TS_HDR_NAME_LEN + n + 2;
	if (off > LINE_SCAN + TP_HDR_LEN || bpf_msg_push_data(msg, off, total, 0)) {
		if (c)
			c->push_error++;
		return SK_PASS; // nothing was inserted
	}
	// From here on the message holds total unwritten bytes at off: every
	// way out that does not write them all removes them.
	if ((fault & FAULT_TS_PULL) || bpf_msg_pull_data(msg, off, off + total, 0))
		return undo(msg, off, total, c, fault);
	char *d = msg->data;
	// Checked again per byte below: the verifier cannot carry total's
	// relation to n into the loop.
	if ((fault & FAULT_TS_BOUNDS) || (void *)(d + TS_HDR_NAME_LEN) > msg->data_end ||
	    (void *)(d + total) > msg->data_end)
		return undo(msg, off, total, c, fault);
	const char name[] = "tracestate: ";
#pragma unroll
	for (int i = 0; i < TS_HDR_NAME_LEN; i++)
		d[i] = name[i];
	for (__u32 i = 0; i < TS_MAX; i++) {
		if (i >= n)
			break;
		char *p = d + TS_HDR_NAME_LEN + i;
		if ((fault & FAULT_TS_COPY) || (void *)(p + 1) > msg->data_end)
			return undo(msg, off, total, c, fault);
		*p = ts->v[i & (TS_MAX - 1)];
	}
	char *e = d + TS_HDR_NAME_LEN + (n & (2 * TS_MAX - 1));
	if ((fault & FAULT_TS_END) || (void *)(e + 2) > msg->data_end)
		return undo(msg, off, total, c, fault);
	e[0] = '\r';
	e[1] = '\n';
	return SK_PASS;
}

SEC("sk_msg")
int skmsg_inject(struct sk_msg_md *msg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (target_tgid && (pid_tgid >> 32) != target_tgid)
		return SK_PASS;
	__u32 tid = (__u32)pid_tgid;
	struct inject_ctx *armed = bpf_map_lookup_elem(&inject_tids, &tid);
	if (!armed)
		return SK_PASS;
	struct inject_ctx ic = *armed;
	// One header per request: whatever happens next, this thread's next
	// write is not this request's start any more.
	bpf_map_delete_elem(&inject_tids, &tid);
	struct inject_counters *c = counts();
	if (bpf_ktime_get_ns() - ic.armed_ns > ARM_TTL_NS) {
		if (c)
			c->stale++;
		return SK_PASS;
	}

	__u32 scan = msg->size < LINE_SCAN ? msg->size : LINE_SCAN;
	if (bpf_msg_pull_data(msg, 0, scan, 0)) {
		if (c)
			c->push_error++;
		return SK_PASS;
	}
	__u32 off = request_line_end(msg);
	if (!off || off > LINE_SCAN) {
		if (c)
			c->not_http++;
		return SK_PASS;
	}
	__u32 fault = faults();
	if (bpf_msg_push_data(msg, off, TP_HDR_LEN, 0)) {
		if (c)
			c->push_error++;
		return SK_PASS; // nothing was inserted
	}
	// TP_HDR_LEN unwritten bytes sit at off until the header is complete:
	// every way out before that removes them.
	if ((fault & FAULT_TP_PULL) || bpf_msg_pull_data(msg, off, off + TP_HDR_LEN, 0))
		return undo(msg, off, TP_HDR_LEN, c, fault);
	// After the pull, data points at the pushed bytes.
	char *d = msg->data;
	if ((fault & FAULT_TP_BOUNDS) || (void *)(d + TP_HDR_LEN) > msg->data_end)
		return undo(msg, off, TP_HDR_LEN, c, fault);
	const char name[] = "traceparent: 00-";
#pragma unroll
	for (int i = 0; i < 16; i++)
		d[i] = name[i];
	put_hex64(d + 16, ic.trace_hi);
	put_hex64(d + 32, ic.trace_lo);
	d[48] = '-';
	put_hex64(d + 49, ic.span_id);
	d[65] = '-';
	d[66] = '0';
	d[67] = (ic.flags & FLAG_SAMPLED) ? '1' : '0';
	d[68] = '\r';
	d[69] = '\n';
	if (c)
		c->injected++;
	return push_tracestate(msg, off + TP_HDR_LEN, &ic, c, fault);
}
