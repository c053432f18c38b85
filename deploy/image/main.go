// Command image builds the routerscope agent's OCI image without a container engine: a
// static agent binary on an empty base (plus CA certificates and an /etc/passwd), the image
// config's user, entrypoint, exposed port and labels set, written as an OCI image layout
// and as a docker-archive tarball (`docker load` / `podman load` read it).
//
//	go run ./deploy/image --out build/image        (what `make image` runs)
//
// The eBPF objects are committed, so the build needs neither clang nor kernel headers.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var o options
	flag.StringVar(&o.out, "out", "build/image", "output directory: oci/ (OCI image layout) and routerscope.tar")
	flag.StringVar(&o.repo, "repo", ".", "the repository root (holds go.mod)")
	flag.StringVar(&o.tag, "tag", defaultTag, "image reference written into the tarball and the layout's annotation")
	flag.StringVar(&o.caFile, "ca-file", "/etc/ssl/certs/ca-certificates.crt", "CA bundle copied into the image for OTLP over TLS (\"\" for none)")
	flag.Parse()
	res, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("built %s (%s)\n  OCI layout: %s\n  tarball:    %s\n", o.tag, res.digest, res.layout, res.tarball)
}
