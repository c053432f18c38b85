// Package router is an OpenAI-compatible semantic LLM router: the application
// routerscope traces. It carries no tracing code and imports neither
// OpenTelemetry nor eBPF packages.
package router
