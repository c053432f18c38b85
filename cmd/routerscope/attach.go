package main

import (
	"errors"

	"github.com/routerscope/routerscope/agent"
)

// errCaptureNotLinked is returned until the capture engine (package probes:
// LoadSpec, OpenBinary, Resolve, Attach) is wired in here.
var errCaptureNotLinked = errors.New("capture engine not linked yet")

// newAttacher returns the Attacher that resolves the probe files against a
// target and attaches the kernel programs. The capture engine replaces this
// body: for each request, LoadSpec every probe file, OpenBinary the target
// (ExePath for a PID), Resolve, then Attach with
// probes.Options{SampleRatio: req.SampleRatio}, returning the Tracer.
func newAttacher() (agent.Attacher, error) {
	return nil, errCaptureNotLinked
}
