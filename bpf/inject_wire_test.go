package bpf

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/routerscope/routerscope/internal/testenv"
)

// The FAULT_* bits of inject.c's inject_fault map: each makes one check
// after a push act as if it had failed.
const (
	faultTPPull   = 1 << 0
	faultTPBounds = 1 << 1
	faultTSPull   = 1 << 2
	faultTSBounds = 1 << 3
	faultTSCopy   = 1 << 4
	faultTSEnd    = 1 << 5
	faultPop      = 1 << 6
)

// wireInjector is the injector loaded on its own, its sk_msg program on
// the socket map, for tests that write requests through it by hand.
type wireInjector struct {
	objs InjectObjects
	// segsIn is how many data segments the server side of the last send
	// received (TCP_INFO tcpi_data_segs_in).
	segsIn uint32
}

func loadWireInjector(t *testing.T) *wireInjector {
	t.Helper()
	testenv.RequireBPF(t, "loading the injector programs into the kernel (CAP_BPF, CAP_NET_ADMIN)")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock limit: %v", err)
	}
	w := &wireInjector{}
	err := LoadInjectObjects(&w.objs, nil)
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		t.Fatalf("verifier rejected a socket program: %+v", verr)
	}
	if err != nil {
		t.Fatalf("load inject objects: %v", err)
	}
	t.Cleanup(func() { w.objs.Close() })
	opts := link.RawAttachProgramOptions{
		Target:  w.objs.ClientSocks.FD(),
		Program: w.objs.SkmsgInject,
		Attach:  ebpf.AttachSkMsgVerdict,
	}
	if err := link.RawAttachProgram(opts); err != nil {
		t.Fatalf("attach sk_msg to the socket map: %v", err)
	}
	t.Cleanup(func() { link.RawDetachProgram(link.RawDetachProgramOptions(opts)) })
	return w
}

// wireCtx is the span context the tests inject.
var wireCtx = InjectInjectCtx{TraceHi: 0x4bf92f3577b34da6, TraceLo: 0xa3ce929d0e0e4736, SpanId: 0x00f067aa0ba902b7, Flags: 1}

const (
	wireTraceparent = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
	wireTracestate  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

// send writes req on a fresh loopback connection whose client socket is in
// the socket map, from a thread armed with wireCtx (and its trace carrying
// wireTracestate), with the fault bits set; it returns the write's error
// and every byte the server received.
func (w *wireInjector) send(t *testing.T, req string, fault uint32) (error, []byte) {
	t.Helper()
	// An arming older than 50 ms is dropped as stale (inject.c,
	// ARM_TTL_NS): on a loaded machine the thread can be descheduled that
	// long between arming and writing. Such a try says nothing about the
	// program, so it is made again.
	for try := 0; ; try++ {
		before := w.counters(t).Stale
		werr, got := w.sendOnce(t, req, fault)
		if w.counters(t).Stale == before || try == 4 {
			return werr, got
		}
	}
}

func (w *wireInjector) sendOnce(t *testing.T, req string, fault uint32) (error, []byte) {
	t.Helper()
	if err := w.objs.InjectFault.Put(uint32(0), fault); err != nil {
		t.Fatal(err)
	}
	var ts InjectTraceState
	ts.Len = uint32(len(wireTracestate))
	for i := range len(wireTracestate) {
		ts.V[i] = int8(wireTracestate[i])
	}
	if err := w.objs.TraceStates.Put(InjectTraceKey{TraceHi: wireCtx.TraceHi, TraceLo: wireCtx.TraceLo}, ts); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	f, err := client.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.objs.ClientSocks.Update(cookie, uint64(fd), ebpf.UpdateAny); err != nil {
		t.Fatalf("add the client socket to the socket map: %v", err)
	}

	// The sk_msg program knows the writer by its thread: arm this one and
	// write from it.
	runtime.LockOSThread()
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ic := wireCtx
	ic.ArmedNs = uint64(now.Nano())
	// Keyed by pid_tgid: process in the high half, thread in the low.
	if err := w.objs.InjectTids.Put(uint64(unix.Getpid())<<32|uint64(unix.Gettid()), ic); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	_, werr := unix.Write(fd, []byte(req))
	runtime.UnlockOSThread()

	// Whatever the program did, the client's side ends here, so the server
	// reads to EOF and sees every byte that left.
	unix.Shutdown(fd, unix.SHUT_WR)
	client.Close()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatalf("read what the server received: %v", err)
	}
	w.segsIn = segmentsIn(t, server)
	return werr, got
}

// segmentsIn is the number of data segments conn has received.
func segmentsIn(t *testing.T, conn net.Conn) uint32 {
	t.Helper()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("read TCP_INFO: %v", ierr)
	}
	return info.Data_segs_in
}

