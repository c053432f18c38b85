// Package spans is where a kernel event becomes a span: the Assembler
// takes the events package probes decodes (a whole span, or an entry and
// its return apart), pairs them by (pid, span id), types each attribute as
// the probe spec declares (attributes.go), adds an into_parent probe's
// attributes to its parent (merge.go), ends the spans whose return never
// comes (expired, process exited, detached, abandoned, agent stopped) and
// repairs every string read from the traced program to valid UTF-8
// (utf8.go), then hands each finished SpanRecord to an emit function.
//
// It owns no goroutine, reads no file, and never logs: the caller drives
// it (Handle, Expire, EndProcess) and reads its counters (Stats). It must
// not import agent, its export side or its discovery side: a record's
// way out is the emit function it is given. It imports only probes (for
// the event and spec types) and the OpenTelemetry API's attribute and
// trace types.
//
// The guide's *.time_ms attributes (from: duration_ms) are int64 whole
// milliseconds, truncated, as the guide's console example shows
// ("classification.time_ms": 45); type: float gives fractions.
package spans
