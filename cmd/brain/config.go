package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/transport"
)

// config is everything the brain reads from its environment, validated once at start-up.
type config struct {
	Addr          string
	MetricsAddr   string // BRAIN_METRICS_ADDR: GET /metrics; "" (the default) serves none
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
	DrainDelay     time.Duration // BRAIN_DRAIN_DELAY: serving on, /readyz 503, before the listener closes
	MaxIDLen       int
	MaxConns       int
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
		MetricsAddr:    getenv("BRAIN_METRICS_ADDR"),
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
	c.DrainDelay = p.nonNegDuration("BRAIN_DRAIN_DELAY", 0)
	c.DemoDelay = p.duration("BRAIN_DEMO_TOKEN_DELAY", 30*time.Millisecond)
	c.MaxIDLen = p.integer("BRAIN_MAX_ID_LEN", transport.DefaultMaxIDLen)
	c.MaxConns = p.integer("BRAIN_MAX_CONNS", transport.DefaultMaxConns)
	a := &c.Agent
	a.Model = c.Model
	a.FallbackModel = c.FallbackModel
	a.LogText = c.LogText
	a.MaxTokens = p.integer("BRAIN_MAX_TOKENS", 450)
	a.MaxChars = p.integer("BRAIN_MAX_CHARS", 1800)
	a.HistoryLimit = p.integer("BRAIN_HISTORY_LIMIT", 40)
	a.MaxUtterance = p.integer("BRAIN_MAX_UTTERANCE", agent.DefaultMaxUtterance)
	a.HoldAfter = p.duration("BRAIN_HOLD_AFTER", 1200*time.Millisecond)
	a.FirstCut = p.duration("BRAIN_FIRST_CUT", 600*time.Millisecond)
	a.HedgeAfter = p.duration("BRAIN_HEDGE_AFTER", 2500*time.Millisecond)
	a.FallbackWithin = p.duration("BRAIN_FALLBACK_WITHIN", 8*time.Second)
	a.StallAfter = p.duration("BRAIN_STALL_AFTER", 6*time.Second)
	a.TurnBudget = p.duration("BRAIN_TURN_BUDGET", 4*time.Minute+30*time.Second)
	a.StoreTimeout = p.duration("BRAIN_STORE_TIMEOUT", 400*time.Millisecond)
	a.TurnLease = p.duration("BRAIN_TURN_LEASE", 2*time.Second)
	// A turn the store does not take (an outage) is kept in memory and retried, within these
	// bounds; past them it is logged as lost.
	a.PendingTurns = p.integer("BRAIN_PENDING_TURNS", 10000)
	a.PendingBytes = p.integer("BRAIN_PENDING_BYTES", 64<<20)
	a.PendingRetention = p.duration("BRAIN_PENDING_RETENTION", 15*time.Minute)
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
	case a.TurnLease < 3*a.StoreTimeout:
		return config{}, fmt.Errorf("BRAIN_TURN_LEASE=%s: a turn renews its lease every third of it, so it must be at least 3 × BRAIN_STORE_TIMEOUT (%s)", a.TurnLease, a.StoreTimeout)
	case a.TurnLease >= 6*time.Second:
		return config{}, fmt.Errorf("BRAIN_TURN_LEASE=%s: a retry gives up on a silent turn after 6 s, so a crashed replica's turn must be free to take over sooner", a.TurnLease)
	case c.DrainTimeout <= a.TurnBudget:
		return config{}, fmt.Errorf("BRAIN_DRAIN_TIMEOUT=%s: must exceed BRAIN_TURN_BUDGET=%s so turns in progress can finish", c.DrainTimeout, a.TurnBudget)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return config{}, fmt.Errorf("BRAIN_METRICS_ADDR=%q: want host:port, such as :9090 or 127.0.0.1:9090", c.MetricsAddr)
		}
		if c.MetricsAddr == c.Addr {
			return config{}, fmt.Errorf("BRAIN_METRICS_ADDR=%q: must differ from BRAIN_ADDR, metrics stay off the public port", c.MetricsAddr)
		}
	}
	rec, err := loadRecord(getenv, c)
	if err != nil {
		return config{}, err
	}
	c.Record = rec
	if strings.TrimSpace(c.Secret) == "" {
		if c.SecretNext != "" {
			return config{}, fmt.Errorf("SAPERLY_WEBHOOK_SECRET_NEXT is set without SAPERLY_WEBHOOK_SECRET")
		}
		if !loopback(c.Addr) {
			what := "is required"
			if c.Secret != "" {
				what = "is blank"
			}
			return config{}, fmt.Errorf("SAPERLY_WEBHOOK_SECRET %s when BRAIN_ADDR (%s) is not a loopback address: set it to the line's signing secret", what, c.Addr)
		}
		c.Secret, c.DevSecret = "", true
	}
	if !loopback(c.Addr) {
		// Anyone can sign with a guessable secret: off loopback, refuse what cannot be real.
		for _, v := range []struct{ name, value string }{{"SAPERLY_WEBHOOK_SECRET", c.Secret}, {"SAPERLY_WEBHOOK_SECRET_NEXT", c.SecretNext}} {
			if v.value != "" && len(strings.TrimSpace(v.value)) < minSecretLen {
				return config{}, fmt.Errorf("%s is too short to be a signing secret (%d characters; at least %d, Saperly's are 64 hex characters) while BRAIN_ADDR (%s) is not a loopback address",
					v.name, len(strings.TrimSpace(v.value)), minSecretLen, c.Addr)
			}
		}
	}
	return c, nil
}

// minSecretLen is the shortest signing secret accepted off loopback. Saperly's secrets are 64
// hex characters (256 bits); 32 characters still rule out a typo, a placeholder or a word.
const minSecretLen = 32

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

// nonNegDuration is duration where 0 is a valid value (off).
func (p *parser) nonNegDuration(name string, def time.Duration) time.Duration {
	v := p.getenv(name)
	if v == "" || p.err != nil {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.err = fmt.Errorf("%s=%q: want a duration such as 5s, or 0", name, v)
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
