package bpf

import "github.com/cilium/ebpf"

// LoadCaptureForArch returns the capture object built for the host's
// architecture: on arm64 the one that reads arm64's registers (goregs.h).
// Both define the same maps, programs and types, so CaptureObjects and the
// other Capture* types fit either.
func LoadCaptureForArch() (*ebpf.CollectionSpec, error) { return LoadCaptureArm64() }
