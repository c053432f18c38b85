package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// checkEndpoint refuses, at start, OTLP endpoints the exporter would only
// fail on later, on every batch (ten seconds after start and on):
// "127.0.0.1:4317/v1/traces" (a path on a gRPC host:port), "dns:///..."
// (a gRPC name-resolver scheme the exporter does not take), a missing or
// non-numeric port.
func checkEndpoint(e Exporter) error {
	const key = "observability.tracing.exporter.endpoint"
	ep := e.Endpoint
	grpc := e.Protocol == "" || e.Protocol == "grpc"
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("%w: %s: %q is not a URL: %v", ErrConfig, key, ep, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("%w: %s: scheme %q in %q is not supported: write host:port, or an http:// or https:// URL", ErrConfig, key, u.Scheme, ep)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("%w: %s: %q has no host", ErrConfig, key, ep)
		}
		if grpc && u.Path != "" && u.Path != "/" {
			return fmt.Errorf("%w: %s: %q has a path, which OTLP/gRPC does not use: drop %q (or set exporter.protocol: http/protobuf)", ErrConfig, key, ep, u.Path)
		}
		if p := u.Port(); p != "" {
			return checkPort(key, ep, p)
		}
		return nil
	}
	if i := strings.IndexByte(ep, '/'); i >= 0 {
		return fmt.Errorf("%w: %s: %q has a path: write host:port (e.g. %q) for OTLP/gRPC, or a full http:// URL for OTLP/HTTP", ErrConfig, key, ep, ep[:i])
	}
	_, port, err := net.SplitHostPort(ep)
	if err != nil && !grpc {
		return nil // OTLP/HTTP's default port applies
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %q is not host:port, e.g. \"localhost:4317\"", ErrConfig, key, ep)
	}
	return checkPort(key, ep, port)
}

func checkPort(key, ep, port string) error {
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%w: %s: port %q in %q is not a number in 1..65535", ErrConfig, key, port, ep)
	}
	return nil
}
