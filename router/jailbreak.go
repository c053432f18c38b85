package router

import "regexp"

// jailbreakRule is one scored heuristic: a pattern, the attack type it
// indicates and how strongly (0..1).
type jailbreakRule struct {
	re     *regexp.Regexp
	kind   string
	weight float64
}

// jailbreakGuard scores prompts against heuristics; it is immutable.
type jailbreakGuard struct {
	rules []jailbreakRule
}

func newJailbreakGuard() *jailbreakGuard {
	r := func(pattern, kind string, w float64) jailbreakRule {
		return jailbreakRule{re: regexp.MustCompile(`(?i)` + pattern), kind: kind, weight: w}
	}
	return &jailbreakGuard{rules: []jailbreakRule{
		r(`\b(ignore|disregard|forget|override)\b.{0,30}\b(all |any |the |your )?(previous|prior|above|earlier|system)\b.{0,20}\b(instructions?|prompts?|rules|guidelines)`, "instruction_override", 0.85),
		r(`\bdo anything now\b|\bDAN\b|\bjailbr(ea|o)k(en)?\b`, "roleplay_jailbreak", 0.8),
		r(`\b(developer|god|admin|debug|unrestricted) mode\b`, "mode_switch", 0.6),
		r(`\b(pretend|act as|you are now|roleplay as)\b.{0,60}\b(no|without|free of|unfiltered|uncensored)\b.{0,20}\b(restrictions?|limits|filters?|rules|guidelines|censorship)`, "roleplay_jailbreak", 0.7),
		r(`\b(bypass|circumvent|disable|turn off|get around)\b.{0,25}\b(safety|content|moderation|security)\b.{0,15}\b(filters?|polic(y|ies)|guidelines|guardrails|restrictions)`, "guardrail_bypass", 0.75),
		r(`\b(reveal|print|show|repeat|leak)\b.{0,25}\b(your|the)\b.{0,10}\b(system prompt|hidden instructions|initial instructions)`, "prompt_leak", 0.65),
		r(`\bno (ethical|moral|legal) (guidelines|constraints|limits|restrictions)\b`, "roleplay_jailbreak", 0.5),
		r(`\b(hypothetically|in a fictional world|for a story)\b.{0,80}\b(how to (make|build|synthesize)|step[- ]by[- ]step)\b.{0,40}\b(bomb|explosive|weapon|malware|meth)`, "harmful_fiction", 0.6),
	}}
}

// Score combines every matching rule as a noisy-or, so two weak signals
// together outweigh one, and returns the strongest rule's type.
func (g *jailbreakGuard) Score(text string) (score float64, kind string) {
	miss, strongest := 1.0, 0.0
	for _, rule := range g.rules {
		if rule.re.MatchString(text) {
			miss *= 1 - rule.weight
			if rule.weight > strongest {
				strongest, kind = rule.weight, rule.kind
			}
		}
	}
	return 1 - miss, kind
}
