package agent

import (
	"errors"
	"fmt"
	"testing"
)

// TestErrorFieldSplitsJoinedErrors: joined problems are logged as a list,
// one element each, not one string with literal \n in it.
func TestErrorFieldSplitsJoinedErrors(t *testing.T) {
	log, logs := observedLogger()
	joined := fmt.Errorf("attach: %w", errors.Join(errors.New("probes[0]: symbol not found"), errors.New("probes[1]: inlined")))
	log.Error("x", ErrorField(joined))
	log.Error("y", ErrorField(errors.New("one line")))
	all := logs.All()
	list, ok := all[0].ContextMap()["error"].([]interface{})
	if !ok || len(list) != 2 || list[1] != "probes[1]: inlined" {
		t.Errorf("joined error logged as %#v", all[0].ContextMap()["error"])
	}
	if s, ok := all[1].ContextMap()["error"].(string); !ok || s != "one line" {
		t.Errorf("single error logged as %#v", all[1].ContextMap()["error"])
	}
}
