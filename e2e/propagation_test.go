package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/spanname"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/router/fakellm"
)

// W3C trace context through the router with no tracing code in it: the
// agent extracts the client's traceparent and injects the upstream span's.

// A caller's trace and span, as a client would send them.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

func traceparent(trace, span, flags string) string { return "00-" + trace + "-" + span + "-" + flags }

// startPropagationBackends is startBackends with the semantic cache off,
// so every allowed request reaches the model server and has its full tree.
func startPropagationBackends(t *testing.T) *stack {
	t.Helper()
	cfg, err := os.ReadFile(filepath.Join(repoRoot(), "config/router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	noCache := strings.Replace(string(cfg), "semantic_cache:\n  enabled: true", "semantic_cache:\n  enabled: false", 1)
	if noCache == string(cfg) {
		t.Fatal("config/router.yaml: no `semantic_cache: enabled: true` to turn off")
	}
	path := filepath.Join(t.TempDir(), "router.yaml")
	if err := os.WriteFile(path, []byte(noCache), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &stack{}
	s.fakellm = start(t, "fakellm", nil, bins.fakellm, "--listen", "127.0.0.1:0")
	s.llmAddr = s.fakellm.waitFor(t, listenRE, 10*time.Second)
	s.router = start(t, "router", nil, bins.router, "--config", path, "--listen", "127.0.0.1:0", "--backend", s.llmAddr)
	s.routerAddr = s.router.waitFor(t, listenRE, 10*time.Second)
	return s
}

// samplingConfig is agentConfig with another sampling section.
func samplingConfig(t *testing.T, endpoint, sampling string) string {
	t.Helper()
	path := agentConfig(t, endpoint)
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(cfg), "    sampling:\n      type: \"always_on\"\n", sampling, 1)
	if out == string(cfg) {
		t.Fatal("agentConfig has no always_on sampling section to replace")
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// keepAlive is one HTTP/1.1 connection to the router: every request on it
// is served by the same server goroutine, which is where a stale
// traceparent would leak from one request to the next.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c: c, br: bufio.NewReader(c)}
}

// do sends one request with extra headers and reads the whole answer.
func (k *keepAlive) do(t *testing.T, method, path, body string, headers map[string]string) *http.Response {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: router\r\n", method, path)
	for name, v := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", name, v)
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	k.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := k.c.Write([]byte(b.String())); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", method, path, err)
	}
	var rest bytes.Buffer
	if _, err := rest.ReadFrom(resp.Body); err != nil {
		t.Fatalf("%s %s: read the body: %v", method, path, err)
	}
	resp.Body.Close()
	if resp.Close {
		t.Fatalf("%s %s: the router closed the keep-alive connection", method, path)
	}
	return resp
}

// chat posts a chat completion with request id id and extra headers.
func (k *keepAlive) chat(t *testing.T, id string, headers map[string]string) {
	t.Helper()
	h := map[string]string{"x-request-id": id}
	for n, v := range headers {
		h[n] = v
	}
	body := fmt.Sprintf(`{"model":"auto","messages":[{"role":"user","content":%q}]}`, mathPrompt+" ("+id+")")
	if resp := k.do(t, http.MethodPost, "/v1/chat/completions", body, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", id, resp.StatusCode)
	}
}

// upstreamHeaders returns, by x-request-id, the trace context headers the
// fake model server received: traceparent, and tracestate under
// "<id>/tracestate".
func upstreamHeaders(t *testing.T, s *stack) map[string][]string {
	t.Helper()
	resp, err := client.Get("http://" + s.llmAddr + "/debug/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []fakellm.Recorded
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatalf("decode /debug/requests: %v", err)
	}
	out := map[string][]string{}
	for _, r := range recs {
		if ids := r.Headers["x-request-id"]; len(ids) == 1 {
			out[ids[0]] = r.Headers["traceparent"]
			out[ids[0]+"/tracestate"] = r.Headers["tracestate"]
		}
	}
	return out
}

// reqTrace is one request's spans, found by the root's request.id.
type reqTrace struct {
	root, upstream otlptest.Span
	all            []otlptest.Span
}

// tracesByRequest groups spans by trace and indexes each trace by its
// root's request.id. The root is found by name: with a remote parent it
// has a parent span id too.
func tracesByRequest(t *testing.T, spans []otlptest.Span) map[string]*reqTrace {
	t.Helper()
	byTrace := map[string][]otlptest.Span{}
	for _, s := range spans {
		byTrace[s.TraceIDHex()] = append(byTrace[s.TraceIDHex()], s)
	}
	out := map[string]*reqTrace{}
	for tid, ss := range byTrace {
		rt := &reqTrace{all: ss}
		roots := 0
		for _, s := range ss {
			switch s.Name {
			case spanname.Root:
				rt.root = s
				roots++
			case spanname.Upstream:
				rt.upstream = s
			}
		}
		if roots != 1 {
			t.Errorf("trace %s: %d root spans: %s", tid, roots, names(ss))
			continue
		}
		for _, s := range ss {
			if s.Name != spanname.Root && s.ParentIDHex() != rt.root.SpanIDHex() {
				t.Errorf("trace %s: %s has parent %s, want the root %s", tid, s.Name, s.ParentIDHex(), rt.root.SpanIDHex())
			}
		}
		id := attrString(rt.root, "request.id")
		if out[id] != nil {
			t.Errorf("two traces for request.id %q", id)
		}
		out[id] = rt
	}
	return out
}

// wantFreshTraces checks that each request of ids, whose traceparent
// headers were not a valid one, started a trace of its own (no parent, a
// trace id none of notFrom) and sent the model server its upstream span's
// traceparent and no tracestate.
func wantFreshTraces(t *testing.T, traces map[string]*reqTrace, up map[string][]string, ids []string, notFrom ...string) {
	t.Helper()
	for _, id := range ids {
		rt := traces[id]
		if rt == nil {
			t.Errorf("no trace for %s", id)
			continue
		}
		if p := rt.root.ParentIDHex(); p != "" {
			t.Errorf("%s: root has parent %s, want a fresh trace", id, p)
		}
		if tid := rt.root.TraceIDHex(); slices.Contains(notFrom, tid) {
			t.Errorf("%s: trace id %s came from a header, want a fresh one", id, tid)
		}
		wantInjected(t, up, id, rt)
		if got := up[id+"/tracestate"]; len(got) != 0 {
			t.Errorf("%s: model server got tracestate %q, want none (no valid traceparent came in)", id, got)
		}
	}
}

// wantInjected checks that the model server received exactly one
// traceparent for request id and that it is the upstream span's context.
func wantInjected(t *testing.T, up map[string][]string, id string, rt *reqTrace) {
	t.Helper()
	if rt.upstream.Span == nil {
		t.Errorf("%s: no %s span", id, spanname.Upstream)
		return
	}
	want := traceparent(rt.upstream.TraceIDHex(), rt.upstream.SpanIDHex(), "01")
	if got := up[id]; len(got) != 1 || got[0] != want {
		t.Errorf("%s: model server got traceparent %q, want the upstream span's %q", id, got, want)
	}
}

// TestTraceContextPropagation sends requests with valid, invalid and no
// traceparent over one keep-alive connection and checks the traces and the
// headers the model server received.
func TestTraceContextPropagation(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startPropagationBackends(t)
	s.attachAgent(t, agentConfig(t, collector))
	k := dialKeepAlive(t, s.routerAddr)

	k.chat(t, "tp-joined", map[string]string{"traceparent": traceparent(callerTrace, callerSpan, "01"), "tracestate": "vendor=x,other=y"})
	k.chat(t, "tp-absent", nil) // same connection and goroutine: must not reuse the previous header
	// A header on a request no probe covers must not leak into the next one.
	if resp := k.do(t, http.MethodGet, "/healthz", "", map[string]string{"traceparent": traceparent("11111111111111111111111111111111", callerSpan, "01")}); resp.StatusCode != 200 {
		t.Fatalf("/healthz: status %d", resp.StatusCode)
	}
	k.chat(t, "tp-after-health", nil)
	// A later version with more fields is parsed by its version-00 prefix.
	futureTrace := "0af7651916cd43dd8448eb211c80319c"
	k.chat(t, "tp-future", map[string]string{"TraceParent": "cc-" + futureTrace + "-b7ad6b7169203331-01-what-ever"})

	badTrace := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	invalid := map[string]string{
		"tp-bad-version-ff": "ff-" + badTrace + "-" + callerSpan + "-01",
		"tp-bad-zero-trace": traceparent(strings.Repeat("0", 32), callerSpan, "01"),
		"tp-bad-zero-span":  traceparent(badTrace, strings.Repeat("0", 16), "01"),
		"tp-bad-short":      traceparent(badTrace[:31], callerSpan, "01"),
		"tp-bad-long":       traceparent(badTrace, callerSpan, "01") + "-extra", // version 00 has exactly 55 characters
		"tp-bad-hex":        traceparent("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaag", callerSpan, "01"),
		"tp-bad-uppercase":  traceparent(strings.ToUpper(badTrace), callerSpan, "01"),
		"tp-bad-flags":      traceparent(badTrace, callerSpan, "0x"),
	}
	for id, tp := range invalid {
		// A tracestate is ignored along with an invalid traceparent.
		k.chat(t, id, map[string]string{"traceparent": tp, "tracestate": "bad=1"})
	}
	// The caller decided not to sample: no spans, but the decision and the
	// caller's trace id travel on to the model server.
	unsampledTrace := "22222222222222222222222222222222"
	k.chat(t, "tp-unsampled", map[string]string{"traceparent": traceparent(unsampledTrace, callerSpan, "00")})

	sampled := 4 + len(invalid)
	traces := tracesByRequest(t, waitSpans(t, recv, s.metricsAddr, 9*sampled))
	if len(traces) != sampled {
		t.Fatalf("%d traces, want %d (one per sampled request)", len(traces), sampled)
	}
	up := upstreamHeaders(t, s)

	if rt := traces["tp-joined"]; rt == nil {
		t.Error("no trace for tp-joined")
	} else {
		for _, sp := range rt.all {
			if sp.TraceIDHex() != callerTrace {
				t.Errorf("tp-joined: %s in trace %s, want the caller's %s", sp.Name, sp.TraceIDHex(), callerTrace)
			}
		}
		if got := rt.root.ParentIDHex(); got != callerSpan {
			t.Errorf("tp-joined: root's parent %q, want the caller's span %s", got, callerSpan)
		}
		wantInjected(t, up, "tp-joined", rt)
		if got := up["tp-joined/tracestate"]; len(got) != 1 || got[0] != "vendor=x,other=y" {
			t.Errorf("tp-joined: model server got tracestate %q, want the caller's %q", got, "vendor=x,other=y")
		}
		// The exported root span carries the caller's tracestate too.
		if got := rt.root.TraceState; got != "vendor=x,other=y" {
			t.Errorf("tp-joined: root span's tracestate %q, want the caller's %q", got, "vendor=x,other=y")
		}
	}
	if rt := traces["tp-future"]; rt == nil {
		t.Error("no trace for tp-future")
	} else if rt.root.TraceIDHex() != futureTrace || rt.root.ParentIDHex() != "b7ad6b7169203331" {
		t.Errorf("tp-future: root in trace %s under %s, want %s under b7ad6b7169203331", rt.root.TraceIDHex(), rt.root.ParentIDHex(), futureTrace)
	}
	fresh := append([]string{"tp-absent", "tp-after-health"}, mapKeys(invalid)...)
	wantFreshTraces(t, traces, up, fresh, callerTrace, badTrace, strings.Repeat("0", 32))
	if traces["tp-unsampled"] != nil {
		t.Error("tp-unsampled: the caller's sampled=0 was not respected: spans exported")
	}
	got := up["tp-unsampled"]
	if len(got) != 1 || !strings.HasPrefix(got[0], "00-"+unsampledTrace+"-") || !strings.HasSuffix(got[0], "-00") ||
		strings.Contains(got[0], callerSpan) {
		t.Errorf("tp-unsampled: model server got traceparent %q, want 00-%s-<the router's upstream span>-00", got, unsampledTrace)
	}
}

// TestTraceContextParentBased: with probabilistic sampling at rate 0 the
// router starts no trace of its own, but a caller's sampled traceparent
// still gets its spans (parent-based sampling).
func TestTraceContextParentBased(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startPropagationBackends(t)
	s.attachAgent(t, samplingConfig(t, collector, "    sampling:\n      type: \"probabilistic\"\n      rate: 0\n"))
	k := dialKeepAlive(t, s.routerAddr)

	k.chat(t, "pb-own", nil)
	k.chat(t, "pb-sampled", map[string]string{"traceparent": traceparent(callerTrace, callerSpan, "01")})
	traces := tracesByRequest(t, waitSpans(t, recv, s.metricsAddr, 9))
	rt := traces["pb-sampled"]
	if len(traces) != 1 || rt == nil {
		t.Fatalf("traces %v, want only pb-sampled's", mapKeys(traces))
	}
	if rt.root.TraceIDHex() != callerTrace || rt.root.ParentIDHex() != callerSpan {
		t.Errorf("pb-sampled: root in trace %s under %s, want %s under %s", rt.root.TraceIDHex(), rt.root.ParentIDHex(), callerTrace, callerSpan)
	}
	up := upstreamHeaders(t, s)
	wantInjected(t, up, "pb-sampled", rt)
	if got := up["pb-own"]; len(got) != 1 || !strings.HasSuffix(got[0], "-00") {
		t.Errorf("pb-own: model server got traceparent %q, want the router's unsampled upstream span (flags 00)", got)
	}
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTraceContextWarmConnection: the router's connection to the model
// server is opened before the agent attaches (sock_ops never saw it); the
// agent adopts it, and requests on it still carry the upstream span's
// traceparent.
func TestTraceContextWarmConnection(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startPropagationBackends(t)
	k := dialKeepAlive(t, s.routerAddr)
	k.chat(t, "warm-before", nil) // opens the router's keep-alive connection upstream
	s.attachAgent(t, agentConfig(t, collector))
	k.chat(t, "warm-after-1", map[string]string{"traceparent": traceparent(callerTrace, callerSpan, "01")})
	k.chat(t, "warm-after-2", nil)

	traces := tracesByRequest(t, waitSpans(t, recv, s.metricsAddr, 18))
	up := upstreamHeaders(t, s)
	if got := up["warm-before"]; len(got) != 0 {
		t.Errorf("warm-before: model server got traceparent %q before the agent attached, want none", got)
	}
	for _, id := range []string{"warm-after-1", "warm-after-2"} {
		if rt := traces[id]; rt == nil {
			t.Errorf("no trace for %s", id)
		} else {
			wantInjected(t, up, id, rt)
		}
	}
	if rt := traces["warm-after-1"]; rt != nil && rt.root.TraceIDHex() != callerTrace {
		t.Errorf("warm-after-1: trace %s, want the caller's %s", rt.root.TraceIDHex(), callerTrace)
	}
}
