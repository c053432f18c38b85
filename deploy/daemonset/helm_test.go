package daemonset

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// The Helm chart (deploy/helm/routerscope) must render what the kustomize manifests declare:
// with default values the same objects, and with customised values objects that pass the same
// static checks and a server-side dry run (dryrun_test.go).

const (
	chartDir = "../helm/routerscope"
	// releaseName makes the chart's names equal the manifests' (RELEASE-agent, RELEASE-config).
	releaseName = "routerscope"
	// kubeVersion is the cluster version rendering assumes: the kube-apiserver the dry run
	// uses (scripts/build-kube.sh). A Helm built from the module proxy defaults to v1.20.
	kubeVersion = "1.37.2"
)

// helmBinary builds (once, cached in build/tools) the Helm CLI from the module proxy.
func helmBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs the Helm CLI from scripts/build-helm.sh (a few minutes when not cached)")
	}
	cmd := exec.Command("../../scripts/build-helm.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build helm: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// customValues changes every value the chart offers, the way an operator would.
const customValues = `image:
  repository: registry.example.com/observability/routerscope
  tag: "1.2.3"
  pullPolicy: Always
exporter:
  endpoint: "https://tempo.example.com:4318/v1/traces"
  protocol: http/protobuf
  insecure: false
  headers:
    authorization: "Bearer s3cret"
sampling:
  type: probabilistic
  rate: 0.1
resource:
  serviceName: llm-router
  deploymentEnvironment: staging
discovery:
  rules:
    - name: routers-in-pods
      comm: router
      port: 8801
      probes: [probes/semantic-router.yaml]
    - name: other
      executable: "/opt/other/bin/serve*"
      probes: [probes/other.yaml]
  exclude:
    - comm: "otelcol*"
probeFiles:
  other.yaml: |
    probes:
      - symbol: main.(*Server).handle
        span: other.request
        kind: server
propagation:
  inject: false
export:
  queueSize: 4096
  maxBatchSize: 256
logLevel: debug
metrics:
  port: 9555
env:
  - name: OTEL_RESOURCE_ATTRIBUTES
    value: "k8s.cluster.name=prod-eu"
  - name: OTEL_EXPORTER_OTLP_HEADERS
    valueFrom:
      secretKeyRef: {name: otlp-auth, key: headers}
resources:
  requests: {cpu: 100m, memory: 128Mi}
  limits: {cpu: "1", memory: 512Mi}
tolerations:
  - key: dedicated
    operator: Equal
    value: llm
    effect: NoSchedule
nodeSelector:
  node-role.example.com/llm: "true"
priorityClassName: system-node-critical
`

// helmTemplate renders the chart with the given extra arguments and returns its output.
func helmTemplate(t *testing.T, helm string, args ...string) string {
	t.Helper()
	all := append([]string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, args...)
	out, err := exec.Command(helm, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	return string(out)
}

// writeValues writes a values file for -f.
func writeValues(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeRendered strictly decodes helm template output, one object per kind.
func decodeRendered(t *testing.T, out string) (manifests, map[string]bool) {
	t.Helper()
	var m manifests
	seen := map[string]bool{}
	for _, doc := range strings.Split(out, "\n---\n") {
		// The separator took the document's last line break: give it back, or a block
		// scalar at the end (a probe file) would lose its final newline.
		doc = strings.TrimPrefix(doc, "---\n") + "\n"
		var lines []string
		for _, l := range strings.Split(doc, "\n") {
			if !strings.HasPrefix(l, "#") {
				lines = append(lines, l)
			}
		}
		if strings.TrimSpace(strings.Join(lines, "\n")) == "" {
			continue
		}
		var tm struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("rendered document: %v\n%s", err, doc)
		}
		if seen[tm.Kind] {
			t.Fatalf("the chart renders two %s objects", tm.Kind)
		}
		seen[tm.Kind] = true
		var err error
		switch tm.Kind {
		case "Namespace":
			err = decodeStrict([]byte(doc), &m.namespace, "v1", "Namespace")
		case "ServiceAccount":
			err = decodeStrict([]byte(doc), &m.serviceAccount, "v1", "ServiceAccount")
		case "ConfigMap":
			err = decodeStrict([]byte(doc), &m.configMap, "v1", "ConfigMap")
		case "DaemonSet":
			err = decodeStrict([]byte(doc), &m.daemonSet, "apps/v1", "DaemonSet")
		default:
			t.Fatalf("the chart renders a %s, which the manifests do not have", tm.Kind)
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", tm.Kind, err, doc)
		}
	}
	return m, seen
}

func TestHelmChartLint(t *testing.T) {
	helm := helmBinary(t)
	for name, args := range map[string][]string{
		"default values": nil,
		"custom values":  {"-f", writeValues(t, customValues)},
	} {
		out, err := exec.Command(helm, append([]string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}, args...)...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "0 chart(s) failed") {
			t.Errorf("%s: helm lint --strict: %v\n%s", name, err, out)
		}
	}
	// Lint fails on a broken chart: a template that does not render.
	broken := t.TempDir()
	if out, err := exec.Command("cp", "-r", chartDir+"/.", broken).CombinedOutput(); err != nil {
		t.Fatalf("copy the chart: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(broken, "templates", "broken.yaml"), []byte("{{ .Values.nope.deeper }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(helm, "lint", "--strict", "--kube-version", kubeVersion, broken).CombinedOutput(); err == nil {
		t.Errorf("helm lint passed a chart with a broken template:\n%s", out)
	}
}

// TestHelmChartDefaultEqualsKustomize: with default values the chart renders the kustomize
// manifests' objects (labels aside: the chart adds Helm's).
func TestHelmChartDefaultEqualsKustomize(t *testing.T) {
	helm := helmBinary(t)
	h, _ := decodeRendered(t, helmTemplate(t, helm))
	for _, c := range staticChecks {
		t.Run(c.name, func(t *testing.T) { c.check(t, h) })
	}
	k := loadManifests(t, manifestDir)

	for _, l := range []string{"pod-security.kubernetes.io/enforce", "pod-security.kubernetes.io/audit"} {
		if h.namespace.Labels[l] != k.namespace.Labels[l] {
			t.Errorf("namespace label %s = %q, kustomize %q", l, h.namespace.Labels[l], k.namespace.Labels[l])
		}
	}
	if h.serviceAccount.Name != k.serviceAccount.Name || !reflect.DeepEqual(h.serviceAccount.AutomountServiceAccountToken, k.serviceAccount.AutomountServiceAccountToken) {
		t.Errorf("service account %s differs from kustomize's %s", h.serviceAccount.Name, k.serviceAccount.Name)
	}
	if h.configMap.Name != k.configMap.Name || len(h.configMap.Data) != len(k.configMap.Data) {
		t.Errorf("ConfigMap %s keys %d, kustomize %s keys %d", h.configMap.Name, len(h.configMap.Data), k.configMap.Name, len(k.configMap.Data))
	}
	if h.configMap.Data[probeKey] != k.configMap.Data[probeKey] {
		t.Errorf("the chart's %s (%d bytes) differs from the manifests' (%d bytes) (copy config/probes/semantic-router.yaml to %s/files/probes/)",
			probeKey, len(h.configMap.Data[probeKey]), len(k.configMap.Data[probeKey]), chartDir)
	}
	hc, err := config.Parse([]byte(h.configMap.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("the chart's config.yaml: %v", err)
	}
	kc, err := config.Parse([]byte(k.configMap.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(hc, kc) {
		t.Errorf("the chart's agent config differs from kustomize's:\n chart     %+v\n kustomize %+v", hc, kc)
	}

	hd, kd := h.daemonSet, k.daemonSet
	if hd.Name != kd.Name || !reflect.DeepEqual(hd.Spec.UpdateStrategy, kd.Spec.UpdateStrategy) {
		t.Errorf("DaemonSet %s %+v, kustomize %s %+v", hd.Name, hd.Spec.UpdateStrategy, kd.Name, kd.Spec.UpdateStrategy)
	}
	// Quantities keep their parsed form; compare them by value.
	norm := func(p corev1.PodSpec) corev1.PodSpec {
		p = *p.DeepCopy()
		for i := range p.Containers {
			for _, rl := range []corev1.ResourceList{p.Containers[i].Resources.Requests, p.Containers[i].Resources.Limits} {
				for n, q := range rl {
					rl[n] = resource.MustParse(q.String())
				}
			}
		}
		return p
	}
	if hp, kp := norm(hd.Spec.Template.Spec), norm(kd.Spec.Template.Spec); !reflect.DeepEqual(hp, kp) {
		hy, _ := yaml.Marshal(hp)
		ky, _ := yaml.Marshal(kp)
		t.Errorf("the chart's pod spec differs from kustomize's:\n--- chart\n%s\n--- kustomize\n%s", hy, ky)
	}
	for k, v := range kd.Spec.Template.Annotations {
		if hd.Spec.Template.Annotations[k] != v {
			t.Errorf("pod annotation %s = %q, kustomize %q", k, hd.Spec.Template.Annotations[k], v)
		}
	}
}

// TestHelmChartCustomValues: every value lands where it should, the result passes the
// manifests' static checks (injection off: no NET_ADMIN, no host mount), and the agent loads
// the config and probe files as the pod sees them.
func TestHelmChartCustomValues(t *testing.T) {
	helm := helmBinary(t)
	h, _ := decodeRendered(t, helmTemplate(t, helm, "-f", writeValues(t, customValues)))
	for _, c := range staticChecks {
		if c.name == "pod security" || c.name == "probes" {
			continue // capabilities and the metrics port differ on purpose; checked below
		}
		t.Run(c.name, func(t *testing.T) { c.check(t, h) })
	}
	pod := h.daemonSet.Spec.Template.Spec
	c := mustAgentContainer(t, h.daemonSet)
	if c.Image != "registry.example.com/observability/routerscope:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
	}
	caps := c.SecurityContext.Capabilities.Add
	if slices.Contains(caps, "NET_ADMIN") || len(caps) != 3 {
		t.Errorf("injection off: capabilities %v, want BPF, PERFMON, SYS_PTRACE", caps)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("injection off: host path volume %s", v.Name)
		}
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != "dedicated" || pod.NodeSelector["node-role.example.com/llm"] != "true" ||
		pod.PriorityClassName != "system-node-critical" {
		t.Errorf("tolerations %v nodeSelector %v priorityClassName %q", pod.Tolerations, pod.NodeSelector, pod.PriorityClassName)
	}
	if c.Resources.Limits.Memory().String() != "512Mi" || c.Resources.Requests.Cpu().String() != "100m" {
		t.Errorf("resources %v", c.Resources)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9555 || !slices.Contains(c.Args, "--metrics-listen=0.0.0.0:9555") {
		t.Errorf("metrics port: ports %v args %v", c.Ports, c.Args)
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if env["OTEL_RESOURCE_ATTRIBUTES"].Value != "k8s.cluster.name=prod-eu" || env["OTEL_EXPORTER_OTLP_HEADERS"].ValueFrom == nil ||
		env["CONFIG_PATH"].Value == "" || env["NODE_NAME"].ValueFrom == nil {
		t.Errorf("env %v: want the chart's and the extra variables", c.Env)
	}

	root := t.TempDir()
	mount := layoutVolume(t, h, root)
	cfg, err := config.LoadFile(filepath.Join(root, mount, "config.yaml"))
	if err != nil {
		t.Fatalf("the rendered agent config does not load: %v", err)
	}
	tr := cfg.Tracing
	if e := tr.Exporter; e.Type != config.ExporterOTLP || e.Endpoint != "https://tempo.example.com:4318/v1/traces" ||
		e.Protocol != config.ProtocolHTTPProtobuf || e.Insecure || e.Headers["authorization"] != "Bearer s3cret" {
		t.Errorf("exporter %+v", e)
	}
	if tr.Sampling.Type != config.SamplingProbabilistic || tr.Sampling.Rate != 0.1 {
		t.Errorf("sampling %+v", tr.Sampling)
	}
	if tr.Resource.ServiceName != "llm-router" || tr.Resource.DeploymentEnvironment != "staging" {
		t.Errorf("resource %+v", tr.Resource)
	}
	a := cfg.Agent
	if a.Propagation.Inject || !a.Propagation.Extract || a.Export.QueueSize != 4096 || a.Export.MaxBatchSize != 256 || a.LogLevel != "debug" {
		t.Errorf("routerscope section %+v", a)
	}
	rules := a.Discovery.Rules
	if len(rules) != 2 || rules[0].Comm != "router" || rules[0].Port != 8801 || rules[1].Executable != "/opt/other/bin/serve*" ||
		len(a.Discovery.Exclude) != 1 {
		t.Fatalf("discovery %+v", a.Discovery)
	}
	for _, r := range rules {
		for _, p := range r.Probes {
			if _, err := probes.LoadSpec(p); err != nil {
				t.Errorf("rule %s: probe file: %v", r.Name, err)
			}
		}
	}
}

// TestHelmChartWithoutNamespace: namespace.create=false renders no Namespace, for a
// namespace that exists already.
func TestHelmChartWithoutNamespace(t *testing.T) {
	helm := helmBinary(t)
	_, seen := decodeRendered(t, helmTemplate(t, helm, "--set", "namespace.create=false"))
	if seen["Namespace"] || !seen["DaemonSet"] || !seen["ConfigMap"] || !seen["ServiceAccount"] {
		t.Errorf("rendered kinds %v, want everything but the Namespace", seen)
	}
}

// TestChartProbeFile: the chart's built-in probe file is the repository's, byte for byte
// (-update copies it), so the chart and the kustomize ConfigMap trace the same functions.
func TestChartProbeFile(t *testing.T) {
	chartCopy := filepath.Join(chartDir, "files", "probes", probeKey)
	want, err := os.ReadFile(probeFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(chartCopy)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if string(got) == string(want) {
		return
	}
	if *update {
		if err := os.WriteFile(chartCopy, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("copied %s to %s", probeFile, chartCopy)
		return
	}
	t.Errorf("%s differs from %s; run: go test ./deploy/daemonset -run 'TestConfigMapProbeFile|TestChartProbeFile' -update", chartCopy, probeFile)
}
