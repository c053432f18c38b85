// Package fakellm is a fake OpenAI-compatible model server for the demo,
// tests and benchmarks: deterministic answers derived from the model and the
// last user message, configurable latency, streaming, failure injection, and
// a record of the requests it received so tests can check which headers and
// bodies reached the backend. It never logs and imports nothing from
// routerscope.
package fakellm

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Request headers and prompt markers that steer one request.
const (
	// HeaderLatency overrides Options.Latency for one request, e.g. "250ms".
	HeaderLatency = "x-fakellm-latency"
	// FailMarker in the last user message makes the server answer 500.
	FailMarker = "FAKELLM_FAIL"
	// DropMarker makes a streamed answer stop before data: [DONE].
	DropMarker = "FAKELLM_DROP"
)

const (
	defaultRecordLimit = 100
	maxBodyBytes       = 4 << 20
	maxRecordedBody    = 64 << 10
)

// Options configure a Server.
type Options struct {
	// Latency is the delay before the first byte of every answer.
	Latency time.Duration
	// ChunkDelay is the delay between streamed chunks.
	ChunkDelay time.Duration
	// FailRate is the share of requests (0..1) answered with 500.
	FailRate float64
	// Seed makes FailRate's choices reproducible.
	Seed uint64
	// Models are listed by /v1/models; any model name is accepted.
	Models []string
	// RecordLimit bounds how many requests are kept (default 100).
	RecordLimit int
}

// Recorded is one request the server received.
type Recorded struct {
	Time    time.Time           `json:"time"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
	// Body is the request body, cut at 64 KiB.
	Body json.RawMessage `json:"body,omitempty"`
}

// Server is the fake model server; it is an http.Handler.
type Server struct {
	opts Options

	mu       sync.Mutex
	rng      *rand.Rand
	requests []Recorded
}

// New returns a server with opts.
func New(opts Options) *Server {
	if opts.RecordLimit <= 0 {
		opts.RecordLimit = defaultRecordLimit
	}
	return &Server{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))}
}

// Requests returns the recorded requests, oldest first.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.requests...)
}

// ServeHTTP serves /v1/chat/completions, /v1/models, /healthz and
// /debug/requests.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/chat/completions":
		s.chat(w, r)
	case "/v1/models":
		data := []map[string]any{}
		for _, m := range s.opts.Models {
			data = append(data, map[string]any{"id": m, "object": "model", "owned_by": "fakellm"})
		}
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
	case "/healthz":
		_, _ = io.WriteString(w, "ok\n")
	case "/debug/requests":
		writeJSON(w, http.StatusOK, s.Requests())
	default:
		writeErr(w, http.StatusNotFound, "no route for "+r.URL.Path)
	}
}

type chatBody struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeErr(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	fail := s.record(r, body)
	var req chatBody
	if err := json.Unmarshal(body, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "body is not a chat completion request: "+err.Error())
		return
	}
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			if s, ok := m.Content.(string); ok {
				last = s
			}
		}
	}
	latency := s.opts.Latency
	if v := r.Header.Get(HeaderLatency); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			latency = d
		}
	}
	if !sleep(r, latency) {
		return
	}
	if fail || strings.Contains(last, FailMarker) {
		writeErr(w, http.StatusInternalServerError, "fakellm: injected failure")
		return
	}
	answer := Answer(req.Model, last)
	id := fmt.Sprintf("chatcmpl-fake-%x", hash(req.Model+"\x00"+last))
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": answer}, "finish_reason": "stop"}},
			"usage":   map[string]int{"prompt_tokens": len(strings.Fields(last)), "completion_tokens": len(strings.Fields(answer)), "total_tokens": len(strings.Fields(last)) + len(strings.Fields(answer))},
		})
		return
	}
	s.stream(w, r, id, req.Model, answer, strings.Contains(last, DropMarker))
}

func (s *Server) stream(w http.ResponseWriter, r *http.Request, id, model, answer string, drop bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(delta map[string]any, finish any) {
		b, _ := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	send(map[string]any{"role": "assistant", "content": ""}, nil)
	words := strings.SplitAfter(answer, " ")
	for i, word := range words {
		if drop && i == len(words)/2 {
			return
		}
		if i > 0 && !sleep(r, s.opts.ChunkDelay) {
			return
		}
		send(map[string]any{"content": word}, nil)
	}
	send(map[string]any{}, "stop")
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

// record keeps the request and decides whether FailRate fails it.
func (s *Server) record(r *http.Request, body []byte) (fail bool) {
	rec := Recorded{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Headers: map[string][]string{}}
	for k, v := range r.Header {
		rec.Headers[strings.ToLower(k)] = append([]string(nil), v...)
	}
	if len(body) <= maxRecordedBody && json.Valid(body) {
		rec.Body = append(json.RawMessage(nil), body...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, rec)
	if over := len(s.requests) - s.opts.RecordLimit; over > 0 {
		s.requests = append([]Recorded(nil), s.requests[over:]...)
	}
	return s.opts.FailRate > 0 && s.rng.Float64() < s.opts.FailRate
}

// Answer is the deterministic reply to prompt from model.
func Answer(model, prompt string) string {
	p := strings.Join(strings.Fields(prompt), " ")
	if len(p) > 80 {
		p = p[:80] + "..."
	}
	return fmt.Sprintf("[%s] answer %04x to: %s", model, hash(model+"\x00"+prompt)%0x10000, p)
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// sleep waits d or until the client leaves; false means it left.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": "fakellm_error", "code": status}})
}
