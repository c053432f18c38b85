package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/routerscope/routerscope/agent"
)

// defaultTag is the reference the DaemonSet and the chart use by default.
const defaultTag = "ghcr.io/routerscope/routerscope:" + agent.Version

// Where things are in the image.
const (
	binaryPath = "/usr/local/bin/routerscope"
	caPath     = "/etc/ssl/certs/ca-certificates.crt"
	// nonroot is the default user, as in distroless: `routerscope version` or help run
	// anywhere unprivileged. The DaemonSet runs it as UID 0 with only the capabilities it
	// lists, because runtimes give added capabilities to UID 0 only.
	nonroot = "65532:65532"
)

type options struct {
	out, repo, tag, caFile string
}

type result struct {
	layout, tarball string
	digest          v1.Hash
}

// build compiles the agent and writes its image.
func build(o options) (result, error) {
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return result{}, fmt.Errorf("image reference %q: %w", o.tag, err)
	}
	tmp, err := os.MkdirTemp("", "routerscope-image-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "routerscope")
	if err := compile(o.repo, bin); err != nil {
		return result{}, err
	}
	img, err := image(bin, o.caFile, revision(o.repo))
	if err != nil {
		return result{}, err
	}
	res := result{layout: filepath.Join(o.out, "oci"), tarball: filepath.Join(o.out, "routerscope.tar")}
	if res.digest, err = img.Digest(); err != nil {
		return result{}, fmt.Errorf("digest the image: %w", err)
	}
	// Fresh outputs: an OCI layout appended to keeps the old images.
	if err := os.RemoveAll(res.layout); err != nil {
		return result{}, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return result{}, err
	}
	lp, err := layout.Write(res.layout, empty.Index)
	if err != nil {
		return result{}, fmt.Errorf("write OCI layout %s: %w", res.layout, err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.String(),
	})); err != nil {
		return result{}, fmt.Errorf("write OCI layout %s: %w", res.layout, err)
	}
	if err := tarball.WriteToFile(res.tarball, ref, img); err != nil {
		return result{}, fmt.Errorf("write tarball %s: %w", res.tarball, err)
	}
	return res, nil
}

// compile builds the static agent binary: no cgo, so it runs on an image without libc.
func compile(repo, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, "./cmd/routerscope")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the agent: %v\n%s", err, msg)
	}
	return nil
}

// revision is the repository's commit, for the image label; "" when unknown.
func revision(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// image assembles the image: one layer on an empty base, and its config.
func image(bin, caFile, rev string) (v1.Image, error) {
	layerTar, err := rootfs(bin, caFile)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make the layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		CreatedBy: "go run ./deploy/image", Comment: "static routerscope agent",
	}})
	if err != nil {
		return nil, fmt.Errorf("add the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	labels := map[string]string{
		"org.opencontainers.image.title":       "routerscope",
		"org.opencontainers.image.description": "Zero-code eBPF OpenTelemetry tracing agent for LLM routers",
		"org.opencontainers.image.version":     agent.Version,
		"org.opencontainers.image.source":      "https://github.com/routerscope/routerscope",
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	if rev != "" {
		labels["org.opencontainers.image.revision"] = rev
	}
	cf.Config = v1.Config{
		User:         nonroot,
		Entrypoint:   []string{binaryPath},
		Cmd:          []string{"run"},
		Env:          []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=" + caPath},
		ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", 9464): {}},
		Labels:       labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set the image config: %w", err)
	}
	return img, nil
}

// rootfs is the layer: directories, the binary, the CA bundle and the passwd and group files
// the non-root user needs, with fixed times and owners so that the same binary gives the
// same digest.
func rootfs(bin, caFile string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	dir := func(p string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(p string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local", "usr/local/bin"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return nil, err
	}
	if err := file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")); err != nil {
		return nil, err
	}
	if err := file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")); err != nil {
		return nil, err
	}
	if caFile != "" {
		ca, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA bundle (--ca-file, \"\" for none): %w", err)
		}
		if err := file(strings.TrimPrefix(caPath, "/"), 0o644, ca); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	if err := file(strings.TrimPrefix(binaryPath, "/"), 0o755, data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
