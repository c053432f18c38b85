package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/internal/testenv"
)

// configMapDir lays out dir as a Kubernetes ConfigMap volume: the file is
// a symlink through ..data, itself a symlink to a versioned directory.
func configMapDir(t *testing.T, dir, version, body string) string {
	t.Helper()
	vdir := filepath.Join(dir, version)
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vdir, "agent.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// The kubelet swaps ..data atomically: a new symlink renamed over it.
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent.yaml")
	if _, err := os.Lstat(path); err != nil {
		if err := os.Symlink(filepath.Join("..data", "agent.yaml"), path); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestFileStamps: the stamps move with every kind of change the watcher
// must see, even one that keeps the size and content (a swapped
// ConfigMap), and stay put when the files are only read.
func TestFileStamps(t *testing.T) {
	dir := t.TempDir()
	path := configMapDir(t, dir, "..v1", "a: 1\n")
	other := filepath.Join(dir, "probes.yaml")
	if err := os.WriteFile(other, []byte("probes: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []string{path, other}
	s0 := fileStamps(files)
	hashFiles(files)
	if fileStamps(files) != s0 {
		t.Fatal("reading the files moved their stamps")
	}
	configMapDir(t, dir, "..v2", "a: 1\n")
	s1 := fileStamps(files)
	if s1 == s0 {
		t.Fatal("ConfigMap symlink swap (same content) not seen")
	}
	// Rewritten in place, same size: the change time moves.
	if err := os.WriteFile(other, []byte("probes: [1]"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := fileStamps(files)
	if s2 == s1 {
		t.Fatal("in-place rewrite not seen")
	}
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	if fileStamps(files) == s2 {
		t.Fatal("removed file not seen")
	}
}

// TestReloadOnConfigMapSwap: the running agent reloads when the ConfigMap
// behind its config file is swapped, and when the file is edited, at
// once although its watch interval is an hour: inotify on the
// directories of the file and of its symlinks told it.
func TestReloadOnConfigMapSwap(t *testing.T) {
	proc := startCopy(t, filepath.Join(t.TempDir(), "bin", "target"))
	dir := t.TempDir()
	probe := writeProbe(t, dir, "p.yaml", "probes: [1]\n")
	body := func(ratio float64) string {
		return fmt.Sprintf("observability:\n  tracing:\n    enabled: true\n    sampling: {type: probabilistic, rate: %g}\n"+
			"routerscope:\n  watch_interval: 1h\n  targets: [{pid: %d}]\n  probes: [%q]\n", ratio, proc.Process.Pid, probe)
	}
	cm := filepath.Join(dir, "cm")
	path := configMapDir(t, cm, "..v1", body(0.5))
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int32
	load := func() (config.Config, error) {
		reloads.Add(1)
		return config.LoadFile(path)
	}
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, func(context.Context, AttachRequest) (EventSource, error) { return newChanSource(), nil }, log,
		WithReload(load), WithStdout(new(nopWriter)))
	testenv.Eventually(t, "attached", func() bool { return logs.FilterMessage("attached").Len() == 1 })
	configMapDir(t, cm, "..v2", body(0.25))
	testenv.Eventually(t, "config reloaded", func() bool { return logs.FilterMessage("config reloaded").Len() == 1 })
	// Edited in place through the symlinks, as by hand.
	if err := os.WriteFile(filepath.Join(cm, "..v2", "agent.yaml"), []byte(body(0.125)), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "config reloaded again", func() bool { return logs.FilterMessage("config reloaded").Len() == 2 })
	if n := reloads.Load(); n != 2 {
		t.Errorf("%d reloads, want 2", n)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// TestWatchDirs: the directories of a ConfigMap-mounted file are the
// mount's (where ..data is swapped) and the version directory the file
// is really in; a missing directory is reported as not watchable.
func TestWatchDirs(t *testing.T) {
	dir := t.TempDir()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := configMapDir(t, dir, "..v1", "a: 1\n")
	dirs, ok := watchDirs(path)
	if !ok || len(dirs) != 2 || dirs[0] != real || dirs[1] != filepath.Join(real, "..v1") {
		t.Fatalf("watchDirs(%s) = %v %v", path, dirs, ok)
	}
	configMapDir(t, dir, "..v2", "a: 2\n")
	if dirs, _ := watchDirs(path); len(dirs) != 2 || dirs[1] != filepath.Join(real, "..v2") {
		t.Fatalf("after the swap: %v", dirs)
	}
	if dirs, ok := watchDirs(filepath.Join(dir, "missing", "x.yaml")); ok {
		t.Fatalf("missing directory watchable: %v", dirs)
	}
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	if _, ok := watchDirs(loop); ok {
		t.Fatal("symlink loop watchable")
	}
}
