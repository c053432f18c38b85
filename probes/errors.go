package probes

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers test with errors.Is. Every error the package
// returns for these conditions wraps one of them and says which probe,
// symbol or value it was about.
var (
	// ErrSymbolNotFound: the binary has no function of that name.
	ErrSymbolNotFound = errors.New("symbol not found")
	// ErrInlined: the function exists in the source (DWARF knows it) but
	// the compiler inlined every call, so there is no body to probe.
	ErrInlined = errors.New("function inlined away")
	// ErrNoDWARF: the binary was built without debug info (-ldflags=-w),
	// which reading arguments and fields needs.
	ErrNoDWARF = errors.New("binary has no DWARF debug info")
	// ErrNotSupported: a value the kernel cannot read (a float in a
	// register, an unsupported type or architecture).
	ErrNotSupported = errors.New("not supported")
	// ErrInvalidSpec: the probe spec is malformed or inconsistent.
	ErrInvalidSpec = errors.New("invalid probe spec")
)

// SymbolNotFoundError is the ErrSymbolNotFound error with the close names
// found in the binary, so a tool can offer them.
type SymbolNotFoundError struct {
	Symbol string
	Binary string
	// Suggestions are up to three function names of the binary that look
	// like Symbol, best first.
	Suggestions []string
}

// Error implements error.
func (e *SymbolNotFoundError) Error() string {
	msg := fmt.Sprintf("function %s: %v in %s", e.Symbol, ErrSymbolNotFound, e.Binary)
	if len(e.Suggestions) > 0 {
		msg += "; did you mean " + strings.Join(e.Suggestions, " or ") + "?"
	} else {
		msg += "; list the binary's functions with `go tool nm " + e.Binary + "` and use the full import-path name"
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrSymbolNotFound) true.
func (e *SymbolNotFoundError) Unwrap() error { return ErrSymbolNotFound }

// permissionHint ends a permission error of loading or attaching: what the
// agent needs, as the README and the DaemonSet manifest document it.
const permissionHint = "loading and attaching eBPF programs needs CAP_BPF and CAP_PERFMON (or root); " +
	"reading other users' processes needs CAP_SYS_PTRACE, trace-context injection CAP_NET_ADMIN"
