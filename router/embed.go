package router

import (
	"hash/fnv"
	"math"
	"strings"
	"unicode"
)

// embedDim is the width of the hashed feature space. 2048 buckets keep
// collisions rare for prompt-sized texts while a vector stays 8 KiB.
const embedDim = 2048

// Feature weights: whole words carry the meaning, word pairs add phrase
// context, and character trigrams let "derivative" match "derivatives".
const (
	weightWord    = 1.0
	weightBigram  = 0.5
	weightTrigram = 0.4
)

// stopwords are dropped because they appear in every category and would
// pull all centroids together.
var stopwords = map[string]bool{
	"a": true, "an": true, "the": true, "is": true, "are": true, "was": true, "were": true,
	"be": true, "of": true, "to": true, "in": true, "on": true, "for": true, "and": true,
	"or": true, "what": true, "how": true, "why": true, "does": true, "do": true, "can": true,
	"you": true, "i": true, "me": true, "my": true, "it": true, "its": true, "this": true,
	"that": true, "with": true, "as": true, "by": true, "at": true, "from": true, "which": true,
	"explain": true, "please": true, "tell": true, "about": true, "between": true, "give": true,
	"describe": true, "who": true, "when": true, "if": true, "we": true, "should": true,
	"would": true, "there": true, "their": true, "they": true, "has": true, "have": true, "some": true,
}

// tokenize lower-cases text and splits it into words of letters and digits.
func tokenize(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// feature is one hashed feature: its bucket, sign and weight.
type feature struct {
	bucket int
	sign   float32
	weight float32
}

func hashFeature(s string, w float32) feature {
	h := fnv.New64a()
	h.Write([]byte(s))
	v := h.Sum64()
	sign := float32(1)
	// The sign hash spreads collisions around zero instead of stacking them.
	if v>>63 == 1 {
		sign = -1
	}
	return feature{bucket: int(v % embedDim), sign: sign, weight: w}
}

// features extracts the hashed features of text.
func features(text string) []feature {
	var words []string
	for _, t := range tokenize(text) {
		if !stopwords[t] {
			words = append(words, t)
		}
	}
	out := make([]feature, 0, len(words)*6)
	for i, w := range words {
		out = append(out, hashFeature("w:"+w, weightWord))
		if i > 0 {
			out = append(out, hashFeature("b:"+words[i-1]+" "+w, weightBigram))
		}
		padded := "^" + w + "$"
		r := []rune(padded)
		for j := 0; j+3 <= len(r); j++ {
			out = append(out, hashFeature("c:"+string(r[j:j+3]), weightTrigram))
		}
	}
	return out
}

// embed maps text to a unit vector; idf, when non-nil, scales each bucket.
// An empty text gives the zero vector.
func embed(text string, idf []float32) []float32 {
	v := make([]float32, embedDim)
	for _, f := range features(text) {
		w := f.weight
		if idf != nil {
			w *= idf[f.bucket]
		}
		v[f.bucket] += f.sign * w
	}
	normalize(v)
	return v
}

func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= inv
	}
}

// cosine of two unit vectors.
func cosine(a, b []float32) float64 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return float64(s)
}
