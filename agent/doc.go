// Package agent turns kernel events from package probes into OpenTelemetry
// spans, exports them with the OTel Go SDK, and reads the agent's
// configuration (the guide's observability.tracing block plus its own
// routerscope section). It is the only layer, with cmd/, that logs.
//
// One span's path: an EventSource (the capture engine's Tracer, attached
// by an injected Attacher) yields entry and return events; the Assembler
// pairs them by (pid, span id) into a SpanRecord with typed attributes;
// the Pipeline replays the record into an SDK TracerProvider whose ID
// generator hands back the kernel's ids and whose sampler keeps the
// kernel's decision, with the exact start and end times; the SDK's batch
// span processor and exporter (stdout JSON or OTLP/gRPC) do the rest.
//
// Nothing stays open forever: a span whose return is lost expires, a span
// whose process exits or whose frame is abandoned ends failed, and the
// spans still open when the agent stops end failed too.
//
// The guide's *.time_ms attributes (from: duration_ms) are int64 whole
// milliseconds, truncated, as the guide's console example shows
// ("classification.time_ms": 45); type: float gives fractions.
package agent
