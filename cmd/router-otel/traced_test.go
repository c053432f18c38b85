package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/routerscope/routerscope/internal/spanname"
	"github.com/routerscope/routerscope/router"
	"github.com/routerscope/routerscope/router/fakellm"
)

// newTestRouter serves the repository's router config, its backends
// pointed at an in-process fake model server, behind the tracing wrapper.
func newTestRouter(t *testing.T) (*httptest.Server, *tracetest.SpanRecorder) {
	t.Helper()
	llm := httptest.NewServer(fakellm.New(fakellm.Options{}))
	t.Cleanup(llm.Close)
	cfg, err := router.LoadConfig("../../config/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.OverrideBackends(strings.TrimPrefix(llm.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	rt, err := router.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := httptest.NewServer(newTraced(rt, tp.Tracer("test")))
	t.Cleanup(srv.Close)
	return srv, rec
}

func post(t *testing.T, url, body string) http.Header {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	return resp.Header
}

// trees groups the ended spans by trace: root name first, then the
// sorted child names, checking every child's parent is its trace's root.
func trees(t *testing.T, spans []sdktrace.ReadOnlySpan) [][]string {
	t.Helper()
	byTrace := map[string][]sdktrace.ReadOnlySpan{}
	var order []string
	for _, s := range spans {
		id := s.SpanContext().TraceID().String()
		if _, ok := byTrace[id]; !ok {
			order = append(order, id)
		}
		byTrace[id] = append(byTrace[id], s)
	}
	var out [][]string
	for _, id := range order {
		var root sdktrace.ReadOnlySpan
		for _, s := range byTrace[id] {
			if !s.Parent().IsValid() {
				root = s
			}
		}
		if root == nil {
			t.Fatalf("trace %s has no root", id)
		}
		var kids []string
		for _, s := range byTrace[id] {
			if s == root {
				continue
			}
			if s.Parent().SpanID() != root.SpanContext().SpanID() {
				t.Errorf("span %s is not a child of the root", s.Name())
			}
			if s.StartTime().Before(root.StartTime()) || s.EndTime().After(root.EndTime()) {
				t.Errorf("span %s is outside its root's time", s.Name())
			}
			kids = append(kids, s.Name())
		}
		sort.Strings(kids)
		out = append(out, append([]string{root.Name()}, kids...))
	}
	return out
}

func TestTracedSpans(t *testing.T) {
	srv, rec := newTestRouter(t)
	const ask = `{"model":"auto","messages":[{"role":"user","content":"Integrate x^2 from 0 to 3 and show the antiderivative"}]}`
	post(t, srv.URL, ask)
	if h := post(t, srv.URL, ask); h.Get("x-vsr-cache-hit") != "true" {
		t.Fatal("the repeated question was not a cache hit")
	}
	post(t, srv.URL, `{"model":"auto","stream":true,"messages":[{"role":"user","content":"Write a Go function that reverses a linked list"}]}`)
	if resp, err := http.Get(srv.URL + "/healthz"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	got := trees(t, rec.Ended())
	forwarded := []string{spanname.Root, spanname.Routing, spanname.Backend, spanname.Cache, spanname.Classify, spanname.Jailbreak, spanname.PII, spanname.Inject, spanname.Upstream}
	sort.Strings(forwarded[1:])
	cached := []string{spanname.Root, spanname.Cache, spanname.Classify, spanname.Jailbreak, spanname.PII}
	sort.Strings(cached[1:])
	want := [][]string{forwarded, cached, forwarded}
	if len(got) != len(want) {
		t.Fatalf("%d traces, want 3 (healthz untraced): %v", len(got), got)
	}
	for i := range want {
		if strings.Join(got[i], ",") != strings.Join(want[i], ",") {
			t.Errorf("trace %d: %v\nwant %v", i, got[i], want[i])
		}
	}
	for _, s := range rec.Ended() {
		if s.Name() != spanname.Root {
			continue
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		if attrs["category.name"] != "math" && attrs["category.name"] != "computer science" {
			t.Errorf("root category.name = %q", attrs["category.name"])
		}
		if attrs["http.status_code"] != "200" || attrs["http.method"] != "POST" {
			t.Errorf("root attributes %v", attrs)
		}
	}
}
