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
// Discovery (discovery.go, procfs.go, manager.go): with
// routerscope.discovery rules the agent scans /proc every interval (500 ms
// by default) and reconciles: processes selected by a rule and not
// excluded are attached, those gone are detached (their open spans end as
// process exited), a restarted process (a new PID, or the same PID with a
// new start time) is attached again at the next scan, well within 2 s.
// Polling was chosen over the proc connector and an exec tracepoint: the
// connector needs CAP_NET_ADMIN in the initial network namespace and an
// exec event comes before the process listens on its port or before a
// container's files are in place, so matching would still need /proc at a
// later moment. A scan re-reads only the start time and executable link
// of processes it has seen before: about 1.2 ms for 90 processes here
// (BenchmarkScanProc), 0.25% of a core at 2 Hz. A restarted process is
// found 260 ms later on average, 510 ms at worst (BenchmarkRestartToAttach,
// with a synthetic attacher); attaching the real capture adds about 50 ms
// (loading the kernel programs) plus resolution, which replicas of one
// binary share: e2e TestNodeAgent measured 0.3 s from a router's restart
// to its "attached" log line.
//
// Resources (procresource.go, sdk.go): the SDK binds one resource to a
// TracerProvider and a batch span processor to one provider, so every
// attached process gets its own provider carrying its resource
// (process.pid, process.executable.path, host.name, container.id,
// k8s.*), all sharing one exporter; one admission gate bounds the spans
// queued over all providers to routerscope.export.queue_size, and
// routerscope.discovery.max_processes bounds the providers.
//
// Reloads (reload.go): SIGHUP, or a change of the config or probe files
// (hashes polled every watch_interval), reloads the config; only
// attachments change, so the assembler, the providers of unchanged
// processes and the exporter carry the spans in flight across it.
//
// Self-observability (metrics.go): Prometheus /metrics, /healthz and
// /readyz from one registry per Run.
//
// The guide's *.time_ms attributes (from: duration_ms) are int64 whole
// milliseconds, truncated, as the guide's console example shows
// ("classification.time_ms": 45); type: float gives fractions.
package agent
