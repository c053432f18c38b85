package discovery

import (
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

const (
	cid  = "3f4d9a1c7b2e8f60a5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918a7b6"
	puid = "8d5f0a4e-1c2b-4d3e-9f8a-7b6c5d4e3f2a"
)

func TestCgroupIDs(t *testing.T) {
	cases := []struct {
		name, cgroup, container, pod string
	}{
		{"docker, cgroup v1", "12:pids:/docker/" + cid + "\n11:memory:/docker/" + cid + "\n", cid, ""},
		{"docker, cgroup v2 systemd", "0::/system.slice/docker-" + cid + ".scope\n", cid, ""},
		{"podman", "0::/machine.slice/libpod-" + cid + ".scope/container\n", cid, ""},
		{"kubelet cgroupfs driver, containerd, v1",
			"4:cpu,cpuacct:/kubepods/burstable/pod" + puid + "/" + cid + "\n", cid, puid},
		{"kubelet systemd driver, containerd, v2",
			"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8d5f0a4e_1c2b_4d3e_9f8a_7b6c5d4e3f2a.slice/cri-containerd-" + cid + ".scope\n", cid, puid},
		{"cri-o", "0::/kubepods.slice/kubepods-pod8d5f0a4e_1c2b_4d3e_9f8a_7b6c5d4e3f2a.slice/crio-" + cid + ".scope\n", cid, puid},
		{"host process", "0::/user.slice/user-1000.slice/session-2.scope\n", "", ""},
		{"garbage", "not a cgroup line\n::\n", "", ""},
	}
	for _, tc := range cases {
		c, p := cgroupIDs([]byte(tc.cgroup))
		if c != tc.container || p != tc.pod {
			t.Errorf("%s: container %q pod %q, want %q %q", tc.name, c, p, tc.container, tc.pod)
		}
	}
}

func emitted(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestProcessResourceOnFakeProc(t *testing.T) {
	podCgroup := "0::/kubepods.slice/kubepods-pod8d5f0a4e_1c2b_4d3e_9f8a_7b6c5d4e3f2a.slice/cri-containerd-" + cid + ".scope\n"
	root := fakeProcTree(t,
		// Downward API variables in the router's pod.
		fakeProc{pid: 10, exe: "/app/router", comm: "router", cgroup: podCgroup,
			environ: []string{"PATH=/bin", "POD_NAME=router-7d9f-abcde", "POD_NAMESPACE=llm", "HOSTNAME=router-7d9f-abcde"}},
		// No downward API: HOSTNAME and the service account mount.
		fakeProc{pid: 11, exe: "/app/router", comm: "router", cgroup: podCgroup, environ: []string{"HOSTNAME=router-xyz"}},
		// hostNetwork pod: HOSTNAME is the node's name, not the pod's.
		fakeProc{pid: 12, exe: "/app/router", comm: "router", cgroup: podCgroup, environ: []string{"HOSTNAME=node-1"}},
		// A plain container.
		fakeProc{pid: 13, exe: "/router", comm: "router", cgroup: "0::/system.slice/docker-" + cid + ".scope\n"},
		// A host process.
		fakeProc{pid: 14, exe: "/usr/local/bin/router", comm: "router", cgroup: "0::/user.slice\n"},
	)
	saDir := filepath.Join(root, "11", "root", filepath.Dir(serviceAccountNamespace))
	if err := os.MkdirAll(saDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(saDir, "namespace"), []byte("semantic\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := HostInfo{HostName: "node-1", NodeName: "node-1"}
	cases := map[int]map[string]string{
		10: {"process.pid": "10", "process.executable.path": "/app/router", "process.executable.name": "router", "host.name": "node-1",
			"container.id": cid, "k8s.pod.uid": puid, "k8s.node.name": "node-1", "k8s.namespace.name": "llm", "k8s.pod.name": "router-7d9f-abcde"},
		11: {"process.pid": "11", "process.executable.path": "/app/router", "process.executable.name": "router", "host.name": "node-1",
			"container.id": cid, "k8s.pod.uid": puid, "k8s.node.name": "node-1", "k8s.namespace.name": "semantic", "k8s.pod.name": "router-xyz"},
		12: {"process.pid": "12", "process.executable.path": "/app/router", "process.executable.name": "router", "host.name": "node-1",
			"container.id": cid, "k8s.pod.uid": puid, "k8s.node.name": "node-1"},
		13: {"process.pid": "13", "process.executable.path": "/router", "process.executable.name": "router", "host.name": "node-1", "container.id": cid},
		14: {"process.pid": "14", "process.executable.path": "/usr/local/bin/router", "process.executable.name": "router", "host.name": "node-1"},
	}
	for pid, want := range cases {
		p, err := ReadProcess(root, pid)
		if err != nil {
			t.Fatal(err)
		}
		got := emitted(ProcessResource(root, p, host))
		if len(got) != len(want) {
			t.Errorf("pid %d: %v, want %v", pid, got, want)
			continue
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("pid %d: %s=%q, want %q (all: %v)", pid, k, got[k], v, got)
			}
		}
	}
	// An unreadable process still has its pid.
	if got := emitted(ProcessResource(root, Process{PID: 99, procRoot: root}, HostInfo{})); len(got) != 1 || got["process.pid"] != "99" {
		t.Errorf("unreadable process: %v", got)
	}
}

func TestHostFromEnv(t *testing.T) {
	h := HostFromEnv(func(k string) string { return map[string]string{"NODE_NAME": "worker-3"}[k] })
	if h.NodeName != "worker-3" || h.HostName != "worker-3" {
		t.Errorf("%+v", h)
	}
	own, _ := os.Hostname()
	if h := HostFromEnv(func(string) string { return "" }); h.NodeName != "" || h.HostName != own {
		t.Errorf("%+v, want host name %q", h, own)
	}
}
