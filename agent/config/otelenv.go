package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file maps the OpenTelemetry SDK's standard environment variables
// (OTEL_*) onto the config. Precedence, highest first: command-line flags,
// OTEL_* variables, the config file, the defaults; so ApplyEnv runs after
// the file is read and before the flags are applied. Every value is checked
// here and an error names the variable, since the YAML key names that
// Validate uses would point the user at the wrong place.

// Exporter protocols: OTLP over gRPC (the default) or over HTTP with
// protobuf bodies.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// protocols are the accepted exporter protocols, in error-message order.
var protocols = []string{ProtocolGRPC, ProtocolHTTPProtobuf}

// The OTLP default endpoints (the specification's) used when
// OTEL_TRACES_EXPORTER selects otlp and nothing names an endpoint.
const (
	defaultGRPCEndpoint = "http://localhost:4317"
	defaultHTTPEndpoint = "http://localhost:4318/v1/traces"
	// httpTracesPath is appended to OTEL_EXPORTER_OTLP_ENDPOINT (the
	// all-signals base URL) for OTLP/HTTP; the _TRACES_ variant is used as
	// given.
	httpTracesPath = "v1/traces"
)

// maxEnvList bounds the entries read from a list variable (headers,
// resource attributes), so a runaway value cannot grow the config without
// limit.
const maxEnvList = 128

// ApplyEnv overrides cfg with the OTEL_* variables that getenv returns
// (empty means unset). It does not validate the result as a whole: the
// caller applies its flags and then calls Validate.
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	t := &cfg.Tracing
	if v := getenv("OTEL_SDK_DISABLED"); v != "" {
		off, err := envBool("OTEL_SDK_DISABLED", v)
		if err != nil {
			return err
		}
		if off {
			t.Enabled = false
		}
	}
	if err := applyResourceEnv(&t.Resource, getenv); err != nil {
		return err
	}
	if err := applyExporterEnv(&t.Exporter, getenv); err != nil {
		return err
	}
	if err := applySamplerEnv(&t.Sampling, getenv); err != nil {
		return err
	}
	return applyBatchEnv(&cfg.Agent.Export, &t.Exporter, getenv)
}

func applyResourceEnv(r *Resource, getenv func(string) string) error {
	if v := getenv("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		attrs, err := envPairs("OTEL_RESOURCE_ATTRIBUTES", v)
		if err != nil {
			return err
		}
		if r.Attributes == nil {
			r.Attributes = map[string]string{}
		}
		for k, val := range attrs {
			switch k {
			// The keys the config has fields for go there, so that the
			// service name check and the resource builder see them.
			case "service.name":
				r.ServiceName = val
			case "service.version":
				r.ServiceVersion = val
			case "deployment.environment", "deployment.environment.name":
				r.DeploymentEnvironment = val
			default:
				r.Attributes[k] = val
			}
		}
	}
	// OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		r.ServiceName = v
	}
	return nil
}

func applyExporterEnv(e *Exporter, getenv func(string) string) error {
	// Each OTLP setting has a traces-only variable that wins over the
	// all-signals one.
	otlp := func(name string) (string, string) {
		if v := getenv("OTEL_EXPORTER_OTLP_TRACES_" + name); v != "" {
			return "OTEL_EXPORTER_OTLP_TRACES_" + name, v
		}
		return "OTEL_EXPORTER_OTLP_" + name, getenv("OTEL_EXPORTER_OTLP_" + name)
	}
	typeSet := false
	if v := getenv("OTEL_TRACES_EXPORTER"); v != "" {
		switch strings.TrimSpace(v) {
		case "otlp":
			e.Type = ExporterOTLP
		case "console":
			e.Type = ExporterStdout
		case "none":
			e.Type = ExporterNone
		default:
			return fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: want one of otlp, console, none (one exporter only)", ErrConfig, v)
		}
		typeSet = true
	}
	if name, v := otlp("PROTOCOL"); v != "" {
		if !slices.Contains(protocols, v) {
			return fmt.Errorf("%w: %s=%q: want %s (http/json is not supported)", ErrConfig, name, v, list(protocols))
		}
		e.Protocol = v
	}
	name, v := otlp("ENDPOINT")
	if v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s=%q: want a URL such as http://collector:4317", ErrConfig, name, v)
		}
		if e.Protocol == ProtocolHTTPProtobuf && name == "OTEL_EXPORTER_OTLP_ENDPOINT" {
			u.Path = strings.TrimSuffix(u.Path, "/") + "/" + httpTracesPath
		}
		e.Endpoint = u.String()
		// The scheme says whether to use TLS, as in the SDK.
		e.Insecure = u.Scheme == "http"
		// An endpoint asks for OTLP unless OTEL_TRACES_EXPORTER says
		// otherwise: the agent's own default exporter is stdout, the
		// SDK's is otlp.
		if !typeSet {
			e.Type = ExporterOTLP
		}
	}
	if e.Type == ExporterOTLP && e.Endpoint == "" {
		e.Endpoint = defaultGRPCEndpoint
		if e.Protocol == ProtocolHTTPProtobuf {
			e.Endpoint = defaultHTTPEndpoint
		}
		e.Insecure = true
	}
	if name, v := otlp("INSECURE"); v != "" {
		b, err := envBool(name, v)
		if err != nil {
			return err
		}
		e.Insecure = b
	}
	if name, v := otlp("CERTIFICATE"); v != "" {
		e.CAFile = v
		if e.Insecure {
			return fmt.Errorf("%w: %s is set but the exporter is insecure (an http:// endpoint or OTEL_EXPORTER_OTLP_INSECURE=true): use an https:// endpoint", ErrConfig, name)
		}
	}
	if name, v := otlp("HEADERS"); v != "" {
		h, err := envPairs(name, v)
		if err != nil {
			return err
		}
		if e.Headers == nil {
			e.Headers = map[string]string{}
		}
		for k, val := range h {
			e.Headers[k] = val
		}
	}
	if name, v := otlp("TIMEOUT"); v != "" {
		d, err := envMillis(name, v)
		if err != nil {
			return err
		}
		e.Timeout = d
	}
	return nil
}

