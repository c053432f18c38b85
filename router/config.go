package router

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/routerscope/routerscope/internal/strictyaml"
)

// ErrInvalidConfig marks every configuration error, for errors.Is.
var ErrInvalidConfig = errors.New("invalid router config")

// Defaults applied by Load when a key is absent.
const (
	DefaultListen          = "127.0.0.1:8801"
	DefaultUpstreamTimeout = 60 * time.Second
	DefaultMaxBodyBytes    = 1 << 20
)

// Config is the router configuration, shaped like vLLM Semantic Router's
// config.yaml. Unknown keys are errors, except the top-level observability
// key: it configures the tracing agent, not the router, so the router
// accepts and ignores it and one file can serve both.
type Config struct {
	Server                 ServerConfig               `yaml:"server"`
	Categories             []Category                 `yaml:"categories"`
	DefaultModel           string                     `yaml:"default_model"`
	VLLMEndpoints          []EndpointConfig           `yaml:"vllm_endpoints"`
	ModelConfig            map[string]ModelConfig     `yaml:"model_config"`
	SemanticCache          CacheConfig                `yaml:"semantic_cache"`
	PromptGuard            PromptGuardConfig          `yaml:"prompt_guard"`
	ReasoningFamilies      map[string]ReasoningFamily `yaml:"reasoning_families"`
	DefaultReasoningEffort string                     `yaml:"default_reasoning_effort"`
	// Observability belongs to the tracing agent; the router ignores it.
	Observability yaml.Node `yaml:"observability"`
}

// ServerConfig holds the HTTP server settings.
type ServerConfig struct {
	// Listen is the host:port to serve on.
	Listen string `yaml:"listen"`
	// UpstreamTimeout bounds one whole upstream exchange, streaming included.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// MaxBodyBytes bounds request bodies; larger ones get 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Category configures one classifier category.
type Category struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	ModelScores []ModelScore `yaml:"model_scores"`
	// UseReasoning switches reasoning mode on for this category.
	UseReasoning bool `yaml:"use_reasoning"`
	// ReasoningEffort overrides default_reasoning_effort.
	ReasoningEffort string `yaml:"reasoning_effort"`
	SystemPrompt    string `yaml:"system_prompt"`
	// SystemPromptMode is insert (default: put before any client system
	// prompt) or replace (drop the client's system prompt).
	SystemPromptMode string `yaml:"system_prompt_mode"`
}

// ModelScore rates one model for a category; the highest score wins.
type ModelScore struct {
	Model string  `yaml:"model"`
	Score float64 `yaml:"score"`
	// UseReasoning, when set, overrides the category's use_reasoning for this model.
	UseReasoning *bool `yaml:"use_reasoning"`
}

// EndpointConfig is one upstream OpenAI-compatible server.
type EndpointConfig struct {
	Name    string `yaml:"name"`
	Address string `yaml:"address"`
	Port    int    `yaml:"port"`
	Weight  int    `yaml:"weight"`
	// Models lists the models served; model_config.preferred_endpoints may
	// name endpoints instead.
	Models []string `yaml:"models"`
}

// ModelConfig holds per-model settings.
type ModelConfig struct {
	PreferredEndpoints []string  `yaml:"preferred_endpoints"`
	PIIPolicy          PIIPolicy `yaml:"pii_policy"`
	ReasoningFamily    string    `yaml:"reasoning_family"`
}

// PIIPolicy decides whether a model may receive detected PII types.
type PIIPolicy struct {
	// AllowByDefault allows every type not listed in PIITypesDenied; when
	// false only PIITypesAllowed pass. Absent means true.
	AllowByDefault  *bool    `yaml:"allow_by_default"`
	PIITypesAllowed []string `yaml:"pii_types_allowed"`
	PIITypesDenied  []string `yaml:"pii_types_denied"`
}

// CacheConfig configures the semantic cache.
type CacheConfig struct {
	Enabled             bool    `yaml:"enabled"`
	SimilarityThreshold float64 `yaml:"similarity_threshold"`
	MaxEntries          int     `yaml:"max_entries"`
	TTLSeconds          int     `yaml:"ttl_seconds"`
}

// PromptGuardConfig configures the jailbreak guard.
type PromptGuardConfig struct {
	Enabled   bool    `yaml:"enabled"`
	Threshold float64 `yaml:"threshold"`
}

