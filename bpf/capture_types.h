// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// Types of the capture object: bounds, shared enums and flags, the
// descriptor, span, value and record layouts that user space (package
// probes) mirrors, and the map keys.
// Part of the capture object: included by capture.c only, in the order
// capture.c gives, after the headers it includes before this one.

#pragma once

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
// goroutine's g. Packed: one byte, as the fields it types.
enum __attribute__((packed)) reg {
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
enum __attribute__((packed)) value_kind {
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
enum __attribute__((packed)) event_kind {
	EVENT_SPAN = 4,
	EVENT_ABANDONED = 3,
};

// Bit of the bpf cookie (whose low 32 bits are the probe id) telling the
// entry program that the entry instruction is also a RET.
#define COOKIE_ENTRY_IS_RETURN (1ULL << 32)

// Bit of the bpf cookie telling the entry program that it fires at the
// entry of a probe's end_at function, not at the probe's own: it opens
// nothing and ends the goroutine's spans whose frames are gone (end_at in
// capture.c).
#define COOKIE_END_AT (1ULL << 33)

// Span flags (span_entry.flags, event.flags, inherit_ctx.flags).
enum __attribute__((packed)) span_flag {
	FLAG_SAMPLED = 1,
	// Set when the parent came from an incoming traceparent
	// (take_remote_parent in propagation.h); the sampled bit then comes
	// from that header instead of the ratio.
	FLAG_REMOTE_PARENT = 2,
	// span_entry only: the span's entry values (and registers) wait in
	// entry_vals.
	FLAG_ENTRY_VALS = 4,
	// event only: the span had entry values, but their slot in entry_vals
	// was taken before it ended (more open spans than the map holds).
	FLAG_ENTRY_LOST = 8,
	// span_entry only: the probe is DESC_END_NEXT.
	FLAG_END_NEXT = 16,
	// span_entry only: they wait in entry_small, not entry_vals.
	FLAG_ENTRY_SMALL = 32,
};

// Value flags.
enum __attribute__((packed)) value_flag {
	VAL_MISSING = 1,   // a pointer on the path was nil or memory was unreadable
	VAL_TRUNCATED = 2, // a string or list was longer than its copy bound
};

// The enums above type fields of the structs below, which keeps them in the
// object's BTF: probes' TestSharedEnumsMatchBTF checks user space's copies
// against them.

// fetch_desc says how to read one value; see probes.Location for the
// addressing rules, which this mirrors field for field.
struct fetch_desc {
	enum value_kind kind;
	__u8 size;     // width of integer, bool and float values in memory
	__u8 in_regs;  // 1: the value's words are in regs[:nregs]
	__u8 nregs;
	enum reg regs[3];
	enum reg base; // in memory: the register holding the base address
	__u8 noffsets; // number of valid offsets
	__u8 _pad[7];   // fetch i fills event value i: no slot field needed
	__s64 offsets[MAX_OFFSETS];
};

// probe_desc.flags.
enum desc_flag {
	// END_NEXT: no RET uprobes; the span ends where the next span opens at
	// its frame's depth or above (its next sibling, its parent's next call)
	// or where an enclosing span ends, and is sent as finished, not
	// abandoned.
	DESC_END_NEXT = 1,
	// END_FROM_ENTRY: the end values (ret[], err) are read with the
	// registers as they were at entry, through the pointers they held: a
	// result struct or per-request state the function fills.
	DESC_END_FROM_ENTRY = 2,
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
	enum desc_flag flags; // DESC_*, four bytes
	__u32 _pad;
};

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
	enum value_flag flags;
	enum value_kind kind;
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
	enum event_kind kind;
	enum span_flag flags;
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
	__u64 end_at;     // entries of the probe's end_at function
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
