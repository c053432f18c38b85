// Command fakellm runs a fake OpenAI-compatible model server with
// deterministic answers, for the demo, tests and benchmarks.
//
//	fakellm [--listen 127.0.0.1:8000] [--latency 20ms] [--chunk-delay 5ms] [--fail-rate 0]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/internal/service"
	"github.com/routerscope/routerscope/router/fakellm"
)

// Log field keys.
const (
	keyListen  = "listen"
	keyLatency = "latency"
)

func main() { service.Main("fakellm", run) }

func run(log *zap.Logger) error {
	listen := flag.String("listen", "127.0.0.1:8000", "listen address host:port")
	latency := flag.Duration("latency", 0, "delay before each answer (header x-fakellm-latency overrides per request)")
	chunkDelay := flag.Duration("chunk-delay", 0, "delay between streamed chunks")
	failRate := flag.Float64("fail-rate", 0, "share of requests (0..1) answered with HTTP 500")
	seed := flag.Uint64("seed", 1, "seed for --fail-rate")
	models := flag.String("models", "qwen3-8b,deepseek-v3,gpt-oss-20b,phi4", "comma-separated models listed by /v1/models")
	flag.Parse()
	if *failRate < 0 || *failRate > 1 {
		return fmt.Errorf("--fail-rate %g: want a share between 0 and 1", *failRate)
	}

	srv := fakellm.New(fakellm.Options{
		Latency: *latency, ChunkDelay: *chunkDelay, FailRate: *failRate, Seed: *seed,
		Models: strings.Split(*models, ","),
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log.Info("fakellm listening", zap.String(keyListen, ln.Addr().String()), zap.Duration(keyLatency, *latency))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	if err := service.Serve(ctx, hs, ln, 10*time.Second); err != nil {
		return err
	}
	log.Info("fakellm shut down cleanly")
	return nil
}
