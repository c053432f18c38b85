package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Response headers the router sets, as vLLM Semantic Router names them.
const (
	HeaderCategory       = "x-vsr-selected-category"
	HeaderReasoning      = "x-vsr-selected-reasoning"
	HeaderModel          = "x-vsr-selected-model"
	HeaderInjectedPrompt = "x-vsr-injected-system-prompt"
	HeaderCacheHit       = "x-vsr-cache-hit"
	HeaderJailbreakBlock = "x-vsr-jailbreak-blocked"
	HeaderPIIViolation   = "x-vsr-pii-violation"
	// HeaderRequestID is read from the client (else generated), echoed in
	// the response and passed upstream.
	HeaderRequestID = "x-request-id"
)

// Headers the router adds to upstream requests.
const (
	HeaderDestination   = "x-gateway-destination-endpoint"
	HeaderSelectedModel = "x-selected-model"
)

// ChatCompletionsPath is the OpenAI chat endpoint, served here and called upstream.
const ChatCompletionsPath = "/v1/chat/completions"

const (
	// shutdownGrace bounds how long Serve waits for in-flight requests.
	shutdownGrace     = 30 * time.Second
	readHeaderTimeout = 10 * time.Second
	// maxUpstreamReplyBytes bounds a non-streamed upstream answer held in memory.
	maxUpstreamReplyBytes = 32 << 20
)

// Router is the semantic router. Create it with New; it is an http.Handler
// and safe for concurrent use.
type Router struct {
	cfg        *Config
	classifier *Classifier
	pii        *piiDetector
	guard      *jailbreakGuard
	cache      *semanticCache // nil when semantic_cache.enabled is false
	client     *http.Client
	now        func() time.Time

	mu        sync.Mutex
	balance   map[string]map[string]int // model -> endpoint -> WRR current weight
	unhealthy map[string]time.Time      // endpoint -> skipped until
}

// New fills cfg's defaults, validates it and trains the classifier from the
// embedded labelled set.
func New(cfg *Config) (*Router, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil config", ErrInvalidConfig)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	examples, err := ParseExamples(trainingSet)
	if err != nil {
		return nil, fmt.Errorf("parse embedded training set: %w", err)
	}
	cls, err := TrainClassifier(examples)
	if err != nil {
		return nil, err
	}
	rt := &Router{
		cfg:        cfg,
		classifier: cls,
		pii:        newPIIDetector(),
		guard:      newJailbreakGuard(),
		// No client-wide timeout: UpstreamTimeout is applied per request
		// through the context so a timeout is told apart from a refusal.
		// No proxy either: backends are addressed directly, and an
		// HTTP_PROXY meant for the internet must not capture them.
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		}},
		now:       time.Now,
		balance:   map[string]map[string]int{},
		unhealthy: map[string]time.Time{},
	}
	if cfg.SemanticCache.Enabled {
		rt.cache = newSemanticCache(cfg.SemanticCache, rt.now)
	}
	return rt, nil
}

// Config returns the configuration the router runs with.
func (rt *Router) Config() *Config { return rt.cfg }

// ServeHTTP dispatches the OpenAI-compatible endpoints.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case ChatCompletionsPath:
		rt.serveChat(w, r, newOutcome())
	case "/v1/models":
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET for /v1/models", http.MethodGet)
			return
		}
		rt.serveModels(w)
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	default:
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no route for %s; the router serves %s, /v1/models and /healthz", r.URL.Path, ChatCompletionsPath), "")
	}
}

