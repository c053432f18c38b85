package config

import (
	"errors"
	"strings"
	"testing"
)

// TestEndpointChecked: endpoints the exporter would fail on at every
// batch are refused at start with a precise message; the usual forms
// pass.
func TestEndpointChecked(t *testing.T) {
	bad := map[string]string{
		"127.0.0.1:4317/v1/traces":       "has a path",
		"dns:///collector:4317":          `scheme "dns"`,
		"unix:///run/otel.sock":          `scheme "unix"`,
		"collector":                      "not host:port",
		"collector:otlp":                 "not a number",
		"collector:70000":                "not a number",
		"http://collector:4317/v1/trace": "has a path",
		"http://:4317":                   "no host",
	}
	for ep, want := range bad {
		err := checkEndpoint(Exporter{Type: ExporterOTLP, Endpoint: ep})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", ep, err, want)
		}
	}
	for _, ep := range []string{"localhost:4317", "127.0.0.1:4317", "[::1]:4317", "otel-collector.observability.svc:4317", "http://collector:4317", "https://collector"} {
		if err := checkEndpoint(Exporter{Type: ExporterOTLP, Endpoint: ep}); err != nil {
			t.Errorf("%q refused: %v", ep, err)
		}
	}
	http := Exporter{Type: ExporterOTLP, Protocol: "http/protobuf"}
	for _, ep := range []string{"http://collector:4318/v1/traces", "collector:4318", "collector"} {
		http.Endpoint = ep
		if err := checkEndpoint(http); err != nil {
			t.Errorf("http %q refused: %v", ep, err)
		}
	}
	// Through the config, at start.
	_, err := Parse([]byte("observability:\n  tracing:\n    enabled: true\n    exporter: {type: otlp, endpoint: \"127.0.0.1:4317/v1/traces\"}\n"))
	if !errors.Is(err, ErrConfig) {
		t.Errorf("config with a path endpoint: %v", err)
	}
}
