// Package bpf holds the kernel programs of routerscope (C sources built with
// bpf2go) and their generated Go bindings. It loads nothing by itself and
// never logs; package probes fills the maps and attaches the programs.
//
// # Design (capture.c)
//
// capture.c holds the programs and the span open/close logic; the rest is
// split by concern into headers it includes in order: capture_types.h
// (bounds, shared enums and flags, layouts), capture_maps.h, capture_fetch.h
// (registers and value reads), capture_record.h (records to the ring
// buffer), capture_stack.h (the per-goroutine span stack), propagation.h
// (W3C trace context) and capture_handoff.h (goroutine hand-off).
//
// Two generic programs serve every probe: uprobe_entry, attached at a
// function's entry, and uprobe_return, attached at each of its RET
// instructions (never a uretprobe: it rewrites the return address on the
// stack, which breaks when the Go runtime moves a goroutine's stack). The
// probe id travels in the uprobe's bpf cookie and keys a descriptor in the
// descs map that says which registers and memory to read, mirroring
// probes.Fetch and probes.Location. A function whose entry instruction is
// also a RET (an empty body) gets only the entry uprobe, with a cookie bit
// telling it to close the span too: two uprobes at one address run in no
// defined order.
//
// Each goroutine, keyed by its g pointer (R14 on amd64), has a stack of open
// spans in the stacks map. A span remembers its frame's distance from the top
// of the goroutine stack (g.stack.hi - SP), which survives the runtime copying
// the stack to grow it. On entry, open spans at the same or a deeper distance
// are popped and reported abandoned (a panic unwound them, or the g was
// reused); at a RET, deeper spans are popped the same way and the top span
// closes when its probe and distance match, so recursion nests correctly.
//
// Trace and span ids are made in the kernel: a span nests under the
// innermost open span (or the nearest open span of its declared parent
// probe); with none open, under the span its goroutine was started from by a
// go statement, but only while that span is still open (runtime.newproc1 is
// probed for this); else it starts a trace and the sampling decision is made
// with OpenTelemetry's TraceIDRatioBased rule. Unsampled spans are tracked
// but never reported.
//
// Events go to a ring buffer as fixed-layout records; a reservation that
// fails increments the lost counter. The reader is woken only once a batch
// has accumulated (config.wakeup_bytes) and polls for the rest: a wake-up per
// event cost more than the event itself. Timestamps are CLOCK_MONOTONIC; user
// space converts them to wall time. Package probes mirrors every struct and
// bound and tests its offsets against this object's BTF.
//
// # W3C trace context (propagation.h, inject.c)
//
// Extract. net/http reads an HTTP/1.x request's headers on the connection's
// goroutine and then calls the handler on that same goroutine. A uprobe on
// readMIMEHeader's call of net/textproto.canonicalMIMEHeaderKey (a CALL the
// kernel emulates, not a single-stepped RET; not the callee's entry, which
// every Header.Get and Set with a non-canonical name reaches too) sees each
// header name as its []byte
// argument, a prefix of the line just read, so the value follows it in memory
// up to the CR or LF; a line named traceparent
// (any case) is parsed and validated in the kernel as W3C Trace Context
// level 1 says (version two lowercase hex digits, not ff; version 00 exactly
// 55 characters, later versions at least 55 with '-' after the flags; 32 + 16
// lowercase hex digits, neither id all zero; flags hex). A valid one becomes
// the goroutine's pending remote parent; an invalid one is ignored. The next
// root span opened on that goroutine takes it: the caller's trace id, the
// caller's span id as parent, FLAG_REMOTE_PARENT, and the caller's sampled
// flag instead of the ratio (parent-based: sampled=1 keeps the trace even at
// ratio 0, sampled=0 drops it even under always_on). The entry of
// net/textproto.readMIMEHeader clears the pending parent, so a request
// without the header, or a header on a request no probe covers, never leaks
// into the next request on a keep-alive connection. Cost: one uprobe hit per
// header line plus one per request. Several traceparent lines in one header
// block are none (W3C Trace Context: one value; the block's remote parent is
// marked unusable, and the request starts a new trace). Tracestate lines
// are one list joined with commas (up to 256 bytes in all; a longer list is
// dropped whole), which waits beside the pending parent; the root span that takes the
// parent files it under its trace id, for the injector. Exported spans do
// not carry it (the OTLP trace_state field stays empty).
//
// Inject. Kernel lockdown (integrity) refuses bpf_probe_write_user, so the
// header is written into the socket data instead of the target's memory.
// The capture object records, at net/http.(*persistConn).roundTrip's entry
// (the goroutine that called Client.Do), the innermost open span keyed by
// the connection, its *persistConn (HTTP/1: one request at a time on it); at
// the entry of net/http.persistConnWriter.Write, whose receiver is that
// *persistConn, the connection write of the request's flush on the
// writeLoop goroutine, it moves to the current thread (inject_tids). inject.c's sock_ops
// program, attached to the target's cgroup v2 directory, notes the sockets
// the target connects (the connect callback runs in the target's task) and
// adds them to a SOCKHASH once established (package probes also adds the
// target's already established sockets, copied with pidfd_getfd, so a warm
// keep-alive pool is covered); a socket takes one sk_msg program, so each
// tracer keeps to its own process. The sk_msg program on that map runs in
// each sendmsg, and for the target's armed thread, when the message starts
// with an HTTP/1.x request line, inserts
// "traceparent: 00-<trace>-<span>-<flags>\r\n" after that line with
// bpf_msg_push_data (and "tracestate: <value>\r\n" when the trace came with
// one), then disarms the thread. Each push splits the message's
// scatterlist around it and the kernel sends every piece as its own
// segment on a TCP_NODELAY socket, so the program then joins the header
// block's pieces again (bpf_msg_pull_data over the first 1 KiB): the
// request leaves in as many segments as the target wrote it. A request
// that already carries a traceparent (an application forwarding its caller's) gets no second one:
// the first 1 KiB is searched, a version-00 value is overwritten in place
// with this span's, a value of another length is left alone; a request
// with its own tracestate gets none added. Pushed space is not cleared by the kernel:
// every failure between a push and the last byte written pops it again
// (bpf_msg_pop_data), and if the pop fails too the message is dropped (the
// target's write fails) rather than sent with stale kernel memory in it;
// inject_fault lets tests take each of those paths. Unsampled requests carry
// flags 00, so the model server learns the decision too. Every request on a
// keep-alive connection gets its own header. Limits: HTTP/2 (frames, HPACK)
// and TLS (encrypted before the socket) get no header; a goroutine moved to
// another thread between the connection write's entry and its syscall (it
// blocked on a full socket buffer) gets none either; an arming the sk_msg
// program finds more than 50 ms old is dropped, so such a leftover cannot
// put a wrong header on a later request written by that thread.
//
// The two objects share inject_tids and trace_states: package probes loads
// inject.c with the capture object's maps in their place. Socket programs
// need CAP_NET_ADMIN and a cgroup v2 hierarchy; they are attached once per
// Tracer and detached by its Close.
package bpf
