// Command loadgen drives a router with a fixed number of requests from a
// realistic mix and prints p50, p99 and throughput.
//
//	loadgen [--url http://127.0.0.1:8801] [--requests 2000] [--warmup 200] [--concurrency 8] [--seed 1]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/routerscope/routerscope/internal/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "http://127.0.0.1:8801", "router base URL")
	requests := flag.Int("requests", 2000, "measured requests")
	warmup := flag.Int("warmup", 200, "unmeasured requests sent first")
	conc := flag.Int("concurrency", 8, "requests in flight")
	seed := flag.Uint64("seed", 1, "seed of the request mix")
	flag.Parse()

	mix, err := loadgen.NewMix(loadgen.DefaultShares(), *seed)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, loadgen.Config{URL: *url, Requests: *requests, Warmup: *warmup, Concurrency: *conc, Mix: mix})
	if err != nil {
		return err
	}
	fmt.Printf("requests %d  errors %d  cache hits %d  elapsed %v\n", res.Latency.Count(), res.Errors, res.CacheHits, res.Elapsed)
	fmt.Printf("p50 %v  p99 %v  mean %v  throughput %.1f req/s\n",
		res.Latency.Quantile(0.5), res.Latency.Quantile(0.99), res.Latency.Mean(), res.Throughput())
	codes := make([]int, 0, len(res.Status))
	for c := range res.Status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Printf("status %d: %d\n", c, res.Status[c])
	}
	return nil
}
