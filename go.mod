module github.com/routerscope/routerscope

go 1.26.0

require github.com/cilium/ebpf v0.22.0

require golang.org/x/sys v0.48.0 // indirect
