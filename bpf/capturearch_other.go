//go:build !arm64

package bpf

import "github.com/cilium/ebpf"

// LoadCaptureForArch returns the capture object built for the host's
// architecture: amd64's (the only other one the agent supports).
func LoadCaptureForArch() (*ebpf.CollectionSpec, error) { return LoadCapture() }
