// Package collectortest runs routerscope's own OpenTelemetry Collector (built by
// scripts/build-collector.sh from config/collector/builder.yaml) for end-to-end tests:
// agent -> collector over OTLP gRPC -> the collector's OTLP exporter -> the test's receiver.
//
// It only builds, starts and stops the collector; receiving and asserting spans belongs
// to the tests (and to package otlptest). It is test support: it reports through
// testing.TB and must not be imported by non-test code.
package collectortest
