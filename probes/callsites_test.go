package probes

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestFindCalls: hand-assembled bodies, where only the direct calls to the
// target count (not calls elsewhere, not other instructions).
func TestFindCalls(t *testing.T) {
	const addr, target = 0x401000, 0x402000
	t.Run("amd64", func(t *testing.T) {
		call := func(at, to uint64) []byte { // CALL rel32: E8 and the target minus the next address
			b := []byte{0xe8, 0, 0, 0, 0}
			binary.LittleEndian.PutUint32(b[1:], uint32(int32(int64(to)-int64(at+5))))
			return b
		}
		code := []byte{0x90}                           // NOP at +0
		code = append(code, call(addr+1, target)...)   // +1
		code = append(code, call(addr+6, 0x403000)...) // +6: elsewhere
		code = append(code, 0x48, 0x89, 0xe5)          // +11: MOVQ SP, BP
		code = append(code, call(addr+14, target)...)  // +14
		code = append(code, 0xc3)                      // RET
		got, err := amd64{}.FindCalls(code, addr, target)
		if err != nil || !slices.Equal(got, []int{1, 14}) {
			t.Errorf("FindCalls = %v, %v; want [1 14]", got, err)
		}
	})
	t.Run("arm64", func(t *testing.T) {
		bl := func(at, to uint64) uint32 { return 0x94000000 | uint32(int32(int64(to)-int64(at))/4)&0x3ffffff }
		words := []uint32{
			0xd503201f,          // NOP at +0
			bl(addr+4, target),  // +4
			bl(addr+8, addr),    // +8: a call backwards, elsewhere
			0x14000000 | 0x3ff,  // +12: B, not a call
			bl(addr+16, target), // +16
			0xd65f03c0,          // RET
		}
		code := make([]byte, 4*len(words))
		for i, w := range words {
			binary.LittleEndian.PutUint32(code[4*i:], w)
		}
		got, err := arm64{}.FindCalls(code, addr, target)
		if err != nil || !slices.Equal(got, []int{4, 16}) {
			t.Errorf("FindCalls = %v, %v; want [4 16]", got, err)
		}
	})
}

// TestCallSitesHeaderLine: in real net/http binaries of both
// architectures, readMIMEHeader calls canonicalMIMEHeaderKey directly, so
// the header line probe goes on that call, an instruction the kernel
// emulates, and not on the callee's entry (which every Header.Get and
// Set with a non-canonical name reaches too).
func TestCallSitesHeaderLine(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) {
			out := filepath.Join(fixtureDir, "nethttp-calls-"+goarch)
			cmd := exec.Command("go", "build", "-o", out, "./testdata/nethttp")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build testdata/nethttp for %s: %v\n%s", goarch, err, msg)
			}
			b, err := OpenBinary(out)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			callee, err := b.Function(symHeaderLine)
			if err != nil {
				t.Fatal(err)
			}
			sites, err := b.CallSites(symHeaderBlock, symHeaderLine)
			if err != nil {
				t.Fatal(err)
			}
			if len(sites) == 0 {
				t.Fatalf("no call from %s to %s found", symHeaderBlock, symHeaderLine)
			}
			caller, err := b.Function(symHeaderBlock)
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range sites {
				if off <= caller.SymbolOffset || off >= caller.SymbolOffset+caller.Size {
					t.Errorf("call site %#x outside %s [%#x, %#x)", off, symHeaderBlock, caller.SymbolOffset, caller.SymbolOffset+caller.Size)
					continue
				}
				code := make([]byte, 16)
				if _, err := b.file.ReadAt(code, int64(off)); err != nil {
					t.Fatal(err)
				}
				at := caller.Address + (off - caller.SymbolOffset)
				switch goarch {
				case "amd64":
					if code[0] != 0xe8 || at+5+uint64(int64(int32(binary.LittleEndian.Uint32(code[1:])))) != callee.Address {
						t.Errorf("%#x: % x is no CALL to %#x", off, code[:5], callee.Address)
					}
				case "arm64":
					w := binary.LittleEndian.Uint32(code)
					imm := int64(int32(w<<6) >> 6) // sign-extended imm26
					if w&0xfc000000 != 0x94000000 || at+uint64(imm*4) != callee.Address {
						t.Errorf("%#x: %08x is no BL to %#x", off, w, callee.Address)
					}
				}
			}
			// A function that does not call it has no sites.
			none, err := b.CallSites(symConnWrite, symHeaderLine)
			if err != nil || len(none) != 0 {
				t.Errorf("CallSites from %s = %v, %v; want none", symConnWrite, none, err)
			}
		})
	}
}
