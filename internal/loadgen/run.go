package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ChatPath is the endpoint requests are sent to.
const ChatPath = "/v1/chat/completions"

// ErrInvalidConfig is returned by Run for a configuration it cannot use.
var ErrInvalidConfig = errors.New("invalid load configuration")

// Config is one load run.
type Config struct {
	// URL is the router's base URL, e.g. http://127.0.0.1:8801.
	URL string
	// Requests is the number of measured requests.
	Requests int
	// Warmup requests are sent first and not measured (connections, caches,
	// the Go runtime's heap settle).
	Warmup int
	// Concurrency is the number of requests in flight (one worker each).
	Concurrency int
	// Mix draws the requests; nil means DefaultShares() with seed 1.
	Mix *Mix
	// Client sends the requests; nil means a client keeping Concurrency
	// idle connections so every worker reuses its own.
	Client *http.Client
}

// Result summarises the measured requests of a run.
type Result struct {
	Latency *Histogram
	// Elapsed is the wall time of the measured phase.
	Elapsed time.Duration
	// Errors counts transport errors and bodies that could not be read.
	Errors int
	// Status counts responses by HTTP status.
	Status map[int]int
	// Kinds counts requests by kind.
	Kinds map[Kind]int
	// CacheHits counts responses answered from the semantic cache
	// (x-vsr-cache-hit: true).
	CacheHits int
}

// Throughput is measured requests per second.
func (r Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Latency.Count()) / r.Elapsed.Seconds()
}

// Run sends cfg.Warmup then cfg.Requests requests and summarises the
// measured ones. Requests are drawn before the clock starts, so drawing
// costs nothing in the latencies. It stops early, with ctx's error, when
// ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.URL == "" || cfg.Requests <= 0 || cfg.Warmup < 0 || cfg.Concurrency <= 0 {
		return Result{}, fmt.Errorf("load run (url %q, requests %d, warmup %d, concurrency %d): want a URL, requests > 0, warmup >= 0, concurrency > 0: %w",
			cfg.URL, cfg.Requests, cfg.Warmup, cfg.Concurrency, ErrInvalidConfig)
	}
	mix := cfg.Mix
	if mix == nil {
		var err error
		if mix, err = NewMix(DefaultShares(), 1); err != nil {
			return Result{}, err
		}
	}
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Concurrency
		client = &http.Client{Transport: tr, Timeout: time.Minute}
		defer tr.CloseIdleConnections()
	}
	url := cfg.URL + ChatPath
	draw := func(n int) []Request {
		reqs := make([]Request, n)
		for i := range reqs {
			reqs[i] = mix.Next()
		}
		return reqs
	}
	if cfg.Warmup > 0 {
		if _, err := phase(ctx, client, url, draw(cfg.Warmup), cfg.Concurrency); err != nil {
			return Result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	res, err := phase(ctx, client, url, draw(cfg.Requests), cfg.Concurrency)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// outcome is one request's result.
type outcome struct {
	kind     Kind
	latency  time.Duration
	status   int
	cacheHit bool
	err      bool
}

// phase sends reqs with conc workers and summarises them.
func phase(ctx context.Context, client *http.Client, url string, reqs []Request, conc int) (Result, error) {
	outs := make([]outcome, len(reqs))
	next := make(chan int, len(reqs))
	for i := range reqs {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(conc, len(reqs)) {
		wg.Go(func() {
			for i := range next {
				if ctx.Err() != nil {
					return
				}
				outs[i] = send(ctx, client, url, reqs[i])
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("load run interrupted: %w", err)
	}
	return summarise(outs, elapsed), nil
}

// send issues one request and reads its whole body (a streamed answer
// ends with its last chunk), timing both.
func send(ctx context.Context, client *http.Client, url string, r Request) outcome {
	out := outcome{kind: r.Kind}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.Body))
	if err != nil {
		out.err = true
		return out
	}
	req.Header = r.Header.Clone()
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		out.latency, out.err = time.Since(t0), true
		return out
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	out.latency = time.Since(t0)
	out.status = resp.StatusCode
	out.cacheHit = resp.Header.Get("x-vsr-cache-hit") == "true"
	out.err = err != nil
	return out
}

// summarise folds outcomes into a Result.
func summarise(outs []outcome, elapsed time.Duration) Result {
	res := Result{Latency: NewHistogram(len(outs)), Elapsed: elapsed, Status: map[int]int{}, Kinds: map[Kind]int{}}
	for _, o := range outs {
		res.Latency.Record(o.latency)
		res.Kinds[o.kind]++
		if o.err {
			res.Errors++
			continue
		}
		res.Status[o.status]++
		if o.cacheHit {
			res.CacheHits++
		}
	}
	return res
}
