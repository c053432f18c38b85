// Package testenv holds the helpers that tests of several packages share:
// the gate of the tests that need root (eBPF programs, namespaces, runc),
// waiting for a condition instead of sleeping, building fixture binaries
// with the go tool, and reading a /metrics page. It is imported by tests
// only, never by the agent, the probes or the router, and it never logs.
package testenv
