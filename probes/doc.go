// Package probes owns the probe spec (YAML declaring which functions of a Go
// binary become spans and which values become attributes), its resolution
// against a target binary (symbols, DWARF types, the Go register ABI, RET
// offsets), attaching the kernel programs of package bpf as uprobes, and
// decoding the events they emit.
//
// It never logs and never imports package agent: errors are returned, with
// sentinel values callers test with errors.Is.
package probes
