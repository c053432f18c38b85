package router

import (
	"container/list"
	"sync"
	"time"
)

// semanticCache maps prompt embeddings to answers. A lookup returns the
// most similar live entry of the same scope (the requested model, so "auto"
// and an explicit model never share answers) when its cosine similarity
// reaches the threshold. It evicts the least recently used entry when full
// and drops entries older than the TTL.
type semanticCache struct {
	threshold float64
	max       int
	ttl       time.Duration
	now       func() time.Time

	mu  sync.Mutex
	lru *list.List // of *cacheEntry, most recently used first
}

type cacheEntry struct {
	scope  string
	prompt string
	vec    []float32
	answer string
	model  string
	stored time.Time
}

func newSemanticCache(cfg CacheConfig, now func() time.Time) *semanticCache {
	return &semanticCache{
		threshold: cfg.SimilarityThreshold,
		max:       cfg.MaxEntries,
		ttl:       time.Duration(cfg.TTLSeconds) * time.Second,
		now:       now,
		lru:       list.New(),
	}
}

// lookup finds the best entry for prompt in scope.
func (c *semanticCache) lookup(scope, prompt string) CacheResult {
	vec := embed(prompt, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	res := CacheResult{Threshold: c.threshold, Entries: c.lru.Len()}
	var best *list.Element
	for e := c.lru.Front(); e != nil; e = e.Next() {
		ent := e.Value.(*cacheEntry)
		if ent.scope != scope {
			continue
		}
		sim := cosine(vec, ent.vec)
		// An identical prompt is a hit even when it has no features.
		if ent.prompt == prompt {
			sim = 1
		}
		if sim > res.Similarity || best == nil {
			res.Similarity, best = sim, e
		}
	}
	if best != nil && res.Similarity >= c.threshold {
		ent := best.Value.(*cacheEntry)
		c.lru.MoveToFront(best)
		res.Hit, res.Answer, res.Model = true, ent.answer, ent.model
	}
	return res
}

// store adds an answer, replacing an entry with the same scope and prompt.
func (c *semanticCache) store(scope, prompt, answer, model string) {
	vec := embed(prompt, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.Front(); e != nil; e = e.Next() {
		if ent := e.Value.(*cacheEntry); ent.scope == scope && ent.prompt == prompt {
			c.lru.Remove(e)
			break
		}
	}
	c.lru.PushFront(&cacheEntry{scope: scope, prompt: prompt, vec: vec, answer: answer, model: model, stored: c.now()})
	for c.lru.Len() > c.max {
		c.lru.Remove(c.lru.Back())
	}
}

// len counts live entries.
func (c *semanticCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked()
	return c.lru.Len()
}

func (c *semanticCache) expireLocked() {
	if c.ttl <= 0 {
		return
	}
	cutoff := c.now().Add(-c.ttl)
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*cacheEntry).stored.Before(cutoff) {
			c.lru.Remove(e)
		}
		e = next
	}
}
