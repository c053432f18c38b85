package discovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeProcDir writes a /proc/PID with the given cmdline, environ and cwd.
func writeProcDir(t *testing.T, root string, pid string, args, env []string, cwd string) {
	t.Helper()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, parts []string) {
		data := strings.Join(parts, "\x00")
		if len(parts) > 0 {
			data += "\x00"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cmdline", args)
	write("environ", env)
	if err := os.Symlink(cwd, filepath.Join(dir, "cwd")); err != nil {
		t.Fatal(err)
	}
}

func TestTargetConfigPath(t *testing.T) {
	root := t.TempDir()
	writeProcDir(t, root, "10", []string{"/bin/router", "--config", "/etc/vsr/config.yaml"}, []string{"CONFIG_PATH=/other.yaml"}, "/")
	writeProcDir(t, root, "11", []string{"/bin/router", "-config=conf/c.yaml"}, nil, "/srv/app")
	writeProcDir(t, root, "12", []string{"/bin/router"}, []string{"HOME=/root", "CONFIG_PATH=/config/config.yaml"}, "/")
	writeProcDir(t, root, "13", []string{"/bin/router", "--listen", ":80", "--", "--config", "x"}, []string{"CONFIG_PATH="}, "/")
	writeProcDir(t, root, "14", []string{"/bin/router", "--config"}, nil, "/")

	cases := []struct {
		pid, want, source string
	}{
		{"10", filepath.Join(root, "10/root/etc/vsr/config.yaml"), "--config of pid 10"},
		{"11", filepath.Join(root, "11/root/srv/app/conf/c.yaml"), "--config of pid 11"},
		{"12", filepath.Join(root, "12/root/config/config.yaml"), "CONFIG_PATH of pid 12"},
		{"13", "", ""},
		{"14", "", ""},
		{"99", "", ""},
	}
	for _, tc := range cases {
		pid := 0
		for _, c := range tc.pid {
			pid = pid*10 + int(c-'0')
		}
		got, source, ok := TargetConfigPath(root, pid)
		if got != tc.want || ok != (tc.want != "") || !strings.HasPrefix(source, tc.source) {
			t.Errorf("pid %s: got %q, %q, %v; want %q from %q", tc.pid, got, source, ok, tc.want, tc.source)
		}
	}
}

// TestProcReadsAreBounded: another process's /proc entries are read up
// to a bound, even when they never end (here /dev/zero stands in for a
// command line and an environment of many megabytes).
func TestProcReadsAreBounded(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Fatalf("the test reads /dev/zero as an endless file: %v", err)
	}
	root := t.TempDir()
	writeProcDir(t, root, "77", []string{"router"}, nil, "/")
	dir := filepath.Join(root, "77")
	for _, name := range []string{"cmdline", "environ"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/zero", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, ok := TargetConfigPath(root, 77); ok {
		t.Error("found a config in /dev/zero")
	}
	if env := environ(root, 77, "POD_NAME"); len(env) != 0 {
		t.Errorf("environ %v", env)
	}
}
