package main

import (
	"context"
	"errors"
	"testing"

	"github.com/routerscope/routerscope/agent"
)

// A done context stops the engine before it resolves or loads anything.
func TestEngineAttachHonoursContext(t *testing.T) {
	e := &engine{cache: newResolveCache(1)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := agent.AttachRequest{Executable: "/nonexistent/router", Probes: []string{"/nonexistent/probes.yaml"}}
	req.Target.PID = 4242
	_, err := e.attach(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("attach with a cancelled context: got %v, want context.Canceled", err)
	}
	if e.c != nil {
		t.Error("attach with a cancelled context loaded the capture object")
	}
}
