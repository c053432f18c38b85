package daemonset

import (
	"archive/tar"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/internal/testenv"
)

// The image test builds the agent's image with `go run ./deploy/image` (what `make image`
// runs), unpacks it, and runs it with runc under an OCI runtime spec generated from
// daemonset.yaml: the container's capabilities, user, read-only root, host PID namespace,
// environment, arguments and mounts (the ConfigMap's files, the host cgroup directory) are
// the manifest's. Inside it the agent must discover the router running on the host, attach,
// export spans to a collector and report ready; without one of its capabilities it must fail
// with the error the README promises.
//
// Where the spec cannot be the pod's: the container shares the host's network namespace
// (the kubelet gives a pod its own, reachable on the pod IP; here the collector and /readyz
// are reached on loopback), and --metrics-listen gets a free port instead of 9464, which
// tests running at the same time could hold.

// imageDir builds the image once per test run.
var (
	imageOnce sync.Once
	imageOut  string
	imageErr  error
)

func buildImage(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "routerscope-image-test-")
		if err != nil {
			imageErr = err
			return
		}
		imageOut = dir
		cmd := exec.Command("go", "run", "./deploy/image", "--out", dir)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("go run ./deploy/image: %v\n%s", err, out)
		}
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageOut
}

// unpack writes the image's filesystem into dir and returns the image's entrypoint.
func unpack(t *testing.T, ociDir, dir string) []string {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("OCI layout index: %v, %d images", err, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(h.Mode).Perm()|os.FileMode(h.Mode)&os.ModeSticky); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("unexpected entry %s of type %c in the image", h.Name, h.Typeflag)
		}
	}
	return append(cf.Config.Entrypoint, cf.Config.Cmd...)
}

// ociSpec is the part of the OCI runtime spec (config.json) the test writes.
type ociSpec struct {
	OCIVersion string     `json:"ociVersion"`
	Process    ociProcess `json:"process"`
	Root       struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	} `json:"root"`
	Hostname string     `json:"hostname"`
	Mounts   []ociMount `json:"mounts"`
	Linux    ociLinux   `json:"linux"`
}

type ociProcess struct {
	User struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	} `json:"user"`
	Args            []string            `json:"args"`
	Env             []string            `json:"env"`
	Cwd             string              `json:"cwd"`
	Capabilities    map[string][]string `json:"capabilities"`
	NoNewPrivileges bool                `json:"noNewPrivileges"`
}

type ociMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type,omitempty"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type ociLinux struct {
	Namespaces    []map[string]string `json:"namespaces"`
	MaskedPaths   []string            `json:"maskedPaths"`
	ReadonlyPaths []string            `json:"readonlyPaths"`
}

