// Package router is an OpenAI-compatible semantic LLM router: the application
// routerscope traces. It serves POST /v1/chat/completions (JSON and
// server-sent events), GET /v1/models and GET /healthz, classifies each
// request, screens it for PII and jailbreaks, answers repeats from a semantic
// cache and otherwise routes it to the best model backend.
//
// It carries no tracing code and imports neither OpenTelemetry nor eBPF
// packages (cmd/router has a test enforcing this through `go list -deps`): the tracing agent
// observes it from outside with uprobes. Library code here never logs.
//
// # The probe contract
//
// The agent attaches uprobes to the functions below by symbol name and reads
// arguments and results from registers (Go amd64 register ABI) and struct
// fields through pointers (at DWARF offsets). So these rules hold, and a
// test builds cmd/router and fails if a symbol is missing or its caller no
// longer CALLs it (inlined):
//
//   - every stage is a method on *Router marked //go:noinline;
//   - stages take and return pointers to result structs, and no float is
//     ever passed or returned directly (uprobes cannot read XMM registers):
//     floats live in the structs;
//   - every stage takes the request's *RequestState as st, fills its own
//     result there (st.Classification, st.PII, ... st.BackendErr,
//     st.UpstreamErr) before it returns, and returns a pointer to it: a
//     probe with `end: next` ends the stage's span at the next stage's
//     start, without a uprobe on its RETs, and reads the results then
//     through st (end:arg:st.Field); a RET-mode probe reads them at return;
//   - names and shapes below are stable; structs may gain fields.
//
// Root span, the whole request from parsing to the last byte streamed:
//
//	func (rt *Router) serveChat(w http.ResponseWriter, r *http.Request) *Outcome
//
// Its *Outcome is filled on every path (bad input, block, cache hit, upstream
// failure, success) because every root attribute is read from it at return.
// Outcome.SelectedModel is the model that produced the answer: the routed
// model, or on a cache hit the model that produced the cached answer; ""
// when the request was rejected or blocked.
//
// Stages, called from serveChat in this order, each at most once per
// request and directly (no stage is called from a helper, so each stage's
// frame is where the previous one's was):
//
//	func (rt *Router) classify(st *RequestState, req *ChatRequest) *Classification
//	func (rt *Router) detectPII(st *RequestState, req *ChatRequest, model string) *PIIResult
//	func (rt *Router) detectJailbreak(st *RequestState, req *ChatRequest) *JailbreakResult
//	func (rt *Router) lookupCache(st *RequestState, req *ChatRequest) *CacheResult
//	func (rt *Router) decideRoute(st *RequestState, req *ChatRequest, cls *Classification) *RoutingDecision
//	func (rt *Router) selectBackend(st *RequestState, model string) (*Endpoint, error)
//	func (rt *Router) injectSystemPrompt(st *RequestState, req *ChatRequest, category string) *Injection
//	func (rt *Router) forwardUpstream(st *RequestState, w http.ResponseWriter, req *ChatRequest, dec *RoutingDecision, ep *Endpoint) (*UpstreamResult, error)
//
// Flow: serveChat parses and validates (wrong method 405, oversized body 413,
// malformed JSON or missing model/messages 400, unknown model 404: OpenAI
// error JSON, no stage runs). Then classify; detectPII; detectJailbreak;
// lookupCache; on a hit the cached answer is sent (x-vsr-cache-hit: true)
// and the remaining stages are skipped. Otherwise decideRoute,
// selectBackend, injectSystemPrompt and forwardUpstream; a successful answer
// (streamed answers assembled) is stored in the cache. A PII or jailbreak
// block stops right after its stage with HTTP 200 and a completion whose
// finish_reason is content_filter (x-vsr-pii-violation or
// x-vsr-jailbreak-blocked: true). Upstream connect failure or 5xx gives 502,
// timeout (server.upstream_timeout) 504, both with OpenAI error JSON; when a
// stream already started the status stays 200 and Outcome.Failed is set. A
// client that leaves first is recorded as status 499 (nothing is sent).
//
// detectPII applies the pii_policy of the model that would receive the
// text: the requested model, or for auto/MoM the model routing will pick for
// the category (the same choice decideRoute then makes), so a block never
// depends on a model the request would not reach.
//
// # Configuration
//
// Config mirrors vLLM Semantic Router's config.yaml and is decoded strictly
// (unknown keys are errors), except the top-level observability key, which
// configures the tracing agent and is accepted and ignored here so one file
// can serve both. Config.OverrideBackends (cmd/router: --backend or
// ROUTER_BACKEND=host:port) points every vllm_endpoint at one address, which
// is how the demo and tests reach a fake model server on an ephemeral port.
package router
