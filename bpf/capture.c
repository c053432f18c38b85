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

// Bounds. User space (package probes) mirrors every one of them; the layout
// test checks the struct sizes they imply against this object's BTF.
#define MAX_PROBES 256
#define MAX_FETCHES 16  // values read per probe at entry, and again at return
#define MAX_OFFSETS 4   // pointer hops on a field path, plus the final offset
#define MAX_DEPTH 16    // open spans per goroutine; must be a power of two
#define STR_MAX 128     // bytes copied per string and per error message
#define LIST_MAX 8      // elements copied per []string
#define ELEM_MAX 32     // bytes copied per []string element
#define DATA_SIZE 256   // LIST_MAX * ELEM_MAX, >= STR_MAX
#define ERR_LEN_SANE (1 << 20) // an error message longer than this is not a string header

// Register indexes, as in probes.Reg: Go's amd64 internal ABI assigns integer
// arguments and results to RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11 in this
// order; RSP is the base of stack-passed values; R14 always holds the current
// goroutine's g.
enum {
	REG_RAX = 0,
	REG_RBX,
	REG_RCX,
	REG_RDI,
	REG_RSI,
	REG_R8,
	REG_R9,
	REG_R10,
	REG_R11,
	REG_SP,
	REG_R14,
	NUM_REGS,
};

// Value kinds, as in probes.ValueKind.
enum {
	KIND_INT = 1,
	KIND_UINT,
	KIND_BOOL,
	KIND_FLOAT,
	KIND_STRING,
	KIND_STRING_SLICE,
	KIND_ERROR,
};

// Record kinds, as in probes.EventKind. The kernel writes one record per
// finished span: EVENT_SPAN when it returned, EVENT_ABANDONED when its frame
// was gone first. (1 and 2 are the entry and return halves user space may
// still be handed by other sources; the kernel never writes them.)
enum {
	EVENT_SPAN = 4,
	EVENT_ABANDONED = 3,
};

// Bit of the bpf cookie (whose low 32 bits are the probe id) telling the
// entry program that the entry instruction is also a RET.
#define COOKIE_ENTRY_IS_RETURN (1ULL << 32)

// Span flags (span_entry.flags, event.flags, inherit_ctx.flags).
#define FLAG_SAMPLED 1
// Hook for issue 7: set when the parent came from an incoming traceparent;
// the sampled bit then comes from that header instead of the ratio.
#define FLAG_REMOTE_PARENT 2
// span_entry only: the span's entry values (and registers) wait in
// entry_vals.
#define FLAG_ENTRY_VALS 4
// span_entry only: the probe is DESC_END_NEXT.
#define FLAG_END_NEXT 16
// span_entry only: they wait in entry_small, not entry_vals.
#define FLAG_ENTRY_SMALL 32
// event only: the span had entry values, but their slot in entry_vals was
// taken before it ended (more open spans than the map holds).
#define FLAG_ENTRY_LOST 8

// Value flags.
#define VAL_MISSING 1   // a pointer on the path was nil or memory was unreadable
#define VAL_TRUNCATED 2 // a string or list was longer than its copy bound

// fetch_desc says how to read one value; see probes.Location for the
// addressing rules, which this mirrors field for field.
struct fetch_desc {
	__u8 kind;
	__u8 size;     // width of integer, bool and float values in memory
	__u8 in_regs;  // 1: the value's words are in regs[:nregs]
	__u8 nregs;
	__u8 regs[3];
	__u8 base;     // in memory: the register holding the base address
	__u8 noffsets; // number of valid offsets
	__u8 _pad[7];   // fetch i fills event value i: no slot field needed
	__s64 offsets[MAX_OFFSETS];
};

// probe_desc is everything the generic programs need to know about one
// probe, keyed by probe id (probes.Resolved.ID) in the descs map.
struct probe_desc {
	__u32 n_entry;   // valid fetches in entry[]
	__u32 n_return;  // valid fetches in ret[]
	__s32 parent_id; // probe id of the declared parent span, or -1
	__u32 has_error; // 1: err is valid
	struct fetch_desc entry[MAX_FETCHES];
	struct fetch_desc ret[MAX_FETCHES];
	struct fetch_desc err;
	__u32 flags; // DESC_*
	__u32 _pad;
};

