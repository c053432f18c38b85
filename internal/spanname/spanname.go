// Package spanname holds the span names the tracing guide fixes for the
// semantic router (config/probes/semantic-router.yaml gives them to the
// agent), for the Go code that names or checks them: the SDK-instrumented
// router-otel and the end-to-end tests. It has no code and imports nothing.
package spanname

// The guide's span names: the request's root and its stages.
const (
	Root      = "semantic_router.request.received"
	Classify  = "semantic_router.classification"
	PII       = "semantic_router.security.pii_detection"
	Jailbreak = "semantic_router.security.jailbreak_detection"
	Cache     = "semantic_router.cache.lookup"
	Routing   = "semantic_router.routing.decision"
	Backend   = "semantic_router.backend.selection"
	Inject    = "semantic_router.system_prompt.injection"
	Upstream  = "semantic_router.upstream.request"
)
