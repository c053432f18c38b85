package main

import (
	"fmt"
	"io"
	"os"
)

// tree renders the stdout exporter's JSON (a file, or standard input) as one
// span tree per trace.
func (c cli) tree(args []string, stdin io.Reader) int {
	in := stdin
	switch len(args) {
	case 0:
	case 1:
		if args[0] == "-" {
			break
		}
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintf(c.stderr, "routerscope tree: %v\n", err)
			return exitRuntime
		}
		defer f.Close()
		in = f
	default:
		fmt.Fprintln(c.stderr, "routerscope tree: want at most one file (default: standard input)")
		return exitUsage
	}
	if err := renderTrees(in, c.stdout); err != nil {
		fmt.Fprintf(c.stderr, "routerscope tree: %v (is this the stdout exporter's JSON?)\n", err)
		return exitRuntime
	}
	return exitOK
}
