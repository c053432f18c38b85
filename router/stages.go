package router

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds the pipeline stages serveChat calls in order. Each is
// //go:noinline, fills its result in the request's *RequestState and
// returns a pointer to it, because the tracing agent attaches uprobes to
// these exact symbols and reads their results from registers and struct
// fields, at the stage's return or through the state pointer when the
// next stage starts (see doc.go, "the probe contract").

// ErrNoBackend means no endpoint serves the selected model.
var ErrNoBackend = errors.New("no endpoint serves the model")

// unhealthyCooldown is how long an endpoint that refused a connection is
// skipped; after it the endpoint gets traffic again, which is the health check.
const unhealthyCooldown = 5 * time.Second

// isAuto reports whether model asks the router to choose.
func isAuto(model string) bool {
	return strings.EqualFold(model, "auto") || model == "MoM"
}

// classify runs the category classifier on the newest user turn.
//
//go:noinline
func (rt *Router) classify(st *RequestState, req *ChatRequest) *Classification {
	st.Classification = rt.classifier.Classify(req.lastUserText())
	return &st.Classification
}

// detectPII finds PII in every user turn and applies the pii_policy of
// model: the requested model, or for auto the model routing will pick, since
// that is the model that would receive the text.
//
//go:noinline
func (rt *Router) detectPII(st *RequestState, req *ChatRequest, model string) *PIIResult {
	res := &st.PII
	*res = PIIResult{Types: rt.pii.Detect(req.userText()), Action: "allowed", Model: model}
	res.Detected = len(res.Types) > 0
	res.Denied, res.Policy = piiDecision(rt.cfg.ModelConfig[model].PIIPolicy, res.Types)
	if len(res.Denied) > 0 {
		res.Action = "blocked"
	}
	return res
}

// detectJailbreak scores the newest user turn; with prompt_guard disabled
// it still scores (the span shows what would have happened) but allows.
//
//go:noinline
func (rt *Router) detectJailbreak(st *RequestState, req *ChatRequest) *JailbreakResult {
	pg := rt.cfg.PromptGuard
	score, kind := rt.guard.Score(req.lastUserText())
	res := &st.Jailbreak
	*res = JailbreakResult{Score: score, Type: kind, Threshold: pg.Threshold, Action: "allowed"}
	res.Detected = pg.Enabled && score >= pg.Threshold
	if res.Detected {
		res.Action = "blocked"
	}
	return res
}

// lookupCache looks the newest user turn up in the semantic cache, scoped
// by the requested model.
//
//go:noinline
func (rt *Router) lookupCache(st *RequestState, req *ChatRequest) *CacheResult {
	if rt.cache == nil {
		st.Cache = CacheResult{}
	} else {
		st.Cache = rt.cache.lookup(req.Model, req.lastUserText())
	}
	return &st.Cache
}

// bestModel is the model_scores winner for a category, or the default model.
func (rt *Router) bestModel(category string) (model string, ms *ModelScore, cat *Category) {
	cat = rt.cfg.category(category)
	if cat == nil {
		return rt.cfg.DefaultModel, nil, nil
	}
	for i := range cat.ModelScores {
		if ms == nil || cat.ModelScores[i].Score > ms.Score {
			ms = &cat.ModelScores[i]
		}
	}
	if ms == nil {
		return rt.cfg.DefaultModel, nil, cat
	}
	return ms.Model, ms, cat
}

