// Package daemonset holds the Kubernetes manifests that run routerscope as one agent per node
// (namespace.yaml, serviceaccount.yaml, configmap.yaml, daemonset.yaml, kustomization.yaml)
// and the tests that check them and the Helm chart (../helm/routerscope). It has no Go API:
// the tests decode every manifest strictly into the Kubernetes API types, check the
// security-relevant fields, send the manifests and the chart's renderings to a real
// kube-apiserver for a server-side dry run, and run the agent's image (built by
// ../image, `make image`) with runc under a runtime spec generated from daemonset.yaml.
// The control plane is built by scripts/build-kube.sh from the separate module in
// kubetools/, so that the main module never depends on k8s.io/kubernetes.
package daemonset
