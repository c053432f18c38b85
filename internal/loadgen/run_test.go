package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestRunCountsAndConcurrency(t *testing.T) {
	var got, inFlight, peak atomic.Int64
	var mu sync.Mutex
	kinds := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if r.URL.Path != ChatPath || r.Method != http.MethodPost {
			http.Error(w, "wrong endpoint", http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		got.Add(1)
		mu.Lock()
		kinds[r.Header.Get("x-request-id")]++
		mu.Unlock()
		// Cache-hit prompts answer as cached, PII ones as blocked.
		switch {
		case contains(prompts[KindCacheHit], lastContent(t, body)):
			w.Header().Set("x-vsr-cache-hit", "true")
		case hasPrefixIn(prompts[KindPII], lastContent(t, body)):
			w.WriteHeader(http.StatusForbidden)
		}
		_, _ = io.WriteString(w, "{}")
	}))
	defer srv.Close()

	mix, _ := NewMix(DefaultShares(), 11)
	res, err := Run(context.Background(), Config{URL: srv.URL, Requests: 300, Warmup: 50, Concurrency: 4, Mix: mix})
	if err != nil {
		t.Fatal(err)
	}
	if got.Load() != 350 {
		t.Errorf("server saw %d requests, want 300 measured + 50 warm-up", got.Load())
	}
	if res.Latency.Count() != 300 {
		t.Errorf("measured %d latencies, want 300", res.Latency.Count())
	}
	if peak.Load() > 4 {
		t.Errorf("peak concurrency %d exceeds 4", peak.Load())
	}
	if res.Errors != 0 {
		t.Errorf("%d errors", res.Errors)
	}
	if res.Kinds[KindCacheHit] == 0 || res.CacheHits != res.Kinds[KindCacheHit] {
		t.Errorf("cache hits %d, cache-hit requests %d: want equal and non-zero", res.CacheHits, res.Kinds[KindCacheHit])
	}
	if res.Status[http.StatusForbidden] != res.Kinds[KindPII] || res.Status[http.StatusOK]+res.Status[http.StatusForbidden] != 300 {
		t.Errorf("statuses %v do not match kinds %v", res.Status, res.Kinds)
	}
	if res.Throughput() <= 0 {
		t.Errorf("throughput %v", res.Throughput())
	}
	if len(kinds) != 350 {
		t.Errorf("%d distinct request ids, want 350", len(kinds))
	}
}

func lastContent(t *testing.T, body []byte) string {
	t.Helper()
	var b chatBody
	if err := json.Unmarshal(body, &b); err != nil || len(b.Messages) == 0 {
		t.Errorf("bad body %s: %v", body, err)
		return ""
	}
	return b.Messages[len(b.Messages)-1].Content
}

func TestRunTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens any more
	res, err := Run(context.Background(), Config{URL: url, Requests: 5, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 5 || res.Latency.Count() != 5 {
		t.Fatalf("errors %d, latencies %d; want 5 and 5", res.Errors, res.Latency.Count())
	}
}

func TestRunRejectsConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "", Requests: 1, Concurrency: 1},
		{URL: "http://x", Requests: 0, Concurrency: 1},
		{URL: "http://x", Requests: 1, Concurrency: 0},
		{URL: "http://x", Requests: 1, Warmup: -1, Concurrency: 1},
	} {
		if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Run(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestRunCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{URL: srv.URL, Requests: 10, Concurrency: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context = %v, want context.Canceled", err)
	}
}

func hasPrefixIn(list []string, s string) bool {
	for _, x := range list {
		if strings.HasPrefix(s, x) {
			return true
		}
	}
	return false
}