func (w *wireInjector) counters(t *testing.T) InjectInjectCounters {
	t.Helper()
	var perCPU []InjectInjectCounters
	if err := w.objs.InjectCounters.Lookup(uint32(0), &perCPU); err != nil {
		t.Fatal(err)
	}
	var sum InjectInjectCounters
	for _, c := range perCPU {
		sum.Injected += c.Injected
		sum.PushError += c.PushError
		sum.Undone += c.Undone
		sum.Dropped += c.Dropped
		sum.Replaced += c.Replaced
		sum.Kept += c.Kept
		sum.Stale += c.Stale
	}
	return sum
}

// withHeaders is req with lines inserted after its request line.
func withHeaders(req string, lines ...string) string {
	i := strings.Index(req, "\r\n") + 2
	return req[:i] + strings.Join(lines, "") + req[i:]
}

// TestInjectNeverSendsUnwrittenBytes drives every failure path after a
// bpf_msg_push_data in the sk_msg program and checks the server receives,
// byte for byte, the request with only the headers that were completely
// written: pushed space the program could not fill is popped again (the
// kernel does not clear it, so it would carry stale kernel memory), and
// when the pop fails too the message is dropped rather than sent.
func TestInjectNeverSendsUnwrittenBytes(t *testing.T) {
	w := loadWireInjector(t)
	small := "POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	// A body past one page puts the message on several scatterlist entries.
	body := strings.Repeat("x", 10000)
	large := "POST /v1/chat/completions HTTP/1.1\r\nHost: llm\r\nContent-Length: 10000\r\n\r\n" + body
	tp, ts := wireTraceparent, "tracestate: "+wireTracestate+"\r\n"
	for _, tc := range []struct {
		name  string
		req   string
		fault uint32
		want  string // "" with drop: nothing may arrive
		drop  bool
	}{
		{"no fault", small, 0, withHeaders(small, tp, ts), false},
		{"no fault, large", large, 0, withHeaders(large, tp, ts), false},
		{"traceparent pull", small, faultTPPull, small, false},
		{"traceparent pull, large", large, faultTPPull, large, false},
		{"traceparent bounds", small, faultTPBounds, small, false},
		{"tracestate pull", small, faultTSPull, withHeaders(small, tp), false},
		{"tracestate bounds", small, faultTSBounds, withHeaders(small, tp), false},
		{"tracestate copy", small, faultTSCopy, withHeaders(small, tp), false},
		{"tracestate copy, large", large, faultTSCopy, withHeaders(large, tp), false},
		{"tracestate end", small, faultTSEnd, withHeaders(small, tp), false},
		{"traceparent pull, pop fails", small, faultTPPull | faultPop, "", true},
		{"tracestate copy, pop fails", small, faultTSCopy | faultPop, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.counters(t)
			werr, got := w.send(t, tc.req, tc.fault)
			after := w.counters(t)
			if tc.drop {
				if werr == nil {
					t.Error("the write succeeded although the pushed bytes could not be removed")
				}
				if len(got) != 0 {
					t.Errorf("the server received %d bytes of a dropped message: %q", len(got), got)
				}
				if after.Dropped-before.Dropped != 1 {
					t.Errorf("dropped counter moved by %d, want 1", after.Dropped-before.Dropped)
				}
				return
			}
			if werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("the server received %d bytes, want %d:\n got %q\nwant %q", len(got), len(tc.want), clip(got), clip([]byte(tc.want)))
			}
			if tc.fault != 0 && after.Undone-before.Undone != 1 {
				t.Errorf("undone counter moved by %d, want 1", after.Undone-before.Undone)
			}
		})
	}
}

// clip shortens a long message for a failure report.
func clip(b []byte) []byte {
	if len(b) > 400 {
		return append(b[:400:400], "..."...)
	}
	return b
}

