// Package bpf holds the kernel programs of routerscope (C sources built with
// bpf2go) and their generated Go bindings. It loads nothing by itself and
// never logs; package probes attaches its programs.
package bpf
