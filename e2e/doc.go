// Package e2e holds the end-to-end tests of routerscope: the router and the
// fake model server run as real processes, the agent attaches to the router
// by PID (or finds it by discovery rules) with the default probe file, and spans travel over OTLP gRPC through
// a real OpenTelemetry Collector into a receiver in the test. The tests need
// root (eBPF) and skip with a clear message otherwise.
package e2e
