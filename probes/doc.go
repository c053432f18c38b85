// Package probes owns the probe spec (YAML declaring which functions of a Go
// binary become spans and which values become attributes), its resolution
// against a target binary (symbols, DWARF types, the Go register ABI, RET
// offsets), attaching the kernel programs of package bpf as uprobes, and
// decoding the events they emit.
//
// It never logs and never imports package agent: errors are returned, with
// sentinel values callers test with errors.Is.
//
// # Probe spec
//
// A probe file lists functions of one Go binary:
//
//	probes:
//	  - symbol: github.com/routerscope/routerscope/router.(*Router).classify
//	    span: semantic_router.classification
//	    kind: internal
//	    parent: semantic_router.request
//	    attributes:
//	      - {name: llm.model, from: arg:req.Model}
//	      - {name: category.name, from: "return:0.Category.Name", type: string}
//	      - {name: category.confidence, from: return:0.Category.Confidence}
//	      - {name: blocked, from: return:0.Blocked, map: {"true": blocked, "false": allowed}}
//	      - {name: classification.time_ms, from: duration_ms}
//	      - {name: component, value: classifier}
//	    error: {from: return:1}
//
// A file may include others, whose probes it adds to its own (LoadSpec
// reads them depth first, relative to the including file; a file included
// twice is read once, a cycle is an error; at most 8 levels and 64 files):
//
//	include: [net-http.yaml]
//	probes:
//	  - symbol: main.(*Server).lookup
//	    span: app.lookup
//	    parent: http.server.request   # a span of the included file
//
// Span names and symbols must be unique across the files, and a parent may
// name a span of any of them.
//
// Keys of a probe:
//
//   - symbol (required): the function's full name as in the binary's symbol
//     table (`go tool nm BINARY`): "main.handle", "pkg/path.Func",
//     "pkg/path.(*T).Method" (pointer receiver), "pkg/path.T.Method" (value
//     receiver). Paths with a dot in their last element are written as in
//     Go source (gopkg.in/yaml.v3.Unmarshal; the symbol table's escaped
//     gopkg.in/yaml%2ev3 also works); a generic function is probed per
//     GC-shape instantiation, as nm lists it (pkg.Map[go.shape.int]).
//     A symbol may appear in one probe only. A name not found is
//     reported with up to three close names; a function the compiler inlined
//     at every call has no body to probe (ErrInlined): mark it
//     //go:noinline or probe its caller.
//   - span (required): the span name; unique within the file.
//   - kind: internal (default), server, client, producer or consumer.
//   - parent: the span name of another probe of the same file. When set,
//     the span's parent is the innermost open span of that probe on the
//     goroutine; when empty, the innermost open span of any probe.
//   - attributes: a list, each with name (required, unique in the probe)
//     and either from (a value of the program) or value (a constant string,
//     number, bool or list of strings); optional type and map.
//   - error: when the span has failed, below.
//   - into_parent: true makes the probe add its attributes to its parent
//     span (as chosen by parent) instead of producing a span, for values
//     that exist only inside the parent's function: the status code an
//     HTTP handler passes to WriteHeader becomes an attribute of the
//     server span. Calls made while no parent span is open are dropped;
//     the latest call's value wins. Such a probe has no kind, no error
//     rule, and cannot be another probe's parent.
//   - end: where the span ends. return (the default): at each of the
//     function's RETs, each a uprobe the kernel single-steps (a second
//     trap, about ten times an emulated entry hit). next: no RET uprobe at
//     all; the span ends where the next span opens at its frame's depth or
//     above (in practice the next sibling: the next stage its caller
//     calls) or where an enclosing span ends, whichever comes first. Its
//     duration then includes the caller's code between the function's
//     return and that moment (for the last stage, up to the parent's
//     return), and its result values are read at that moment with end:
//     sources (below) through a pointer the function received. A call
//     made from a helper (one frame deeper than its sibling) while such a
//     span waits would nest under it: end: next suits stages a parent
//     calls one after another directly.
//   - end_at: a function (a symbol, written like symbol) that the
//     probed function's caller runs right after it returns, on the same
//     goroutine: a root span, which has no enclosing span and often no
//     next sibling, then ends without a RET uprobe. The span is an end:
//     next span (end: may be next or left out, not return) that also ends
//     at end_at's entry, where a uprobe (placed like an entry probe, on an
//     emulated instruction after the stack check) ends every open span of
//     the goroutine whose frame is at that entry's depth or deeper: they
//     have all returned. Its end values are end: sources read then, so
//     they must point to memory that outlives the function's frame (the
//     heap, or the caller's frame when end_at is called from that same
//     caller); so must those of its end: next children, which end with
//     it (the router allocates its RequestState with a non-inlined
//     constructor for this reason). An entry of end_at deeper than the span's frame (called from
//     inside the function) ends nothing. A goroutine that never reaches
//     end_at (a panic, a hijacked connection) ends the span as an end:
//     next span ends: at the next span its goroutine opens at its depth or
//     above, or by expiry. The shipped root, serveChat, ends at
//     net/http.(*response).finishRequest, which net/http's HTTP/1
//     connection goroutine calls after the handler returns (HTTP/2 runs
//     handlers elsewhere and never calls it). end_at must not be another
//     probe's symbol: two uprobes at one address run in no defined order.
//
// Sources (from):
//
//   - arg:NAME or arg:INDEX: a parameter, by its name in the source or its
//     position counted from 0 without the receiver (blank parameters count,
//     and are named ~p0, ~p1... in DWARF). Read at entry.
//   - receiver: the method's receiver. Read at entry.
//   - return:INDEX: a result, counted from 0. Read at every return.
//   - any of the above followed by a field path, .Field.Field: fields of
//     structs, through pointers (dereferenced like Go selectors do) and
//     promoted from embedded structs. At most four pointers are followed
//     (three when the value itself was passed on the stack); a nil pointer
//     on the way makes the value missing, not an error. A value that ends
//     as a pointer to a string, number or bool is dereferenced too.
//   - duration_ms, duration_us, duration_ns: the span's duration, an
//     integer computed in user space (nothing is read from the program).
//   - end:arg:NAME.Field..., end:receiver.Field...: read when the span
//     ends, through the argument's (or receiver's) registers as they were
//     at entry, which the kernel keeps with the span: the function's
//     results as it left them in a result struct or per-request state it
//     was given. That state may live on the goroutine's stack (escape
//     analysis keeps it there when nothing retains it), which the runtime
//     moves when the stack grows or shrinks: registers that pointed into
//     the stack at entry are rebased to its current place before the read,
//     as the runtime adjusts its own pointers, so the read never lands on
//     the freed old stack (stale, or another goroutine's frame once reused).
//     Required for end values of an end: next probe (which has
//     no return: values), and allowed in RET mode too, so one probe file
//     serves both. A probe reads all its end values one way: return:
//     sources and end: sources do not mix (error rule included).
//
// Arguments and the receiver exist only at entry (the function reuses
// their registers), results only at return; a probe can mix both. The
// kernel program reads at most sixteen values at entry and sixteen at return
// per probe (durations and constants do not count); Attach rejects a probe
// that needs more.
//
// Types (type): string, int, float, bool, string_list. Omitted, the type
// follows from the Go type: strings are string; signed and unsigned
// integers of any width int; float32/float64 float; bool bool; []string
// string_list. Errors are not attributes: the error rule below reports
// them (failed, type, message). A declared type must match the Go type (a
// string field cannot be int); the error names the Go type found and the
// types allowed. With map, the value formatted as a string ("true", "42",
// the string itself) is replaced by the map's entry, so type must be
// string or omitted. Maps are applied in user space. With omit_empty: true
// the attribute is left off when the value read is empty (an empty string
// or list, zero, false), for values such as user.id that exist only
// sometimes.
//
// Named types read like their underlying types: type WeakString string is
// a string, type Level int an int, type Flag bool a bool, type Tags
// []string (or []WeakString) a string_list, as arguments, results and
// fields alike (Go's DWARF gives a named string or slice the runtime's
// header under its own name; the header's shape decides).
//
// Strings are copied up to 128 bytes (MaxStringBytes; error messages too),
// string lists up to 8 elements of 32 bytes each (MaxListElems,
// MaxElemBytes). max_bytes (1 to 128) keeps fewer bytes of an attribute's
// string or of each list element. A cut never splits a UTF-8 character:
// the bytes of a character the limit falls inside are dropped whole. A cut
// value is marked: Value.Truncated, and on the span a companion attribute
// "<name>.truncated" = true beside the value, so a prefix is never passed
// off as the whole value.
//
// Not readable, rejected with ErrNotSupported: a float passed in a
// register (the kernel saves only the integer registers; read it as a field
// behind a pointer instead), slices other than []string, maps, channels,
// functions and empty interfaces (any). Whole structs and pointers are not
// values: select a field.
//
// Error rule (error): from must be a result or a field of one
// (return:INDEX[.Field]), or an end: source, of type
//
//   - error (any non-empty interface): failed when non-nil;
//   - bool: failed when it equals equals (default true);
//   - integer: failed when it equals equals, or when >= at_least (one of
//     them is required).
//
// A failed error result's status message is its text (for the standard
// error types, whose message the kernel reads) and error.type names what a
// user can act on (see package agent). Bool and integer rules carry no
// text: message names a string result or field (return:INDEX[.Field])
// whose non-empty value becomes the status message, e.g.
// {from: return:0.Failed, message: return:0.Error}.
//
// Validation is strict and reports every problem at once, one per line,
// each naming the file, the probe (probes[INDEX] (symbol)), the key and the
// fix: unknown keys (with the closest known key), bad sources, types, kinds
// and parents are found by ParseSpec; missing symbols, parameters and
// fields and type mismatches by Resolve.
//
// # Resolution
//
// OpenBinary reads function symbols from the ELF symbol table, or from the
// Go pclntab when the binary was stripped (-s). Uprobe offsets are file
// offsets (virtual address minus the executable PT_LOAD segment's address
// plus its file offset). The entry probe goes after the stack-growth check
// (on amd64 the CMP/JBE to morestack), so that a call whose stack grows
// fires once; every RET instruction, found by disassembling the symbol's
// bytes, gets a return probe (uretprobes are unusable with Go's movable
// stacks).
//
// Argument locations follow Go's internal register ABI (abi-internal.md):
// the receiver and arguments are assigned in order to RAX, RBX, RCX, RDI,
// RSI, R8, R9, R10, R11 (strings and interfaces take two registers, slices
// three, structs one per field, floats X registers), a value that does not
// fit whole in the remaining registers goes on the stack after the return
// address; results are assigned the same way from RAX again. Parameter
// order, types and which are results come from DWARF, which therefore is
// required for any source but durations and constants (ErrNoDWARF: do not
// build with -ldflags=-w). For a build without DWARF, ExtractOffsets
// resolves the spec against the unstripped build of the same code and
// WriteOffsets keeps the result in an offsets file keyed by build id;
// ResolveAny uses it (ResolveWithOffsets) when the binary has no DWARF,
// finding function offsets again in the binary's own pclntab and refusing
// a file made for another build or other probes (ErrOffsets).
//
// Built-in parts read the target's runtime and net/http internals rather
// than user code: the span stack (R14 as g, runtime.g.stack.hi), goroutine
// hand-off (runtime.newproc1) and W3C propagation (net/textproto,
// net/http). Each declares the Go releases it is verified on (PartCapture,
// PartHandOff, PartExtract, PartInject: go1.26 to go1.27); Part.Check
// reads the target's version with debug/buildinfo and compares the
// registers and offsets the part uses with the binary's DWARF when it has
// it. Outside its range a part is off with the reason (Stats.HandOffOff,
// PropagationStatus.ExtractOff/InjectOff), and Attach refuses a binary the
// capture engine itself is not verified on (ErrUnverifiedGo).
//
// # One capture per agent
//
// A Capture (NewCapture) is the kernel side loaded once: the capture
// object's maps and programs, the one ring buffer, and on first use the
// propagation programs and the injector. Capture.Attach attaches one
// process and returns its Tracer: the uprobe links, filtered by PID, are
// the process's own; the descriptors of a Program are written once for all
// its processes (ids allocated in the descs map) and its binary opened
// once. Every per-goroutine and per-thread key in the shared maps carries
// the process, since g addresses and thread ids repeat across processes;
// counters are kept per process and probe. One goroutine reads the ring
// buffer and hands each record to its process's Tracer. Map sizes come
// from CaptureOptions (MapSizes, defaults in DefaultMapSizes), so the
// kernel memory (Capture.Memory) does not grow with the number of
// processes. Attach is Capture.Attach on a Capture of the Tracer's own.
package probes
