package config

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// TestConfigRejectsNonFiniteNumbers: NaN compares false with everything,
// so `rate: .nan` once passed the 0..1 check, was applied, and broke every
// later attach.
func TestConfigRejectsNonFiniteNumbers(t *testing.T) {
	for _, v := range []string{".nan", ".NaN", ".inf", "-.inf", "+.Inf"} {
		doc := "observability:\n  tracing:\n    enabled: true\n    sampling:\n      type: probabilistic\n      rate: " + v + "\n"
		_, err := Parse([]byte(doc))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "sampling.rate") {
			t.Errorf("rate %s: got %v, want a config error naming sampling.rate", v, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Tracing.Sampling = Sampling{Type: SamplingProbabilistic, Rate: math.NaN()}
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("Validate accepted a NaN rate set by code: %v", err)
	}
}
