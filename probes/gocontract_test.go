package probes

import (
	"errors"
	"strings"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
)

func TestParseGoVersion(t *testing.T) {
	for in, want := range map[string]GoRelease{
		"go1.26.0": {1, 26}, "go1.27.3": {1, 27}, "go1.27": {1, 27}, "go1.27rc1": {1, 27},
		"go1.26.0 X:nodwarf5": {1, 26}, "go2.0.1": {2, 0},
	} {
		if got, ok := ParseGoVersion(in); !ok || got != want {
			t.Errorf("ParseGoVersion(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "devel go1.27-abc Tue", "go", "go1", "go1.x", "1.26.0"} {
		if got, ok := ParseGoVersion(in); ok {
			t.Errorf("ParseGoVersion(%q) = %v, want no release", in, got)
		}
	}
}

// buildNetHTTP builds testdata/nethttp with the given GOTOOLCHAIN ("" for
// this machine's Go).
func buildNetHTTP(t *testing.T, toolchain string) string {
	t.Helper()
	name := "nethttp"
	if toolchain != "" {
		name += "-" + toolchain
	}
	env := []string{"CGO_ENABLED=0"}
	if toolchain != "" {
		env = append(env, "GOTOOLCHAIN="+toolchain)
	}
	return fixtureBuild(t, name, testenv.Build{Pkg: "./testdata/nethttp", Env: env})
}

// TestPartsVerifiedReleases: on binaries built with each verified release
// (this machine's Go 1.26 and Go 1.27 through GOTOOLCHAIN), every built-in
// part passes its release check and its DWARF layout check, and the
// version read from the binary is the toolchain's.
func TestPartsVerifiedReleases(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a fixture with Go 1.27 (GOTOOLCHAIN=go1.27.3): skipped in -short mode")
	}
	for _, tc := range []struct{ toolchain, want string }{{"", "go1.26"}, {"go1.27.3", "go1.27.3"}} {
		b, err := OpenBinary(buildNetHTTP(t, tc.toolchain))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		v, err := b.GoVersion()
		if err != nil || !strings.HasPrefix(v, tc.want) {
			t.Errorf("GoVersion = %q, %v; want %s", v, err, tc.want)
		}
		for _, p := range []Part{PartCapture, PartHandOff, PartExtract, PartInject} {
			if err := p.Check(b); err != nil {
				t.Errorf("%s: %s: %v", v, p.Name, err)
			}
			// The layout checks found what they compare: this binary has
			// DWARF and every probed function.
			if err := p.check(b); err != nil {
				t.Errorf("%s: %s layout: %v", v, p.Name, err)
			}
		}
	}
}

// TestPartOutsideRange: a release outside a part's range, and a layout the
// binary's DWARF contradicts, turn the part off with a reason naming the
// part, the binary's Go version and the verified range.
func TestPartOutsideRange(t *testing.T) {
	b, err := OpenBinary(buildNetHTTP(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, _ := b.GoVersion()
	future := Part{Name: "some part", Reads: "some internals", Min: GoRelease{1, 99}, Max: GoRelease{1, 99}}
	err = future.Check(b)
	if !errors.Is(err, ErrUnverifiedGo) {
		t.Fatalf("Check outside the range = %v, want ErrUnverifiedGo", err)
	}
	for _, want := range []string{"some part off", v, "verified on go1.99 to go1.99", "some internals"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("reason %q does not say %q", err, want)
		}
	}
	wrong := PartHandOff
	wrong.check = func(b *Binary) error { _, err := argIn(b, newproc1, "callergp", abiRAX); return err }
	if err := wrong.Check(b); !errors.Is(err, ErrUnverifiedGo) || !strings.Contains(err.Error(), "callergp is not in integer register 0") {
		t.Errorf("Check with a layout DWARF contradicts = %v", err)
	}
}

// TestAttachOffOutsideRange: attached to a binary whose release is outside
// the ranges, hand-off and both propagation halves are off with their
// reasons (nothing attached for them), and the capture engine itself
// refuses to attach.
func TestAttachOffOutsideRange(t *testing.T) {
	testenv.RequireBPF(t, "attaching the capture programs")
	bin := tracedBinary(t)
	proc := startTraced(t, bin)
	future := GoRelease{1, 99}
	saved := []Part{PartHandOff, PartExtract, PartInject, PartCapture}
	t.Cleanup(func() { PartHandOff, PartExtract, PartInject, PartCapture = saved[0], saved[1], saved[2], saved[3] })
	PartHandOff.Min, PartHandOff.Max = future, future
	PartExtract.Min, PartExtract.Max = future, future
	PartInject.Min, PartInject.Max = future, future

	s := newProbeSet(t, bin)
	s.add("main.fib")
	sess := attachSession(t, s, proc, DefaultOptions())
	st := sess.tr.Stats()
	if st.HandOffUprobes != 0 || !strings.Contains(st.HandOffOff, "goroutine hand-off off") || !strings.Contains(st.HandOffOff, "go1.99") {
		t.Errorf("hand-off: %d uprobes, off reason %q; want none and the reason", st.HandOffUprobes, st.HandOffOff)
	}
	prop := sess.tr.Propagation()
	if prop.Extract || prop.Inject || !strings.Contains(prop.ExtractOff, "go1.99") || !strings.Contains(prop.InjectOff, "go1.99") {
		t.Errorf("propagation %+v, want both halves off for the Go release", prop)
	}
	if evs := sess.run("fib 2"); len(evs) != 6 {
		t.Errorf("capture with the parts off: %d events, want fib(2)'s 6:\n%s", len(evs), summary(evs))
	}

	PartCapture.Min, PartCapture.Max = future, future
	if tr, err := Attach(t.Context(), s.program(), proc.cmd.Process.Pid, DefaultOptions()); !errors.Is(err, ErrUnverifiedGo) {
		if tr != nil {
			tr.Close()
		}
		t.Errorf("Attach with the capture engine unverified = %v, want ErrUnverifiedGo", err)
	}
}

// TestItabTypeFromDescriptor: the DWARF path ItabType takes for binaries
// whose itabs have no symbols (Go 1.27) names every itab of a Go 1.26
// binary as its go:itab symbol does.
func TestItabTypeFromDescriptor(t *testing.T) {
	b, err := OpenBinary(buildNetHTTP(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(b.itabs) < 10 {
		t.Fatalf("%d go:itab symbols in a net/http binary", len(b.itabs))
	}
	found := 0
	for addr, want := range b.itabs {
		got, ok := b.itabTypeFromDescriptor(addr)
		if !ok {
			continue // a type DWARF does not describe
		}
		found++
		if got != want {
			t.Errorf("itab at %#x: descriptor names %q, the symbol %q", addr, got, want)
		}
	}
	if found < len(b.itabs)*9/10 {
		t.Errorf("the descriptors named %d of %d itabs", found, len(b.itabs))
	}
}

// TestVerifyReportsBuiltInParts: the verify report names the binary's Go
// version and each built-in part's state; a part off for the release is
// reported with its reason, and the span capture off is a problem.
func TestVerifyReportsBuiltInParts(t *testing.T) {
	b, err := OpenBinary(buildNetHTTP(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spec, err := ParseSpec([]byte("probes:\n  - {symbol: main.main, span: main}\n"), "main.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || !strings.HasPrefix(rep.GoVersion, "go1.26") || len(rep.BuiltIn) != 4 {
		t.Fatalf("report ok %v, go %q, built-in %+v", rep.OK, rep.GoVersion, rep.BuiltIn)
	}
	for _, p := range rep.BuiltIn {
		if !p.On {
			t.Errorf("%s off on a verified release: %s", p.Part, p.Reason)
		}
	}

	saved := []Part{PartHandOff, PartCapture}
	t.Cleanup(func() { PartHandOff, PartCapture = saved[0], saved[1] })
	PartHandOff.Min, PartHandOff.Max = GoRelease{1, 99}, GoRelease{1, 99}
	rep, _ = Verify(b, spec)
	if !rep.OK || rep.BuiltIn[1].On || !strings.Contains(rep.BuiltIn[1].Reason, "go1.99") ||
		!strings.Contains(rep.String(), "built-in goroutine hand-off: goroutine hand-off off") {
		t.Errorf("hand-off outside its range: ok %v, %+v\n%s", rep.OK, rep.BuiltIn[1], rep)
	}
	PartCapture.Min, PartCapture.Max = GoRelease{1, 99}, GoRelease{1, 99}
	rep, _ = Verify(b, spec)
	if rep.OK || rep.Problems() == nil || !strings.Contains(rep.Problems().Error(), "span capture off") {
		t.Errorf("capture outside its range: ok %v, problems %v", rep.OK, rep.Problems())
	}
}
