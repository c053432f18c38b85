package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestRouterImportsNoTracing enforces the mission: the traced router (every
// package under router/, tests included) depends on no tracing or eBPF
// package and on none of routerscope's own. It lives outside router/ so the
// router's sources never even name those packages.
func TestRouterImportsNoTracing(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-test", "./router/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if !bytes.Contains(out, []byte("gopkg.in/yaml.v3")) {
		t.Fatalf("go list -deps output lacks a known dependency; cannot trust it:\n%s", out)
	}
	forbidden := []string{
		"go.opentelemetry.io",
		"github.com/cilium/ebpf",
		"github.com/routerscope/routerscope/agent",
		"github.com/routerscope/routerscope/probes",
		"github.com/routerscope/routerscope/bpf",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("router depends on %s: it must carry no tracing code", dep)
			}
		}
	}
}
