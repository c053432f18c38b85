package spantest

import (
	"time"

	"github.com/routerscope/routerscope/agent/config"
)

// OTLPConfig is the default config exporting over OTLP/gRPC, without TLS,
// to endpoint, with a header and the guide's resource.
func OTLPConfig(endpoint string) config.Config {
	cfg := config.DefaultConfig()
	cfg.Tracing.Exporter = config.Exporter{Type: config.ExporterOTLP, Endpoint: endpoint, Insecure: true,
		Headers: map[string]string{"authorization": "Bearer t0ken"}, Timeout: 5 * time.Second}
	cfg.Tracing.Resource = config.Resource{ServiceName: "vllm-semantic-router", ServiceVersion: "v0.1.0", DeploymentEnvironment: "production"}
	return cfg
}
