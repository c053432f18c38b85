package router

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Upstream errors, for errors.Is: serveChat maps a timeout to 504 and the
// others to 502.
var (
	ErrUpstreamTimeout     = errors.New("upstream timed out")
	ErrUpstreamUnavailable = errors.New("upstream unavailable")
	ErrUpstreamStatus      = errors.New("upstream returned a server error")
	// ErrClientGone means the client cancelled the request first; nobody
	// is left to answer, and the upstream is not to blame.
	ErrClientGone = errors.New("client closed the request")
)

// statusClientClosed is nginx's status for a request the client abandoned;
// it is recorded in Outcome only, as no one receives it.
const statusClientClosed = 499

// forwardUpstream sends the request to ep and relays the answer to w: a
// plain JSON body as is, a stream event by event with a flush after each so
// chunks reach the client as they arrive. It returns an error on connect
// failure, timeout or a 5xx; before anything was sent (res.Sent false) the
// caller still owns the response.
//
//go:noinline
func (rt *Router) forwardUpstream(st *RequestState, w http.ResponseWriter, req *ChatRequest, dec *RoutingDecision, ep *Endpoint) (*UpstreamResult, error) {
	res := &st.Upstream
	*res = UpstreamResult{Endpoint: ep.Name, Model: dec.SelectedModel}
	st.UpstreamErr = rt.forward(res, w, req, dec, ep)
	return res, st.UpstreamErr
}

// forward is forwardUpstream's work, filling res.
func (rt *Router) forward(res *UpstreamResult, w http.ResponseWriter, req *ChatRequest, dec *RoutingDecision, ep *Endpoint) error {
	body, err := rt.upstreamBody(req, dec)
	if err != nil {
		return fmt.Errorf("encode upstream request: %w", err)
	}
	parent := req.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, rt.cfg.Server.UpstreamTimeout)
	defer cancel()
	url := "http://" + ep.Address + ChatCompletionsPath
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build upstream request to %s: %w", url, err)
	}
	for k, v := range req.headers {
		hreq.Header[k] = v
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set(HeaderDestination, ep.Name)
	hreq.Header.Set(HeaderSelectedModel, dec.SelectedModel)
	hreq.Header.Set(HeaderRequestID, req.ID)

	resp, err := rt.client.Do(hreq)
	if err != nil {
		return rt.upstreamErr(ctx, ep, err)
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if resp.StatusCode >= 500 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("%w: %s answered %d: %s", ErrUpstreamStatus, ep.Name, resp.StatusCode, strings.TrimSpace(string(snippet)))
	}
	ct := resp.Header.Get("Content-Type")
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	res.Streamed = strings.HasPrefix(ct, "text/event-stream")
	if res.Streamed {
		w.Header().Set("Cache-Control", "no-cache")
		err = relayStream(w, resp, res)
	} else {
		err = relayBody(w, resp, res)
	}
	if err != nil {
		return rt.upstreamErr(ctx, ep, err)
	}
	return nil
}

// upstreamErr names what went wrong talking to ep.
func (rt *Router) upstreamErr(ctx context.Context, ep *Endpoint, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%w while waiting for %s (%s)", ErrClientGone, ep.Name, ep.Address)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s (%s) gave no complete answer within %s (server.upstream_timeout)", ErrUpstreamTimeout, ep.Name, ep.Address, rt.cfg.Server.UpstreamTimeout)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		rt.SetEndpointHealthy(ep.Name, false)
	}
	return fmt.Errorf("%w: %s (%s): %v", ErrUpstreamUnavailable, ep.Name, ep.Address, err)
}

func relayBody(w http.ResponseWriter, resp *http.Response, res *UpstreamResult) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamReplyBytes))
	if err != nil {
		return fmt.Errorf("read upstream body: %w", err)
	}
	w.WriteHeader(resp.StatusCode)
	res.Sent = true
	n, err := w.Write(data)
	res.Bytes = n
	if resp.StatusCode == http.StatusOK {
		var c struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		if json.Unmarshal(data, &c) == nil && len(c.Choices) > 0 {
			res.Content = c.Choices[0].Message.Content
		}
	}
	if err != nil {
		return fmt.Errorf("write answer to client: %w", err)
	}
	return nil
}

