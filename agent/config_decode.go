package agent

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file decodes the config's YAML node by node, so that every error
// names the full key path, the allowed keys and the expected type, which
// yaml.v3's KnownFields errors do not.

// field decodes one key's value; path is the key's full dotted path.
type field func(n *yaml.Node, path string) error

// decodeMapping checks that n is a mapping whose keys are all in fields, and
// decodes each.
func decodeMapping(n *yaml.Node, path string, fields map[string]field) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return typeError(path, "a mapping", n)
	}
	allowed := make([]string, 0, len(fields))
	for k := range fields {
		allowed = append(allowed, k)
	}
	sort.Strings(allowed)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		f, ok := fields[key]
		if !ok {
			return fmt.Errorf("%w: %s.%s (line %d): unknown key, allowed keys in %s: %s", ErrConfig, path, key, n.Content[i].Line, path, strings.Join(allowed, ", "))
		}
		if seen[key] {
			return fmt.Errorf("%w: %s.%s (line %d): key given twice", ErrConfig, path, key, n.Content[i].Line)
		}
		seen[key] = true
		if err := f(val, path+"."+key); err != nil {
			return err
		}
	}
	return nil
}

func decodeTracing(n *yaml.Node, t *Tracing) error {
	// A present block starts from the router's zero values for enabled and
	// provider-independent keys, and keeps the agent's defaults for the rest.
	t.Enabled = false
	return decodeMapping(n, "observability.tracing", map[string]field{
		"enabled":  boolField(&t.Enabled),
		"provider": stringField(&t.Provider),
		"exporter": func(n *yaml.Node, path string) error {
			return decodeMapping(n, path, map[string]field{
				"type":              stringField(&t.Exporter.Type),
				"endpoint":          stringField(&t.Exporter.Endpoint),
				"protocol":          stringField(&t.Exporter.Protocol),
				"format":            stringField(&t.Exporter.Format),
				"insecure":          boolField(&t.Exporter.Insecure),
				"headers":           stringMapField(&t.Exporter.Headers),
				"timeout":           durationField(&t.Exporter.Timeout),
				"ca_file":           stringField(&t.Exporter.CAFile),
				"reconnect_backoff": durationField(&t.Exporter.ReconnectBackoff),
			})
		},
		"sampling": func(n *yaml.Node, path string) error {
			typ, rate, rateSet := "", 0.0, false
			rateField := floatField(&rate)
			err := decodeMapping(n, path, map[string]field{
				"type": stringField(&typ),
				"rate": func(n *yaml.Node, path string) error {
					rateSet = true
					return rateField(n, path)
				},
			})
			if err != nil {
				return err
			}
			switch {
			case typ == SamplingProbabilistic && !rateSet:
				return fmt.Errorf("%w: %s.rate: required when sampling.type is probabilistic, a fraction in 0..1 such as 0.1", ErrConfig, path)
			case typ == "" && rateSet:
				// The guide's tuning snippets give only a rate
				// ("sampling: rate: 0.01"): that means probabilistic.
				typ = SamplingProbabilistic
			case typ == "":
				typ = SamplingAlwaysOn
			}
			t.Sampling.Type = typ
			if rateSet {
				t.Sampling.Rate = rate
			}
			return nil
		},
		"resource": func(n *yaml.Node, path string) error {
			return decodeMapping(n, path, map[string]field{
				"service_name":           stringField(&t.Resource.ServiceName),
				"service_version":        stringField(&t.Resource.ServiceVersion),
				"deployment_environment": stringField(&t.Resource.DeploymentEnvironment),
			})
		},
	})
}

func decodeAgent(n *yaml.Node, a *Agent) error {
	return decodeMapping(n, "routerscope", map[string]field{
		"targets": func(n *yaml.Node, path string) error {
			if isNull(n) {
				return nil
			}
			if n.Kind != yaml.SequenceNode {
				return typeError(path, "a list of {pid: N} or {binary: PATH}", n)
			}
			for i, item := range n.Content {
				var tg Target
				err := decodeMapping(item, fmt.Sprintf("%s[%d]", path, i), map[string]field{
					"pid":    intField(&tg.PID),
					"binary": stringField(&tg.Binary),
				})
				if err != nil {
					return err
				}
				a.Targets = append(a.Targets, tg)
			}
			return nil
		},
		"probes": stringListField(&a.Probes),
		"export": func(n *yaml.Node, path string) error {
			return decodeMapping(n, path, map[string]field{
				"queue_size":       intField(&a.Export.QueueSize),
				"max_batch_size":   intField(&a.Export.MaxBatchSize),
				"batch_timeout":    durationField(&a.Export.BatchTimeout),
				"shutdown_timeout": durationField(&a.Export.ShutdownTimeout),
			})
		},
		"max_span_age": durationField(&a.MaxSpanAge),
		"discovery":    func(n *yaml.Node, path string) error { return decodeDiscovery(n, path, &a.Discovery) },
		"metrics": func(n *yaml.Node, path string) error {
			return decodeMapping(n, path, map[string]field{
				"listen": stringField(&a.Metrics.Listen),
				"pprof":  boolField(&a.Metrics.Pprof),
			})
		},
		"watch_interval": durationField(&a.WatchInterval),
		"propagation": func(n *yaml.Node, path string) error {
			return decodeMapping(n, path, map[string]field{
				"extract": boolField(&a.Propagation.Extract),
				"inject":  boolField(&a.Propagation.Inject),
			})
		},
		"log_level":  stringField(&a.LogLevel),
		"log_format": stringField(&a.LogFormat),
		"kernel": func(n *yaml.Node, path string) error {
			return decodeMapping(n, path, map[string]field{
				"ring_buffer_bytes": intField(&a.Kernel.RingBufferBytes),
				"map_entries": func(n *yaml.Node, path string) error {
					if isNull(n) {
						return nil
					}
					if n.Kind != yaml.MappingNode {
						return typeError(path, "a mapping of map name to entries", n)
					}
					a.Kernel.MapEntries = map[string]int{}
					for i := 0; i+1 < len(n.Content); i += 2 {
						name := n.Content[i].Value
						var v int
						if err := intField(&v)(n.Content[i+1], path+"."+name); err != nil {
							return err
						}
						a.Kernel.MapEntries[name] = v
					}
					return nil
				},
			})
		},
	})
}

