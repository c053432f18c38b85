package discovery

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
)

// Resource attribute keys of a traced process (OpenTelemetry semantic
// conventions).
const (
	attrProcessPID   = "process.pid"
	attrProcessExe   = "process.executable.path"
	attrProcessName  = "process.executable.name"
	attrHostName     = "host.name"
	attrContainerID  = "container.id"
	attrPodUID       = "k8s.pod.uid"
	attrPodName      = "k8s.pod.name"
	attrPodNamespace = "k8s.namespace.name"
	attrNodeName     = "k8s.node.name"
)

// HostInfo is what the agent knows of its node: HostName from NODE_NAME
// (the downward API's spec.nodeName) when set, else the agent's hostname.
type HostInfo struct {
	HostName string
	NodeName string
}

// HostFromEnv reads the node's identity. In a pod the agent's own hostname
// is its pod's name, so the node name from the downward API is preferred
// for host.name too (node names are the hosts' names on every common
// distribution).
func HostFromEnv(getenv func(string) string) HostInfo {
	h := HostInfo{NodeName: getenv("NODE_NAME")}
	h.HostName = h.NodeName
	if h.HostName == "" {
		h.HostName, _ = os.Hostname()
	}
	return h
}

// Container ids are 64 hex digits, the last such path element of the
// process's cgroup, bare (cgroup v1, containerd) or in a systemd scope
// named after the runtime: docker-<id>.scope, cri-containerd-<id>.scope,
// crio-<id>.scope, libpod-<id>.scope (podman).
var containerIDPattern = regexp.MustCompile(`^(?:[a-z-]+-)?([0-9a-f]{64})(?:\.scope)?$`)

// Pod uids appear in kubelet cgroup paths as pod<uid> (cgroupfs driver,
// dashes) or kubepods-<qos>-pod<uid>.slice (systemd driver, dashes turned
// into underscores).
var podUIDPattern = regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)

// cgroupIDs extracts the container id and pod uid from a /proc/PID/cgroup
// file's content (lines hierarchy:controllers:path, v1 or v2).
func cgroupIDs(data []byte) (containerID, podUID string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := parts[2]
		if m := podUIDPattern.FindStringSubmatch(path); m != nil {
			podUID = strings.ReplaceAll(m[1], "_", "-")
		}
		elems := strings.Split(path, "/")
		for i := len(elems) - 1; i >= 0; i-- {
			if m := containerIDPattern.FindStringSubmatch(elems[i]); m != nil {
				containerID = m[1]
				break
			}
		}
		if containerID != "" {
			return containerID, podUID
		}
	}
	return containerID, podUID
}

// environ reads the named variables of a process's environment (readable
// by root or the process's owner). The environment is the one the process
// started with.
func environ(procRoot string, pid int, names ...string) map[string]string {
	data, err := readProc(filepath.Join(procRoot, strconv.Itoa(pid), "environ"), maxProcEnviron)
	out := map[string]string{}
	if err != nil {
		return out
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				out[k] = v
			}
		}
	}
	return out
}

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace
// when the service account token is automounted (the default).
const serviceAccountNamespace = "var/run/secrets/kubernetes.io/serviceaccount/namespace"

// ProcessResource returns the resource attributes of one traced process:
// process.pid, process.executable.path (as the process sees it) and .name,
// host.name, container.id when its cgroup names a container, and, when the
// cgroup shows a pod, k8s.pod.uid, k8s.node.name (the agent's NODE_NAME),
// k8s.namespace.name and k8s.pod.name.
//
// How reliable each is: the pid, path, container id and pod uid come from
// the kernel and are exact. The pod's name and namespace come from the
// process's environment, POD_NAME and POD_NAMESPACE, when its manifest
// sets them from the downward API (exact); else the namespace from the
// service-account mount inside the container (exact when automounted) and
// the name from HOSTNAME, which Kubernetes sets to the pod name unless the
// pod sets spec.hostname or runs with hostNetwork (then it is the node's
// name, so it is left out when it equals the node name).
func ProcessResource(procRoot string, p Process, host HostInfo) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.Int(attrProcessPID, p.PID)}
	if exe := strings.TrimSuffix(p.Exe, deletedSuffix); exe != "" {
		attrs = append(attrs, attribute.String(attrProcessExe, exe), attribute.String(attrProcessName, filepath.Base(exe)))
	}
	if host.HostName != "" {
		attrs = append(attrs, attribute.String(attrHostName, host.HostName))
	}
	cg, err := readProc(filepath.Join(procRoot, strconv.Itoa(p.PID), "cgroup"), maxProcCgroup)
	if err != nil {
		return attrs
	}
	containerID, podUID := cgroupIDs(cg)
	if containerID != "" {
		attrs = append(attrs, attribute.String(attrContainerID, containerID))
	}
	if podUID == "" {
		return attrs
	}
	attrs = append(attrs, attribute.String(attrPodUID, podUID))
	if host.NodeName != "" {
		attrs = append(attrs, attribute.String(attrNodeName, host.NodeName))
	}
	env := environ(procRoot, p.PID, "POD_NAME", "POD_NAMESPACE", "HOSTNAME")
	ns := env["POD_NAMESPACE"]
	if ns == "" {
		b, _ := readProc(filepath.Join(procRoot, strconv.Itoa(p.PID), "root", serviceAccountNamespace), maxSmallFile)
		ns = strings.TrimSpace(string(b))
	}
	if ns != "" {
		attrs = append(attrs, attribute.String(attrPodNamespace, ns))
	}
	name := env["POD_NAME"]
	if name == "" && env["HOSTNAME"] != host.NodeName {
		name = env["HOSTNAME"]
	}
	if name != "" {
		attrs = append(attrs, attribute.String(attrPodName, name))
	}
	return attrs
}
