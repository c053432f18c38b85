package daemonset

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// controlPlane is an etcd and a kube-apiserver on loopback, run by a test, and the kubectl
// that talks to them.
type controlPlane struct {
	bin        string // directory of etcd, kube-apiserver, kubectl
	dir        string // scratch: data, keys, logs, kubeconfig, HOME
	kubeconfig string
	apiLog     string
}

// startupTimeout bounds how long the control plane may take to answer /readyz. It is a
// deadline against a hang, not a speed check: the API server installs its CRDs and RBAC
// bootstrap policy first, which takes seconds on a busy 2-core machine.
const startupTimeout = 3 * time.Minute

// buildKube runs scripts/build-kube.sh (cached after the first build) and returns the
// directory holding the control-plane binaries.
func buildKube(t *testing.T) string {
	t.Helper()
	script, err := filepath.Abs("../../scripts/build-kube.sh")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/build-kube.sh: %v\n%s", err, stderr.String())
	}
	t.Log(strings.TrimSpace(stderr.String()))
	return strings.TrimSpace(stdout.String())
}

// freePort asks the kernel for an unused loopback port. Another process could take it before
// the server binds it; on a test machine that is rare, and the start-up error would say so.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startProcess runs bin with args, logging to logPath, and stops it when the test ends.
func startProcess(t *testing.T, bin, logPath string, args ...string) {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", filepath.Base(bin), err)
	}
	t.Cleanup(func() {
		// SIGTERM first so etcd and the API server close their files; SIGKILL if they hang.
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
	})
}

// writeServiceAccountKey writes an RSA key pair for the API server to sign and verify
// service account tokens with (it refuses to start without one).
func writeServiceAccountKey(t *testing.T, dir string) (pub, priv string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv = filepath.Join(dir, "sa.pub"), filepath.Join(dir, "sa.key")
	for path, block := range map[string]*pem.Block{
		pub:  {Type: "PUBLIC KEY", Bytes: pubDER},
		priv: {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return pub, priv
}

// startControlPlane starts etcd and kube-apiserver on loopback ports and waits until the API
// server is ready.
func startControlPlane(t *testing.T, bin string) *controlPlane {
	t.Helper()
	dir := t.TempDir()
	cp := &controlPlane{bin: bin, dir: dir, apiLog: filepath.Join(dir, "kube-apiserver.log")}

	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	startProcess(t, filepath.Join(bin, "etcd"), filepath.Join(dir, "etcd.log"),
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--log-level=warn")

	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	// token,user,uid,"groups": system:masters is the admin group; AlwaysAllow authorizes
	// every request anyway, but the authenticator still needs a known user.
	line := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", hex.EncodeToString(token))
	if err := os.WriteFile(tokenFile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	saPub, saKey := writeServiceAccountKey(t, dir)
	apiPort := freePort(t)
	startProcess(t, filepath.Join(bin, "kube-apiserver"), cp.apiLog,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		// No certificate given: the server writes a self-signed one here.
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--authorization-mode=AlwaysAllow",
		"--anonymous-auth=false",
		"--token-auth-file="+tokenFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// No kubelets or controllers run: nothing must try to reach the advertised address.
		"--endpoint-reconciler-type=none",
		"--v=1")

	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:%d
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, apiPort, hex.EncodeToString(token))
	if err := os.WriteFile(cp.kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(startupTimeout)
	for {
		out, err := cp.kubectl(context.Background(), "get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) == "ok" {
			return cp
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after %s: %v %s\n%s", startupTimeout, err, out, tail(cp.apiLog, 30))
		}
		time.Sleep(time.Second)
	}
}

// kubectl runs kubectl against the control plane and returns its combined output.
func (cp *controlPlane) kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(cp.bin, "kubectl"), args...)
	// kubectl caches discovery under $HOME/.kube: keep it in the test's directory.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.kubeconfig, "HOME="+cp.dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = fmt.Errorf("kubectl %s: exit status %d", strings.Join(args, " "), exit.ExitCode())
	}
	return string(out), err
}

// tail returns the last n lines of a log file, for failure messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return path + ":\n" + strings.Join(lines, "\n")
}
