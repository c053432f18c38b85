package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

var fixtureListenRE = regexp.MustCompile(`listening (\S+)`)

// buildHTTPFixture builds the net/http fixture (not the router) with extra
// go build arguments.
func buildHTTPFixture(t *testing.T, args ...string) string {
	t.Helper()
	return testenv.GoBuild(t, testenv.Build{Pkg: "./e2e/testdata/httpfixture", Out: filepath.Join(t.TempDir(), "httpfixture"),
		Dir: repoRoot(), Flags: args})
}

// traceHTTPFixture starts the fixture and the agent on it with the given
// probe files exporting to a real collector, drives one request of each
// kind, and returns the spans received.
func traceHTTPFixture(t *testing.T, bin string, wantSpans int, probeFiles ...string) []otlptest.Span {
	t.Helper()
	recv, endpoint := pipeline(t)
	fx := start(t, "httpfixture", nil, bin)
	addr := fx.waitFor(t, fixtureListenRE, 10*time.Second)
	args := []string{bins.agentBin, "run", "--pid", fmt.Sprint(fx.cmd.Process.Pid), "--config", agentConfig(t, endpoint),
		"--log-format", "json", "--metrics-listen", "127.0.0.1:0"}
	for _, p := range probeFiles {
		args = append(args, "--probes", p)
	}
	agent := start(t, "routerscope", nil, args...)
	metricsAddr := agent.waitFor(t, metricsAddrRE, 30*time.Second)
	agent.waitFor(t, attachedRE, 60*time.Second)

	base := "http://" + addr
	for _, r := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/hello", "", 200},
		{"GET", "/users/42", "", 200},
		{"GET", "/teapot", "", 418},
		{"POST", "/fail", "abc", 503},
		{"GET", "/call?url=" + base + "/teapot", "", 200},
	} {
		req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.status {
			t.Fatalf("%s %s: status %d, want %d", r.method, r.path, resp.StatusCode, r.status)
		}
	}
	return waitSpans(t, recv, metricsAddr, wantSpans)
}

// TestNetHTTPProbes traces a small net/http server and client with
// config/probes/net-http.yaml: a server span per request with the status
// code the handler wrote, and a client span with the response's status.
func TestNetHTTPProbes(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	spans := traceHTTPFixture(t, buildHTTPFixture(t), 7, filepath.Join(repoRoot(), "config/probes/net-http.yaml"))
	checkNetHTTPSpans(t, spans)
}

// TestNetHTTPProbesIncluded combines the HTTP probes with the
// application's own through include: its span is a child of the server
// span declared in the included file.
func TestNetHTTPProbesIncluded(t *testing.T) {
	testenv.RequireBPF(t, "the end-to-end eBPF test")
	dir := t.TempDir()
	app := filepath.Join(dir, "app.yaml")
	body := fmt.Sprintf(`include: [%q]
probes:
  - symbol: main.lookupUser
    span: app.lookup_user
    parent: http.server.request
    attributes:
      - {name: user.id, from: arg:id}
      - {name: user.label, from: return:0}
`, filepath.Join(repoRoot(), "config/probes/net-http.yaml"))
	if err := os.WriteFile(app, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	spans := traceHTTPFixture(t, buildHTTPFixture(t), 8, app)
	var rest []otlptest.Span
	var lookup *otlptest.Span
	for i, s := range spans {
		if s.Name == "app.lookup_user" {
			lookup = &spans[i]
			continue
		}
		rest = append(rest, s)
	}
	checkNetHTTPSpans(t, rest)
	if lookup == nil {
		t.Fatal("no app.lookup_user span")
	}
	wantStr(t, *lookup, "user.id", "42")
	wantStr(t, *lookup, "user.label", "user 42")
	for _, s := range rest {
		if attrString(s, "url.path") == "/users/42" && s.SpanIDHex() != lookup.ParentIDHex() {
			t.Errorf("app.lookup_user's parent %s, want the /users/42 server span %s", lookup.ParentIDHex(), s.SpanIDHex())
		}
	}
}

// checkNetHTTPSpans checks the seven spans of traceHTTPFixture's requests.
func checkNetHTTPSpans(t *testing.T, spans []otlptest.Span) {
	t.Helper()
	servers := map[string][]otlptest.Span{}
	var clients []otlptest.Span
	for _, s := range spans {
		switch {
		case s.Name == "http.server.request" && s.Kind == tracepb.Span_SPAN_KIND_SERVER:
			servers[attrString(s, "url.path")] = append(servers[attrString(s, "url.path")], s)
		case s.Name == "http.client.request" && s.Kind == tracepb.Span_SPAN_KIND_CLIENT:
			clients = append(clients, s)
		default:
			t.Errorf("unexpected span %s (%v)", s.Name, s.Kind)
		}
	}
	for path, want := range map[string]struct {
		n      int
		method string
		status int64
		route  string
	}{
		"/hello":    {1, "GET", 200, "GET /hello"},
		"/users/42": {1, "GET", 200, "GET /users/{id}"},
		"/teapot":   {2, "GET", 418, "/teapot"},
		"/fail":     {1, "POST", 503, "POST /fail"},
		"/call":     {1, "GET", 200, "GET /call"},
	} {
		got := servers[path]
		if len(got) != want.n {
			t.Errorf("%s: %d server spans, want %d", path, len(got), want.n)
			continue
		}
		for _, s := range got {
			wantStr(t, s, "http.request.method", want.method)
			wantInt(t, s, "http.response.status_code", want.status)
			wantStr(t, s, "http.route", want.route)
			wantStr(t, s, "network.protocol.version", "1.1")
			if !strings.HasPrefix(attrString(s, "client.address"), "127.0.0.1:") || !strings.HasPrefix(attrString(s, "server.address"), "127.0.0.1:") {
				t.Errorf("%s: client.address %q server.address %q", path, attrString(s, "client.address"), attrString(s, "server.address"))
			}
		}
	}
	if f := servers["/fail"]; len(f) == 1 {
		wantInt(t, f[0], "http.request.body.size", 3)
	}
	if len(clients) != 1 {
		t.Fatalf("%d client spans, want 1", len(clients))
	}
	c := clients[0]
	wantStr(t, c, "http.request.method", "GET")
	wantStr(t, c, "url.scheme", "http")
	wantStr(t, c, "url.path", "/teapot")
	wantInt(t, c, "http.response.status_code", 418)
	wantInt(t, c, "http.response.body.size", int64(len("short and stout\n")))
	// The client span is a child of the /call server span; the /teapot
	// request it sends carries its traceparent, so that server span is a
	// child of the client span in the same trace.
	if call := servers["/call"]; len(call) == 1 && (c.ParentIDHex() != call[0].SpanIDHex() || c.TraceIDHex() != call[0].TraceIDHex()) {
		t.Errorf("client span's parent %s, want the /call server span %s", c.ParentIDHex(), call[0].SpanIDHex())
	}
	nested := 0
	for _, s := range servers["/teapot"] {
		if s.ParentIDHex() == c.SpanIDHex() && s.TraceIDHex() == c.TraceIDHex() {
			nested++
		}
	}
	if nested != 1 {
		t.Errorf("%d /teapot server spans are children of the client span, want 1", nested)
	}
}
