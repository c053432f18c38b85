package daemonset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	v1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The objects the manifests must declare, and the names tests refer to.
const (
	namespace     = "routerscope"
	agentName     = "routerscope-agent"
	configMapName = "routerscope-config"
	containerName = "agent"
	metricsPort   = 9464
	manifestDir   = "."
)

// manifestFiles are the files kustomization.yaml must list, in order.
var manifestFiles = []string{"namespace.yaml", "serviceaccount.yaml", "configmap.yaml", "daemonset.yaml"}

// manifests is every object of the install, strictly decoded.
type manifests struct {
	namespace      corev1.Namespace
	serviceAccount corev1.ServiceAccount
	configMap      corev1.ConfigMap
	daemonSet      appsv1.DaemonSet
}

// decodeStrict decodes one YAML manifest into obj, refusing unknown and duplicate fields (the
// way the API server's strict field validation does), and checks its apiVersion and kind.
func decodeStrict(data []byte, obj any, apiVersion, kind string) error {
	var tm v1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return fmt.Errorf("read apiVersion and kind: %w", err)
	}
	if tm.APIVersion != apiVersion || tm.Kind != kind {
		return fmt.Errorf("got %s %s, want %s %s", tm.APIVersion, tm.Kind, apiVersion, kind)
	}
	if bytes.Contains(data, []byte("\n---")) {
		return fmt.Errorf("holds several documents; keep one object per file")
	}
	if err := yaml.UnmarshalStrict(data, obj); err != nil {
		return fmt.Errorf("strict decode into %s: %w", kind, err)
	}
	return nil
}

func loadManifests(t *testing.T, dir string) manifests {
	t.Helper()
	var m manifests
	for _, f := range []struct {
		file             string
		obj              any
		apiVersion, kind string
	}{
		{"namespace.yaml", &m.namespace, "v1", "Namespace"},
		{"serviceaccount.yaml", &m.serviceAccount, "v1", "ServiceAccount"},
		{"configmap.yaml", &m.configMap, "v1", "ConfigMap"},
		{"daemonset.yaml", &m.daemonSet, "apps/v1", "DaemonSet"},
	} {
		data, err := os.ReadFile(filepath.Join(dir, f.file))
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeStrict(data, f.obj, f.apiVersion, f.kind); err != nil {
			t.Fatalf("%s: %v", f.file, err)
		}
	}
	return m
}

func TestDecodeStrictRejects(t *testing.T) {
	// The checks below are only as good as the decoder: make sure it refuses what the API
	// server refuses.
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountToken: false\n",
		"duplicate field": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nmetadata: {name: b}\n",
		"wrong type":      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAccountToken: \"no\"\n",
		"wrong kind":      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"two documents":   "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b}\n",
	} {
		var sa corev1.ServiceAccount
		if err := decodeStrict([]byte(doc), &sa, "v1", "ServiceAccount"); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func checkNamesAndLabels(t reporter, m manifests) {
	if m.namespace.Name != namespace {
		t.Errorf("namespace is %q, want %q", m.namespace.Name, namespace)
	}
	// hostPID and the added capabilities are forbidden by the baseline level: without this
	// label the pods are refused where Pod Security admission enforces baseline.
	if got := m.namespace.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace label pod-security.kubernetes.io/enforce is %q, want privileged", got)
	}
	for _, o := range []v1.ObjectMeta{m.serviceAccount.ObjectMeta, m.configMap.ObjectMeta, m.daemonSet.ObjectMeta} {
		if o.Namespace != namespace {
			t.Errorf("%s is in namespace %q, want %q", o.Name, o.Namespace, namespace)
		}
	}
	ds := m.daemonSet
	if sel, err := v1.LabelSelectorAsSelector(ds.Spec.Selector); err != nil || ds.Spec.Selector == nil {
		t.Errorf("DaemonSet selector %v: %v", ds.Spec.Selector, err)
	} else if sel.Empty() {
		t.Errorf("DaemonSet selector is empty: it would select every pod of the namespace")
	} else if !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("DaemonSet selector %s does not match the pod template labels %v", sel, ds.Spec.Template.Labels)
	}
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != m.serviceAccount.Name {
		t.Errorf("pods use service account %q, the manifests declare %q", pod.ServiceAccountName, m.serviceAccount.Name)
	}
	// No RBAC is shipped, so no token should be mounted either.
	for what, v := range map[string]*bool{"ServiceAccount": m.serviceAccount.AutomountServiceAccountToken, "pod": pod.AutomountServiceAccountToken} {
		if v == nil || *v {
			t.Errorf("%s: automountServiceAccountToken must be false: the agent does not use the API", what)
		}
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name   string `json:"name"`
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	if !slices.Equal(k.Resources, manifestFiles) {
		t.Errorf("kustomization.yaml resources are %v, want %v", k.Resources, manifestFiles)
	}
	// Every YAML manifest in the directory is part of the install.
	yamls, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, y := range yamls {
		if b := filepath.Base(y); b != "kustomization.yaml" {
			listed = append(listed, b)
		}
	}
	want := slices.Clone(manifestFiles)
	sort.Strings(want)
	if !slices.Equal(listed, want) {
		t.Errorf("YAML files in the directory %v, kustomization.yaml lists %v", listed, want)
	}
	m := loadManifests(t, manifestDir)
	image := mustAgentContainer(t, m.daemonSet).Image
	for _, img := range k.Images {
		if !strings.HasPrefix(image, img.Name+":") {
			t.Errorf("kustomization.yaml sets the tag of image %s, the DaemonSet runs %s", img.Name, image)
		}
		if img.NewTag == "" || img.NewTag == "latest" {
			t.Errorf("kustomization.yaml image %s: newTag %q, want a release tag", img.Name, img.NewTag)
		}
	}
}

