// Command router runs the semantic router: an OpenAI-compatible server that
// classifies each chat request and routes it to the best model backend.
//
//	router --config config/router.yaml [--listen 127.0.0.1:8801] [--backend host:port]
//
// CONFIG_PATH and ROUTER_BACKEND stand in for --config and --backend.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/routerscope/routerscope/internal/service"
	"github.com/routerscope/routerscope/router"
)

// Log field keys.
const (
	keyConfig  = "config"
	keyListen  = "listen"
	keyBackend = "backend"
	keyStartup = "startup"
)

func main() { service.Main("router", run) }

func run(log *zap.Logger) error {
	start := time.Now()
	configPath := flag.String("config", envOr("CONFIG_PATH", "config/router.yaml"), "router config file (env CONFIG_PATH)")
	listen := flag.String("listen", "", "listen address host:port (default: server.listen, else "+router.DefaultListen+")")
	backend := flag.String("backend", os.Getenv("ROUTER_BACKEND"), "point every vllm_endpoint at this host:port (env ROUTER_BACKEND)")
	flag.Parse()

	rt, cfg, err := router.NewFromFile(*configPath, *listen, *backend)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	log.Info("router listening",
		zap.String(keyListen, ln.Addr().String()),
		zap.String(keyConfig, *configPath),
		zap.String(keyBackend, *backend),
		zap.Duration(keyStartup, time.Since(start)))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := rt.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("router shut down cleanly")
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
