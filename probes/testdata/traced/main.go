// Command traced is the fixture the root-gated capture tests attach to. It
// reads one command per line on stdin, runs the probed functions the
// command names and prints "done" when they have returned, so a test knows
// every event of the command has been emitted.
//
// Every probed function is //go:noinline: the tests need a real frame and
// real RET instructions.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Meta is reached through a pointer from Request, for field-path tests.
type Meta struct {
	User  string
	Level int32
}

// Request exercises string, int, bool, float, []string and pointer fields.
type Request struct {
	Model       string
	MaxTokens   int
	Stream      bool
	Temperature float64
	Tags        []string
	Meta        *Meta
}

// Category is returned by value inside Response.
type Category struct {
	Name  string
	Score float64
}

// Response is returned through a pointer.
type Response struct {
	Category Category
	Tokens   int
}

type customError struct{ code int }

func (e *customError) Error() string { return "custom " + strconv.Itoa(e.code) }

// handle is the root of a request: it calls classify, which nests under it.
//
//go:noinline
func handle(req *Request) (*Response, error) {
	if req.Model == "bad" {
		return nil, errors.New("model not allowed: bad")
	}
	name, score := classify(req.Model, req.MaxTokens)
	return &Response{Category: Category{Name: name, Score: score}, Tokens: req.MaxTokens * 2}, nil
}

//go:noinline
func classify(text string, n int) (string, float64) {
	return "cat-" + text, float64(n) / 4
}

// fib recurses: every level is a span nested in the one above.
//
//go:noinline
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

// work runs on its own goroutine; its span's parent is the span of the
// function that started the goroutine.
//
//go:noinline
func work(i int) int {
	return i * i
}

// parallel starts n goroutines with go statements inside its span.
//
//go:noinline
func parallel(n int) int {
	var wg sync.WaitGroup
	results := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = work(i)
		}()
	}
	wg.Wait()
	sum := 0
	for _, r := range results {
		sum += r
	}
	return sum
}

// pool is a long-lived worker started inside startPool's span: once that
// span has closed, the worker's tasks must start new traces.
type pool struct {
	jobs chan int
	done chan int
}

//go:noinline
func startPool() *pool {
	p := &pool{jobs: make(chan int), done: make(chan int)}
	go func() {
		for j := range p.jobs {
			p.done <- poolTask(j)
		}
	}()
	return p
}

// openPool starts the pool and gives it a first job inside its span: that
// task runs while the span the worker was started under is open.
//
//go:noinline
func openPool(j int) (*pool, int) {
	p := startPool()
	p.jobs <- j
	return p, <-p.done
}

//go:noinline
func poolTask(j int) int {
	return j + 1
}

// submit hands a job to the pool worker inside its own span; the worker is
// not a child of submit (no go statement), so its task is a root.
//
//go:noinline
func submit(p *pool, j int) int {
	p.jobs <- j
	return <-p.done
}

// risky recurses to depth 0 and panics there; the probed frames unwind.
//
//go:noinline
func risky(depth int) int {
	if depth == 0 {
		panic("risky bottom")
	}
	return risky(depth-1) + 1
}

// guard recovers the panic of risky and returns normally.
//
//go:noinline
func guard(depth int) (r int) {
	defer func() {
		if recover() != nil {
			r = -1
		}
	}()
	return risky(depth)
}

// grow has a frame bigger than a new goroutine's stack, so its prologue
// calls morestack and the function starts over on a grown stack.
//
//go:noinline
func grow(seed byte) byte {
	var buf [64 << 10]byte
	for i := range buf {
		buf[i] = seed + byte(i)
	}
	return buf[len(buf)-1] ^ buf[seed]
}

// fail returns the error kind names.
//
//go:noinline
func fail(kind string) error {
	switch kind {
	case "plain":
		return errors.New("plain failure")
	case "wrapped":
		return fmt.Errorf("wrapped: %w", errors.New("inner"))
	case "custom":
		return &customError{code: 7}
	}
	return nil
}

// Named basic types, read like their underlying types.
type (
	WeakString string
	Level      int
	Flag       bool
	Tags       []string
	Labels     []WeakString
	// NamedReq holds them as fields.
	NamedReq struct {
		Name   WeakString
		Level  Level
		On     Flag
		Tags   Tags
		Labels Labels
	}
)

// named takes named basic types in registers and behind a pointer.
//
//go:noinline
func named(s WeakString, l Level, f Flag, t Tags, r *NamedReq) WeakString {
	if f && len(t) > 0 {
		return s + WeakString(t[0]) + r.Name
	}
	return WeakString(strconv.Itoa(int(l)))
}

// Stages is the per-request state stage1 and stage2 fill, for end: next
// probes that read a stage's results through it when the stage's span ends.
type Stages struct {
	First  int
	Second string
	Err    error
	// Grow makes stage1 grow the goroutine's stack before it writes First,
	// so the runtime moves the stack, and a Stages on it, under the probes.
	Grow bool
}

// pipeline calls its stages in order, passing the state along; their spans
// are its children and each other's siblings.
//
//go:noinline
func pipeline(st *Stages, n int) int {
	stage1(st, n)
	stage2(st, n)
	return st.First
}

//go:noinline
func stage1(st *Stages, n int) {
	if st.Grow {
		grow(byte(n))
	}
	st.First = n * 10
}

//go:noinline
func stage2(st *Stages, n int) {
	st.Second = "s" + strconv.Itoa(n)
	if n < 0 {
		st.Err = errors.New("negative")
	}
}

// mark ends every command: a test reads events until mark's return, which
// the kernel wrote after every event of the command.
//
//go:noinline
func mark() {}

func main() {
	var p *pool
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		arg := ""
		if len(f) > 1 {
			arg = f[1]
		}
		n, _ := strconv.Atoi(arg)
		switch f[0] {
		case "handle":
			handle(&Request{
				Model: arg, MaxTokens: 12, Stream: true, Temperature: 0.5,
				Tags: []string{"a", "bb", strings.Repeat("x", 40)},
				Meta: &Meta{User: "u-" + arg, Level: -3},
			})
		case "handle-nometa":
			handle(&Request{Model: arg, MaxTokens: 1})
		case "fib":
			fib(n)
		case "parallel":
			parallel(n)
		case "startpool":
			p, _ = openPool(n)
		case "submit":
			if p != nil {
				submit(p, n)
			}
		case "guard":
			guard(n)
		case "grow":
			done := make(chan struct{})
			go func() {
				grow(byte(n))
				close(done)
			}()
			<-done
		case "fail":
			fail(arg)
		case "named":
			named(WeakString(arg), -7, true, Tags{"t1", "t2"},
				&NamedReq{Name: "n-" + WeakString(arg), Level: 42, On: true, Tags: Tags{"x"}, Labels: Labels{"l1", "l2"}})
		case "pipeline":
			pipeline(&Stages{}, n)
		case "pipeline-grow":
			// On a new goroutine's small stack, which stage1 outgrows:
			// the Stages (kept on the stack) moves while stage1 runs.
			done := make(chan struct{})
			go func() {
				pipeline(&Stages{Grow: true}, n)
				close(done)
			}()
			<-done
		case "loop":
			// For benchmarks: n calls of a probed leaf function.
			for i := range n {
				work(i)
			}
		case "exit":
			return
		}
		mark()
		fmt.Println("done")
	}
}
