package main

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/routerscope/routerscope/internal/spanname"
)

// traced wraps the router's handler with OpenTelemetry spans.
type traced struct {
	next   http.Handler
	tracer trace.Tracer
}

func newTraced(next http.Handler, tracer trace.Tracer) *traced {
	return &traced{next: next, tracer: tracer}
}

// recorder keeps the status the router sent; it passes Flush through so
// streamed answers still stream.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ServeHTTP traces chat completions; other paths pass through untraced, as
// the probes only cover serveChat.
func (t *traced) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" {
		t.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	ctx, root := t.tracer.Start(r.Context(), spanname.Root, trace.WithSpanKind(trace.SpanKindServer))
	rec := &recorder{ResponseWriter: w}
	t.next.ServeHTTP(rec, r.WithContext(ctx))

	h := w.Header()
	category := h.Get("x-vsr-selected-category")
	model := h.Get("x-vsr-selected-model")
	cacheHit := h.Get("x-vsr-cache-hit") == "true"
	piiBlocked := h.Get("x-vsr-pii-violation") == "true"
	jbBlocked := h.Get("x-vsr-jailbreak-blocked") == "true"
	blocked := piiBlocked || jbBlocked
	failed := rec.status >= 500
	action := func(b bool) string {
		if b {
			return "blocked"
		}
		return "allowed"
	}
	stage := func(name string, kind trace.SpanKind, attrs ...attribute.KeyValue) trace.Span {
		_, s := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
		return s
	}
	end := func(s trace.Span) { s.End() }

	// The stages serveChat ran, in its order: a rejected request (bad
	// JSON, wrong method) has no category and runs none.
	if category != "" {
		end(stage(spanname.Classify, trace.SpanKindInternal,
			attribute.String("category.name", category), attribute.Float64("category.confidence", 0),
			attribute.String("classifier.type", "hashed-ngram-centroid"), attribute.Int64("classification.time_ms", 0)))
		end(stage(spanname.PII, trace.SpanKindInternal,
			attribute.Bool("pii.detected", piiBlocked), attribute.StringSlice("pii.types", nil),
			attribute.String("security.action", action(piiBlocked)), attribute.Int64("pii.detection_time_ms", 0)))
		if !piiBlocked {
			end(stage(spanname.Jailbreak, trace.SpanKindInternal,
				attribute.Bool("jailbreak.detected", jbBlocked), attribute.String("jailbreak.type", ""),
				attribute.Float64("jailbreak.score", 0), attribute.String("security.action", action(jbBlocked)),
				attribute.Int64("jailbreak.detection_time_ms", 0)))
		}
		if !blocked {
			end(stage(spanname.Cache, trace.SpanKindInternal,
				attribute.Bool("cache.hit", cacheHit), attribute.Float64("cache.threshold", 0.85),
				attribute.Float64("cache.similarity", 0), attribute.Int64("cache.lookup_time_ms", 0)))
		}
		if !blocked && !cacheHit {
			end(stage(spanname.Routing, trace.SpanKindInternal,
				attribute.String("routing.original_model", "auto"), attribute.String("routing.selected_model", model),
				attribute.String("model.name", model), attribute.String("routing.strategy", "model_scores"),
				attribute.String("routing.reason", "category"), attribute.Bool("reasoning.enabled", h.Get("x-vsr-selected-reasoning") == "on"),
				attribute.String("reasoning.effort", ""), attribute.String("category.name", category)))
			end(stage(spanname.Backend, trace.SpanKindInternal,
				attribute.String("model.name", model), attribute.String("endpoint.name", h.Get("x-gateway-destination-endpoint")),
				attribute.String("endpoint.address", h.Get("x-gateway-destination-endpoint"))))
			end(stage(spanname.Inject, trace.SpanKindInternal,
				attribute.String("category.name", category), attribute.Bool("system_prompt.injected", h.Get("x-vsr-injected-system-prompt") == "true"),
				attribute.String("system_prompt.mode", "")))
			up := stage(spanname.Upstream, trace.SpanKindClient,
				attribute.Int("http.status_code", rec.status), attribute.String("endpoint.address", h.Get("x-gateway-destination-endpoint")),
				attribute.String("model.name", model), attribute.Bool("upstream.streamed", false))
			if failed {
				up.SetStatus(codes.Error, "upstream failed")
			}
			end(up)
		}
	}
	root.SetAttributes(
		attribute.String("request.id", h.Get("x-request-id")), attribute.String("user.id", r.Header.Get("x-user-id")),
		attribute.String("session.id", r.Header.Get("x-session-id")), attribute.String("http.method", r.Method),
		attribute.String("http.path", r.URL.Path), attribute.String("routing.original_model", "auto"),
		attribute.String("routing.selected_model", model), attribute.String("model.name", model),
		attribute.String("category.name", category), attribute.Bool("cache.hit", cacheHit),
		attribute.String("security.action", action(blocked)), attribute.Int("http.status_code", rec.status),
		attribute.Int64("processing.time_ms", time.Since(start).Milliseconds()))
	if failed {
		root.SetStatus(codes.Error, "request failed")
	}
	root.End()
}
