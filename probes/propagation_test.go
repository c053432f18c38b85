package probes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

// TestPropagationOffWithoutNetHTTP: the traced fixture has no net/http, so
// asking for propagation attaches neither half and says why, instead of
// failing the whole attach.
func TestPropagationOffWithoutNetHTTP(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	proc := startTraced(t, bin)
	s := newProbeSet(t, bin)
	opts := DefaultOptions()
	if !opts.Propagation.Extract || !opts.Propagation.Inject {
		t.Fatalf("DefaultOptions().Propagation = %+v, want both halves on", opts.Propagation)
	}
	sess := attachSession(t, s, proc, opts)
	st := sess.tr.Propagation()
	if st.Extract || st.Inject || st.Uprobes != 0 {
		t.Errorf("propagation %+v active on a binary without net/http", st)
	}
	for name, why := range map[string]string{"extract": st.ExtractOff, "inject": st.InjectOff} {
		if !strings.Contains(why, "no net/http") || !strings.Contains(why, bin) {
			t.Errorf("%s off reason %q, want it to name the missing net/http and the binary", name, why)
		}
	}
	if sess.tr.injecting || sess.tr.c.injector != nil {
		t.Error("socket programs attached although injection is off")
	}
	if err := sess.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sess.tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestTargetCgroup: a process's cgroup v2 directory exists under the
// cgroup v2 mount, and pid 0 means the mount itself.
func TestTargetCgroup(t *testing.T) {
	root, err := cgroup2Mount()
	if err != nil {
		// Only a machine whose /proc/mounts really lists no cgroup2 may
		// skip: anything else is cgroup2Mount failing.
		mounts, rerr := os.ReadFile("/proc/mounts")
		if !errors.Is(err, ErrNoCgroup2) || rerr != nil || strings.Contains(string(mounts), " cgroup2 ") {
			t.Fatalf("cgroup2Mount: %v", err)
		}
		t.Skipf("no cgroup v2 hierarchy here: %v", err)
	}
	if got, err := targetCgroup(0); err != nil || got != root {
		t.Errorf("targetCgroup(0) = %q, %v; want the mount %q", got, err, root)
	}
	dir, err := targetCgroup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := filepath.Rel(root, dir); err != nil || strings.HasPrefix(rel, "..") {
		t.Errorf("cgroup of this process %q is not under the cgroup v2 mount %q", dir, root)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("cgroup of this process %q: %v", dir, err)
	}
	if _, err := targetCgroup(1 << 30); err == nil {
		t.Error("targetCgroup of a pid that does not exist gave no error")
	}
}
