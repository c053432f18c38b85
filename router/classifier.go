package router

import (
	"bufio"
	_ "embed"
	"fmt"
	"math"
	"slices"
	"strings"
)

// trainingSet is the labelled prompts the classifier learns from, embedded
// so the binary runs from any directory. Format: "category<TAB>prompt" per
// line; # starts a comment.
//
//go:embed testdata/train.tsv
var trainingSet string

// ClassifierName is the classifier type reported in Classification.
const ClassifierName = "hashed-ngram-centroid"

// fallbackCategory is reported for text with no usable features.
const fallbackCategory = "other"

// softmaxTemperature turns cosine similarities (which differ by a few
// hundredths between close categories) into a peaked probability.
const softmaxTemperature = 0.05

// Example is one labelled prompt.
type Example struct {
	Category, Text string
}

// ParseExamples reads "category<TAB>prompt" lines.
func ParseExamples(data string) ([]Example, error) {
	var out []Example
	sc := bufio.NewScanner(strings.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		cat, text, ok := strings.Cut(s, "\t")
		if !ok || strings.TrimSpace(cat) == "" || strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("examples line %d: want \"category<TAB>prompt\", got %q", line, s)
		}
		out = append(out, Example{Category: strings.TrimSpace(cat), Text: strings.TrimSpace(text)})
	}
	return out, sc.Err()
}

// Classifier is a nearest-centroid classifier over hashed n-gram
// embeddings weighted by inverse document frequency. It is immutable after
// training, so it is safe for concurrent use.
type Classifier struct {
	categories []string
	centroids  [][]float32
	idf        []float32
}

// TrainClassifier builds centroids from labelled examples.
func TrainClassifier(examples []Example) (*Classifier, error) {
	if len(examples) == 0 {
		return nil, fmt.Errorf("train classifier: no examples")
	}
	// Document frequency per bucket gives the IDF weights: features that
	// occur in many prompts of all categories say little about any one.
	df := make([]float64, embedDim)
	for _, ex := range examples {
		seen := map[int]bool{}
		for _, f := range features(ex.Text) {
			if !seen[f.bucket] {
				seen[f.bucket] = true
				df[f.bucket]++
			}
		}
	}
	n := float64(len(examples))
	idf := make([]float32, embedDim)
	for i := range idf {
		idf[i] = float32(math.Log((1 + n) / (1 + df[i])))
	}
	c := &Classifier{idf: idf}
	index := map[string]int{}
	for _, ex := range examples {
		i, ok := index[ex.Category]
		if !ok {
			i = len(c.categories)
			index[ex.Category] = i
			c.categories = append(c.categories, ex.Category)
			c.centroids = append(c.centroids, make([]float32, embedDim))
		}
		v := embed(ex.Text, idf)
		for j, x := range v {
			c.centroids[i][j] += x
		}
	}
	for _, cen := range c.centroids {
		normalize(cen)
	}
	return c, nil
}

// Categories lists the categories the classifier knows, in training order.
func (c *Classifier) Categories() []string { return slices.Clone(c.categories) }

// Classify returns the nearest category, its softmax confidence and the
// cosine similarity to its centroid.
func (c *Classifier) Classify(text string) Classification {
	v := embed(text, c.idf)
	best, bestSim := -1, math.Inf(-1)
	sims := make([]float64, len(c.centroids))
	for i, cen := range c.centroids {
		sims[i] = cosine(v, cen)
		if sims[i] > bestSim {
			best, bestSim = i, sims[i]
		}
	}
	if best < 0 || bestSim <= 0 {
		return Classification{Category: fallbackCategory, Classifier: ClassifierName}
	}
	var z float64
	for _, s := range sims {
		z += math.Exp((s - bestSim) / softmaxTemperature)
	}
	return Classification{
		Category:   c.categories[best],
		Confidence: 1 / z,
		Classifier: ClassifierName,
		Similarity: bestSim,
	}
}
