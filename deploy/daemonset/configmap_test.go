package daemonset

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/routerscope/routerscope/agent/config"
	"github.com/routerscope/routerscope/probes"
)

// update rewrites configmap.yaml's probe file from the repository's copy.
var update = flag.Bool("update", false, "copy config/probes/semantic-router.yaml into configmap.yaml")

const (
	probeKey  = "semantic-router.yaml"
	probeFile = "../../config/probes/semantic-router.yaml"
)

// layoutVolume writes the ConfigMap's items under dir exactly as the kubelet projects the
// agent's config volume, and returns the directory that stands for its mountPath.
func layoutVolume(t *testing.T, m manifests, dir string) (mountPath string) {
	t.Helper()
	c := mustAgentContainer(t, m.daemonSet)
	for _, v := range m.daemonSet.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name != v.Name {
				continue
			}
			for _, it := range v.ConfigMap.Items {
				p := filepath.Join(dir, vm.MountPath, it.Path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(m.configMap.Data[it.Key]), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return vm.MountPath
		}
	}
	t.Fatal("no ConfigMap volume is mounted into the agent")
	return ""
}

func TestConfigMapAgentConfigLoads(t *testing.T) {
	m := loadManifests(t, manifestDir)
	c := mustAgentContainer(t, m.daemonSet)
	configPath := ""
	for _, e := range c.Env {
		if e.Name == "CONFIG_PATH" {
			configPath = e.Value
		}
	}
	if configPath == "" {
		t.Fatal("the agent container sets no CONFIG_PATH")
	}
	root := t.TempDir()
	mount := layoutVolume(t, m, root)
	if !strings.HasPrefix(configPath, mount+"/") {
		t.Fatalf("CONFIG_PATH %s is not inside the config volume mounted at %s", configPath, mount)
	}
	path := filepath.Join(root, configPath)

	// Every probe file the config names, for the whole agent or per discovery rule, must be
	// in the volume where the agent looks: relative to the config file's directory.
	probeFiles, err := configProbeFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(probeFiles) == 0 {
		t.Fatal("the config names no probe file")
	}
	for _, p := range probeFiles {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("probe file %s is not in the config volume: %v", strings.TrimPrefix(p, root), err)
			continue
		}
		if err := decodeProbeSpec(data); err != nil {
			t.Errorf("probe file %s: %v", strings.TrimPrefix(p, root), err)
		}
	}

	// The same loader the agent runs, on the files as the pod sees them.
	// Any error fails, an unknown key under routerscope.discovery (a typo)
	// included.
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatalf("the ConfigMap's agent config does not load: %v", err)
	}
	if !cfg.Tracing.Enabled || cfg.Tracing.Exporter.Type != config.ExporterOTLP {
		t.Errorf("tracing enabled=%v exporter=%q: a DaemonSet exports over OTLP", cfg.Tracing.Enabled, cfg.Tracing.Exporter.Type)
	}
	if cfg.Agent.LogFormat != config.LogFormatJSON {
		t.Errorf("log_format %q: cluster log pipelines want json", cfg.Agent.LogFormat)
	}
	grace := m.daemonSet.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || float64(*grace) <= cfg.Agent.Export.ShutdownTimeout.Seconds() {
		t.Errorf("terminationGracePeriodSeconds must exceed export.shutdown_timeout %s, or the kubelet kills the agent mid-flush", cfg.Agent.Export.ShutdownTimeout)
	}
}

// configProbeFiles returns the probe files an agent config names (routerscope.probes and
// routerscope.discovery.rules[].probes), resolved against the config file's directory as the
// agent resolves them.
func configProbeFiles(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Routerscope struct {
			Probes    []string `yaml:"probes"`
			Discovery struct {
				Rules []struct {
					Probes []string `yaml:"probes"`
				} `yaml:"rules"`
			} `yaml:"discovery"`
		} `yaml:"routerscope"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	files := doc.Routerscope.Probes
	for _, r := range doc.Routerscope.Discovery.Rules {
		files = append(files, r.Probes...)
	}
	for i, f := range files {
		if !filepath.IsAbs(f) {
			files[i] = filepath.Join(filepath.Dir(path), f)
		}
	}
	return files, nil
}

// decodeProbeSpec checks that a probe file decodes into probes.Spec with no unknown key and
// declares at least one probe.
func decodeProbeSpec(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var s probes.Spec
	if err := dec.Decode(&s); err != nil {
		return err
	}
	if len(s.Probes) == 0 {
		return errors.New("declares no probe")
	}
	for i, p := range s.Probes {
		if p.Symbol == "" || p.Span == "" {
			return fmt.Errorf("probes[%d] lacks symbol or span", i)
		}
	}
	return nil
}

func TestConfigMapProbeFile(t *testing.T) {
	m := loadManifests(t, manifestDir)
	got, ok := m.configMap.Data[probeKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", m.configMap.Name, probeKey)
	}
	want, err := os.ReadFile(probeFile)
	if err != nil {
		// The ConfigMap copies this file: a missing one is a failure.
		t.Fatal(err)
	}
	if got == string(want) {
		return
	}
	if *update {
		if err := rewriteBlock(filepath.Join(manifestDir, "configmap.yaml"), probeKey, string(want)); err != nil {
			t.Fatal(err)
		}
		t.Logf("copied %s into configmap.yaml", probeFile)
		return
	}
	t.Errorf("configmap.yaml key %s differs from %s; run: go test ./deploy/daemonset -run TestConfigMapProbeFile -update", probeKey, probeFile)
}

// rewriteBlock replaces the literal block scalar of data key in a ConfigMap file with content.
// Comments and the other keys stay as they are.
func rewriteBlock(path, key, content string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(content, "\n") || strings.HasSuffix(content, "\n\n") {
		return errors.New("content must end with exactly one newline to survive a YAML literal block")
	}
	lines := strings.SplitAfter(string(data), "\n")
	header := "  " + key + ": |\n"
	start := -1
	for i, l := range lines {
		if l == header {
			start = i + 1
		}
	}
	if start < 0 {
		return errors.New(path + ": no line " + strings.TrimSpace(header))
	}
	end := start
	for end < len(lines) && (strings.HasPrefix(lines[end], "    ") || lines[end] == "\n") {
		end++
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(content, "\n") {
		if l != "\n" && l != "" {
			b.WriteString("    ")
		}
		b.WriteString(l)
	}
	out := strings.Join(lines[:start], "") + b.String() + strings.Join(lines[end:], "")
	return os.WriteFile(path, []byte(out), 0o644)
}

func TestRewriteBlock(t *testing.T) {
	// -update must produce a ConfigMap whose key decodes to the file byte for byte.
	src, err := os.ReadFile(filepath.Join(manifestDir, "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "configmap.yaml")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	content := "probes:\n  - symbol: main.f\n    span: x\n\n    # a comment: with colon\n    kind: server\n"
	if err := rewriteBlock(path, probeKey, content); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := decodeStrict(data, &cm, "v1", "ConfigMap"); err != nil {
		t.Fatal(err)
	}
	if got := cm.Data[probeKey]; got != content {
		t.Errorf("after rewrite the key holds %q, want %q", got, content)
	}
	if _, ok := cm.Data["config.yaml"]; !ok {
		t.Error("rewrite lost the config.yaml key")
	}
	if err := rewriteBlock(path, probeKey, "no newline"); err == nil {
		t.Error("content without a final newline was accepted")
	}
}
