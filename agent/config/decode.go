package config

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	sy "github.com/routerscope/routerscope/internal/strictyaml"
)

// This file is the config's schema for strictyaml's node walk, so that
// every error names the full key path, the allowed keys and the expected
// type, which yaml.v3's KnownFields errors do not.

// configError marks a strictyaml error as a configuration error; errors
// the schema's own checks return already are.
func configError(err error) error {
	if err == nil || errors.Is(err, ErrConfig) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrConfig, err)
}

func decodeTracing(n *yaml.Node, t *Tracing) error {
	// A present block starts from the router's zero values for enabled and
	// provider-independent keys, and keeps the agent's defaults for the rest.
	t.Enabled = false
	return sy.Mapping(n, "observability.tracing", sy.Fields{
		"enabled":  sy.Bool(&t.Enabled),
		"provider": sy.String(&t.Provider),
		"exporter": sy.Nested(sy.Fields{
			"type":              sy.String(&t.Exporter.Type),
			"endpoint":          sy.String(&t.Exporter.Endpoint),
			"protocol":          sy.String(&t.Exporter.Protocol),
			"format":            sy.String(&t.Exporter.Format),
			"insecure":          sy.Bool(&t.Exporter.Insecure),
			"headers":           sy.StringMap(&t.Exporter.Headers),
			"timeout":           sy.Duration(&t.Exporter.Timeout),
			"ca_file":           sy.String(&t.Exporter.CAFile),
			"reconnect_backoff": sy.Duration(&t.Exporter.ReconnectBackoff),
		}),
		"sampling": func(n *yaml.Node, path string) error {
			typ, rate, rateSet := "", 0.0, false
			rateField := sy.Float(&rate)
			err := sy.Mapping(n, path, sy.Fields{
				"type": sy.String(&typ),
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
		"resource": sy.Nested(sy.Fields{
			"service_name":           sy.String(&t.Resource.ServiceName),
			"service_version":        sy.String(&t.Resource.ServiceVersion),
			"deployment_environment": sy.String(&t.Resource.DeploymentEnvironment),
		}),
	})
}

func decodeAgent(n *yaml.Node, a *Agent) error {
	return sy.Mapping(n, "routerscope", sy.Fields{
		"targets": func(n *yaml.Node, path string) error {
			return sy.List(n, path, "a list of {pid: N} or {binary: PATH}", func(item *yaml.Node, path string) error {
				var tg Target
				if err := sy.Mapping(item, path, sy.Fields{"pid": sy.Int(&tg.PID), "binary": sy.String(&tg.Binary)}); err != nil {
					return err
				}
				a.Targets = append(a.Targets, tg)
				return nil
			})
		},
		"probes": sy.StringList(&a.Probes),
		"export": sy.Nested(sy.Fields{
			"queue_size":       sy.Int(&a.Export.QueueSize),
			"max_batch_size":   sy.Int(&a.Export.MaxBatchSize),
			"batch_timeout":    sy.Duration(&a.Export.BatchTimeout),
			"shutdown_timeout": sy.Duration(&a.Export.ShutdownTimeout),
		}),
		"max_span_age": sy.Duration(&a.MaxSpanAge),
		"discovery":    func(n *yaml.Node, path string) error { return decodeDiscovery(n, path, &a.Discovery) },
		"metrics": sy.Nested(sy.Fields{
			"listen": sy.String(&a.Metrics.Listen),
			"pprof":  sy.Bool(&a.Metrics.Pprof),
		}),
		"watch_interval": sy.Duration(&a.WatchInterval),
		"propagation": sy.Nested(sy.Fields{
			"extract": sy.Bool(&a.Propagation.Extract),
			"inject":  sy.Bool(&a.Propagation.Inject),
		}),
		"log_level":  sy.String(&a.LogLevel),
		"log_format": sy.String(&a.LogFormat),
		"kernel": sy.Nested(sy.Fields{
			"ring_buffer_bytes": sy.Int(&a.Kernel.RingBufferBytes),
			"map_entries": func(n *yaml.Node, path string) error {
				if sy.IsNull(n) {
					return nil
				}
				a.Kernel.MapEntries = map[string]int{}
				return sy.Map(n, path, "a mapping of map name to entries", func(name string, n *yaml.Node, path string) error {
					var v int
					if err := sy.Int(&v)(n, path); err != nil {
						return err
					}
					a.Kernel.MapEntries[name] = v
					return nil
				})
			},
		}),
	})
}

func decodeDiscovery(n *yaml.Node, path string, d *Discovery) error {
	return sy.Mapping(n, path, sy.Fields{
		"rules": func(n *yaml.Node, path string) error {
			return sy.List(n, path, "a list of rules", func(item *yaml.Node, path string) error {
				var r Rule
				fields := selectorFields(&r.Selector)
				fields["name"] = sy.String(&r.Name)
				fields["probes"] = sy.StringList(&r.Probes)
				if err := sy.Mapping(item, path, fields); err != nil {
					return err
				}
				d.Rules = append(d.Rules, r)
				return nil
			})
		},
		"exclude": func(n *yaml.Node, path string) error {
			return sy.List(n, path, "a list of selectors", func(item *yaml.Node, path string) error {
				var s Selector
				if err := sy.Mapping(item, path, selectorFields(&s)); err != nil {
					return err
				}
				d.Exclude = append(d.Exclude, s)
				return nil
			})
		},
		"interval":        sy.Duration(&d.Interval),
		"retry_interval":  sy.Duration(&d.RetryInterval),
		"settle":          sy.Duration(&d.Settle),
		"rescan_interval": sy.Duration(&d.Rescan),
		"max_processes":   sy.Int(&d.MaxProcesses),
	})
}

func selectorFields(s *Selector) sy.Fields {
	return sy.Fields{
		"executable": sy.String(&s.Executable),
		"comm":       sy.String(&s.Comm),
		"cmdline":    sy.String(&s.Cmdline),
		"port":       sy.Int(&s.Port),
		"pid":        sy.Int(&s.PID),
	}
}

func list(vals []string) string { return strings.Join(vals, ", ") }