// decideRoute picks the model: for auto the best model_scores entry of
// the category, with reasoning per the category; an explicit model passes
// through with reasoning off.
//
//go:noinline
func (rt *Router) decideRoute(st *RequestState, req *ChatRequest, cls *Classification) *RoutingDecision {
	dec := &st.Route
	*dec = RoutingDecision{OriginalModel: req.Model, Category: cls.Category}
	if !isAuto(req.Model) {
		dec.Strategy, dec.SelectedModel = "specified", req.Model
		dec.Reason = "model specified by client"
		return dec
	}
	dec.Strategy = "auto"
	model, ms, cat := rt.bestModel(cls.Category)
	dec.SelectedModel = model
	switch {
	case cat == nil:
		dec.Reason = fmt.Sprintf("category %q not configured: default_model", cls.Category)
	case ms == nil:
		dec.Reason = fmt.Sprintf("category %q has no model_scores: default_model", cls.Category)
	default:
		dec.Reason = fmt.Sprintf("category %q: highest model_scores entry (score %.2f)", cls.Category, ms.Score)
	}
	if cat == nil {
		return dec
	}
	want := cat.UseReasoning
	if ms != nil && ms.UseReasoning != nil {
		want = *ms.UseReasoning
	}
	if want && rt.cfg.ModelConfig[model].ReasoningFamily == "" {
		dec.Reason += "; reasoning requested but the model has no reasoning_family"
		want = false
	}
	if want {
		dec.ReasoningEnabled = true
		dec.ReasoningEffort = cat.ReasoningEffort
		if dec.ReasoningEffort == "" {
			dec.ReasoningEffort = rt.cfg.DefaultReasoningEffort
		}
	}
	return dec
}

// selectBackend picks among the endpoints serving model by smooth weighted
// round robin (deterministic, so tests can predict it), skipping endpoints
// marked unhealthy unless all are.
//
//go:noinline
func (rt *Router) selectBackend(st *RequestState, model string) (*Endpoint, error) {
	ep, err := rt.pickEndpoint(model)
	st.Endpoint, st.BackendErr = ep, err
	if err != nil {
		return nil, err
	}
	return &st.Endpoint, nil
}

// pickEndpoint is selectBackend's choice.
func (rt *Router) pickEndpoint(model string) (Endpoint, error) {
	cands := rt.cfg.endpointsFor(model)
	if len(cands) == 0 {
		return Endpoint{}, fmt.Errorf("select backend for model %q: %w", model, ErrNoBackend)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	now := rt.now()
	healthy := cands[:0:0]
	for _, ep := range cands {
		if until, bad := rt.unhealthy[ep.Name]; !bad || now.After(until) {
			healthy = append(healthy, ep)
		}
	}
	if len(healthy) == 0 {
		// Trying a possibly-down endpoint beats refusing outright.
		healthy = cands
	}
	state := rt.balance[model]
	if state == nil {
		state = map[string]int{}
		rt.balance[model] = state
	}
	total, best := 0, -1
	for i, ep := range healthy {
		state[ep.Name] += ep.Weight
		total += ep.Weight
		if best < 0 || state[ep.Name] > state[healthy[best].Name] {
			best = i
		}
	}
	ep := healthy[best]
	state[ep.Name] -= total
	return Endpoint{Name: ep.Name, Address: fmt.Sprintf("%s:%d", ep.Address, ep.Port), Weight: ep.Weight}, nil
}

// SetEndpointHealthy marks an endpoint healthy or unhealthy (for
// unhealthyCooldown); operators and tests use it to drain an endpoint.
func (rt *Router) SetEndpointHealthy(name string, healthy bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if healthy {
		delete(rt.unhealthy, name)
		return
	}
	rt.unhealthy[name] = rt.now().Add(unhealthyCooldown)
}

// injectSystemPrompt applies the category's system prompt: insert puts it
// before the client's system prompt, replace drops the client's.
//
//go:noinline
func (rt *Router) injectSystemPrompt(st *RequestState, req *ChatRequest, category string) *Injection {
	res := &st.Injection
	*res = Injection{Category: category}
	cat := rt.cfg.category(category)
	if cat == nil || cat.SystemPrompt == "" {
		return res
	}
	res.Injected, res.Mode = true, cat.SystemPromptMode
	if len(req.Messages) > 0 && req.Messages[0].Role == "system" {
		if cat.SystemPromptMode == "replace" {
			req.Messages[0].Content = cat.SystemPrompt
		} else {
			req.Messages[0].Content = cat.SystemPrompt + "\n\n" + req.Messages[0].Content
		}
		return res
	}
	req.Messages = append([]Message{{Role: "system", Content: cat.SystemPrompt}}, req.Messages...)
	return res
}
