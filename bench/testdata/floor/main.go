// Command floor is the benchmark's uprobe-floor fixture: it times calls of
// one small function, so the harness can put a no-op uprobe on one of its
// instructions and read the cost of the trap alone.
//
// Each line on stdin is a call count N; floor answers with the mean
// nanoseconds per call over N calls. It prints "ready" first.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

// sink keeps target's results alive.
var sink int

// target is the probed function. It calls leaf, so it has a frame and
// the compiler gives it the stack check (CMP RSP, 16(R14); JBE) before
// PUSH BP: its first instruction is single-stepped by uprobes, the PUSH
// after the check is emulated, and its RET is single-stepped.
//
//go:noinline
func target(n int) int {
	return leaf(n) + 1
}

//go:noinline
func leaf(n int) int { return n ^ 0x5a }

func main() {
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		n, err := strconv.Atoi(sc.Text())
		if err != nil || n <= 0 {
			fmt.Println("error: want a positive call count")
			continue
		}
		start := time.Now()
		for i := range n {
			sink += target(i)
		}
		fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(n))
	}
}
