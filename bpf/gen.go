package bpf

// The generated files (capture_bpfel.go, capture_bpfel.o) are committed so a
// plain `go build` needs no clang; `make check-generated` regenerates them and
// fails on a diff. Headers come from ./include, never from the build host.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86 -I./include" Capture capture.c
// The same program for arm64 hosts (goregs.h reads arm64's registers);
// LoadCaptureForArch picks it.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target arm64 -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_arm64 -I./include" CaptureArm64 capture.c

// Inject is the traceparent injector (sock_ops and sk_msg); see inject.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -D__TARGET_ARCH_x86 -I./include" Inject inject.c

// ExecWatch signals program executions to discovery (execwatch.c). It reads
// no registers, so the one little-endian object serves amd64 and arm64.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -I./include" ExecWatch execwatch.c