// probe_desc.flags.
// END_NEXT: no RET uprobes; the span ends where the next span opens at its
// frame's depth or above (its next sibling, its parent's next call) or where
// an enclosing span ends, and is sent as finished, not abandoned.
#define DESC_END_NEXT 1
// END_FROM_ENTRY: the end values (ret[], err) are read with the registers
// as they were at entry, through the pointers they held: a result struct or
// per-request state the function fills.
#define DESC_END_FROM_ENTRY 2

// span_entry is one open span on a goroutine's stack.
struct span_entry {
	// Trace id as two big-endian halves: trace_id[0:8] = hi, [8:16] = lo.
	__u64 trace_hi;
	__u64 trace_lo;
	__u64 span_id;
	__u64 parent_span_id;
	// g.stack.hi - SP at the probed instruction: the frame's distance from
	// the stack's top. The runtime copies a growing stack to a new place, so
	// SP changes, but this distance does not.
	__u64 stack_depth;
	__u64 start_ns; // bpf_ktime_get_ns at entry
	__u32 probe_id;
	__u32 flags;
};

struct span_stack {
	__u32 depth;
	__u32 _pad;
	struct span_entry e[MAX_DEPTH];
};

// inherit_ctx is the span a goroutine was started under (go statement).
struct inherit_ctx {
	__u64 trace_hi;
	__u64 trace_lo;
	__u64 span_id;
	__u64 flags;
	__u64 creator; // the creating goroutine's g: the span is open while it is on its stack
};

// unsampled_req is the root span of a trace the sampler dropped, kept per
// goroutine instead of a span stack: every probe hit below it (deeper on
// the goroutine's stack) exits after one lookup of this, reads nothing and
// sends nothing.
struct unsampled_req {
	__u64 trace_hi;
	__u64 trace_lo;
	__u64 span_id;     // never reported; goroutines started while the root runs inherit the decision (span_open)
	__u64 stack_depth; // the root's frame, as span_entry.stack_depth
	__u32 probe_id;    // the root's probe
	__u32 _pad;
};

// value is one attribute value as read in the kernel; user space decodes it
// by kind. In a record only its header (up to data) and the first
// value_data_len bytes of data travel, padded to 8 bytes: see struct event.
struct value {
	__u64 word;  // scalars: the raw bits; string and list: the length in the program; error: itab word
	__u64 word2; // error: data word
	__u16 len;   // string and error message: bytes in data; list: elements in data
	__u8 flags;  // VAL_*
	__u8 kind;
	__u8 elem_len[LIST_MAX]; // list: bytes of element i; the elements lie end to end in data
	__u8 _pad[4];
	char data[DATA_SIZE];
};

#define VALUE_HDR_SIZE __builtin_offsetof(struct value, data)

// event is the header of the one ring buffer record a finished span sends.
// After it come n_entry packed values read at entry, n_return read at
// return and, when the probe has an error rule and the span returned, one
// more for the error; a packed value is a struct value cut after its used
// data bytes and padded to a multiple of 8. size is the record's length:
// records are as long as what they carry, not as their bounds.
struct event {
	__u8 kind;
	__u8 flags;
	__u8 n_entry;
	__u8 n_return;
	__u32 probe_id;
	__u32 pid;
	__u32 tid;
	__u64 goroutine;
	__u64 start_ns; // CLOCK_MONOTONIC; user space converts to wall time
	__u64 end_ns;
	__u64 trace_hi;
	__u64 trace_lo;
	__u64 span_id;
	__u64 parent_span_id;
	__u16 size;      // bytes in the record, this header included
	__u16 entry_len; // bytes of the packed entry values
	__u8 has_err;    // 1: a packed error value follows the return values
	__u8 _pad[3];
};

// A span's packed entry values wait in the entry_vals map until it ends.
#define ENTRY_VALS_MAX (MAX_FETCHES * sizeof(struct value))
struct entry_vals {
	__u32 len; // bytes used in data
	__u32 n;   // values in data
	__u64 regs[NUM_REGS]; // as at entry, for DESC_END_FROM_ENTRY
	char data[ENTRY_VALS_MAX];
};

