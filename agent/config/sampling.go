package config

// SampleRatio maps the guide's sampling config to the capture engine's
// probes.Options.SampleRatio, and says whether to attach at all.
//
// The decision is made once per trace, in the kernel, when the root span
// opens: with trace-id-ratio semantics a trace is kept when its trace id,
// read as a number, falls in the lowest ratio of the id space, so every
// span of a trace (and every process that sees the same propagated trace
// id with the same ratio) decides alike, and unsampled requests emit no
// events at all. A request carrying a valid traceparent follows its sampled
// flag instead, in the kernel (parent-based; see package bpf). The SDK side
// then keeps whatever arrives (see Pipeline.Emit).
//
// always_on is 1; probabilistic is its rate (0 included: callers' sampled
// traces are still kept); always_off and enabled: false attach nothing, and
// why says so for the log, as does the none exporter.
func SampleRatio(t Tracing) (ratio float64, attach bool, why string) {
	if !t.Enabled {
		return 0, false, "observability.tracing.enabled is false"
	}
	if t.Exporter.Type == ExporterNone {
		return 0, false, "the exporter is none (observability.tracing.exporter.type or OTEL_TRACES_EXPORTER)"
	}
	switch t.Sampling.Type {
	case SamplingAlwaysOff:
		return 0, false, "observability.tracing.sampling.type is always_off"
	case SamplingProbabilistic:
		// Rate 0 still attaches: the router starts no trace of its own, but
		// a request whose traceparent says sampled is traced (parent-based).
		return t.Sampling.Rate, true, ""
	}
	return 1, true, ""
}
