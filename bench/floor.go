package main

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/routerscope/routerscope/probes"
)

// floorSymbol is the fixture function the no-op uprobes go on.
const floorSymbol = "main.target"

// Floor is the bare cost of a uprobe hit, by how the kernel handles the
// probed instruction: measured with a program that does nothing.
type Floor struct {
	// BaselineNs is a call of the fixture function with no uprobe.
	BaselineNs float64
	// EmulatedNs is the added cost of a uprobe on the PUSH after the
	// stack check, which the kernel emulates (one trap).
	EmulatedNs float64
	// SteppedNs is the added cost of a uprobe on the CMP at the symbol's
	// address, which the kernel single-steps out of line (two traps).
	SteppedNs float64
	// RetNs is the added cost of a uprobe on the RET, also single-stepped.
	RetNs float64
	// Calls per measurement and rounds (the median round is kept).
	Calls, Rounds int
}

// measureFloor runs the fixture and times calls with no uprobe and with a
// no-op uprobe on each kind of instruction, interleaved over rounds.
func measureFloor(fixture string, calls, rounds int) (Floor, error) {
	fl := Floor{Calls: calls, Rounds: rounds}
	bin, err := probes.OpenBinary(fixture)
	if err != nil {
		return fl, err
	}
	fn, err := bin.Function(floorSymbol)
	bin.Close()
	if err != nil {
		return fl, err
	}
	if !fn.EntryEmulated || fn.EntryOffset == fn.SymbolOffset || len(fn.ReturnOffsets) != 1 {
		return fl, fmt.Errorf("floor fixture %s: want a stack check, an emulated instruction after it and one RET; got entry %#x (emulated %v), symbol %#x, %d RETs",
			floorSymbol, fn.EntryOffset, fn.EntryEmulated, fn.SymbolOffset, len(fn.ReturnOffsets))
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fl, fmt.Errorf("remove the memlock limit: %w", err)
	}
	// The whole program: r0 = 0; exit. What remains is the trap and the
	// kernel's uprobe dispatch.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Kprobe, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return fl, fmt.Errorf("load the no-op uprobe program: %w", err)
	}
	defer prog.Close()
	ex, err := link.OpenExecutable(fixture)
	if err != nil {
		return fl, fmt.Errorf("open %s for uprobes: %w", fixture, err)
	}

	cmd := exec.Command(fixture)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fl, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fl, err
	}
	if err := cmd.Start(); err != nil {
		return fl, fmt.Errorf("start floor fixture: %w", err)
	}
	defer func() {
		stdin.Close()
		_ = cmd.Wait()
	}()
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		return fl, fmt.Errorf("floor fixture did not start: %q", out.Text())
	}
	time1 := func() (float64, error) {
		if _, err := fmt.Fprintf(stdin, "%d\n", calls); err != nil {
			return 0, fmt.Errorf("ask the floor fixture: %w", err)
		}
		if !out.Scan() {
			return 0, fmt.Errorf("floor fixture: no answer: %w", io.ErrUnexpectedEOF)
		}
		return strconv.ParseFloat(strings.TrimSpace(out.Text()), 64)
	}
	timeAt := func(off uint64) (float64, error) {
		if off == 0 {
			return time1()
		}
		l, err := ex.Uprobe("", prog, &link.UprobeOptions{Address: off, PID: cmd.Process.Pid})
		if err != nil {
			return 0, fmt.Errorf("attach no-op uprobe at %#x: %w", off, err)
		}
		defer l.Close()
		return time1()
	}
	if _, err := time1(); err != nil { // warm-up
		return fl, err
	}
	offsets := []uint64{0, fn.EntryOffset, fn.SymbolOffset, fn.ReturnOffsets[0]}
	samples := make([][]float64, len(offsets))
	for range rounds {
		for i, off := range offsets {
			ns, err := timeAt(off)
			if err != nil {
				return fl, err
			}
			samples[i] = append(samples[i], ns)
		}
	}
	med := make([]float64, len(samples))
	for i, s := range samples {
		med[i] = median(s)
	}
	fl.BaselineNs = med[0]
	fl.EmulatedNs, fl.SteppedNs, fl.RetNs = med[1]-med[0], med[2]-med[0], med[3]-med[0]
	return fl, nil
}

func median(s []float64) float64 {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}
