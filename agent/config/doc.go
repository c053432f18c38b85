// Package config is the agent's configuration: the guide's
// observability.tracing block and the agent's own routerscope section
// (export bounds, kernel sizes, propagation, metrics, discovery rules and
// targets), decoded strictly from YAML (unknown keys and bad values are
// errors naming the file, line, key and the fix), overridden by the
// OpenTelemetry SDK's OTEL_* variables (otelenv.go), bounded (limits.go)
// and validated. Every error it returns wraps ErrConfig.
//
// It only reads the config file it is given and the environment function
// it is passed: it scans no process, starts no goroutine, exports nothing
// and never logs. It must not import any other package of the agent; the
// discovery rules are types here, matched against processes elsewhere.
package config
