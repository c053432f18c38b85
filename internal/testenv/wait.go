package testenv

import (
	"testing"
	"time"
)

// waitLimit bounds a wait for a condition. It is generous on purpose: the
// test machine is shared, and the limit turns a hang into a failure, it
// does not measure speed.
const waitLimit = 30 * time.Second

// pollEvery is how often a condition is checked again.
const pollEvery = 10 * time.Millisecond

// Eventually polls cond until it holds, and fails the test naming what it
// waited for (what) when it still does not hold after 30 s.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(pollEvery)
	}
}