func decodeDiscovery(n *yaml.Node, path string, d *Discovery) error {
	return decodeMapping(n, path, map[string]field{
		"rules": func(n *yaml.Node, path string) error {
			return decodeList(n, path, "a list of rules", func(item *yaml.Node, path string) error {
				var r Rule
				fields := selectorFields(&r.Selector)
				fields["name"] = stringField(&r.Name)
				fields["probes"] = stringListField(&r.Probes)
				if err := decodeMapping(item, path, fields); err != nil {
					return err
				}
				d.Rules = append(d.Rules, r)
				return nil
			})
		},
		"exclude": func(n *yaml.Node, path string) error {
			return decodeList(n, path, "a list of selectors", func(item *yaml.Node, path string) error {
				var s Selector
				if err := decodeMapping(item, path, selectorFields(&s)); err != nil {
					return err
				}
				d.Exclude = append(d.Exclude, s)
				return nil
			})
		},
		"interval":       durationField(&d.Interval),
		"retry_interval": durationField(&d.RetryInterval),
		"max_processes":  intField(&d.MaxProcesses),
	})
}

func selectorFields(s *Selector) map[string]field {
	return map[string]field{
		"executable": stringField(&s.Executable),
		"comm":       stringField(&s.Comm),
		"cmdline":    stringField(&s.Cmdline),
		"port":       intField(&s.Port),
		"pid":        intField(&s.PID),
	}
}

// decodeList decodes each item of a sequence with item.
func decodeList(n *yaml.Node, path, want string, item func(*yaml.Node, string) error) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return typeError(path, want, n)
	}
	for i, it := range n.Content {
		if err := item(it, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

func scalar(n *yaml.Node, path, want, tag string) error {
	if n.Kind != yaml.ScalarNode || (tag != "" && n.ShortTag() != tag) {
		return typeError(path, want, n)
	}
	return nil
}

func stringField(dst *string) field {
	return func(n *yaml.Node, path string) error {
		if isNull(n) {
			return nil
		}
		// Numbers and booleans are not silently turned into strings: a
		// quoted value is what the guide writes.
		if err := scalar(n, path, "a string", "!!str"); err != nil {
			return err
		}
		*dst = n.Value
		return nil
	}
}

func boolField(dst *bool) field {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "a boolean (true or false)", "!!bool"); err != nil {
			return err
		}
		return n.Decode(dst)
	}
}

func intField(dst *int) field {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, "an integer", "!!int"); err != nil {
			return err
		}
		if err := n.Decode(dst); err != nil {
			return fmt.Errorf("%w: %s (line %d): %v", ErrConfig, path, n.Line, err)
		}
		return nil
	}
}

func floatField(dst *float64) field {
	return func(n *yaml.Node, path string) error {
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			return typeError(path, "a number", n)
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return fmt.Errorf("%w: %s (line %d): %v", ErrConfig, path, n.Line, err)
		}
		// YAML spells NaN and infinity .nan and .inf; no setting means
		// either, and NaN would pass every range check.
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%w: %s (line %d): %s is not a finite number", ErrConfig, path, n.Line, n.Value)
		}
		*dst = f
		return nil
	}
}

func durationField(dst *time.Duration) field {
	return func(n *yaml.Node, path string) error {
		if err := scalar(n, path, `a duration such as "10s" or "500ms"`, "!!str"); err != nil {
			return err
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("%w: %s (line %d): %q is not a duration, write e.g. \"10s\" or \"500ms\"", ErrConfig, path, n.Line, n.Value)
		}
		*dst = d
		return nil
	}
}

func stringListField(dst *[]string) field {
	return func(n *yaml.Node, path string) error {
		if isNull(n) {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return typeError(path, "a list of strings", n)
		}
		for i, item := range n.Content {
			var s string
			if err := stringField(&s)(item, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
			*dst = append(*dst, s)
		}
		return nil
	}
}

func stringMapField(dst *map[string]string) field {
	return func(n *yaml.Node, path string) error {
		if isNull(n) {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return typeError(path, "a mapping of strings", n)
		}
		m := map[string]string{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			var v string
			key := n.Content[i].Value
			if err := stringField(&v)(n.Content[i+1], path+"."+key); err != nil {
				return err
			}
			m[key] = v
		}
		*dst = m
		return nil
	}
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func typeError(path, want string, n *yaml.Node) error {
	got := kindName(n)
	if n.Kind == yaml.ScalarNode {
		got = fmt.Sprintf("%s %q", got, n.Value)
	}
	return fmt.Errorf("%w: %s (line %d): want %s, got %s", ErrConfig, path, n.Line, want, got)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return "string"
	case "!!int":
		return "integer"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return n.ShortTag()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func list(vals []string) string { return strings.Join(vals, ", ") }