// applySamplerEnv maps OTEL_TRACES_SAMPLER onto the guide's sampling types.
// The kernel always follows an incoming traceparent's sampled flag, so
// always_on and traceidratio behave as their parentbased_ forms;
// parentbased_always_off is a ratio of 0 (only callers' sampled traces are
// kept), while always_off attaches nothing.
func applySamplerEnv(s *Sampling, getenv func(string) string) error {
	v := getenv("OTEL_TRACES_SAMPLER")
	arg := getenv("OTEL_TRACES_SAMPLER_ARG")
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil || f != f || f < 0 || f > 1 {
			return 0, fmt.Errorf("%w: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in 0..1 such as 0.1", ErrConfig, arg)
		}
		return f, nil
	}
	switch v {
	case "":
		return nil
	case "always_on", "parentbased_always_on":
		s.Type, s.Rate = SamplingAlwaysOn, 1
	case "always_off":
		s.Type, s.Rate = SamplingAlwaysOff, 0
	case "parentbased_always_off":
		s.Type, s.Rate = SamplingProbabilistic, 0
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return err
		}
		s.Type, s.Rate = SamplingProbabilistic, r
	default:
		return fmt.Errorf("%w: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", ErrConfig, v)
	}
	return nil
}

func applyBatchEnv(x *ExportSettings, e *Exporter, getenv func(string) string) error {
	ints := []struct {
		name string
		dst  *int
	}{
		{"OTEL_BSP_MAX_QUEUE_SIZE", &x.QueueSize},
		{"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &x.MaxBatchSize},
	}
	for _, it := range ints {
		if v := getenv(it.name); v != "" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n <= 0 {
				return fmt.Errorf("%w: %s=%q: want a positive integer", ErrConfig, it.name, v)
			}
			*it.dst = n
		}
	}
	if v := getenv("OTEL_BSP_SCHEDULE_DELAY"); v != "" {
		d, err := envMillis("OTEL_BSP_SCHEDULE_DELAY", v)
		if err != nil {
			return err
		}
		x.BatchTimeout = d
	}
	// The batch processor's export timeout bounds one export call, which is
	// the exporter's timeout; the OTLP-specific variable is more precise
	// and wins.
	if v := getenv("OTEL_BSP_EXPORT_TIMEOUT"); v != "" {
		d, err := envMillis("OTEL_BSP_EXPORT_TIMEOUT", v)
		if err != nil {
			return err
		}
		if getenv("OTEL_EXPORTER_OTLP_TIMEOUT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") == "" {
			e.Timeout = d
		}
	}
	if x.MaxBatchSize > x.QueueSize {
		return fmt.Errorf("%w: OTEL_BSP_MAX_EXPORT_BATCH_SIZE %d is larger than the queue size %d (OTEL_BSP_MAX_QUEUE_SIZE or routerscope.export.queue_size)", ErrConfig, x.MaxBatchSize, x.QueueSize)
	}
	return nil
}

// envBool parses a boolean variable; the specification allows only true
// and false, case-insensitively.
func envBool(name, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s=%q: want true or false", ErrConfig, name, v)
}

// envMillis parses a duration in integer milliseconds, the specification's
// unit for timeouts and delays.
func envMillis(name, v string) (time.Duration, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 || n > int64(24*time.Hour/time.Millisecond) {
		return 0, fmt.Errorf("%w: %s=%q: want a positive whole number of milliseconds, e.g. 10000", ErrConfig, name, v)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// envPairs parses the W3C-baggage-like "key=value,key2=value2" lists of
// OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS; values are
// percent-decoded.
func envPairs(name, v string) (map[string]string, error) {
	out := map[string]string{}
	for i, item := range strings.Split(v, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		if i >= maxEnvList {
			return nil, fmt.Errorf("%w: %s: more than %d entries", ErrConfig, name, maxEnvList)
		}
		k, val, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: %s: entry %q: want key=value", ErrConfig, name, item)
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: entry %q: bad percent-encoding", ErrConfig, name, item)
		}
		out[k] = dec
	}
	return out, nil
}