// TestInjectExistingTraceContext: an application that forwards its
// caller's traceparent (and maybe tracestate) itself gets no second one,
// which would split the trace at the next hop: a version-00 value is
// overwritten in place with this span's, a value that cannot be (another
// length) is left alone with nothing added, and an application's own
// tracestate is never joined by another.
func TestInjectExistingTraceContext(t *testing.T) {
	w := loadWireInjector(t)
	const (
		theirs    = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		ours      = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		theirsV1  = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future"
		theirTS   = "vendor=theirs"
		line      = "POST /v1/chat/completions HTTP/1.1\r\n"
		rest      = "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
		pad       = "X-Padding: " // a long header block before the traceparent
		ourTSLine = "tracestate: " + wireTracestate + "\r\n"
	)
	long := pad + strings.Repeat("p", 600) + "\r\n"
	for _, tc := range []struct {
		name           string
		req, want      string
		replaced, kept uint64
	}{
		{"forwarded traceparent", line + "Host: llm\r\nTraceparent: " + theirs + "\r\n" + rest,
			line + ourTSLine + "Host: llm\r\nTraceparent: " + ours + "\r\n" + rest, 1, 0},
		{"forwarded traceparent first, lower case, no space", line + "traceparent:" + theirs + "\r\nHost: llm\r\n" + rest,
			line + ourTSLine + "traceparent:" + ours + "\r\nHost: llm\r\n" + rest, 1, 0},
		{"forwarded traceparent after 600 bytes of headers", line + "Host: llm\r\n" + long + "Traceparent: " + theirs + "\r\n" + rest,
			line + ourTSLine + "Host: llm\r\n" + long + "Traceparent: " + ours + "\r\n" + rest, 1, 0},
		{"forwarded traceparent and tracestate", line + "Host: llm\r\nTraceparent: " + theirs + "\r\nTracestate: " + theirTS + "\r\n" + rest,
			line + "Host: llm\r\nTraceparent: " + ours + "\r\nTracestate: " + theirTS + "\r\n" + rest, 1, 0},
		{"own tracestate only", line + "Host: llm\r\nTracestate: " + theirTS + "\r\n" + rest,
			line + wireTraceparent + "Host: llm\r\nTracestate: " + theirTS + "\r\n" + rest, 0, 0},
		{"a later version's traceparent", line + "Host: llm\r\nTraceparent: " + theirsV1 + "\r\n" + rest,
			line + "Host: llm\r\nTraceparent: " + theirsV1 + "\r\n" + rest, 0, 1},
		{"traceparent in the body only", line + "Host: llm\r\nContent-Length: 28\r\n\r\n\ntraceparent: " + theirs[:14],
			line + wireTraceparent + ourTSLine + "Host: llm\r\nContent-Length: 28\r\n\r\n\ntraceparent: " + theirs[:14], 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.counters(t)
			werr, got := w.send(t, tc.req, 0)
			after := w.counters(t)
			if werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if string(got) != tc.want {
				t.Errorf("the server received\n %q\nwant\n %q", got, tc.want)
			}
			head, _, _ := strings.Cut(string(got), "\r\n\r\n")
			if n := strings.Count(strings.ToLower(head), "traceparent:"); n != 1 {
				t.Errorf("%d traceparent lines arrived, want 1", n)
			}
			if d := after.Replaced - before.Replaced; d != tc.replaced {
				t.Errorf("replaced counter moved by %d, want %d", d, tc.replaced)
			}
			if d := after.Kept - before.Kept; d != tc.kept {
				t.Errorf("kept counter moved by %d, want %d", d, tc.kept)
			}
		})
	}
}

// TestInjectOneSegment: a request that got header lines inserted leaves in
// one TCP segment, as the application wrote it. bpf_msg_push_data splits
// the message's scatterlist around each insertion and the kernel sends
// every piece as a segment of its own on a TCP_NODELAY socket, so without
// the program joining the pieces again a request with a traceparent and a
// tracestate would arrive in four segments (three with only a
// traceparent, or with a tracestate added to a forwarded traceparent).
func TestInjectOneSegment(t *testing.T) {
	w := loadWireInjector(t)
	const (
		line = "POST /v1/chat/completions HTTP/1.1\r\n"
		rest = "Host: llm\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
		// A forwarded traceparent: overwritten in place, a tracestate pushed.
		forwarded = "Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
	)
	for _, tc := range []struct {
		name, req string
	}{
		{"traceparent and tracestate pushed", line + rest},
		{"traceparent pushed, own tracestate", line + "Tracestate: vendor=theirs\r\n" + rest},
		{"tracestate pushed beside a forwarded traceparent", line + forwarded + rest},
		{"body on the same page", line + strings.Replace(rest, "Content-Length: 2\r\n\r\n{}", "Content-Length: 1500\r\n\r\n", 1) + strings.Repeat("x", 1500)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.counters(t)
			werr, got := w.send(t, tc.req, 0)
			after := w.counters(t)
			if werr != nil {
				t.Fatalf("write: %v", werr)
			}
			if after.Injected+after.Replaced == before.Injected+before.Replaced {
				t.Fatal("nothing was inserted or replaced: the test did not exercise a push")
			}
			if len(got) <= len(tc.req) {
				t.Fatalf("the server received %d bytes, no more than the %d written: no header was inserted", len(got), len(tc.req))
			}
			if w.segsIn != 1 {
				t.Errorf("the request (%d bytes) arrived in %d segments, want 1", len(got), w.segsIn)
			}
		})
	}
}