// relayStream copies server-sent events line by line, flushing at each
// event boundary, and assembles the streamed text for the cache.
func relayStream(w http.ResponseWriter, resp *http.Response, res *UpstreamResult) error {
	flusher, _ := w.(http.Flusher)
	w.WriteHeader(resp.StatusCode)
	res.Sent = true
	var content strings.Builder
	done := false
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			n, werr := io.WriteString(w, line)
			res.Bytes += n
			if werr != nil {
				return fmt.Errorf("write stream to client: %w", werr)
			}
			trimmed := strings.TrimSpace(line)
			if trimmed == "" && flusher != nil {
				flusher.Flush()
			}
			if data, ok := strings.CutPrefix(trimmed, "data:"); ok {
				data = strings.TrimSpace(data)
				if data == "[DONE]" {
					done = true
				} else {
					var chunk struct {
						Choices []struct {
							Delta struct {
								Content string `json:"content"`
							} `json:"delta"`
						} `json:"choices"`
					}
					if json.Unmarshal([]byte(data), &chunk) == nil && len(chunk.Choices) > 0 {
						content.WriteString(chunk.Choices[0].Delta.Content)
					}
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read upstream stream: %w", err)
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	if !done {
		return fmt.Errorf("upstream stream ended without data: [DONE]")
	}
	res.Content = content.String()
	return nil
}

// upstreamBody encodes the request for the selected model, switching
// reasoning on or off the way the model's reasoning family expects.
func (rt *Router) upstreamBody(req *ChatRequest, dec *RoutingDecision) ([]byte, error) {
	out := *req
	out.Model = dec.SelectedModel
	out.Extra = make(map[string]json.RawMessage, len(req.Extra)+1)
	for k, v := range req.Extra {
		out.Extra[k] = v
	}
	fam, ok := rt.cfg.ReasoningFamilies[rt.cfg.ModelConfig[dec.SelectedModel].ReasoningFamily]
	if ok && dec.Strategy == "auto" {
		switch fam.Type {
		case "chat_template_kwargs":
			kw := map[string]any{}
			if raw, ok := out.Extra["chat_template_kwargs"]; ok {
				_ = json.Unmarshal(raw, &kw)
			}
			kw[fam.Parameter] = dec.ReasoningEnabled
			raw, err := json.Marshal(kw)
			if err != nil {
				return nil, err
			}
			out.Extra["chat_template_kwargs"] = raw
		case "reasoning_effort":
			if dec.ReasoningEnabled {
				raw, _ := json.Marshal(dec.ReasoningEffort)
				out.Extra[fam.Parameter] = raw
			}
		}
	}
	return out.body()
}

// apiError is OpenAI's error body.
type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// writeError sends an OpenAI-shaped error and returns the status.
func writeError(w http.ResponseWriter, status int, code, msg, allow string) int {
	var e apiError
	e.Error.Message, e.Error.Code = msg, code
	e.Error.Type = "invalid_request_error"
	if status >= 500 {
		e.Error.Type = "server_error"
	}
	if allow != "" {
		w.Header().Set("Allow", allow)
	}
	writeJSON(w, status, e)
	return status
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeCompletion answers with a completion the router made itself (a
// block or a cache hit), as JSON or, when the client asked to stream, as
// one content chunk, one finish chunk and [DONE].
func writeCompletion(w http.ResponseWriter, stream bool, id, model, content, finish string) {
	created := time.Now().Unix()
	id = "chatcmpl-" + id
	if !stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": model,
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": content},
				"finish_reason": finish,
			}},
			"usage": map[string]int{"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	chunk := func(delta map[string]any, fin any) {
		b, _ := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": fin}},
		})
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	chunk(map[string]any{"role": "assistant", "content": content}, nil)
	chunk(map[string]any{}, finish)
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}
