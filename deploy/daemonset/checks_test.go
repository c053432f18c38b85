package daemonset

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// reporter is the part of testing.T the manifest checks use, so that the same checks can run
// on broken copies of the manifests and have their complaints collected.
type reporter interface {
	Errorf(format string, args ...any)
}

// staticChecks are the checks of the decoded manifests, each a function of all of them.
var staticChecks = []struct {
	name  string
	check func(reporter, manifests)
}{
	{"names and labels", checkNamesAndLabels},
	{"probes", checkProbes},
	{"node name", checkNodeName},
	{"resources", checkResources},
	{"pod security", checkPodSecurity},
	{"volumes", checkVolumes},
}

func TestStaticChecks(t *testing.T) {
	m := loadManifests(t, manifestDir)
	for _, c := range staticChecks {
		t.Run(c.name, func(t *testing.T) { c.check(t, m) })
	}
}

// complaints collects what the checks report.
type complaints []string

func (c *complaints) Errorf(format string, args ...any) {
	*c = append(*c, fmt.Sprintf(format, args...))
}

func (m manifests) deepCopy() manifests {
	return manifests{
		namespace:      *m.namespace.DeepCopy(),
		serviceAccount: *m.serviceAccount.DeepCopy(),
		configMap:      *m.configMap.DeepCopy(),
		daemonSet:      *m.daemonSet.DeepCopy(),
	}
}

func TestStaticChecksCatchBrokenManifests(t *testing.T) {
	// Several of these pass the API server's validation (an undeclared probe port name, a
	// writable host mount, an extra capability): they are what these checks are for.
	pod := func(m *manifests) *corev1.PodSpec { return &m.daemonSet.Spec.Template.Spec }
	ctr := func(m *manifests) *corev1.Container { return &pod(m).Containers[0] }
	yes := true
	for _, b := range []struct {
		name   string
		break_ func(m *manifests)
		want   string
	}{
		{"no hostPID", func(m *manifests) { pod(m).HostPID = false }, "hostPID must be true"},
		{"hostNetwork", func(m *manifests) { pod(m).HostNetwork = true }, "the agent needs neither"},
		{"extra capability", func(m *manifests) {
			ctr(m).SecurityContext.Capabilities.Add = append(ctr(m).SecurityContext.Capabilities.Add, "SYS_ADMIN")
		}, "capabilities.add is"},
		{"nothing dropped", func(m *manifests) { ctr(m).SecurityContext.Capabilities.Drop = nil }, "capabilities.drop is"},
		{"privileged unset", func(m *manifests) { ctr(m).SecurityContext.Privileged = nil }, "privileged must be set to false"},
		{"escalation allowed", func(m *manifests) { ctr(m).SecurityContext.AllowPrivilegeEscalation = &yes }, "allowPrivilegeEscalation"},
		{"writable root", func(m *manifests) { ctr(m).SecurityContext.ReadOnlyRootFilesystem = nil }, "readOnlyRootFilesystem"},
		{"seccomp left to the node", func(m *manifests) { pod(m).SecurityContext.SeccompProfile = nil }, "no seccompProfile"},
		{"extra host path", func(m *manifests) {
			pod(m).Volumes = append(pod(m).Volumes, corev1.Volume{Name: "docker", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run"}}})
			ctr(m).VolumeMounts = append(ctr(m).VolumeMounts, corev1.VolumeMount{Name: "docker", MountPath: "/host/var/run", ReadOnly: true})
		}, "mounts host path /var/run"},
		{"writable mount", func(m *manifests) { ctr(m).VolumeMounts[0].ReadOnly = false }, "is writable"},
		{"unmounted volume", func(m *manifests) { ctr(m).VolumeMounts = ctr(m).VolumeMounts[:1] }, "declared but not mounted"},
		{"missing ConfigMap key", func(m *manifests) { delete(m.configMap.Data, "semantic-router.yaml") }, `has no key "semantic-router.yaml"`},
		{"undeclared probe port", func(m *manifests) { ctr(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("metric") }, "is not a declared container port"},
		{"probe on another port", func(m *manifests) { ctr(m).LivenessProbe.HTTPGet.Port = intstr.FromInt32(8080) }, "is not a declared container port"},
		{"liveness on readyz", func(m *manifests) { ctr(m).LivenessProbe.HTTPGet.Path = "/readyz" }, "probe the same path"},
		{"metrics on loopback", func(m *manifests) { ctr(m).Args = []string{"run", "--metrics-listen=127.0.0.1:9464"} }, "want --metrics-listen=0.0.0.0:9464"},
		{"selector mismatch", func(m *manifests) {
			m.daemonSet.Spec.Template.Labels = map[string]string{"app.kubernetes.io/name": "other"}
		}, "does not match the pod template labels"},
		{"other service account", func(m *manifests) { pod(m).ServiceAccountName = "default" }, `pods use service account "default"`},
		{"token mounted", func(m *manifests) { pod(m).AutomountServiceAccountToken = nil }, "automountServiceAccountToken must be false"},
		{"no NODE_NAME", func(m *manifests) { ctr(m).Env = ctr(m).Env[:1] }, "no NODE_NAME"},
		{"no memory limit", func(m *manifests) { delete(ctr(m).Resources.Limits, corev1.ResourceMemory) }, "memory: want both a request and a limit"},
		{"request above limit", func(m *manifests) { ctr(m).Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2") }, "at most the limit"},
		{"no PSA label", func(m *manifests) { delete(m.namespace.Labels, "pod-security.kubernetes.io/enforce") }, "pod-security.kubernetes.io/enforce"},
		{"two containers", func(m *manifests) { pod(m).Containers = append(pod(m).Containers, corev1.Container{Name: "sidecar"}) }, "exactly one container"},
	} {
		t.Run(b.name, func(t *testing.T) {
			m := loadManifests(t, manifestDir).deepCopy()
			b.break_(&m)
			var got complaints
			for _, c := range staticChecks {
				c.check(&got, m)
			}
			if !strings.Contains(strings.Join(got, "\n"), b.want) {
				t.Errorf("the checks said %q, want a complaint containing %q", got, b.want)
			}
		})
	}
}
