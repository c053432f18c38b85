// Package daemonset holds the Kubernetes manifests that run routerscope as one agent per node
// (namespace.yaml, serviceaccount.yaml, configmap.yaml, daemonset.yaml, kustomization.yaml),
// the agent's Dockerfile, and the tests that check them. It has no Go API: the tests decode
// every manifest strictly into the Kubernetes API types, check the security-relevant fields,
// lint the Dockerfile, and send the manifests to a real kube-apiserver for a server-side dry
// run. The control plane for that is built by scripts/build-kube.sh from the separate module
// in kubetools/, so that the main module never depends on k8s.io/kubernetes.
package daemonset
