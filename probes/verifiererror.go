package probes

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// verifierLogError is a load error the kernel verifier gave: its message
// carries the verifier's whole log (the *ebpf.VerifierError's own message
// keeps only its end), and it unwraps to the load error, so callers still
// find the *ebpf.VerifierError with errors.As, and its cause with errors.Is.
type verifierLogError struct {
	op   string // what was being done, "load the capture programs"
	verr *ebpf.VerifierError
	err  error // the load error that holds verr
}

// Error implements error.
func (e *verifierLogError) Error() string { return fmt.Sprintf("%s: %+v", e.op, e.verr) }

// Unwrap returns the load error.
func (e *verifierLogError) Unwrap() error { return e.err }

// withVerifierLog returns err as a verifierLogError when the verifier
// rejected a program, and nil otherwise.
func withVerifierLog(op string, err error) error {
	var verr *ebpf.VerifierError
	if !errors.As(err, &verr) {
		return nil
	}
	return &verifierLogError{op: op, verr: verr, err: err}
}
