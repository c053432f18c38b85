// Package agent turns kernel events from package probes into OpenTelemetry
// spans, exports them with the OTel Go SDK, and reads the agent's
// configuration (the guide's observability.tracing block plus its own
// section). It is the only layer that logs.
package agent
