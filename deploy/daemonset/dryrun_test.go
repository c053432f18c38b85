package daemonset

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestServerSideDryRun sends the manifests to a real kube-apiserver (v1.37.2, on etcd, both
// built by scripts/build-kube.sh) with `kubectl apply --dry-run=server`: the server runs its
// full decoding, defaulting, validation and admission, then stores nothing. The install must
// pass, and each broken variant must be refused for the reason it was broken.
func TestServerSideDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the control plane from scripts/build-kube.sh (about 15 minutes when not cached)")
	}
	cp := startControlPlane(t, buildKube(t))
	ctx := context.Background()

	// kubectl refuses a server too far from its own version; both come from the same build, so
	// this also checks that the build stamped a real release version into them.
	out, err := cp.kubectl(ctx, "version", "-o", "yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var v struct {
		ClientVersion, ServerVersion struct{ GitVersion string }
	}
	if err := yaml.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(v.ServerVersion.GitVersion, "v1.") || v.ServerVersion.GitVersion != v.ClientVersion.GitVersion {
		t.Errorf("kubectl %q and kube-apiserver %q: want the same v1.x release", v.ClientVersion.GitVersion, v.ServerVersion.GitVersion)
	}

	// A server-side dry run of a namespaced object needs its namespace to exist for real.
	if out, err := cp.kubectl(ctx, "apply", "-f", filepath.Join(manifestDir, "namespace.yaml")); err != nil {
		t.Fatalf("create the namespace: %v\n%s", err, out)
	}

	t.Run("install", func(t *testing.T) {
		// -k goes through kustomization.yaml, as users install it.
		out, err := cp.kubectl(ctx, "apply", "-k", manifestDir, "--dry-run=server")
		if err != nil {
			t.Fatalf("the install is refused: %v\n%s", err, out)
		}
		for _, want := range []string{
			"namespace/" + namespace,
			"serviceaccount/" + agentName,
			"configmap/" + configMapName,
			"daemonset.apps/" + agentName + " created (server dry run)",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "Warning:") {
			t.Errorf("the API server warned about the install:\n%s", out)
		}
	})

	// The Helm chart's output, with default and with customised values, passes the same
	// server-side checks.
	for _, name := range []string{"helm default values", "helm custom values"} {
		t.Run(name, func(t *testing.T) {
			helm := helmBinary(t)
			var args []string
			if name == "helm custom values" {
				args = []string{"-f", writeValues(t, customValues)}
			}
			path := filepath.Join(t.TempDir(), "rendered.yaml")
			if err := os.WriteFile(path, []byte(helmTemplate(t, helm, args...)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := cp.kubectl(ctx, "apply", "-f", path, "--dry-run=server")
			if err != nil {
				t.Fatalf("the chart's objects are refused: %v\n%s", err, out)
			}
			for _, want := range []string{"serviceaccount/" + agentName, "configmap/" + configMapName, "daemonset.apps/" + agentName + " created (server dry run)"} {
				if !strings.Contains(out, want) {
					t.Errorf("kubectl output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "Warning:") {
				t.Errorf("the API server warned about the chart's objects:\n%s", out)
			}
		})
	}

	src, err := os.ReadFile(filepath.Join(manifestDir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range brokenDaemonSets {
		t.Run(b.name, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal(src, &doc); err != nil {
				t.Fatal(err)
			}
			if err := b.mutate(doc); err != nil {
				t.Fatalf("break the manifest: %v", err)
			}
			data, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "daemonset.yaml")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := cp.kubectl(ctx, "apply", "-f", path, "--dry-run=server")
			if err == nil {
				t.Fatalf("the API server accepted it:\n%s", out)
			}
			if !strings.Contains(out, b.want) {
				t.Errorf("refused, but not for the expected reason %q:\n%s", b.want, out)
			}
		})
	}
}

// brokenDaemonSets are the mistakes the dry run must catch, each with the text of the API
// server's refusal.
var brokenDaemonSets = []struct {
	name   string
	mutate func(map[string]any) error
	want   string
}{
	{"type error", set("spec.template.spec.containers.0.ports.0.containerPort", "ninety"),
		"cannot unmarshal string"},
	{"unknown field", set("spec.template.spec.hostPid", true),
		`unknown field "spec.template.spec.hostPid"`},
	{"selector does not match labels", set("spec.template.metadata.labels.app.kubernetes.io/component", "other"),
		"`selector` does not match template `labels`"},
	{"bad enum imagePullPolicy", set("spec.template.spec.containers.0.imagePullPolicy", "Sometimes"),
		`Unsupported value: "Sometimes"`},
	{"bad enum seccomp type", set("spec.template.spec.securityContext.seccompProfile.type", "Unconfind"),
		`Unsupported value: "Unconfind"`},
	{"undefined volume", set("spec.template.spec.containers.0.volumeMounts.0.name", "nope"),
		`Not found: "nope"`},
	// The server checks a probe's port number or name syntax, but not that a named port is
	// declared: TestProbesReachTheMetricsPort covers that.
	{"probe port out of range", set("spec.template.spec.containers.0.readinessProbe.httpGet.port", 70000),
		"must be between 1 and 65535"},
	{"privileged without escalation", set("spec.template.spec.containers.0.securityContext.privileged", true),
		"cannot set `allowPrivilegeEscalation` to false and `privileged` to true"},
	{"bad downward API field", set("spec.template.spec.containers.0.env.1.valueFrom.fieldRef.fieldPath", "spec.nodeNam"),
		"field label not supported: spec.nodeNam"},
}

// set returns a mutation that sets the value at a dotted path of map keys and list indexes.
// A key that itself contains dots (a label such as app.kubernetes.io/component) is matched
// by trying the longest remaining key first.
func set(path string, value any) func(map[string]any) error {
	return func(doc map[string]any) error {
		parts := strings.Split(path, ".")
		var cur any = doc
		for len(parts) > 0 {
			switch node := cur.(type) {
			case map[string]any:
				n := len(parts)
				for ; n > 1; n-- {
					if _, ok := node[strings.Join(parts[:n], ".")]; ok {
						break
					}
				}
				key := strings.Join(parts[:n], ".")
				parts = parts[n:]
				if len(parts) == 0 {
					node[key] = value
					return nil
				}
				next, ok := node[key]
				if !ok {
					next = map[string]any{}
					node[key] = next
				}
				cur = next
			case []any:
				i, err := strconv.Atoi(parts[0])
				if err != nil || i < 0 || i >= len(node) {
					return fmt.Errorf("%s: no list item %s", path, parts[0])
				}
				parts = parts[1:]
				if len(parts) == 0 {
					node[i] = value
					return nil
				}
				cur = node[i]
			default:
				return fmt.Errorf("%s: %T is neither a map nor a list", path, cur)
			}
		}
		return nil
	}
}

func TestSetMutation(t *testing.T) {
	// The broken variants are only meaningful if each mutation changes what it names.
	doc := map[string]any{"a": map[string]any{"x.y/z": "old", "l": []any{map[string]any{"k": 1}}}}
	for _, c := range []struct {
		path string
		want string
	}{
		{"a.x.y/z", `"x.y/z":"new"`},
		{"a.l.0.k", `"k":"new"`},
		{"a.b.c", `"b":{"c":"new"}`},
	} {
		if err := set(c.path, "new")(doc); err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		out, _ := yaml.Marshal(doc)
		js, _ := yaml.YAMLToJSON(out)
		if !strings.Contains(string(js), c.want) {
			t.Errorf("set %s: got %s, want it to contain %s", c.path, js, c.want)
		}
	}
	if err := set("a.l.3.k", "new")(doc); err == nil {
		t.Error("an index past the list's end was accepted")
	}
}
