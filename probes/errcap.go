package probes

import (
	"errors"
	"fmt"
)

// maxReportedErrors bounds the problems one validation or resolution
// reports: a spec with 5,000 missing symbols once took 27 s of CPU for
// suggestions and made one 2.3 MB log line. The first ones say what is
// wrong; the count says how much more is.
const maxReportedErrors = 20

// joinCapped joins at most maxReportedErrors errors and a last one
// counting the rest; errors.Is still sees the sentinels of those shown.
func joinCapped(errs []error) error {
	if len(errs) <= maxReportedErrors {
		return errors.Join(errs...)
	}
	shown := append(errs[:maxReportedErrors:maxReportedErrors], fmt.Errorf("... and %d more problems not shown", len(errs)-maxReportedErrors))
	return errors.Join(shown...)
}
