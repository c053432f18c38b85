package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/internal/testenv"
)

// chatLines posts a chat completion with request id id and the given raw
// header lines, which may repeat a name (a map cannot).
func (k *keepAlive) chatLines(t *testing.T, id string, lines ...string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"auto","messages":[{"role":"user","content":%q}]}`, mathPrompt+" ("+id+")")
	var b strings.Builder
	fmt.Fprintf(&b, "POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nx-request-id: %s\r\n", id)
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	k.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := k.c.Write([]byte(b.String())); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("%s: read the answer: %v", id, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("%s: read the body: %v", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", id, resp.StatusCode)
	}
}

// TestTraceContextDuplicateHeaders: several traceparent headers in one
// request are no traceparent (W3C Trace Context: a single value; the
// spec's test suite expects a new trace), whatever their order and
// validity; several tracestate headers are one list joined with commas,
// dropped whole when it outgrows 256 bytes.
func TestTraceContextDuplicateHeaders(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	s := startPropagationBackends(t)
	s.attachAgent(t, agentConfig(t, collector))
	k := dialKeepAlive(t, s.routerAddr)

	other := "0af7651916cd43dd8448eb211c80319c"
	longTrace := "33333333333333333333333333333333" // one trace per request: tracesByRequest wants one root each
	tp := func(trace string) string { return "traceparent: " + traceparent(trace, callerSpan, "01") }
	k.chatLines(t, "dup-two-valid", tp(callerTrace), tp(other), "tracestate: a=1")
	k.chatLines(t, "dup-same-twice", tp(callerTrace), tp(callerTrace))
	k.chatLines(t, "dup-invalid-first", "traceparent: 00-xyz", tp(callerTrace))
	k.chatLines(t, "dup-three", tp(callerTrace), tp(other), "Traceparent: "+traceparent(callerTrace, callerSpan, "01"))
	k.chatLines(t, "ts-two-lines", tp(callerTrace), "tracestate: a=1,b=2", "Tracestate: c=3")
	long := "tracestate: big=" + strings.Repeat("x", 150)
	k.chatLines(t, "ts-too-long", tp(longTrace), long, long, "tracestate: late=1")
	k.chatLines(t, "dup-then-single", tp(other)) // the next block on the goroutine starts clean

	traces := tracesByRequest(t, waitSpans(t, recv, s.metricsAddr, 9*7))
	up := upstreamHeaders(t, s)
	// Several traceparent headers are none.
	wantFreshTraces(t, traces, up, []string{"dup-two-valid", "dup-same-twice", "dup-invalid-first", "dup-three"}, callerTrace, other)
	for _, tc := range []struct{ id, trace, state string }{{"ts-two-lines", callerTrace, "a=1,b=2,c=3"}, {"ts-too-long", longTrace, ""}} {
		id, want := tc.id, tc.state
		rt := traces[id]
		if rt == nil {
			t.Errorf("no trace for %s", id)
			continue
		}
		if rt.root.TraceIDHex() != tc.trace || rt.root.ParentIDHex() != callerSpan {
			t.Errorf("%s: root in trace %s under %s, want the caller's %s under %s", id, rt.root.TraceIDHex(), rt.root.ParentIDHex(), tc.trace, callerSpan)
		}
		wantInjected(t, up, id, rt)
		got := up[id+"/tracestate"]
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("%s: model server got tracestate %q, want %q", id, got, want)
		}
	}
	if rt := traces["dup-then-single"]; rt == nil || rt.root.TraceIDHex() != other {
		t.Errorf("dup-then-single: a single valid traceparent after duplicates on the same connection was not joined")
	}
}

// TestTraceContextForwardingApp: an application that copies its caller's
// traceparent and tracestate onto its own upstream request. The upstream
// must get one traceparent, the application's client span's (its value
// overwritten in place, not a second header after the first), and the
// application's tracestate alone.
func TestTraceContextForwardingApp(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	recv, collector := pipeline(t)
	bin := testenv.GoBuild(t, testenv.Build{Pkg: "./e2e/testdata/forwarder", Out: filepath.Join(t.TempDir(), "forwarder"), Dir: repoRoot()})
	s := &stack{}
	s.fakellm = start(t, "fakellm", nil, bins.fakellm, "--listen", "127.0.0.1:0")
	s.llmAddr = s.fakellm.waitFor(t, listenRE, 10*time.Second)
	s.router = start(t, "forwarder", nil, bin, "--listen", "127.0.0.1:0", "--upstream", s.llmAddr)
	s.routerAddr = s.router.waitFor(t, listenRE, 10*time.Second)
	cfg := agentConfig(t, collector)
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	probes := filepath.Join(repoRoot(), "e2e/testdata/forwarder/probes.yaml")
	out := strings.Replace(string(data), filepath.Join(repoRoot(), "config/probes/semantic-router.yaml"), probes, 1)
	if out == string(data) {
		t.Fatal("agentConfig names no probe file to replace")
	}
	if err := os.WriteFile(cfg, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	s.attachAgent(t, cfg)

	k := dialKeepAlive(t, s.routerAddr)
	send := func(id string, headers map[string]string) {
		h := map[string]string{"x-request-id": id}
		for n, v := range headers {
			h[n] = v
		}
		if resp := k.do(t, http.MethodPost, "/", "{}", h); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", id, resp.StatusCode)
		}
	}
	send("fwd-both", map[string]string{"traceparent": traceparent(callerTrace, callerSpan, "01"), "tracestate": "vendor=caller"})
	send("fwd-traceparent", map[string]string{"traceparent": traceparent(callerTrace, callerSpan, "01")})
	send("fwd-none", nil)

	spans := waitSpans(t, recv, s.metricsAddr, 2*3)
	up := upstreamHeaders(t, s)
	byID := map[string]string{} // request.id -> the upstream span's traceparent
	for _, sp := range spans {
		if sp.Name != "forwarder.upstream" {
			continue
		}
		byID[attrString(sp, "request.id")] = traceparent(sp.TraceIDHex(), sp.SpanIDHex(), "01")
		if id := attrString(sp, "request.id"); id != "fwd-none" && sp.TraceIDHex() != callerTrace {
			t.Errorf("%s: upstream span in trace %s, want the caller's %s", id, sp.TraceIDHex(), callerTrace)
		}
	}
	for id, wantState := range map[string]string{"fwd-both": "vendor=caller", "fwd-traceparent": "", "fwd-none": ""} {
		want, ok := byID[id]
		if !ok {
			t.Errorf("%s: no forwarder.upstream span", id)
			continue
		}
		if got := up[id]; len(got) != 1 || got[0] != want {
			t.Errorf("%s: model server got traceparent %q, want exactly one, the upstream span's %q", id, got, want)
		}
		got := up[id+"/tracestate"]
		if wantState == "" && len(got) != 0 || wantState != "" && (len(got) != 1 || got[0] != wantState) {
			t.Errorf("%s: model server got tracestate %q, want %q", id, got, wantState)
		}
	}
}
