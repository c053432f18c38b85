// Package loadgen drives an OpenAI-compatible router over HTTP with a fixed
// number of requests from a realistic mix (categories, PII, jailbreak
// attempts, streaming, cache repeats), after a warm-up, at a fixed
// concurrency, and summarises latency (p50, p99) and throughput.
//
// It is a library for the benchmark harness and cmd/loadgen: it never logs,
// and it knows nothing about tracing.
package loadgen
