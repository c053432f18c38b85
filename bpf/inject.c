//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// traceparent injection into outgoing HTTP/1.x requests without writing to
// user memory (kernel lockdown refuses bpf_probe_write_user). A sock_ops
// program on a cgroup adds every client TCP socket that becomes established
// to a SOCKHASH; an sk_msg program on that map runs in each sendmsg. When
// the sending thread was armed by the capture object (propagation.h: the
// entry of net/http.persistConnWriter.Write put a span context in
// inject_tids), and the message starts with an HTTP/1.x request line, the
// program inserts "traceparent: 00-<trace>-<span>-<flags>\r\n" right after
// that line with bpf_msg_push_data, then disarms the thread. Everything else passes
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

// Bytes from the message's start searched for a traceparent or tracestate
// line the application wrote itself (it forwards the caller's headers):
// the router's upstream header blocks are a few hundred bytes. A line that
// starts past this is not seen, and the request gets a second header.
#define HDR_SCAN 1024
// The value of a version-00 traceparent: "00-" 32 "-" 16 "-" 2.
#define TP_VALUE_LEN 55

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
	__u64 replaced;   // traceparent values the application wrote, overwritten in place
	__u64 kept;       // requests whose own traceparent could not be overwritten: left alone
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

// Processes whose connections are watched: one injector serves every
// traced process of the agent, and user space adds a process here when it
// attaches with injection and removes it when it detaches. Key 0 means
// every process (a tracer attached to every process of a binary).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} traced_tgids SEC(".maps");

static __always_inline int traced(__u32 tgid)
{
	__u32 any = 0;
	return bpf_map_lookup_elem(&traced_tgids, &tgid) || bpf_map_lookup_elem(&traced_tgids, &any);
}

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
		// place that knows the process. Untraced processes' sockets stay
		// out of the map (a socket takes one sk_msg program).
		if (!traced(bpf_get_current_pid_tgid() >> 32))
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
// Global, so the verifier checks it once and its callers see one unknown
// offset rather than one exact value per loop exit to follow.
__noinline __u32 request_line_end(struct sk_msg_md *msg)
{
	if (!msg)
		return 0;
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

// What scan_headers found among the application's own header lines.
struct scan_result {
	__u32 traceparent; // a traceparent line is there
	__u32 tp_value;    // where its value starts, when exactly TP_VALUE_LEN bytes; else 0
	__u32 tracestate;  // a tracestate line is there
};

// Per CPU, so the scan loop carries no findings in registers: the
// verifier then prunes its paths at every iteration.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scan_result);
} scan_scratch SEC(".maps");

static __always_inline int is_name(const char *q, const char *name, int n)
{
#pragma unroll
	for (int i = 0; i < n; i++) {
		char ch = q[i];
		if (ch >= 'A' && ch <= 'Z')
			ch += 'a' - 'A';
		if (ch != name[i])
			return 0;
	}
	return 1;
}

#define LINE_NEXT 0
#define LINE_BLANK 1 // the blank line that ends the header block

// check_line looks at the header line starting at offset at for a
// traceparent or tracestate name (case-insensitive; net/http writes
// "Traceparent") and notes it in r. Global, so the verifier checks it once
// rather than in every iteration of the scan.
__noinline int check_line(struct sk_msg_md *msg, __u32 at, struct scan_result *r)
{
	if (!msg || !r || at >= HDR_SCAN)
		return LINE_BLANK;
	// The empty asm hides the bound just checked from the compiler, so it
	// keeps the mask the verifier needs to bound the pointer.
	__u32 idx = at;
	asm volatile("" : "+r"(idx));
	char *q = (char *)(long)msg->data + (idx & (HDR_SCAN - 1));
	char *end = (char *)(long)msg->data_end;
	if (q + 2 > end)
		return LINE_BLANK;
	if (q[0] == '\r' && q[1] == '\n')
		return LINE_BLANK;
	if ((q[0] != 't' && q[0] != 'T') || q + 16 > end)
		return LINE_NEXT;
	if (is_name(q, "tracestate:", 11)) {
		r->tracestate = 1;
		return LINE_NEXT;
	}
	if (!is_name(q, "traceparent:", 12) || r->traceparent)
		return LINE_NEXT;
	r->traceparent = 1;
	// Optional whitespace, the value, then the line's CRLF.
	__u32 v = 12;
#pragma unroll
	for (int k = 0; k < 4; k++)
		if (q[v] == ' ' || q[v] == '\t')
			v++;
	char *val = q + v;
	if (val + TP_VALUE_LEN + 2 > end)
		return LINE_NEXT;
	if (val[TP_VALUE_LEN] != '\r' || val[TP_VALUE_LEN + 1] != '\n')
		return LINE_NEXT;
	if (at + v + TP_VALUE_LEN <= HDR_SCAN)
		r->tp_value = at + v;
	return LINE_NEXT;
}

