// Package otlptest is an in-process OTLP/gRPC trace receiver for tests: a
// real gRPC server implementing the collector's TraceService/Export, which
// records every ResourceSpans it receives and lets a test wait for N spans.
// It is for tests only and never logs.
package otlptest