func (rt *Router) serveModels(w http.ResponseWriter) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := []model{{"auto", "model", 0, "routerscope"}, {"MoM", "model", 0, "routerscope"}}
	for _, m := range rt.cfg.Models() {
		list = append(list, model{m, "model", 0, "upstream"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": list})
}

// newOutcome allocates the Outcome of one chat completion. It is not
// inlined so the Outcome is always on the heap: a tracer that ends the
// root span after serveChat returned (at net/http's finishRequest) reads
// it through the pointer it saw at serveChat's entry, and the caller's
// stack frame is gone by then.
//
//go:noinline
func newOutcome() *Outcome { return new(Outcome) }

// serveChat handles one chat completion from parsing to the last byte
// sent, running the stages in order. It fills out, the caller's Outcome,
// on every path and returns it, because the tracing agent reads the root
// span's attributes from it: through out, saved at entry, when the span
// ends after serveChat returned; or from the result at serveChat's RETs.
//
//go:noinline
func (rt *Router) serveChat(w http.ResponseWriter, r *http.Request, out *Outcome) *Outcome {
	*out = Outcome{
		RequestID: r.Header.Get(HeaderRequestID),
		UserID:    r.Header.Get("x-user-id"),
		SessionID: r.Header.Get("x-session-id"),
		Method:    r.Method,
		Path:      r.URL.Path,
	}
	if out.RequestID == "" {
		out.RequestID = newRequestID()
	}
	w.Header().Set(HeaderRequestID, out.RequestID)
	reject := func(status int, code, msg string) *Outcome {
		allow := ""
		if status == http.StatusMethodNotAllowed {
			allow = http.MethodPost
		}
		writeError(w, status, code, msg, allow)
		out.Status, out.Error = status, msg
		return out
	}
	if r.Method != http.MethodPost {
		return reject(http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("method %s not allowed: use POST for %s", r.Method, ChatCompletionsPath))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, rt.cfg.Server.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return reject(http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("request body exceeds %d bytes (server.max_body_bytes)", tooBig.Limit))
		}
		return reject(http.StatusBadRequest, "invalid_request", "read request body: "+err.Error())
	}
	req, err := parseChatRequest(body)
	if err != nil {
		return reject(http.StatusBadRequest, "invalid_json", err.Error())
	}
	req.ID, req.SessionID = out.RequestID, out.SessionID
	if out.UserID != "" {
		req.UserID = out.UserID
	}
	out.UserID, out.OriginalModel = req.UserID, req.Model
	req.ctx, req.headers = r.Context(), propagatedHeaders(r.Header)
	switch {
	case req.Model == "":
		return reject(http.StatusBadRequest, "missing_model", `key "model" is required: name a model from /v1/models, or "auto" to let the router choose`)
	case len(req.Messages) == 0:
		return reject(http.StatusBadRequest, "missing_messages", `key "messages" must hold at least one {role, content} message`)
	case !isAuto(req.Model) && len(rt.cfg.endpointsFor(req.Model)) == 0:
		return reject(http.StatusNotFound, "model_not_found", fmt.Sprintf("model %q is not served here: see /v1/models, or use \"auto\"", req.Model))
	}

	st := newRequestState()
	cls := rt.classify(st, req)
	out.Category = cls.Category
	w.Header().Set(HeaderCategory, cls.Category)

	policyModel := req.Model
	if isAuto(policyModel) {
		policyModel, _, _ = rt.bestModel(cls.Category)
	}
	if pii := rt.detectPII(st, req, policyModel); pii.Action == "blocked" {
		w.Header().Set(HeaderPIIViolation, "true")
		msg := fmt.Sprintf("This request was blocked: it contains personal information (%v) that model %s may not receive.", pii.Denied, policyModel)
		return rt.finishBlocked(w, req, out, policyModel, msg)
	}
	if jb := rt.detectJailbreak(st, req); jb.Action == "blocked" {
		w.Header().Set(HeaderJailbreakBlock, "true")
		msg := fmt.Sprintf("This request was blocked by the prompt guard (%s, score %.2f).", jb.Type, jb.Score)
		return rt.finishBlocked(w, req, out, req.Model, msg)
	}
	if hit := rt.lookupCache(st, req); hit.Hit {
		w.Header().Set(HeaderCacheHit, "true")
		w.Header().Set(HeaderModel, hit.Model)
		out.CacheHit, out.SelectedModel, out.Status = true, hit.Model, http.StatusOK
		writeCompletion(w, req.Stream, out.RequestID, hit.Model, hit.Answer, "stop")
		return out
	}
	w.Header().Set(HeaderCacheHit, "false")
	userText := req.lastUserText() // before injection changes the messages

	dec := rt.decideRoute(st, req, cls)
	w.Header().Set(HeaderModel, dec.SelectedModel)
	w.Header().Set(HeaderReasoning, onOff(dec.ReasoningEnabled))
	ep, err := rt.selectBackend(st, dec.SelectedModel)
	if err != nil {
		out.Failed, out.Error = true, err.Error()
		out.Status = writeError(w, http.StatusServiceUnavailable, "no_backend", err.Error(), "")
		return out
	}
	inj := rt.injectSystemPrompt(st, req, cls.Category)
	w.Header().Set(HeaderInjectedPrompt, strconv.FormatBool(inj.Injected))

	res, err := rt.forwardUpstream(st, w, req, dec, ep)
	out.SelectedModel = dec.SelectedModel
	if err != nil {
		out.Failed, out.Error = true, err.Error()
		if res.Sent {
			out.Status = http.StatusOK
			return out
		}
		status, code := http.StatusBadGateway, "upstream_error"
		switch {
		case errors.Is(err, ErrUpstreamTimeout):
			status, code = http.StatusGatewayTimeout, "upstream_timeout"
		case errors.Is(err, ErrClientGone):
			status, code = statusClientClosed, "client_closed_request"
		}
		out.Status = writeError(w, status, code, err.Error(), "")
		return out
	}
	out.Status = res.Status
	if rt.cache != nil && res.Status == http.StatusOK && res.Content != "" {
		rt.cache.store(req.Model, userText, res.Content, dec.SelectedModel)
	}
	return out
}

func (rt *Router) finishBlocked(w http.ResponseWriter, req *ChatRequest, out *Outcome, model, msg string) *Outcome {
	out.Blocked, out.Status = true, http.StatusOK
	writeCompletion(w, req.Stream, out.RequestID, model, msg, "content_filter")
	return out
}

// Serve serves on ln until ctx is cancelled, then shuts down gracefully:
// it stops accepting, lets in-flight requests (streams included) finish for
// up to 30 s, and returns nil on a clean shutdown.
func (rt *Router) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: readHeaderTimeout}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve router on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	defer rt.client.CloseIdleConnections()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut router down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve router on %s: %w", ln.Addr(), err)
	}
	return nil
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// propagatedHeaders are the client headers passed on upstream: who asks and
// in which session. Trace context (traceparent, tracestate) is deliberately
// not among them: the router carries no tracing code, and the routerscope
// agent puts the upstream span's own traceparent on the upstream request.
func propagatedHeaders(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range []string{"x-user-id", "x-session-id"} {
		if v := h.Values(k); len(v) > 0 {
			out[http.CanonicalHeaderKey(k)] = v
		}
	}
	return out
}