// scan_headers looks through the header lines of a request up to the blank line or HDR_SCAN bytes for the
// application's own traceparent and tracestate; NULL when it cannot.
static __always_inline struct scan_result *scan_headers(struct sk_msg_md *msg)
{
	__u32 zero = 0;
	struct scan_result *r = bpf_map_lookup_elem(&scan_scratch, &zero);
	if (!r)
		return NULL;
	r->traceparent = 0;
	r->tp_value = 0;
	r->tracestate = 0;
	// From the message's start: the request line has no LF before its end
	// (off - 1), so the first line checked is the first header line. No
	// comparison with off in the loop, so the verifier need not follow
	// each of its values.
	for (__u32 i = 0; i < HDR_SCAN; i++) {
		char *p = (char *)(long)msg->data + i;
		if ((void *)(p + 1) > (void *)(long)msg->data_end)
			break;
		if (p[0] != '\n')
			continue;
		if (check_line(msg, i + 1, r) == LINE_BLANK)
			break;
	}
	return r;
}

// coalesce joins the message's scatterlist pieces that hold its first
// HDR_SCAN bytes into one, best effort, once every pushed byte is written.
// bpf_msg_push_data splits the piece it inserts into (request line, header,
// rest), and the kernel sends each piece with its own tcp_sendmsg_locked:
// on a TCP_NODELAY socket (every Go connection) that is one segment each,
// three or five instead of one, every one a full trip through both TCP
// stacks and a wake-up of a receiver that finds only part of the request.
// The pull copies those pieces into one (a page and a memcpy of the header
// block, cheaper than one segment). Every header line pushed ends within
// HDR_SCAN of the start (request line <= LINE_SCAN, traceparent,
// tracestate <= TS_MAX), so the pieces after the last one are joined too.
// When the kernel cannot (no memory for the copy), the request still
// leaves whole, only in more segments.
static __always_inline void coalesce(struct sk_msg_md *msg)
{
	__u32 n = msg->size < HDR_SCAN ? msg->size : HDR_SCAN;
	if (n)
		bpf_msg_pull_data(msg, 0, n, 0);
}

// put_traceparent_value writes the TP_VALUE_LEN bytes "00-<trace>-<span>-<flags>".
static __always_inline void put_traceparent_value(char *d, struct inject_ctx *ic)
{
	d[0] = '0';
	d[1] = '0';
	d[2] = '-';
	put_hex64(d + 3, ic->trace_hi);
	put_hex64(d + 19, ic->trace_lo);
	d[35] = '-';
	put_hex64(d + 36, ic->span_id);
	d[52] = '-';
	d[53] = '0';
	d[54] = (ic->flags & FLAG_SAMPLED) ? '1' : '0';
}

// finish returns verdict, first joining the pieces the pushes split the
// message into when it is sent.
static __always_inline int finish(struct sk_msg_md *msg, int verdict)
{
	if (verdict == SK_PASS)
		coalesce(msg);
	return verdict;
}

SEC("sk_msg")
int skmsg_inject(struct sk_msg_md *msg)
{
	__u64 tid = bpf_get_current_pid_tgid();
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

	__u32 scan = msg->size < HDR_SCAN ? msg->size : HDR_SCAN;
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
	// An application that forwards its caller's traceparent: a second one
	// would split the trace (the next hop reads one of the two), so the
	// value is overwritten in place (no push, nothing to undo) and the
	// request carries this span as its parent. A value of another length
	// (a later version) is left alone, and so is the rest of the request.
	// A tracestate the application wrote is its own: none is added.
	struct scan_result *found = scan_headers(msg);
	if (!found)
		return SK_PASS;
	__u32 has_state = found->tracestate;
	if (found->traceparent) {
		__u32 at = found->tp_value & (HDR_SCAN - 1);
		char *v = (char *)(long)msg->data + at;
		if (!at || (void *)(v + TP_VALUE_LEN) > (void *)(long)msg->data_end) {
			if (c)
				c->kept++;
			return SK_PASS;
		}
		put_traceparent_value(v, &ic);
		if (c)
			c->replaced++;
		if (has_state)
			return SK_PASS; // nothing pushed, nothing split
		return finish(msg, push_tracestate(msg, off, &ic, c, fault));
	}
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
	const char name[] = "traceparent: ";
#pragma unroll
	for (int i = 0; i < 13; i++)
		d[i] = name[i];
	put_traceparent_value(d + 13, &ic);
	d[68] = '\r';
	d[69] = '\n';
	if (c)
		c->injected++;
	if (has_state)
		return finish(msg, SK_PASS);
	return finish(msg, push_tracestate(msg, off + TP_HDR_LEN, &ic, c, fault));
}
