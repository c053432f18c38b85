// Package bpf holds the kernel programs of routerscope (C sources built with
// bpf2go) and their generated Go bindings. It loads nothing by itself and
// never logs; package probes fills the maps and attaches the programs.
//
// # Design (capture.c)
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
package bpf
