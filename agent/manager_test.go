package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/routerscope/routerscope/agent/discovery"
	"github.com/routerscope/routerscope/agent/export"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/probes"
)

// TestAttachErrorReason maps the errors an attach returns, wrapped as the
// attacher and the manager wrap them, to their reason labels.
func TestAttachErrorReason(t *testing.T) {
	wrap := func(err error) error {
		return fmt.Errorf("attach to pid 42: %w", fmt.Errorf("resolve probes against /usr/local/bin/router: %w", err))
	}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"symbol not found", &probes.SymbolNotFoundError{Symbol: "main.handle", Binary: "/r"}, reasonSymbol},
		{"symbol sentinel", probes.ErrSymbolNotFound, reasonSymbol},
		{"inlined", probes.ErrInlined, reasonInlined},
		{"no DWARF", probes.ErrNoDWARF, reasonNoDWARF},
		{"not supported", probes.ErrNotSupported, reasonNotSupported},
		{"invalid spec", probes.ErrInvalidSpec, reasonInvalidSpec},
		{"invalid options", probes.ErrInvalidOptions, reasonInvalidSpec},
		{"kernel limit", probes.ErrKernelLimit, reasonKernelLimit},
		{"kernel feature missing", fmt.Errorf("ring buffer map: %w", ebpf.ErrNotSupported), reasonKernelMissing},
		{"EPERM", &os.SyscallError{Syscall: "bpf", Err: syscall.EPERM}, reasonPermission},
		{"EACCES", &fs.PathError{Op: "open", Path: "/proc/42/root/r", Err: syscall.EACCES}, reasonPermission},
		{"process gone", &fs.PathError{Op: "readlink", Path: "/proc/42/exe", Err: syscall.ENOENT}, reasonNotFound},
		{"no process of the binary", discovery.ErrNoProcess, reasonNotFound},
		{"binary changed", ErrBinaryChanged, reasonChangedBin},
		{"too many processes", export.ErrTooManyProcesses, reasonLimit},
		{"canceled", context.Canceled, reasonCanceled},
		{"unknown", errors.New("something else"), reasonAttach},
		// probes.Resolve joins one error per bad probe: the specific reason
		// wins over an unclassified part.
		{"joined", errors.Join(errors.New("probe 1: odd"), probes.ErrInlined), reasonInlined},
		// A probe-file problem is reported as such even when a file error
		// is joined to it.
		{"joined with not-exist", errors.Join(fs.ErrNotExist, probes.ErrSymbolNotFound), reasonSymbol},
	}
	for _, c := range cases {
		for _, err := range []error{c.err, wrap(c.err)} {
			if got := attachErrorReason(err); got != c.want {
				t.Errorf("%s: attachErrorReason(%v) = %q, want %q", c.name, err, got, c.want)
			}
		}
	}
}

// TestAttachErrorReasonRealErrors classifies errors the capture engine
// really returns, not hand-made ones: a probe file that does not parse
// and a symbol the binary (this test binary) does not have.
func TestAttachErrorReasonRealErrors(t *testing.T) {
	_, err := probes.ParseSpec([]byte("probes:\n  - {symbol: main.x, span: s, kind: sideways}\n"), "bad.yaml")
	if err == nil {
		t.Fatal("ParseSpec accepted an unknown span kind")
	}
	if got := attachErrorReason(err); got != reasonInvalidSpec {
		t.Errorf("bad probe file: reason %q, want %q (error: %v)", got, reasonInvalidSpec, err)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := probes.OpenBinary(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	_, err = bin.Function("main.noSuchFunctionInThisBinary")
	if err == nil {
		t.Fatal("Function found a symbol that does not exist")
	}
	if got := attachErrorReason(err); got != reasonSymbol {
		t.Errorf("missing symbol: reason %q, want %q (error: %v)", got, reasonSymbol, err)
	}

	_, err = probes.OpenBinary("/nonexistent/router")
	if got := attachErrorReason(err); got != reasonNotFound {
		t.Errorf("missing binary: reason %q, want %q (error: %v)", got, reasonNotFound, err)
	}
}

// TestAttachErrorReasonsAreLabels: every reason is a distinct, valid
// Prometheus label value of the documented shape, so dashboards can list
// them.
func TestAttachErrorReasonsAreLabels(t *testing.T) {
	shape := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[error]bool{}
	for _, r := range attachErrorReasons {
		if !shape.MatchString(r.reason) {
			t.Errorf("reason %q is not lower_snake_case", r.reason)
		}
		if seen[r.err] {
			t.Errorf("sentinel %v listed twice", r.err)
		}
		seen[r.err] = true
	}
}

// slowClose is a capture whose Close blocks until released, as the
// capture engine's does while the kernel unregisters its uprobes.
type slowClose struct {
	*liveSource
	release <-chan struct{}
	started chan struct{}
	closed  atomic.Bool
}

func (s *slowClose) Close() error {
	select {
	case s.started <- struct{}{}:
	default:
	}
	<-s.release
	s.closed.Store(true)
	return s.liveSource.Close()
}

// TestDetachDoesNotWaitForClose: a process that exits is detached and its
// replacement attached while the old capture is still closing, and Run
// returns only once every capture is closed.
func TestDetachDoesNotWaitForClose(t *testing.T) {
	rcv := otlptest.StartT(t)
	dir := t.TempDir()
	routerPath := filepath.Join(dir, "bin", "router")
	cfg := discoveryConfig(t, rcv.Endpoint(), dir, routerPath)
	release := make(chan struct{})
	var mu sync.Mutex
	var slow []*slowClose
	engine := &capture{}
	engine.source = func(req AttachRequest) EventSource {
		s := &slowClose{liveSource: &liveSource{pid: req.Target.PID, closed: make(chan struct{})},
			release: release, started: make(chan struct{}, 1)}
		mu.Lock()
		slow = append(slow, s)
		mu.Unlock()
		return s
	}
	log, logs := observedLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait := runAsync(ctx, cfg, engine.attach, log, withSweepInterval(10*time.Millisecond))

	a := startCopy(t, routerPath)
	testenv.Eventually(t, "the router attached", func() bool { return engine.attachedPIDs()[a.Process.Pid] == 1 })
	stopProcess(a)
	a2 := startCopy(t, routerPath)
	testenv.Eventually(t, "the restarted router attached while the old capture closes", func() bool {
		return engine.attachedPIDs()[a2.Process.Pid] == 1
	})
	mu.Lock()
	first := slow[0]
	mu.Unlock()
	select {
	case <-first.started:
	default:
		t.Fatal("the exited process's capture was never closed")
	}
	if first.closed.Load() {
		t.Fatal("the old capture finished closing before it was released: the test proves nothing")
	}
	if n := logs.FilterMessage("detached").Len(); n != 1 {
		t.Errorf("%d detach logs before the close finished, want 1", n)
	}

	cancel()
	// Released only later: a Run that did not wait would return first.
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range slow {
		if !s.closed.Load() {
			t.Errorf("capture %d not closed when Run returned", i)
		}
	}
}
