package daemonset

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// addedCapabilities is the whole set the agent may hold; see daemonset.yaml for why each.
// CAP_DAC_READ_SEARCH is deliberately absent: router binaries are world-readable, and the
// /proc/PID/root walk into other containers is granted by CAP_SYS_PTRACE.
var addedCapabilities = []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE", "NET_ADMIN"}

// hostPaths are the only host directories the agent may mount, all read-only: the cgroup v2
// root for injection. /proc comes with hostPID; /sys/kernel/btf is in the container's own
// sysfs; nothing is pinned in /sys/fs/bpf.
var hostPaths = []string{"/sys/fs/cgroup"}

func checkPodSecurity(t reporter, m manifests) {
	ds := m.daemonSet
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Errorf("hostPID must be true: discovery reads every process of the node through /proc")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Errorf("hostNetwork=%v hostIPC=%v: the agent needs neither", pod.HostNetwork, pod.HostIPC)
	}
	c, ok := agentContainer(t, ds)
	if !ok {
		return
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("the agent container has no securityContext")
		return
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Errorf("privileged must be set to false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation must be set to false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("readOnlyRootFilesystem must be true")
	}
	if sc.Capabilities == nil {
		t.Errorf("no capabilities block: the runtime's default set would apply")
		return
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities.drop is %v, want [ALL]", sc.Capabilities.Drop)
	}
	got := slices.Clone(sc.Capabilities.Add)
	slices.Sort(got)
	want := slices.Clone(addedCapabilities)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("capabilities.add is %v, want exactly %v", sc.Capabilities.Add, addedCapabilities)
	}
	for _, cp := range sc.Capabilities.Add {
		if strings.HasPrefix(string(cp), "CAP_") {
			t.Errorf("capability %s: write it without the CAP_ prefix, as Kubernetes documents", cp)
		}
	}
	// Seccomp and AppArmor are chosen explicitly (see the comments in daemonset.yaml), never
	// left to whatever the node defaults to.
	var seccomp *corev1.SeccompProfile
	if pod.SecurityContext != nil {
		seccomp = pod.SecurityContext.SeccompProfile
	}
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil {
		t.Errorf("no seccompProfile: set one explicitly")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.AppArmorProfile == nil {
		t.Errorf("no pod appArmorProfile: set one explicitly")
	}
}

func TestEveryCapabilitySaysWhy(t *testing.T) {
	// Each added capability carries its reason as the comment right above it, so a reviewer
	// never has to guess why the agent holds it.
	data, err := os.ReadFile(filepath.Join(manifestDir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	add := find(&doc, "spec", "template", "spec", "containers", "0", "securityContext", "capabilities", "add")
	if add == nil || add.Kind != yaml.SequenceNode {
		t.Fatal("no spec.template.spec.containers[0].securityContext.capabilities.add list")
	}
	for _, item := range add.Content {
		comment := strings.TrimSpace(item.HeadComment)
		if !strings.HasPrefix(comment, "# "+item.Value+":") || len(comment) < len(item.Value)+40 {
			t.Errorf("capability %s (line %d): want a comment right above it starting %q that says why it is needed", item.Value, item.Line, "# "+item.Value+":")
		}
	}
}

// find walks mapping keys and sequence indexes from a document node.
func find(n *yaml.Node, path ...string) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	for _, p := range path {
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				return nil
			}
			n = next
		case yaml.SequenceNode:
			i := int(p[0] - '0')
			if len(p) != 1 || i < 0 || i >= len(n.Content) {
				return nil
			}
			n = n.Content[i]
		default:
			return nil
		}
	}
	return n
}

func checkVolumes(t reporter, m manifests) {
	pod := m.daemonSet.Spec.Template.Spec
	c, ok := agentContainer(t, m.daemonSet)
	if !ok {
		return
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounted := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("volumeMount %s at %s: no such volume", vm.Name, vm.MountPath)
			continue
		}
		mounted[vm.Name] = true
		if !vm.ReadOnly {
			t.Errorf("volumeMount %s at %s is writable: the agent writes nothing", vm.Name, vm.MountPath)
		}
		if v.HostPath != nil && vm.MountPath == v.HostPath.Path {
			t.Errorf("host %s is mounted over the container's own %s: mount it under /host", v.HostPath.Path, vm.MountPath)
		}
	}
	for _, v := range pod.Volumes {
		if !mounted[v.Name] {
			t.Errorf("volume %s is declared but not mounted", v.Name)
		}
		switch {
		case v.HostPath != nil:
			if !slices.Contains(hostPaths, v.HostPath.Path) {
				t.Errorf("volume %s mounts host path %s; the agent needs only %v", v.Name, v.HostPath.Path, hostPaths)
			}
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != m.configMap.Name {
				t.Errorf("volume %s uses ConfigMap %q, the manifests declare %q", v.Name, v.ConfigMap.Name, m.configMap.Name)
			}
			if len(v.ConfigMap.Items) == 0 {
				t.Errorf("volume %s: list the ConfigMap's items so that the probe file lands where the config expects it", v.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := m.configMap.Data[it.Key]; !ok {
					t.Errorf("volume %s: ConfigMap %s has no key %q", v.Name, m.configMap.Name, it.Key)
				}
			}
		default:
			t.Errorf("volume %s: only hostPath and configMap volumes are expected", v.Name)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			ref := e.ValueFrom.ConfigMapKeyRef
			if _, ok := m.configMap.Data[ref.Key]; ref.Name != m.configMap.Name || !ok {
				t.Errorf("env %s: ConfigMap %s key %s does not exist", e.Name, ref.Name, ref.Key)
			}
		}
	}
}
