package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// depsCommands are the commands deps.sh looks for on PATH.
var depsCommands = []string{"clang", "llvm-strip", "llvm-dwarfdump", "bpftool", "runc", "setpriv", "unshare", "git", "curl"}

// fakeTools makes a PATH directory holding bash, an id that prints uid, an
// apt-get that appends its arguments to a log, a mountpoint that says
// mounted, and every deps command except those in absent.
func fakeTools(t *testing.T, uid string, absent ...string) (dir, aptLog string) {
	t.Helper()
	dir = t.TempDir()
	aptLog = filepath.Join(dir, "apt.log")
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("the scripts under test run with bash: %v", err)
	}
	if err := os.Symlink(bash, filepath.Join(dir, "bash")); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!"+bash+"\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("id", "echo "+uid)
	write("apt-get", `echo "$*" >> `+aptLog)
	write("mountpoint", "exit 0")
	skip := map[string]bool{}
	for _, a := range absent {
		skip[a] = true
	}
	for _, c := range depsCommands {
		if !skip[c] {
			write(c, "exit 0")
		}
	}
	return dir, aptLog
}

// runDeps runs deps.sh with only the fake tools on PATH and a libbpf header
// that exists or not.
func runDeps(t *testing.T, dir string, header bool, args ...string) (string, error) {
	t.Helper()
	h := filepath.Join(dir, "bpf_helpers.h")
	if header {
		if err := os.WriteFile(h, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(dir, "bash"), append([]string{"deps.sh"}, args...)...)
	cmd.Env = []string{"PATH=" + dir, "DEPS_LIBBPF_HEADER=" + h}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDepsNotRootNamesTheCommand(t *testing.T) {
	dir, aptLog := fakeTools(t, "1000", "clang", "runc")
	out, err := runDeps(t, dir, false)
	if err == nil {
		t.Fatalf("deps.sh succeeded with clang missing and not root:\n%s", out)
	}
	for _, want := range []string{"clang", "runc", "libbpf-dev", "sudo make deps"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if log := readLog(t, aptLog); log != "" {
		t.Errorf("apt-get ran without root: %s", log)
	}
}

func TestDepsRootInstallsOnlyWhatIsMissing(t *testing.T) {
	dir, aptLog := fakeTools(t, "0", "clang", "llvm-strip", "llvm-dwarfdump")
	out, err := runDeps(t, dir, true)
	if err != nil {
		t.Fatalf("deps.sh: %v\n%s", err, out)
	}
	log := readLog(t, aptLog)
	want := "update\ninstall -y clang llvm\n"
	if log != want {
		t.Errorf("apt-get calls = %q, want %q", log, want)
	}
}

func TestDepsNothingMissingInstallsNothing(t *testing.T) {
	for _, uid := range []string{"0", "1000"} {
		dir, aptLog := fakeTools(t, uid)
		if out, err := runDeps(t, dir, true); err != nil {
			t.Fatalf("uid %s: deps.sh: %v\n%s", uid, err, out)
		}
		if log := readLog(t, aptLog); log != "" {
			t.Errorf("uid %s: apt-get ran with nothing missing: %s", uid, log)
		}
	}
}

func TestDepsAllInstallsEverything(t *testing.T) {
	dir, aptLog := fakeTools(t, "0")
	if out, err := runDeps(t, dir, true, "--all"); err != nil {
		t.Fatalf("deps.sh --all: %v\n%s", err, out)
	}
	log := readLog(t, aptLog)
	for _, pkg := range []string{"clang", "llvm", "bpftool", "runc", "libbpf-dev", "util-linux", "git", "curl", "make"} {
		if !strings.Contains(log, " "+pkg) {
			t.Errorf("--all did not install %s: %q", pkg, log)
		}
	}
}
