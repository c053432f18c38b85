// Package export takes finished span records (package spans) out of the
// agent: the Pipeline (pipeline.go) queues each record, bounded, and one
// goroutine batches them; for OTLP (otlpencode.go) each batch is encoded
// straight into OTLP messages grouped by resource, with the kernel's ids
// and exact times, and uploaded by the otlptrace.Client that
// NewTraceClient builds from the config (gRPC or HTTP, reconnect.go); for
// stdout (sdksink.go) each record becomes an SDK span snapshot for the
// SDK's stdout exporter, in its own JSON or the guide's console shape
// (console.go). The wire output is what the SDK would send for the same
// spans (TestOTLPWireMatchesSDK), at a fraction of the cost: no SDK span
// is started or ended per record.
//
// Resources: every traced process has its resource (AddProcess), encoded
// once; a span takes its process's resource when it is emitted, so a
// process that exits does not take its queued spans' resource with it.
// One queue for all processes bounds the spans held to
// routerscope.export.queue_size, and routerscope.discovery.max_processes
// bounds the resources.
//
// It never logs: export failures go to the callback the caller gives,
// counters to Stats. It must not import agent or its discovery side, and
// it does not assemble spans: records arrive finished through Emit.
package export
