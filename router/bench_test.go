package router

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/router/fakellm"
)

// BenchmarkNew measures startup: config validation plus classifier training
// from the embedded set (the brief's budget is 200 ms).
func BenchmarkNew(b *testing.B) {
	cfg, err := LoadConfig(shippedConfig)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := New(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	c := trainedClassifier(b)
	for b.Loop() {
		c.Classify(mathPrompt)
	}
}

func BenchmarkDetectPII(b *testing.B) {
	d := newPIIDetector()
	text := "Send the report to jane.doe@example.com, SSN 123-45-6789, card 4111 1111 1111 1111. " + strings.Repeat("Some ordinary words here. ", 20)
	for b.Loop() {
		d.Detect(text)
	}
}

// benchServe runs whole requests through serveChat against an in-process
// fakellm with no latency: the router's own cost per request.
func benchServe(b *testing.B, cache bool) {
	fsrv := httptest.NewServer(fakellm.New(fakellm.Options{RecordLimit: 1}))
	defer fsrv.Close()
	cfg, err := LoadConfig(shippedConfig)
	if err != nil {
		b.Fatal(err)
	}
	_ = cfg.OverrideBackends(fsrv.Listener.Addr().String())
	cfg.SemanticCache.Enabled = cache
	rt, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	body := chatBody("auto", mathPrompt, false)
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, ChatCompletionsPath, strings.NewReader(body))
		if o := rt.serveChat(httptest.NewRecorder(), r, newOutcome()); o.Status != http.StatusOK {
			b.Fatalf("outcome %+v", o)
		}
	}
}

func BenchmarkServeChatUpstream(b *testing.B) { benchServe(b, false) }
func BenchmarkServeChatCacheHit(b *testing.B) { benchServe(b, true) }