// podSpec generates the runtime spec of the agent container from the manifests: args after
// the image's entrypoint, env, capabilities, user, read-only root and privilege escalation from
// the container; the PID namespace from hostPID; the mounts from volumeMounts and volumes
// (ConfigMap items written under configRoot, hostPath volumes bound from the host, the cgroup
// directory from where this host mounts cgroup v2). drop removes one capability.
func podSpec(t *testing.T, m manifests, entrypoint []string, configRoot, metricsAddr, drop string) ociSpec {
	t.Helper()
	pod := m.daemonSet.Spec.Template.Spec
	c := mustAgentContainer(t, m.daemonSet)
	var s ociSpec
	s.OCIVersion = "1.0.2"
	s.Hostname = "routerscope-agent"
	s.Root.Path = "rootfs"
	s.Root.Readonly = c.SecurityContext.ReadOnlyRootFilesystem != nil && *c.SecurityContext.ReadOnlyRootFilesystem
	if c.SecurityContext.RunAsUser != nil {
		s.Process.User.UID = uint32(*c.SecurityContext.RunAsUser)
	}
	s.Process.Cwd = "/"
	s.Process.NoNewPrivileges = c.SecurityContext.AllowPrivilegeEscalation != nil && !*c.SecurityContext.AllowPrivilegeEscalation
	// The image's ENTRYPOINT with the container's args: the manifest must not override the
	// entry point, or the image and the DaemonSet could disagree on what runs.
	if len(c.Command) != 0 {
		t.Fatalf("the DaemonSet overrides the image's ENTRYPOINT with %q", c.Command)
	}
	s.Process.Args = append([]string{entrypoint[0]}, c.Args...)
	for i, a := range s.Process.Args {
		if strings.HasPrefix(a, "--metrics-listen=") {
			s.Process.Args[i] = "--metrics-listen=" + metricsAddr
		}
	}
	s.Process.Env = []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			s.Process.Env = append(s.Process.Env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			s.Process.Env = append(s.Process.Env, e.Name+"=test-node")
		default:
			t.Fatalf("env %s: no stand-in for its source", e.Name)
		}
	}
	var caps []string
	for _, cp := range c.SecurityContext.Capabilities.Add {
		if string(cp) != drop {
			caps = append(caps, "CAP_"+string(cp))
		}
	}
	s.Process.Capabilities = map[string][]string{"bounding": caps, "effective": caps, "permitted": caps}

	// What every container runtime mounts.
	s.Mounts = []ociMount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	volumes := map[string]int{}
	for i, v := range pod.Volumes {
		volumes[v.Name] = i
	}
	for _, vm := range c.VolumeMounts {
		v := pod.Volumes[volumes[vm.Name]]
		opts := []string{"rbind", "rprivate"}
		if vm.ReadOnly {
			opts = append(opts, "ro")
		}
		switch {
		case v.ConfigMap != nil:
			s.Mounts = append(s.Mounts, ociMount{Destination: vm.MountPath, Type: "bind", Source: filepath.Join(configRoot, vm.MountPath), Options: opts})
		case v.HostPath != nil:
			// rbind, as the kubelet binds host paths: on hybrid hosts the cgroup v2 mount
			// under /sys/fs/cgroup comes along.
			s.Mounts = append(s.Mounts, ociMount{Destination: vm.MountPath, Type: "bind", Source: v.HostPath.Path, Options: opts})
		default:
			t.Fatalf("volume %s: no stand-in for its type", v.Name)
		}
	}
	// hostPID: no PID namespace of its own. The network namespace is the host's too (see the
	// comment at the top).
	s.Linux.Namespaces = []map[string]string{{"type": "mount"}, {"type": "ipc"}, {"type": "uts"}}
	if !pod.HostPID {
		s.Linux.Namespaces = append(s.Linux.Namespaces, map[string]string{"type": "pid"})
	}
	s.Linux.MaskedPaths = []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"}
	s.Linux.ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	return s
}

// container is one runc container run in the foreground.
type container struct {
	id, state string
	cmd       *exec.Cmd
	out       *testenv.Buffer
	done      chan struct{}
}