// A record is built in a per-CPU scratch buffer and copied into the ring
// with its real length. The scratch is a power of two larger than the
// largest record (header, 2 * MAX_FETCHES + 1 values), so offsets can be
// bounded with a mask the verifier understands.
#define SCRATCH_SIZE 16384
#define RECORD_MAX (sizeof(struct event) + (2 * MAX_FETCHES + 1) * sizeof(struct value))
_Static_assert(RECORD_MAX + sizeof(struct value) <= SCRATCH_SIZE, "scratch too small");
_Static_assert(sizeof(struct entry_vals) + sizeof(struct value) <= SCRATCH_SIZE, "scratch too small");

// entry_small is entry_vals cut after ENTRY_SMALL_MAX bytes of values: most
// spans keep a few values (or only the registers), and a map update copies
// its whole value size, so they go to this map, and only the few with more
// to entry_vals.
#define ENTRY_SMALL_MAX 416
struct entry_small {
	__u32 len;
	__u32 n;
	__u64 regs[NUM_REGS];
	char data[ENTRY_SMALL_MAX];
};
_Static_assert(__builtin_offsetof(struct entry_small, data) == __builtin_offsetof(struct entry_vals, data), "entry_small is a prefix of entry_vals");
struct scratch {
	char buf[SCRATCH_SIZE];
};

struct config {
	// Wake the reader only once this many bytes wait in the ring buffer;
	// user space polls for the rest (see send).
	__u64 wakeup_bytes;
	// Sampling bound of OpenTelemetry's TraceIDRatioBased sampler:
	// ratio * 2^63; a root is sampled iff (trace_lo >> 1) < sample_bound.
	__u64 sample_bound;
	// Set by the reader when it found the ring empty and goes to sleep
	// without a deadline; the next record clears it and wakes the reader.
	__u64 reader_idle;
};

// probe_counters are per probe and per CPU; user space sums them.
struct probe_counters {
	__u64 entries;    // spans opened (sampled or not)
	__u64 returns;    // spans closed at a RET
	__u64 abandoned;  // spans closed because their frame was gone
	__u64 emitted;    // records (one per finished sampled span) written to the ring buffer
	__u64 overflow;   // entries not tracked: goroutine span stack full
	__u64 unmatched;  // RETs with no matching open span (entered before attach)
	__u64 skipped;    // entries inside an unsampled trace, not opened
};

// One capture object serves every traced process of the agent, and Go
// addresses repeat across processes (every heap starts at 0xc000000000), so
// a goroutine is named by its g pointer and its process. Thread ids are
// unique only while the thread lives; keys of per-thread maps are the full
// pid_tgid for the same reason.
struct gkey {
	__u64 g;
	__u32 tgid;
	__u32 _pad;
};

static __always_inline struct gkey gkey_of(__u64 g)
{
	struct gkey k = {.g = g, .tgid = bpf_get_current_pid_tgid() >> 32};
	return k;
}

// probe_counters are keyed by process and probe, so /metrics can say which
// process overflowed or lost its RETs.
struct counter_key {
	__u32 tgid;
	__u32 probe_id;
};

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

// W3C trace context: extraction (take_remote_parent) and the capture side
// of injection; kept apart so the generic programs stay readable.
#include "propagation.h"

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

// open_span opens a span for probe id and keeps its entry values.
static __always_inline int open_span(struct pt_regs *ctx, __u32 id)
{
	struct probe_desc *desc = bpf_map_lookup_elem(&descs, &id);
	if (!desc)
		return 0;
	struct probe_counters *c = probe_counters(id);
	__u64 g = GO_G(ctx);
	__u64 depth;
	if (frame_depth(g, GO_SP(ctx), &depth))
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
	struct probe_desc *desc = bpf_map_lookup_elem(&descs, &id);
	if (!desc)
		return 0;
	struct probe_counters *c = probe_counters(id);
	__u64 g = GO_G(ctx);
	__u64 depth;
	if (frame_depth(g, GO_SP(ctx), &depth))
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

// Generic entry program, attached at Resolved.EntryOffset (after the
// stack-growth check) so a function whose stack grows does not fire twice.
static __always_inline int do_uprobe_entry(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
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
