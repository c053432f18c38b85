// Command router-otel is the benchmark's comparator: the same router with
// in-process OpenTelemetry SDK spans, exporting over OTLP gRPC through a
// batch span processor, the way a router instrumented in its own code
// would. It lives outside router/ so the traced application stays free of
// tracing code.
//
//	router-otel --config config/router.yaml --otlp-endpoint 127.0.0.1:4317 [--listen ADDR] [--backend host:port]
//
// The router has no hooks, so the spans come from a wrapper around its
// http.Handler: a root span around each request, and the stage spans (same
// names and attribute keys as config/probes/semantic-router.yaml) started
// and ended inside the request once the wrapper knows from the response
// headers which stages ran. Their timestamps are therefore not the stages'
// own; their cost (creation, attributes, batching, export) is.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"

	"github.com/routerscope/routerscope/internal/service"
	"github.com/routerscope/routerscope/router"
)

// Log field keys.
const (
	keyListen   = "listen"
	keyEndpoint = "endpoint"
	keyError    = "error"
)

func main() { service.Main("router-otel", run) }

func run(log *zap.Logger) error {
	configPath := flag.String("config", "config/router.yaml", "router config file")
	listen := flag.String("listen", "", "listen address host:port (default: server.listen)")
	backend := flag.String("backend", "", "point every vllm_endpoint at this host:port")
	endpoint := flag.String("otlp-endpoint", "127.0.0.1:4317", "OTLP gRPC receiver host:port (plaintext)")
	flag.Parse()

	rt, cfg, err := router.NewFromFile(*configPath, *listen, *backend)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(*endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return fmt.Errorf("create OTLP exporter for %s: %w", *endpoint, err)
	}
	// The agent's defaults (config/agent.yaml export block), so both
	// batch alike.
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithMaxQueueSize(2048), sdktrace.WithMaxExportBatchSize(512), sdktrace.WithBatchTimeout(5*time.Second)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "vllm-semantic-router"), attribute.String("service.version", "v0.1.0"))),
	)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Error("flush spans", zap.String(keyError, err.Error()))
		}
	}()

	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Server.Listen, err)
	}
	srv := &http.Server{Handler: newTraced(rt, tp.Tracer("github.com/routerscope/routerscope/cmd/router-otel")), ReadHeaderTimeout: 10 * time.Second}
	log.Info("router-otel listening", zap.String(keyListen, ln.Addr().String()), zap.String(keyEndpoint, *endpoint))
	return service.Serve(ctx, srv, ln, 30*time.Second)
}