func runContainer(t *testing.T, runc, bundle string) *container {
	t.Helper()
	c := &container{id: fmt.Sprintf("routerscope-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9),
		state: filepath.Join(bundle, "state"), out: &testenv.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(runc, "--root", c.state, "run", "--bundle", bundle, c.id)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("runc run: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = exec.Command(runc, "--root", c.state, "kill", c.id, "TERM").Run()
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			_ = exec.Command(runc, "--root", c.state, "kill", c.id, "KILL").Run()
			<-c.done
		}
		_ = exec.Command(runc, "--root", c.state, "delete", "--force", c.id).Run()
		if t.Failed() {
			t.Logf("--- container output ---\n%s", c.out.String())
		}
	})
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

var listenLogRE = regexp.MustCompile(`"listen":"([^"]+)"`)

// startHostProcess starts a binary on the host and returns the address it logs.
func startHostProcess(t *testing.T, args ...string) string {
	t.Helper()
	var out testenv.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = "../.."
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenLogRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s logged no listen address:\n%s", args[0], out.String())
	return ""
}

func TestImageRunsWithDaemonSetRights(t *testing.T) {
	testenv.RequireBPF(t, "running the image with runc")
	runc := testenv.RequireTool(t, "runc", "runc")
	out := buildImage(t)
	m := loadManifests(t, manifestDir)

	// The router and the fake model server run on the host, as in another pod on the node.
	bins := t.TempDir()
	build := exec.Command("go", "build", "-o", bins+"/", "./cmd/router", "./cmd/fakellm")
	build.Dir = "../.."
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build router: %v\n%s", err, msg)
	}
	llm := startHostProcess(t, filepath.Join(bins, "fakellm"), "--listen", "127.0.0.1:0")
	router := startHostProcess(t, filepath.Join(bins, "router"), "--config", "config/router.yaml", "--listen", "127.0.0.1:0", "--backend", llm)
	rcv := otlptest.StartT(t)

	// The ConfigMap's config, pointed at the test's collector and router binary.
	cm := m.deepCopy()
	cfg := cm.configMap.Data["config.yaml"]
	for old, repl := range map[string]string{
		`endpoint: "otel-collector.observability.svc.cluster.local:4317"`: fmt.Sprintf("endpoint: %q", rcv.Endpoint()),
		`executable: "/usr/local/bin/router"`:                             fmt.Sprintf("executable: %q", filepath.Join(bins, "router")),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("configmap.yaml's config.yaml has no %s to point at the test", old)
		}
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	cfg = strings.Replace(cfg, `batch_timeout: "5s"`, `batch_timeout: "200ms"`, 1)
	cm.configMap.Data["config.yaml"] = cfg

	run := func(t *testing.T, drop string) (*container, string) {
		bundle := t.TempDir()
		entry := unpack(t, filepath.Join(out, "oci"), filepath.Join(bundle, "rootfs"))
		configRoot := t.TempDir()
		layoutVolume(t, cm, configRoot)
		metrics := freeAddr(t)
		spec := podSpec(t, cm, entry, configRoot, metrics, drop)
		data, err := json.MarshalIndent(spec, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return runContainer(t, runc, bundle), metrics
	}

	t.Run("DaemonSet rights", func(t *testing.T) {
		c, metrics := run(t, "")
		// Attached: the log says so, /readyz answers 200, and requests become spans.
		deadline := time.Now().Add(60 * time.Second)
		ready := false
		for time.Now().Before(deadline) && !ready {
			select {
			case <-c.done:
				t.Fatalf("the agent exited:\n%s", c.out.String())
			default:
			}
			if strings.Contains(c.out.String(), `"msg":"attached"`) {
				if resp, err := http.Get("http://" + metrics + "/readyz"); err == nil {
					ready = resp.StatusCode == http.StatusOK
					resp.Body.Close()
				}
			}
			if !ready {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !ready {
			t.Fatalf("the agent did not attach and report ready within 60s")
		}
		// The running agent has exactly the manifest's capabilities, and its root is
		// read-only.
		st, err := exec.Command(runc, "--root", c.state, "state", c.id).Output()
		if err != nil {
			t.Fatalf("runc state: %v", err)
		}
		var state struct{ Pid int }
		if err := json.Unmarshal(st, &state); err != nil || state.Pid == 0 {
			t.Fatalf("runc state %s: %v", st, err)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", state.Pid))
		if err != nil {
			t.Fatal(err)
		}
		// CAP_NET_ADMIN 12, CAP_SYS_PTRACE 19, CAP_PERFMON 38, CAP_BPF 39 (capability.h).
		const want = 1<<12 | 1<<19 | 1<<38 | 1<<39
		for _, field := range []string{"CapEff", "CapPrm", "CapBnd"} {
			m := regexp.MustCompile(field + `:\s+([0-9a-f]+)`).FindSubmatch(status)
			var got uint64
			if m != nil {
				fmt.Sscanf(string(m[1]), "%x", &got)
			}
			if m == nil || got != want {
				t.Errorf("%s of the agent is %s, want %016x (BPF, PERFMON, SYS_PTRACE, NET_ADMIN)", field, m, uint64(want))
			}
		}
		mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", state.Pid))
		if err != nil {
			t.Fatal(err)
		}
		rootRO := false
		for _, l := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(l)
			if len(f) > 5 && f[4] == "/" {
				rootRO = strings.HasPrefix(f[5], "ro")
			}
		}
		if !rootRO {
			t.Errorf("the container's root is not mounted read-only")
		}
		for i := 0; i < 60 && len(rootSpans(rcv)) == 0; i++ {
			body := `{"model":"auto","messages":[{"role":"user","content":"Integrate x^2 from 0 to 3"}]}`
			resp, err := http.Post("http://"+router+"/v1/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			time.Sleep(250 * time.Millisecond)
		}
		roots := rootSpans(rcv)
		if len(roots) == 0 {
			t.Fatalf("no semantic_router.request.received span reached the collector")
		}
		if v, _ := roots[0].ResourceAttr("host.name"); v.GetStringValue() != "test-node" {
			t.Errorf("host.name %v, want test-node (NODE_NAME from the manifest's env)", v)
		}
	})

	t.Run("without CAP_PERFMON", func(t *testing.T) {
		c, metrics := run(t, "PERFMON")
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(c.out.String(), permissionHint) {
			select {
			case <-c.done:
				deadline = time.Now()
			default:
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !strings.Contains(c.out.String(), permissionHint) {
			t.Fatalf("the agent without CAP_PERFMON did not say %q", permissionHint)
		}
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz answers %d (%s) without CAP_PERFMON, want 503", resp.StatusCode, body)
		}
	})
}

// permissionHint is what the README promises the agent says when a capability is missing.
const permissionHint = "eBPF programs needs CAP_BPF and CAP_PERFMON"

func rootSpans(rcv *otlptest.Receiver) []otlptest.Span {
	var out []otlptest.Span
	for _, s := range rcv.Spans() {
		if s.Name == "semantic_router.request.received" {
			out = append(out, s)
		}
	}
	return out
}

// TestImageConfig: the image's config and filesystem are what the DaemonSet expects: the
// entry point it runs (it sets no command), a non-root default user, the labels, a static
// binary (no ELF interpreter: there is no libc in the image) and the CA bundle.
func TestImageConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the image")
	}
	out := buildImage(t)
	idx, err := layout.ImageIndexFromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %v %v", err, im)
	}
	if ref := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; ref != "ghcr.io/routerscope/routerscope:0.1.0" {
		t.Errorf("ref name %q", ref)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/usr/local/bin/routerscope" || strings.Join(c.Cmd, " ") != "run" {
		t.Errorf("user %q entrypoint %q cmd %q", c.User, c.Entrypoint, c.Cmd)
	}
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.version", "org.opencontainers.image.source"} {
		if c.Labels[l] == "" {
			t.Errorf("label %s missing", l)
		}
	}
	if _, ok := c.ExposedPorts["9464/tcp"]; !ok || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("ports %v os %s arch %s", c.ExposedPorts, cf.OS, cf.Architecture)
	}
	m := loadManifests(t, manifestDir)
	if ctr := mustAgentContainer(t, m.daemonSet); len(ctr.Command) != 0 || ctr.Image != "ghcr.io/routerscope/routerscope:0.1.0" {
		t.Errorf("the DaemonSet runs %s with command %q: want the image's tag and its ENTRYPOINT", ctr.Image, ctr.Command)
	}
	root := t.TempDir()
	unpack(t, filepath.Join(out, "oci"), root)
	f, err := elf.Open(filepath.Join(root, "usr/local/bin/routerscope"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the agent binary needs a dynamic loader: build it with CGO_ENABLED=0")
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")); err != nil {
		t.Errorf("no CA bundle: OTLP over TLS would fail: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "routerscope.tar")); err != nil {
		t.Errorf("no docker-archive tarball: %v", err)
	}
	// Reproducible: the same commit gives the same image digest (fixed times and owners,
	// -trimpath, no build-time stamps).
	again := t.TempDir()
	cmd := exec.Command("go", "run", "./deploy/image", "--out", again)
	cmd.Dir = "../.."
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, msg)
	}
	idx2, err := layout.ImageIndexFromPath(filepath.Join(again, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im2, err := idx2.IndexManifest()
	if err != nil || len(im2.Manifests) != 1 {
		t.Fatalf("second index: %v", err)
	}
	if im2.Manifests[0].Digest != im.Manifests[0].Digest {
		t.Errorf("two builds of one commit differ: %s and %s", im.Manifests[0].Digest, im2.Manifests[0].Digest)
	}
}
