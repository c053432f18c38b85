package export

import (
	"fmt"
	"testing"
	"time"

	"github.com/routerscope/routerscope/agent/spans/spantest"
	"github.com/routerscope/routerscope/internal/otlptest"
	"github.com/routerscope/routerscope/probes"
)

// TestInvalidUTF8DoesNotLoseTheBatch is the case: a few requests
// with invalid UTF-8 among good ones, all in one OTLP batch. Unrepaired,
// the exporter cannot marshal the batch and every span in it is lost.
func TestInvalidUTF8DoesNotLoseTheBatch(t *testing.T) {
	rcv := otlptest.StartT(t)
	cfg := spantest.OTLPConfig(rcv.Endpoint())
	var evs []probes.Event
	const n = 50
	for i := range n {
		req := spantest.Request(uint32(100+i), byte(i), spantest.BaseTime.Add(time.Duration(i)*time.Millisecond))
		if i%10 == 3 {
			req[0].Values = []probes.Value{spantest.Str(fmt.Sprintf("evil-%d-\xff", i))}
		}
		evs = append(evs, req...)
	}
	pipe := replay(t, cfg, nil, evs)
	if got := len(rcv.Spans()); got != 2*n {
		t.Fatalf("collector received %d spans of %d; pipeline %+v", got, 2*n, pipe.Stats())
	}
	if st := pipe.Stats(); st.Failed != 0 || st.Exported != 2*n {
		t.Errorf("stats %+v", st)
	}
}
