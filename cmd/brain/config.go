package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/callbrain/callbrain/agent"
)

// config is everything the brain reads from its environment, validated once at start-up.
type config struct {
	Addr          string
	RedisURL      string
	OpenAIBaseURL string
	OpenAIKey     string
	Model         string
	FallbackModel string
	FallbackBase  string
	FallbackKey   string
	Secret        string
	SecretNext    string
	// SaperlyAPIBase and SaperlyAPIKey reach Saperly's REST API, to hang up (PROTOCOL §1.9).
	SaperlyAPIBase string
	SaperlyAPIKey  string
	DevSecret      bool // Secret is transport.DevSecret because none was given
	PromptsDir     string
	PromptsDirSet  bool
	LogLevel       string
	LogText        bool
	Retention      time.Duration
	DrainTimeout   time.Duration
	DemoDelay      time.Duration
	Agent          agent.Config
	Record         recordSettings // BRAIN_RECORD*: see record.go
}

// demo reports whether no model endpoint was configured, so the offline demo model answers.
func (c config) demo() bool { return c.OpenAIKey == "" && c.OpenAIBaseURL == "" }

// loadConfig reads the environment. Every error names the variable at fault.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		Addr:           or(getenv("BRAIN_ADDR"), "127.0.0.1:8080"),
		RedisURL:       getenv("REDIS_URL"),
		OpenAIBaseURL:  getenv("OPENAI_BASE_URL"),
		OpenAIKey:      getenv("OPENAI_API_KEY"),
		Model:          or(getenv("OPENAI_MODEL"), "gpt-4o-mini"),
		FallbackModel:  getenv("OPENAI_FALLBACK_MODEL"),
		FallbackBase:   getenv("OPENAI_FALLBACK_BASE_URL"),
		FallbackKey:    getenv("OPENAI_FALLBACK_API_KEY"),
		Secret:         getenv("SAPERLY_WEBHOOK_SECRET"),
		SecretNext:     getenv("SAPERLY_WEBHOOK_SECRET_NEXT"),
		SaperlyAPIBase: getenv("SAPERLY_API_BASE"),
		SaperlyAPIKey:  getenv("SAPERLY_API_KEY"),
		PromptsDir:     or(getenv("PROMPTS_DIR"), "./prompts"),
		PromptsDirSet:  getenv("PROMPTS_DIR") != "",
		LogLevel:       or(getenv("BRAIN_LOG_LEVEL"), "info"),
	}
	p := parser{getenv: getenv}
	c.LogText = p.boolean("BRAIN_LOG_TEXT")
	c.Retention = p.duration("BRAIN_RETENTION", 24*time.Hour)
	c.DrainTimeout = p.duration("BRAIN_DRAIN_TIMEOUT", 5*time.Minute)
	c.DemoDelay = p.duration("BRAIN_DEMO_TOKEN_DELAY", 30*time.Millisecond)
	a := &c.Agent
	a.Model = c.Model
	a.FallbackModel = c.FallbackModel
	a.LogText = c.LogText
	a.MaxTokens = p.integer("BRAIN_MAX_TOKENS", 450)
	a.MaxChars = p.integer("BRAIN_MAX_CHARS", 1800)
	a.HistoryLimit = p.integer("BRAIN_HISTORY_LIMIT", 40)
	a.HoldAfter = p.duration("BRAIN_HOLD_AFTER", 1200*time.Millisecond)
	a.FirstCut = p.duration("BRAIN_FIRST_CUT", 600*time.Millisecond)
	a.HedgeAfter = p.duration("BRAIN_HEDGE_AFTER", 2500*time.Millisecond)
	a.FallbackWithin = p.duration("BRAIN_FALLBACK_WITHIN", 8*time.Second)
	a.StallAfter = p.duration("BRAIN_STALL_AFTER", 6*time.Second)
	a.TurnBudget = p.duration("BRAIN_TURN_BUDGET", 4*time.Minute+30*time.Second)
	a.StoreTimeout = p.duration("BRAIN_STORE_TIMEOUT", 400*time.Millisecond)
	a.ApologyLine = or(getenv("BRAIN_APOLOGY_LINE"), agent.DefaultApologyLine)
	a.RecoveryLine = or(getenv("BRAIN_RECOVERY_LINE"), agent.DefaultRecoveryLine)
	a.StallLine = or(getenv("BRAIN_STALL_LINE"), agent.DefaultStallLine)
	if hp := getenv("BRAIN_HOLDING_PHRASES"); hp != "" {
		for _, s := range strings.Split(hp, "|") {
			if s = strings.TrimSpace(s); s != "" {
				a.HoldingPhrases = append(a.HoldingPhrases, s)
			}
		}
	}
	if p.err != nil {
		return config{}, p.err
	}
	switch {
	case a.MaxChars > 1800:
		return config{}, fmt.Errorf("BRAIN_MAX_CHARS=%d: Saperly drops speech past 1800 characters a turn", a.MaxChars)
	case a.StallAfter*2 >= 15*time.Second:
		return config{}, fmt.Errorf("BRAIN_STALL_AFTER=%s: two stall steps must fit in Saperly's 15 s line budget", a.StallAfter)
	case a.TurnBudget >= 5*time.Minute:
		return config{}, fmt.Errorf("BRAIN_TURN_BUDGET=%s: must end before Saperly's 5 min turn limit", a.TurnBudget)
	case c.DrainTimeout <= a.TurnBudget:
		return config{}, fmt.Errorf("BRAIN_DRAIN_TIMEOUT=%s: must exceed BRAIN_TURN_BUDGET=%s so turns in progress can finish", c.DrainTimeout, a.TurnBudget)
	}
	rec, err := loadRecord(getenv, c)
	if err != nil {
		return config{}, err
	}
	c.Record = rec
	if c.Secret == "" {
		if c.SecretNext != "" {
			return config{}, fmt.Errorf("SAPERLY_WEBHOOK_SECRET_NEXT is set without SAPERLY_WEBHOOK_SECRET")
		}
		if !loopback(c.Addr) {
			return config{}, fmt.Errorf("SAPERLY_WEBHOOK_SECRET is required when BRAIN_ADDR (%s) is not a loopback address: set it to the line's signing secret", c.Addr)
		}
		c.DevSecret = true
	}
	return c, nil
}

// secrets returns the accepted signing secrets: current, then the staged next one.
func (c config) secrets(devSecret string) []string {
	if c.DevSecret {
		return []string{devSecret}
	}
	if c.SecretNext != "" {
		return []string{c.Secret, c.SecretNext}
	}
	return []string{c.Secret}
}

// loopback reports whether a listen address only accepts connections from this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// parser reads typed variables, keeping the first error.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" || p.err != nil {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.err = fmt.Errorf("%s=%q: want a positive duration such as 1.5s", name, v)
		return def
	}
	return d
}

func (p *parser) integer(name string, def int) int {
	v := p.getenv(name)
	if v == "" || p.err != nil {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		p.err = fmt.Errorf("%s=%q: want a positive integer", name, v)
		return def
	}
	return n
}

func (p *parser) boolean(name string) bool {
	v := p.getenv(name)
	if v == "" || p.err != nil {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.err = fmt.Errorf("%s=%q: want 1 or 0", name, v)
	}
	return b
}
