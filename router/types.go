package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Message is one chat message. Content given as an array of parts (the
// OpenAI multi-part form) is flattened to its text parts, because every stage
// works on text.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	Name    string `json:"name,omitempty"`
}

// UnmarshalJSON accepts content as a string, null or an array of parts.
func (m *Message) UnmarshalJSON(data []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
		Name    string          `json:"name"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	m.Role, m.Name, m.Content = raw.Role, raw.Name, ""
	c := strings.TrimSpace(string(raw.Content))
	switch {
	case c == "" || c == "null":
	case c[0] == '"':
		return json.Unmarshal(raw.Content, &m.Content)
	case c[0] == '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(raw.Content, &parts); err != nil {
			return fmt.Errorf("message content parts: %w", err)
		}
		var texts []string
		for _, p := range parts {
			if p.Type == "text" || p.Type == "" {
				texts = append(texts, p.Text)
			}
		}
		m.Content = strings.Join(texts, "\n")
	default:
		return fmt.Errorf("message content must be a string or an array of parts, got %.20s", c)
	}
	return nil
}

// ChatRequest is a parsed /v1/chat/completions request. ID, UserID and
// SessionID come from headers (or are generated); the other fields come from
// the body. Extra keeps every body key the router does not interpret so the
// upstream receives it unchanged.
type ChatRequest struct {
	ID        string
	UserID    string
	SessionID string
	Model     string
	Stream    bool
	Messages  []Message
	// Extra holds the body's other keys (temperature, max_tokens, ...).
	Extra map[string]json.RawMessage

	// ctx is the client request's context: the upstream call ends when the
	// client goes away. headers are the client headers passed upstream.
	ctx     context.Context
	headers http.Header
}

// parseChatRequest decodes a request body. Errors say which key is wrong.
func parseChatRequest(body []byte) (*ChatRequest, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("request body is not a JSON object: %w", err)
	}
	req := &ChatRequest{Extra: fields}
	if v, ok := fields["model"]; ok {
		if err := json.Unmarshal(v, &req.Model); err != nil {
			return nil, fmt.Errorf("key \"model\" must be a string: %w", err)
		}
		delete(fields, "model")
	}
	if v, ok := fields["stream"]; ok {
		if err := json.Unmarshal(v, &req.Stream); err != nil {
			return nil, fmt.Errorf("key \"stream\" must be a boolean: %w", err)
		}
		delete(fields, "stream")
	}
	if v, ok := fields["messages"]; ok {
		if err := json.Unmarshal(v, &req.Messages); err != nil {
			return nil, fmt.Errorf("key \"messages\" must be an array of {role, content}: %w", err)
		}
		delete(fields, "messages")
	}
	if v, ok := fields["user"]; ok {
		// "user" is also passed upstream, so it stays in Extra.
		_ = json.Unmarshal(v, &req.UserID)
	}
	return req, nil
}

// body encodes the request for the upstream: Extra plus the interpreted keys.
func (req *ChatRequest) body() ([]byte, error) {
	out := make(map[string]any, len(req.Extra)+3)
	for k, v := range req.Extra {
		out[k] = v
	}
	out["model"] = req.Model
	out["messages"] = req.Messages
	if req.Stream {
		out["stream"] = true
	}
	return json.Marshal(out)
}

// lastUserText is the text the classifier, the cache and the jailbreak
// guard look at: the newest user turn, which is what the request asks.
func (req *ChatRequest) lastUserText() string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			return req.Messages[i].Content
		}
	}
	if n := len(req.Messages); n > 0 {
		return req.Messages[n-1].Content
	}
	return ""
}

// userText is every user turn joined: PII may sit in any earlier turn.
func (req *ChatRequest) userText() string {
	var b strings.Builder
	for _, m := range req.Messages {
		if m.Role == "user" {
			b.WriteString(m.Content)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Outcome is what the root span reports: it is filled on every path
// (errors, blocks, cache hits) because the tracing agent reads it at return.
type Outcome struct {
	RequestID, UserID, SessionID, Method, Path string
	// OriginalModel is the model the client asked for.
	OriginalModel string
	// SelectedModel is the model that produced the answer ("" if none).
	SelectedModel string
	Category      string
	// Status is the HTTP status sent to the client.
	Status int
	// Failed is set on upstream errors, timeouts and internal errors.
	Failed bool
	// Blocked is set when PII policy or the jailbreak guard stopped the request.
	Blocked  bool
	CacheHit bool
	// Error is a short error text when Failed or when the request was rejected.
	Error string
}

// newRequestState allocates one request's RequestState. It is not inlined
// so the state is always on the heap: a tracer ends the last stage's span
// with the root, after serveChat returned (at net/http's finishRequest),
// and reads the stage's results through the pointer it saw at the stage's
// entry, when serveChat's stack frame is gone.
//
//go:noinline
func newRequestState() *RequestState { return new(RequestState) }

// RequestState is the per-request state serveChat passes to every stage:
// each stage fills its own result here (and returns a pointer to it). A
// tracer that ends a stage's span without seeing the stage return (at the
// next stage's start) reads the stage's results through the state pointer
// it saw at the stage's entry; nothing else depends on it.
type RequestState struct {
	Classification Classification
	PII            PIIResult
	Jailbreak      JailbreakResult
	Cache          CacheResult
	Route          RoutingDecision
	Endpoint       Endpoint
	// BackendErr is selectBackend's error, nil when an endpoint was chosen.
	BackendErr error
	Injection  Injection
	Upstream   UpstreamResult
	// UpstreamErr is forwardUpstream's error.
	UpstreamErr error
}

// Classification is the classify stage's result.
type Classification struct {
	Category string
	// Confidence is the softmax probability of Category among all categories.
	Confidence float64
	// Classifier names the implementation, e.g. "hashed-ngram-centroid".
	Classifier string
	// Similarity is the cosine similarity to the winning centroid.
	Similarity float64
}

// PIIResult is the detectPII stage's result.
type PIIResult struct {
	Detected bool
	// Types are the detected PII types, e.g. EMAIL_ADDRESS, sorted.
	Types []string
	// Action is "blocked" or "allowed".
	Action string
	// Policy describes the policy applied: "allow_by_default" or "deny_by_default".
	Policy string
	// Model is the model whose pii_policy was applied.
	Model string
	// Denied are the detected types the policy does not allow.
	Denied []string
}

// JailbreakResult is the detectJailbreak stage's result.
type JailbreakResult struct {
	Detected bool
	// Type is the strongest matching attack type, e.g. "instruction_override".
	Type      string
	Score     float64
	Threshold float64
	// Action is "blocked" or "allowed".
	Action string
}

// CacheResult is the lookupCache stage's result.
type CacheResult struct {
	Hit bool
	// Similarity is the best cosine similarity found (0 when empty).
	Similarity float64
	Threshold  float64
	// Entries is the number of live entries at lookup time.
	Entries int
	// Answer is the cached answer text on a hit.
	Answer string
	// Model is the model that produced the cached answer.
	Model string
}

// RoutingDecision is the decideRoute stage's result.
type RoutingDecision struct {
	OriginalModel, SelectedModel string
	// Strategy is "auto" (the router chose) or "specified" (the client did).
	Strategy string
	Reason   string
	// ReasoningEnabled says whether reasoning mode is switched on upstream.
	ReasoningEnabled bool
	// ReasoningEffort is low, medium or high ("" when reasoning is off).
	ReasoningEffort string
	Category        string
}

// Endpoint is one upstream model server, as chosen by selectBackend.
type Endpoint struct {
	Name string
	// Address is host:port.
	Address string
	Weight  int
}

// Injection is the injectSystemPrompt stage's result.
type Injection struct {
	Injected bool
	// Mode is "insert" or "replace" ("" when the category has no prompt).
	Mode     string
	Category string
}

// UpstreamResult is the forwardUpstream stage's result.
type UpstreamResult struct {
	// Status is the upstream's HTTP status (0 when none was received).
	Status   int
	Streamed bool
	// Bytes is the number of body bytes relayed to the client.
	Bytes    int
	Endpoint string
	Model    string
	// Sent is set once the response header went to the client: after that
	// an error can no longer change the status.
	Sent bool
	// Content is the assistant text, assembled from chunks when streamed.
	Content string
}
