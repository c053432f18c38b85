// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 so that the manifest
// tests get the exact etcd release the Kubernetes API server is tested with, through the Go
// module proxy alone (the etcd repository's own main package lives in a module that is not
// published with a stable import path).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
