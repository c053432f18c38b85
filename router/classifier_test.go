package router

import (
	"os"
	"testing"
)

// heldOutAccuracyFloor is the share of held-out prompts that must be
// classified correctly; the classifier scores above it with margin, so a
// regression in features or weighting shows here.
const (
	heldOutAccuracyFloor = 0.75
	blindAccuracyFloor   = 0.75
)

func trainedClassifier(t testing.TB) *Classifier {
	t.Helper()
	ex, err := ParseExamples(trainingSet)
	if err != nil {
		t.Fatal(err)
	}
	c, err := TrainClassifier(ex)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClassifierHeldOutAccuracy scores testdata/heldout.tsv. That set was
// looked at while the features and vocabulary were tuned, so its score
// flatters the classifier; TestClassifierBlindAccuracy is the honest one.
func TestClassifierHeldOutAccuracy(t *testing.T) {
	c := trainedClassifier(t)
	if got := len(c.Categories()); got != 14 {
		t.Fatalf("classifier knows %d categories, want the 14 MMLU-Pro ones: %v", got, c.Categories())
	}
	if acc := accuracy(t, c, "testdata/heldout.tsv"); acc < heldOutAccuracyFloor {
		t.Fatalf("held-out accuracy %.3f below floor %.2f", acc, heldOutAccuracyFloor)
	}
}

// TestClassifierBlindAccuracy scores testdata/blind.tsv: prompts written
// after tuning, without looking at the training data, never used to adjust
// anything. Chance is 1/14.
func TestClassifierBlindAccuracy(t *testing.T) {
	c := trainedClassifier(t)
	if acc := accuracy(t, c, "testdata/blind.tsv"); acc < blindAccuracyFloor {
		t.Fatalf("blind accuracy %.3f below floor %.2f", acc, blindAccuracyFloor)
	}
}

// accuracy classifies every prompt of a labelled file (none may be in the
// training set) and returns the share classified right.
func accuracy(t *testing.T, c *Classifier, path string) float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	held, err := ParseExamples(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(held) < 14 {
		t.Fatalf("%s has %d prompts: too few to measure", path, len(held))
	}
	train, _ := ParseExamples(trainingSet)
	trained := map[string]bool{}
	for _, ex := range train {
		trained[ex.Text] = true
	}
	correct := 0
	for _, ex := range held {
		if trained[ex.Text] {
			t.Fatalf("%s: prompt %q is also in the training set", path, ex.Text)
		}
		got := c.Classify(ex.Text)
		if got.Category == ex.Category {
			correct++
		} else {
			t.Logf("miss: %q: want %s, got %s (confidence %.2f)", ex.Text, ex.Category, got.Category, got.Confidence)
		}
	}
	acc := float64(correct) / float64(len(held))
	t.Logf("%s: accuracy %.3f (%d/%d)", path, acc, correct, len(held))
	return acc
}

func TestClassifierConfidenceAndFallback(t *testing.T) {
	c := trainedClassifier(t)
	got := c.Classify("Compute the integral of x^2 from 0 to 3 and the derivative of sin x")
	if got.Category != "math" {
		t.Fatalf("math prompt classified as %q", got.Category)
	}
	if got.Confidence <= 0 || got.Confidence > 1 || got.Classifier != ClassifierName {
		t.Fatalf("bad classification %+v", got)
	}
	empty := c.Classify("!!! ???")
	if empty.Category != fallbackCategory || empty.Confidence != 0 {
		t.Fatalf("featureless text: got %+v, want fallback %q with zero confidence", empty, fallbackCategory)
	}
}

func TestParseExamplesRejectsBadLine(t *testing.T) {
	if _, err := ParseExamples("math only-one-field\n"); err == nil {
		t.Fatal("line without a tab accepted")
	}
}
