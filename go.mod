module github.com/routerscope/routerscope

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	go.uber.org/goleak v1.3.0
	golang.org/x/arch v0.33.0
	golang.org/x/sys v0.48.0
	gopkg.in/yaml.v3 v3.0.1
)