// agentContainer returns the DaemonSet's only container, or reports why there is none.
func agentContainer(t reporter, ds appsv1.DaemonSet) (corev1.Container, bool) {
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != containerName {
		t.Errorf("DaemonSet must run exactly one container named %q, has %d", containerName, len(cs))
		return corev1.Container{}, false
	}
	if n := len(ds.Spec.Template.Spec.InitContainers); n != 0 {
		t.Errorf("DaemonSet has %d init containers; their security contexts would need the same checks", n)
		return corev1.Container{}, false
	}
	return cs[0], true
}

// mustAgentContainer is agentContainer for tests that cannot go on without it.
func mustAgentContainer(t *testing.T, ds appsv1.DaemonSet) corev1.Container {
	t.Helper()
	c, ok := agentContainer(t, ds)
	if !ok {
		t.FailNow()
	}
	return c
}

// containerPort resolves a probe's port (a number or a port name) to a declared container port.
func containerPort(c corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func checkProbes(t reporter, m manifests) {
	c, ok := agentContainer(t, m.daemonSet)
	if !ok {
		return
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", p.name, p.path)
			continue
		}
		h := p.probe.HTTPGet
		if h.Path != p.path {
			t.Errorf("%s: path %q, want %q", p.name, h.Path, p.path)
		}
		if h.Host != "" {
			t.Errorf("%s: host %q: the kubelet must probe the pod IP", p.name, h.Host)
		}
		cp, ok := containerPort(c, h.Port)
		if !ok {
			t.Errorf("%s: port %s is not a declared container port", p.name, h.Port.String())
			continue
		}
		if cp.ContainerPort != metricsPort || cp.Protocol != corev1.ProtocolTCP {
			t.Errorf("%s: port %s is %d/%s, the agent serves /metrics, /healthz and /readyz on %d/TCP", p.name, h.Port.String(), cp.ContainerPort, cp.Protocol, metricsPort)
		}
	}
	// The agent must listen where the probes knock: on every address of the pod (the kubelet
	// comes from the node, not from loopback) and on the declared port.
	listen := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-listen="); ok {
			listen = v
		}
	}
	if want := fmt.Sprintf("0.0.0.0:%d", metricsPort); listen != want {
		t.Errorf("agent args %q: want --metrics-listen=%s", c.Args, want)
	}
	if c.LivenessProbe != nil && c.ReadinessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet != nil &&
		c.LivenessProbe.HTTPGet.Path == c.ReadinessProbe.HTTPGet.Path {
		t.Errorf("liveness and readiness probe the same path: an unreachable collector would restart the agent")
	}
}

func checkNodeName(t reporter, m manifests) {
	c, ok := agentContainer(t, m.daemonSet)
	if !ok {
		return
	}
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("NODE_NAME must come from the downward API fieldRef spec.nodeName, got %+v", e)
			}
			return
		}
	}
	t.Errorf("no NODE_NAME environment variable: spans would lack k8s.node.name")
}

func checkResources(t reporter, m manifests) {
	c, ok := agentContainer(t, m.daemonSet)
	if !ok {
		return
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim {
			t.Errorf("%s: want both a request and a limit", r)
			continue
		}
		if req.Sign() <= 0 || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s must be positive and at most the limit %s", r, req.String(), lim.String())
		}
	}
}
