package export

import (
	"crypto/tls"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
)

// TestBuildOTLPOptions: the one builder both OTLP clients use takes the
// same steps from the config: the endpoint as a URL or host:port,
// plaintext or TLS, headers and timeout only when set, and a bad CA file
// is a configuration error.
func TestBuildOTLPOptions(t *testing.T) {
	set := otlpOptionSet[string]{
		endpointURL: func(s string) string { return "url " + s },
		endpoint:    func(s string) string { return "endpoint " + s },
		insecure:    func() string { return "insecure" },
		tls:         func(c *tls.Config) string { return "tls" },
		headers:     func(map[string]string) string { return "headers" },
		timeout:     func(d time.Duration) string { return "timeout " + d.String() },
	}
	cases := []struct {
		e    config.Exporter
		want []string
	}{
		{config.Exporter{Endpoint: "collector:4317", Insecure: true}, []string{"endpoint collector:4317", "insecure"}},
		{config.Exporter{Endpoint: "https://collector", Headers: map[string]string{"a": "b"}, Timeout: time.Second},
			[]string{"url https://collector", "tls", "headers", "timeout 1s"}},
	}
	for _, c := range cases {
		got, err := buildOTLPOptions(c.e, set)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%+v: got %q, %v; want %q", c.e, got, err, c.want)
		}
	}
	if _, err := buildOTLPOptions(config.Exporter{Endpoint: "c:1", CAFile: "/nonexistent/ca.pem"}, set); !errors.Is(err, config.ErrConfig) {
		t.Errorf("missing CA file: got %v, want ErrConfig", err)
	}
	for _, p := range []string{"", config.ProtocolHTTPProtobuf} {
		if _, err := NewTraceClient(config.Exporter{Type: config.ExporterOTLP, Protocol: p, Endpoint: "c:1", CAFile: "/nonexistent/ca.pem"}); !errors.Is(err, config.ErrConfig) {
			t.Errorf("protocol %q with a missing CA file: got %v, want ErrConfig", p, err)
		}
	}
}

// TestMissingCAFileIsAConfigError: a missing ca_file is a configuration
// error (exit 2) like a non-PEM one, not a runtime one.
func TestMissingCAFileIsAConfigError(t *testing.T) {
	e := config.Exporter{Type: config.ExporterOTLP, Endpoint: "localhost:4317", CAFile: "/nonexistent/ca.pem"}
	if _, err := otlpOptions(e); !errors.Is(err, config.ErrConfig) {
		t.Fatalf("got %v", err)
	}
}