// ReasoningFamily says how a model family switches reasoning on: type
// chat_template_kwargs sets chat_template_kwargs[parameter] to true or false;
// type reasoning_effort sets the body key parameter to the effort.
type ReasoningFamily struct {
	Type      string `yaml:"type"`
	Parameter string `yaml:"parameter"`
}

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read router config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes strictly, applies defaults and validates.
func ParseConfig(data []byte) (*Config, error) {
	var cfg Config
	if err := strictyaml.Decode(data, &cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) applyDefaults() {
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Server.UpstreamTimeout == 0 {
		c.Server.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.Server.MaxBodyBytes == 0 {
		c.Server.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.DefaultReasoningEffort == "" {
		c.DefaultReasoningEffort = "medium"
	}
	for i := range c.VLLMEndpoints {
		if c.VLLMEndpoints[i].Weight == 0 {
			c.VLLMEndpoints[i].Weight = 1
		}
	}
	for i := range c.Categories {
		if c.Categories[i].SystemPromptMode == "" {
			c.Categories[i].SystemPromptMode = "insert"
		}
	}
}

func invalid(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, key, fmt.Sprintf(format, args...))
}

var validEfforts = map[string]bool{"low": true, "medium": true, "high": true}

// Validate checks cross references and ranges; each error names the key.
func (c *Config) Validate() error {
	if c.Server.UpstreamTimeout < 0 {
		return invalid("server.upstream_timeout", "must be positive, got %s", c.Server.UpstreamTimeout)
	}
	if c.Server.MaxBodyBytes < 0 {
		return invalid("server.max_body_bytes", "must be positive, got %d", c.Server.MaxBodyBytes)
	}
	if c.DefaultModel == "" {
		return invalid("default_model", "is required: the model used when no category scores apply")
	}
	if !validEfforts[c.DefaultReasoningEffort] {
		return invalid("default_reasoning_effort", "must be low, medium or high, got %q", c.DefaultReasoningEffort)
	}
	if len(c.VLLMEndpoints) == 0 {
		return invalid("vllm_endpoints", "at least one endpoint is required")
	}
	names := map[string]bool{}
	for i, ep := range c.VLLMEndpoints {
		key := fmt.Sprintf("vllm_endpoints[%d]", i)
		if ep.Name == "" {
			return invalid(key+".name", "is required")
		}
		if names[ep.Name] {
			return invalid(key+".name", "duplicate endpoint name %q", ep.Name)
		}
		names[ep.Name] = true
		if ep.Address == "" {
			return invalid(key+".address", "is required")
		}
		if ep.Port <= 0 || ep.Port > 65535 {
			return invalid(key+".port", "must be 1..65535, got %d", ep.Port)
		}
		if ep.Weight < 0 {
			return invalid(key+".weight", "must not be negative, got %d", ep.Weight)
		}
	}
	for name, mc := range c.ModelConfig {
		for _, ep := range mc.PreferredEndpoints {
			if !names[ep] {
				return invalid("model_config."+name+".preferred_endpoints", "names unknown endpoint %q", ep)
			}
		}
		if f := mc.ReasoningFamily; f != "" {
			if _, ok := c.ReasoningFamilies[f]; !ok {
				return invalid("model_config."+name+".reasoning_family", "names unknown family %q (define it under reasoning_families)", f)
			}
		}
		for _, t := range append(append([]string{}, mc.PIIPolicy.PIITypesAllowed...), mc.PIIPolicy.PIITypesDenied...) {
			if !knownPIIType(t) {
				return invalid("model_config."+name+".pii_policy", "unknown PII type %q (known: %v)", t, PIITypes)
			}
		}
	}
	for name, f := range c.ReasoningFamilies {
		if f.Type != "chat_template_kwargs" && f.Type != "reasoning_effort" {
			return invalid("reasoning_families."+name+".type", "must be chat_template_kwargs or reasoning_effort, got %q", f.Type)
		}
		if f.Parameter == "" {
			return invalid("reasoning_families."+name+".parameter", "is required")
		}
	}
	cats := map[string]bool{}
	for i, cat := range c.Categories {
		key := fmt.Sprintf("categories[%d]", i)
		if cat.Name == "" {
			return invalid(key+".name", "is required")
		}
		if cats[cat.Name] {
			return invalid(key+".name", "duplicate category %q", cat.Name)
		}
		cats[cat.Name] = true
		if cat.SystemPromptMode != "insert" && cat.SystemPromptMode != "replace" {
			return invalid(key+".system_prompt_mode", "must be insert or replace, got %q", cat.SystemPromptMode)
		}
		if cat.ReasoningEffort != "" && !validEfforts[cat.ReasoningEffort] {
			return invalid(key+".reasoning_effort", "must be low, medium or high, got %q", cat.ReasoningEffort)
		}
		for j, ms := range cat.ModelScores {
			if ms.Model == "" {
				return invalid(fmt.Sprintf("%s.model_scores[%d].model", key, j), "is required")
			}
			if ms.Score < 0 || ms.Score > 1 {
				return invalid(fmt.Sprintf("%s.model_scores[%d].score", key, j), "must be in [0,1], got %g", ms.Score)
			}
		}
	}
	if sc := c.SemanticCache; sc.Enabled {
		if sc.SimilarityThreshold <= 0 || sc.SimilarityThreshold > 1 {
			return invalid("semantic_cache.similarity_threshold", "must be in (0,1], got %g", sc.SimilarityThreshold)
		}
		if sc.MaxEntries <= 0 {
			return invalid("semantic_cache.max_entries", "must be positive when the cache is enabled, got %d", sc.MaxEntries)
		}
		if sc.TTLSeconds < 0 {
			return invalid("semantic_cache.ttl_seconds", "must not be negative (0 means no expiry), got %d", sc.TTLSeconds)
		}
	}
	if pg := c.PromptGuard; pg.Enabled && (pg.Threshold <= 0 || pg.Threshold > 1) {
		return invalid("prompt_guard.threshold", "must be in (0,1], got %g", pg.Threshold)
	}
	for _, m := range c.Models() {
		if len(c.endpointsFor(m)) == 0 {
			return invalid("vllm_endpoints", "no endpoint serves model %q (list it in an endpoint's models or set model_config.%s.preferred_endpoints)", m, m)
		}
	}
	return nil
}

// NewFromFile builds a Router as the router commands do: from the config
// file at path (LoadConfigWithOverrides), returning the config too.
func NewFromFile(path, listen, backend string) (*Router, *Config, error) {
	cfg, err := LoadConfigWithOverrides(path, listen, backend)
	if err != nil {
		return nil, nil, err
	}
	rt, err := New(cfg)
	return rt, cfg, err
}

// LoadConfigWithOverrides loads and validates the config file at path,
// then applies a command line's overrides: listen replaces server.listen,
// and backend points every endpoint at that host:port (OverrideBackends).
// An empty override changes nothing.
func LoadConfigWithOverrides(path, listen, backend string) (*Config, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if backend != "" {
		if err := cfg.OverrideBackends(backend); err != nil {
			return nil, err
		}
	}
	if listen != "" {
		cfg.Server.Listen = listen
	}
	return cfg, nil
}

// OverrideBackends points every endpoint at hostport. Tests and the demo
// use it (flag --backend or ROUTER_BACKEND) to run the shipped config
// against a fake model server on an ephemeral port.
func (c *Config) OverrideBackends(hostport string) error {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%w: backend override %q: want host:port: %v", ErrInvalidConfig, hostport, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("%w: backend override %q: port must be 1..65535", ErrInvalidConfig, hostport)
	}
	for i := range c.VLLMEndpoints {
		c.VLLMEndpoints[i].Address = host
		c.VLLMEndpoints[i].Port = port
	}
	return nil
}

// Models lists every model the config can route to, in a stable order:
// default_model, then models named in categories, model_config and endpoints.
func (c *Config) Models() []string {
	seen := map[string]bool{}
	var out []string
	add := func(m string) {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	add(c.DefaultModel)
	for _, cat := range c.Categories {
		for _, ms := range cat.ModelScores {
			add(ms.Model)
		}
	}
	var cfgModels []string
	for m := range c.ModelConfig {
		cfgModels = append(cfgModels, m)
	}
	slices.Sort(cfgModels)
	for _, m := range cfgModels {
		add(m)
	}
	for _, ep := range c.VLLMEndpoints {
		for _, m := range ep.Models {
			add(m)
		}
	}
	return out
}

// endpointsFor lists the endpoints that may serve model: its preferred
// endpoints, else those listing it in models.
func (c *Config) endpointsFor(model string) []EndpointConfig {
	var out []EndpointConfig
	if mc, ok := c.ModelConfig[model]; ok && len(mc.PreferredEndpoints) > 0 {
		for _, name := range mc.PreferredEndpoints {
			for _, ep := range c.VLLMEndpoints {
				if ep.Name == name {
					out = append(out, ep)
				}
			}
		}
		return out
	}
	for _, ep := range c.VLLMEndpoints {
		for _, m := range ep.Models {
			if m == model {
				out = append(out, ep)
			}
		}
	}
	return out
}

func (c *Config) category(name string) *Category {
	for i := range c.Categories {
		if c.Categories[i].Name == name {
			return &c.Categories[i]
		}
	}
	return nil
}
