package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/spans/spantest"
)

func TestErrorThrottle(t *testing.T) {
	now := spantest.BaseTime
	type report struct{ failed, suppressed int }
	var reports []report
	th := newErrorThrottle(10*time.Second, func(err error, failed, suppressed int) {
		reports = append(reports, report{failed, suppressed})
	})
	th.now = func() time.Time { return now }
	boom := errors.New("connection refused")
	th.observe(boom, 5) // reported
	now = now.Add(time.Second)
	th.observe(boom, 3) // suppressed
	now = now.Add(time.Second)
	th.observe(boom, 2) // suppressed
	now = now.Add(10 * time.Second)
	th.observe(boom, 1) // reported with the two suppressed
	want := []report{{5, 0}, {1 + 3 + 2, 2}}
	if len(reports) != len(want) || reports[0] != want[0] || reports[1] != want[1] {
		t.Fatalf("reports %+v, want %+v", reports, want)
	}
}
