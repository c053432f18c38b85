package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/routerscope/routerscope/internal/testenv"
	"github.com/routerscope/routerscope/router/fakellm"
)

// TestBinaryServesAndStopsOnSIGTERM runs the built binary the way the demo
// does: config from CONFIG_PATH, backend from ROUTER_BACKEND, port 0; then
// one routed request, then SIGTERM must end it with status 0.
func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the router binary; skipped with -short")
	}
	fake := fakellm.New(fakellm.Options{})
	fsrv := httptest.NewServer(fake)
	defer fsrv.Close()

	bin := testenv.GoBuild(t, testenv.Build{Pkg: ".", Out: filepath.Join(t.TempDir(), "router")})
	cfg, err := filepath.Abs("../../config/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0")
	cmd.Dir = t.TempDir() // the embedded training set must not depend on the working directory
	cmd.Env = append(os.Environ(), "CONFIG_PATH="+cfg, "ROUTER_BACKEND="+fsrv.Listener.Addr().String())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()

	logs := bufio.NewScanner(stderr)
	addr := ""
	for addr == "" && logs.Scan() {
		var line map[string]any
		if json.Unmarshal(logs.Bytes(), &line) == nil && line["msg"] == "router listening" {
			addr, _ = line[keyListen].(string)
		}
	}
	if addr == "" {
		t.Fatal("router exited before logging its listen address")
	}
	body := `{"model":"auto","messages":[{"role":"user","content":"Solve the quadratic equation x^2 - 5x + 6 = 0"}]}`
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-vsr-selected-model") != "gpt-oss-20b" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Fatalf("ROUTER_BACKEND not applied: fake got %d requests", n)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	clean := false
	for logs.Scan() {
		clean = clean || strings.Contains(logs.Text(), "router shut down cleanly")
	}
	if err := cmd.Wait(); err != nil || !clean {
		t.Fatalf("after SIGTERM: exit %v, clean-shutdown log %v", err, clean)
	}
}
