package agent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

// failResolving is a resolve check that fails for probe files whose
// content names a "missing" function.
func failResolving(req AttachRequest) error {
	for _, p := range req.Probes {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), "missing") {
			return errors.New("symbol main.missing not found")
		}
	}
	return nil
}

// TestReloadRefusesProbesThatDoNotResolve: a probe file edit that parses
// but names a function the attached binary lacks is refused, and the
// working attachment stays (it used to be detached, then never
// re-attached).
func TestReloadRefusesProbesThatDoNotResolve(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	alphaPath := filepath.Join(dir, "bin", "alpha")
	alpha := startCopy(t, alphaPath)
	probe := writeProbe(t, dir, "p.yaml", "probes: [1]\n")
	cfgPath := filepath.Join(dir, "agent.yaml")
	writeConfig(t, cfgPath, rcv.Endpoint(), alphaPath, probe, "")
	cfg, err := config.LoadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	engine := &capture{}
	ln := localListener(t)
	addr := ln.Addr().String()
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var scans scanCount
	wait := runAsync(ctx, cfg, engine.attach, log, WithMetricsListener(ln), WithResolveCheck(failResolving), scans.option())
	testenv.Eventually(t, "alpha attached", func() bool { return engine.attachedPIDs()[alpha.Process.Pid] == 1 })

	writeAtomic(t, probe, "probes: [missing]\n")
	testenv.Eventually(t, "unresolvable probes refused", func() bool {
		return metricValue(scrape(t, addr), "routerscope_config_reloads_total", "result=refused") == 1
	})
	scans.wait(t, 5)
	if got := metricValue(scrape(t, addr), "routerscope_detaches_total", "reason="+reasonChanged); got > 0 {
		t.Errorf("%v detaches for a refused reload", got)
	}
	if got := engine.attachedPIDs()[alpha.Process.Pid]; got != 1 {
		t.Errorf("alpha attached %d times, want the first attachment kept", got)
	}
	refused := logs.FilterMessage("config reload refused: the running config stays in effect; fix the file and save it again (or send SIGHUP)").All()
	if len(refused) != 1 || !strings.Contains(refused[0].ContextMap()["error"].(string), "main.missing") {
		t.Errorf("refusal log %v", refused)
	}
	// Fixed again: applied, and alpha re-attached with the new probes.
	writeAtomic(t, probe, "probes: [1, 2]\n")
	testenv.Eventually(t, "alpha re-attached", func() bool { return engine.attachedPIDs()[alpha.Process.Pid] == 2 })
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// pidReloadSetup starts a target process and returns `run --pid`'s
// config for it with resolvable probes, the config a reload then loads
// (probes naming a missing function) and the reload signal's channel.
func pidReloadSetup(t *testing.T) (alpha *exec.Cmd, cfg, next config.Config, hup chan os.Signal) {
	t.Helper()
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	alpha = startCopy(t, filepath.Join(dir, "bin", "alpha"))
	good, bad := writeProbe(t, dir, "good.yaml", "probes: [1]\n"), writeProbe(t, dir, "bad.yaml", "probes: [missing]\n")
	cfg = runConfig(rcv.Endpoint())
	cfg.Agent.Targets = []config.Target{{PID: alpha.Process.Pid}}
	cfg.Agent.Probes = []string{good}
	next = cfg
	next.Agent.Probes = []string{bad}
	return alpha, cfg, next, make(chan os.Signal, 1)
}

// TestRunPIDReloadKeepsRunning is `run --pid` with a probe edit that does
// not resolve: refused, still attached, still running (it used to detach
// and exit with status 0).
func TestRunPIDReloadKeepsRunning(t *testing.T) {
	alpha, cfg, next, hup := pidReloadSetup(t)
	engine := &capture{}
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, engine.attach, log, WithReload(func() (config.Config, error) { return next, nil }),
			WithReloadSignal(hup), WithResolveCheck(failResolving))
	}()
	testenv.Eventually(t, "attached", func() bool { return engine.attachedPIDs()[alpha.Process.Pid] == 1 })
	hup <- os.Interrupt
	testenv.Eventually(t, "reload refused", func() bool { return logs.FilterMessageSnippet("config reload refused").Len() == 1 })
	select {
	case err := <-done:
		t.Fatalf("Run returned %v after a refused reload; it must keep tracing", err)
	case <-time.After(200 * time.Millisecond):
	}
	if got := engine.attachedPIDs()[alpha.Process.Pid]; got != 1 {
		t.Errorf("attached %d times", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunPIDReattachFailureIsAnError: when a reload's re-attach fails
// anyway (no resolve check, or a failure resolution cannot foresee) and
// nothing stays attached, Run returns the error instead of nil, so the
// command does not exit with status 0.
func TestRunPIDReattachFailureIsAnError(t *testing.T) {
	alpha, cfg, next, hup := pidReloadSetup(t)
	engine := &capture{fail: failResolving}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, engine.attach, observedDiscard(), WithReload(func() (config.Config, error) { return next, nil }), WithReloadSignal(hup))
	}()
	testenv.Eventually(t, "attached", func() bool { return engine.attachedPIDs()[alpha.Process.Pid] == 1 })
	hup <- os.Interrupt
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "main.missing") {
			t.Fatalf("Run returned %v, want the attach error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not end with nothing attached")
	}
}
