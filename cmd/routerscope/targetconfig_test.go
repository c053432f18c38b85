package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/agent"
	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// TestRunIgnoresATargetFileWithoutOurSection: with no --config, a target
// started with a file that is not YAML, or YAML without an observability:
// section, is traced with the defaults: the agent neither fails on the
// file (it exited 2) nor adopts and watches it.
func TestRunIgnoresATargetFileWithoutOurSection(t *testing.T) {
	for name, body := range map[string]string{
		"json":        `{"listen": ":8080", "models": ["a", "b"]}` + "\n" + `{"second": "document"}`,
		"toml":        "[server]\nlisten = \":8080\"\n",
		"other yaml":  "server:\n  listen: \":8080\"\nrouterscope_like: true\n",
		"binary junk": "\x00\x01\x02\xff",
	} {
		t.Run(name, func(t *testing.T) {
			proc := t.TempDir()
			pidDir := filepath.Join(proc, "4242")
			if err := os.MkdirAll(filepath.Join(pidDir, "root", "app"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pidDir, "root", "app", "conf"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pidDir, "cmdline"), []byte("/app/router\x00--config\x00/app/conf\x00"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(pidDir, "environ"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			var req agent.AttachRequest
			c, _, errOut := newCLI(nil, fakeAttacher(&req))
			c.proc = proc
			if code := c.main(context.Background(), []string{"run", "--pid", "4242", "--probes", "a.yaml", "--log-format", "json"}); code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if strings.Contains(errOut.String(), "config loaded") {
				t.Errorf("adopted the target's own file:\n%s", errOut.String())
			}
			if req.SampleRatio != 1 {
				t.Errorf("sample ratio %v, want the default 1", req.SampleRatio)
			}
		})
	}
}

// TestRunSpecErrorExits2: a probe file that does not validate is a
// configuration error, exit 2 as help says (it exited 1).
func TestRunSpecErrorExits2(t *testing.T) {
	failing := func(config.Kernel) (captureEngine, error) {
		return captureEngine{close: func() error { return nil }, attach: func(context.Context, agent.AttachRequest) (agent.EventSource, error) {
			return nil, fmt.Errorf("probe file p.yaml: %w: probes[0]: missing `span`", probes.ErrInvalidSpec)
		}}, nil
	}
	c, _, errOut := newCLI(nil, failing)
	if code := c.main(context.Background(), []string{"run", "--pid", "4242", "--probes", "p.yaml"}); code != exitUsage {
		t.Fatalf("exit %d, want %d: %s", code, exitUsage, errOut.String())
	}
}
