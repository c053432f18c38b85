// Command spanloop is the agent stress fixture: it calls one probed
// function at a requested rate, so the harness can feed the agent a known
// span rate.
//
// Each line on stdin is "RATE MILLISECONDS": call work RATE times a second
// for that long; spanloop answers with the number of calls made. It prints
// "ready" first.
package main

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

// sink keeps work's results alive.
var sink int

// work is the probed function: one span per call, with an argument and a
// result for attributes.
//
//go:noinline
func work(id int, name string) (int, bool) {
	return id*3 + len(name), id%2 == 0
}

func main() {
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var rate, msec int
		if _, err := fmt.Sscan(sc.Text(), &rate, &msec); err != nil || rate <= 0 || msec <= 0 {
			fmt.Println("error: want RATE MILLISECONDS")
			continue
		}
		fmt.Println(run(rate, time.Duration(msec)*time.Millisecond))
	}
}

// run paces calls in 1 ms slices: each slice catches up to where the rate
// says the count should be, so a slow slice is made up in the next. A
// rate the process cannot reach still stops at d: the clock is checked
// every 256 calls of a catch-up.
func run(rate int, d time.Duration) int {
	start := time.Now()
	n := 0
	for {
		el := time.Since(start)
		if el >= d {
			return n
		}
		want := int(float64(rate) * el.Seconds())
		for n < want {
			if n%256 == 255 && time.Since(start) >= d {
				return n
			}
			r, ok := work(n, "spanloop")
			if ok {
				sink += r
			}
			n++
		}
		time.Sleep(time.Millisecond)
	}
}
