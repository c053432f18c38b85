package agent

// SampleRatio maps the guide's sampling config to the capture engine's
// probes.Options.SampleRatio, and says whether to attach at all.
//
// The decision is made once per trace, in the kernel, when the root span
// opens: with trace-id-ratio semantics a trace is kept when its trace id,
// read as a number, falls in the lowest ratio of the id space, so every
// span of a trace (and every process that sees the same propagated trace
// id with the same ratio) decides alike, and unsampled requests emit no
// events at all. A sampled incoming traceparent is respected (parent-based)
// once propagation exists. The SDK side then keeps whatever arrives (see
// KernelSampler).
//
// always_on is 1; probabilistic is its rate; always_off and enabled: false
// attach nothing, and why says so for the log.
func SampleRatio(t Tracing) (ratio float64, attach bool, why string) {
	if !t.Enabled {
		return 0, false, "observability.tracing.enabled is false"
	}
	switch t.Sampling.Type {
	case SamplingAlwaysOff:
		return 0, false, "observability.tracing.sampling.type is always_off"
	case SamplingProbabilistic:
		if t.Sampling.Rate == 0 {
			return 0, false, "observability.tracing.sampling.rate is 0"
		}
		return t.Sampling.Rate, true, ""
	}
	return 1, true, ""
}
