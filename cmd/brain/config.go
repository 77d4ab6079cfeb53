package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/transport"
)

// config is everything the brain reads from its environment, validated once at start-up.
type config struct {
	Addr          string
	MetricsAddr   string // BRAIN_METRICS_ADDR: GET /metrics; "" (the default) serves none
	Pprof         bool   // BRAIN_PPROF: Go's profiler on the metrics listener too
	OTLPEndpoint  string // OTEL_EXPORTER_OTLP_ENDPOINT: traces exported over OTLP/HTTP; "": no tracing
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
	Record         recordSettings
	CallsRetention time.Duration // BRAIN_CALLS_RETENTION: call records of every platform
	Jobs           jobSettings   // BRAIN_JOBS*, BRAIN_SUMMARY, BRAIN_SMS_ANSWER, BRAIN_FORWARD_* // BRAIN_RECORD*: see record.go
}

// demo reports whether no model endpoint was configured, so the offline demo model answers.
func (c config) demo() bool { return c.OpenAIKey == "" && c.OpenAIBaseURL == "" }

// setting is one environment variable, declared once: its default (as README shows it), a
// one-line meaning, how it is read into config and, where a value can be wrong beyond its type,
// its check. settings lists them all in README's order; TestReadmeConfigTable holds README's
// configuration table to it, variable by variable and default by default.
type setting struct {
	name  string
	def   string // the default, as README's table shows it
	doc   string
	read  func(p *parser, c *config)
	check func(c *config) error // after every setting is read; nil when the type says it all
}

// agentDefaults are the turn engine's defaults (agent.Defaults), the source of those below.
var agentDefaults = agent.Defaults()

var settings = []setting{
	str("BRAIN_ADDR", "127.0.0.1:8080", "listen address", func(c *config) *string { return &c.Addr }),
	{
		name: "BRAIN_METRICS_ADDR", def: "off", doc: "GET /metrics (Prometheus) on this separate address, e.g. :9090",
		read: func(p *parser, c *config) { c.MetricsAddr = p.getenv("BRAIN_METRICS_ADDR") },
		check: func(c *config) error {
			if c.MetricsAddr == "" {
				return nil
			}
			if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
				return fmt.Errorf("BRAIN_METRICS_ADDR=%q: want host:port, such as :9090 or 127.0.0.1:9090", c.MetricsAddr)
			}
			if c.MetricsAddr == c.Addr {
				return fmt.Errorf("BRAIN_METRICS_ADDR=%q: must differ from BRAIN_ADDR, metrics stay off the public port", c.MetricsAddr)
			}
			return nil
		},
	},
	{
		name: "BRAIN_PPROF", def: "0", doc: "also serve Go's profiler (/debug/pprof/) on BRAIN_METRICS_ADDR, to profile a live brain",
		read: func(p *parser, c *config) { c.Pprof = p.boolean("BRAIN_PPROF") },
		check: func(c *config) error {
			if c.Pprof && c.MetricsAddr == "" {
				return errors.New("BRAIN_PPROF=1: needs BRAIN_METRICS_ADDR, the profiler stays off the public port")
			}
			return nil
		},
	},
	{
		name: "OTEL_EXPORTER_OTLP_ENDPOINT", def: "off",
		doc: "export OpenTelemetry traces over OTLP/HTTP to this base URL, e.g. http://collector:4318; the other standard OTEL_ variables apply",
		read: func(p *parser, c *config) {
			c.OTLPEndpoint = strings.TrimSpace(p.getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
		},
		check: func(c *config) error {
			if c.OTLPEndpoint == "" {
				return nil
			}
			if u, err := url.Parse(c.OTLPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT=%q: want an http or https URL, such as http://collector:4318", c.OTLPEndpoint)
			}
			return nil
		},
	},
	str("REDIS_URL", "", "Redis for state shared by replicas; unset: an in-process store", func(c *config) *string { return &c.RedisURL }),
	shown(str("OPENAI_BASE_URL", "", "any OpenAI-compatible endpoint", func(c *config) *string { return &c.OpenAIBaseURL }), "OpenAI"),
	str("OPENAI_API_KEY", "", "the model endpoint's key; with no base URL either, the offline demo model", func(c *config) *string { return &c.OpenAIKey }),
	str("OPENAI_MODEL", "gpt-4o-mini", "the model", func(c *config) *string { return &c.Model }),
	str("OPENAI_FALLBACK_MODEL", "", "a second model, for a first that fails before speaking or is very late", func(c *config) *string { return &c.FallbackModel }),
	shown(str("OPENAI_FALLBACK_BASE_URL", "", "where the fallback model lives", func(c *config) *string { return &c.FallbackBase }), "the primary's"),
	shown(str("OPENAI_FALLBACK_API_KEY", "", "the fallback endpoint's key", func(c *config) *string { return &c.FallbackKey }), "the primary's"),
	{
		name: "SAPERLY_WEBHOOK_SECRET", def: "dev secret on loopback", doc: "the line's signing secret",
		read:  func(p *parser, c *config) { c.Secret = p.getenv("SAPERLY_WEBHOOK_SECRET") },
		check: checkSecrets,
	},
	str("SAPERLY_WEBHOOK_SECRET_NEXT", "", "a staged rotation secret", func(c *config) *string { return &c.SecretNext }),
	shown(str("SAPERLY_API_BASE", "", "Saperly's REST API (hang-ups, call lookups)", func(c *config) *string { return &c.SaperlyAPIBase }), agent.DefaultSaperlyAPI),
	str("SAPERLY_API_KEY", "", "its API key; unset: no end_call, no lookups", func(c *config) *string { return &c.SaperlyAPIKey }),
	{
		name: "PROMPTS_DIR", def: "./prompts", doc: "agent files and lines.yaml",
		read: func(p *parser, c *config) {
			c.PromptsDir, c.PromptsDirSet = or(p.getenv("PROMPTS_DIR"), "./prompts"), p.getenv("PROMPTS_DIR") != ""
		},
	},
	boolean("BRAIN_LOG_TEXT", "log caller and agent text (personal data)", func(c *config) *bool { return &c.LogText }),
	{
		name: "BRAIN_LOG_LEVEL", def: "info", doc: "debug, info, warn, error",
		read: func(p *parser, c *config) { c.LogLevel = or(p.getenv("BRAIN_LOG_LEVEL"), "info") },
		check: func(c *config) error {
			if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
				return fmt.Errorf("BRAIN_LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
			}
			return nil
		},
	},
	duration("BRAIN_RETENTION", session.DefaultRetention, "how long a call's record is kept after its last event", func(c *config) *time.Duration { return &c.Retention }),
	{
		name: "BRAIN_DRAIN_DELAY", def: "0", doc: "after SIGTERM, keep serving this long with /readyz 503 before closing the listener",
		read: func(p *parser, c *config) { c.DrainDelay = p.nonNegDuration("BRAIN_DRAIN_DELAY", 0) },
	},
	check(duration("BRAIN_DRAIN_TIMEOUT", 5*time.Minute, "on SIGTERM, how long turns in progress may finish", func(c *config) *time.Duration { return &c.DrainTimeout }),
		func(c *config) error {
			if c.DrainTimeout <= c.Agent.TurnBudget {
				return fmt.Errorf("BRAIN_DRAIN_TIMEOUT=%s: must exceed BRAIN_TURN_BUDGET=%s so turns in progress can finish", c.DrainTimeout, c.Agent.TurnBudget)
			}
			return nil
		}),
	check(integer("BRAIN_MAX_CHARS", agentDefaults.MaxChars, "cap on characters spoken in one turn", func(c *config) *int { return &c.Agent.MaxChars }),
		func(c *config) error {
			if c.Agent.MaxChars > 1800 {
				return fmt.Errorf("BRAIN_MAX_CHARS=%d: Saperly drops speech past 1800 characters a turn", c.Agent.MaxChars)
			}
			return nil
		}),
	integer("BRAIN_MAX_TOKENS", agentDefaults.MaxTokens, "max_tokens on every model request", func(c *config) *int { return &c.Agent.MaxTokens }),
	integer("BRAIN_HISTORY_LIMIT", agentDefaults.HistoryLimit, "past entries sent to the model", func(c *config) *int { return &c.Agent.HistoryLimit }),
	integer("BRAIN_MAX_UTTERANCE", agentDefaults.MaxUtterance, "characters of the caller's words kept per message", func(c *config) *int { return &c.Agent.MaxUtterance }),
	integer("BRAIN_MAX_ID_LEN", transport.DefaultMaxIDLen, "longest id accepted, in bytes", func(c *config) *int { return &c.MaxIDLen }),
	integer("BRAIN_MAX_CONNS", transport.DefaultMaxConns, "open connections", func(c *config) *int { return &c.MaxConns }),
	duration("BRAIN_HOLD_AFTER", agentDefaults.HoldAfter, "nothing speakable by then: a holding phrase", func(c *config) *time.Duration { return &c.Agent.HoldAfter }),
	duration("BRAIN_FIRST_CUT", agentDefaults.FirstCut, "the first line's deadline after the first token", func(c *config) *time.Duration { return &c.Agent.FirstCut }),
	duration("BRAIN_HEDGE_AFTER", agentDefaults.HedgeAfter, "no first token by then: the fallback starts in parallel", func(c *config) *time.Duration { return &c.Agent.HedgeAfter }),
	duration("BRAIN_FALLBACK_WITHIN", agentDefaults.FallbackWithin, "a failed model is retried on the fallback only this soon", func(c *config) *time.Duration { return &c.Agent.FallbackWithin }),
	check(duration("BRAIN_STALL_AFTER", agentDefaults.StallAfter, "longest silence between lines", func(c *config) *time.Duration { return &c.Agent.StallAfter }),
		func(c *config) error {
			if c.Agent.StallAfter*2 >= 15*time.Second {
				return fmt.Errorf("BRAIN_STALL_AFTER=%s: two stall steps must fit in Saperly's 15 s line budget", c.Agent.StallAfter)
			}
			return nil
		}),
	check(duration("BRAIN_TURN_BUDGET", agentDefaults.TurnBudget, "the answer ends gracefully by then", func(c *config) *time.Duration { return &c.Agent.TurnBudget }),
		func(c *config) error {
			if c.Agent.TurnBudget >= 5*time.Minute {
				return fmt.Errorf("BRAIN_TURN_BUDGET=%s: must end before Saperly's 5 min turn limit", c.Agent.TurnBudget)
			}
			return nil
		}),
	duration("BRAIN_STORE_TIMEOUT", agentDefaults.StoreTimeout, "bound on each store operation in a turn and on the replay check", func(c *config) *time.Duration { return &c.Agent.StoreTimeout }),
	check(duration("BRAIN_TURN_LEASE", agentDefaults.TurnLease, "a turn's claim lapses this long after its replica stops renewing it", func(c *config) *time.Duration { return &c.Agent.TurnLease }),
		func(c *config) error {
			a := &c.Agent
			switch {
			case a.TurnLease < 3*a.StoreTimeout:
				return fmt.Errorf("BRAIN_TURN_LEASE=%s: a turn renews its lease every third of it, so it must be at least 3 × BRAIN_STORE_TIMEOUT (%s)", a.TurnLease, a.StoreTimeout)
			case a.TurnLease >= 6*time.Second:
				return fmt.Errorf("BRAIN_TURN_LEASE=%s: a retry gives up on a silent turn after 6 s, so a crashed replica's turn must be free to take over sooner", a.TurnLease)
			}
			return nil
		}),
	integer("BRAIN_PENDING_TURNS", agentDefaults.PendingTurns, "turns the store did not take, kept and retried", func(c *config) *int { return &c.Agent.PendingTurns }),
	integer("BRAIN_PENDING_BYTES", agentDefaults.PendingBytes, "the same bound in bytes", func(c *config) *int { return &c.Agent.PendingBytes }),
	duration("BRAIN_PENDING_RETENTION", agentDefaults.PendingRetention, "a kept turn not written by then is lost", func(c *config) *time.Duration { return &c.Agent.PendingRetention }),
	{
		name: "BRAIN_HOLDING_PHRASES", def: strings.Join(agentDefaults.HoldingPhrases[:2], "|") + "|…", doc: "|-separated holding phrases",
		read: func(p *parser, c *config) {
			for _, s := range strings.Split(p.getenv("BRAIN_HOLDING_PHRASES"), "|") {
				if s = strings.TrimSpace(s); s != "" {
					c.Agent.HoldingPhrases = append(c.Agent.HoldingPhrases, s)
				}
			}
		},
	},
	line("BRAIN_APOLOGY_LINE", agentDefaults.ApologyLine, "the model failed before speaking", func(c *config) *string { return &c.Agent.ApologyLine }),
	line("BRAIN_RECOVERY_LINE", agentDefaults.RecoveryLine, "the model broke mid-answer", func(c *config) *string { return &c.Agent.RecoveryLine }),
	line("BRAIN_STALL_LINE", agentDefaults.StallLine, "the model stalled for good", func(c *config) *string { return &c.Agent.StallLine }),
	duration("BRAIN_DEMO_TOKEN_DELAY", 30*time.Millisecond, "pace of the offline demo model", func(c *config) *time.Duration { return &c.DemoDelay }),
	{
		name: "BRAIN_RECORD", def: "off", doc: "record calls: dir:PATH, redis, comma-separated",
		read: func(p *parser, c *config) { c.Record.raw = p.getenv("BRAIN_RECORD") },
		check: func(c *config) error {
			return loadRecord(&c.Record, *c)
		},
	},
	boolean("BRAIN_RECORD_TEXT", "keep the words in recordings", func(c *config) *bool { return &c.Record.Cfg.Text }),
	duration("BRAIN_RECORD_IDLE", agent.DefaultRecordIdle, "a call silent this long is recorded without its call_ended", func(c *config) *time.Duration { return &c.Record.Cfg.Idle }),
	duration("BRAIN_CALLS_RETENTION", 30*24*time.Hour, "how long a call record of any platform is kept after its last event", func(c *config) *time.Duration { return &c.CallsRetention }),
	str("BRAIN_JOBS", "inline", "where background jobs run: inline or worker", func(c *config) *string { return &c.Jobs.Mode }),
	boolean("BRAIN_SUMMARY", "the agent's model writes each finished call's summary", func(c *config) *bool { return &c.Jobs.Summary }),
	boolean("BRAIN_SMS_ANSWER", "texts to a line are answered by its agent", func(c *config) *bool { return &c.Jobs.SMS }),
	str("BRAIN_FORWARD_URL", "", "POST each finished call record there", func(c *config) *string { return &c.Jobs.ForwardURL }),
	str("BRAIN_FORWARD_SECRET", "", "the secret that signs what is forwarded", func(c *config) *string { return &c.Jobs.ForwardKey }),
	integer("BRAIN_JOB_ATTEMPTS", 5, "attempts before a job goes to the dead letters", func(c *config) *int { return &c.Jobs.Attempts }),
	duration("BRAIN_JOB_BACKOFF", time.Second, "wait before a job's second attempt, doubled after", func(c *config) *time.Duration { return &c.Jobs.Backoff }),
	duration("BRAIN_JOB_VISIBILITY", 30*time.Second, "a job of a worker that died is taken over after this", func(c *config) *time.Duration { return &c.Jobs.Visibility }),
	check(duration("BRAIN_JOB_TIMEOUT", 20*time.Second, "bound on one attempt of a job", func(c *config) *time.Duration { return &c.Jobs.Timeout }), checkJobs),
	{
		name: "BRAIN_RECORD_MAXLEN", def: strconv.Itoa(agent.DefaultRecordMaxLen), doc: "about how many scripts the recordings stream keeps",
		read: func(p *parser, c *config) {
			c.Record.Cfg.StreamMaxLen = int64(p.integer("BRAIN_RECORD_MAXLEN", agent.DefaultRecordMaxLen))
		},
	},
}

// str declares a string variable; def "" shows as unset.
func str(name, def, doc string, field func(*config) *string) setting {
	return setting{name: name, def: def, doc: doc, read: func(p *parser, c *config) { *field(c) = or(p.getenv(name), def) }}
}

// secretEnv reads a secret from the environment without the whitespace around it: a secret
// mounted from a file often ends in a newline, and a signature is never made with it. Every
// secret the brain verifies with is read through it.
func secretEnv(getenv func(string) string, name string) string {
	return strings.TrimSpace(getenv(name))
}

// line declares one of the fixed lines: its default is too long for README's table.
func line(name, def, doc string, field func(*config) *string) setting {
	return shown(str(name, def, doc, field), "see agent/config.go")
}

func boolean(name, doc string, field func(*config) *bool) setting {
	return setting{name: name, def: "0", doc: doc, read: func(p *parser, c *config) { *field(c) = p.boolean(name) }}
}

func integer(name string, def int, doc string, field func(*config) *int) setting {
	return setting{name: name, def: strconv.Itoa(def), doc: doc, read: func(p *parser, c *config) { *field(c) = p.integer(name, def) }}
}

func duration(name string, def time.Duration, doc string, field func(*config) *time.Duration) setting {
	return setting{name: name, def: showDuration(def), doc: doc, read: func(p *parser, c *config) { *field(c) = p.duration(name, def) }}
}

// shown replaces how a setting's default reads in README, for defaults that are not a value.
func shown(s setting, def string) setting { s.def = def; return s }

func check(s setting, f func(c *config) error) setting { s.check = f; return s }

// showDuration writes d as README does: 24h, 5m, 4m30s, 1.2s, 600ms.
func showDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// loadConfig reads the environment. Every error names the variable at fault.
func loadConfig(getenv func(string) string) (config, error) {
	var c config
	p := parser{getenv: getenv}
	for _, s := range settings {
		s.read(&p, &c)
	}
	if p.err != nil {
		return config{}, p.err
	}
	a := &c.Agent
	a.Model, a.FallbackModel, a.LogText = c.Model, c.FallbackModel, c.LogText
	for _, s := range settings {
		if s.check == nil {
			continue
		}
		if err := s.check(&c); err != nil {
			return config{}, err
		}
	}
	return c, nil
}

// checkSecrets: off loopback a real signing secret is required; on loopback none stands for the
// development secret.
func checkSecrets(c *config) error {
	raw := c.Secret
	c.Secret, c.SecretNext = strings.TrimSpace(c.Secret), strings.TrimSpace(c.SecretNext) // as secretEnv
	if c.Secret == "" {
		if c.SecretNext != "" {
			return fmt.Errorf("SAPERLY_WEBHOOK_SECRET_NEXT is set without SAPERLY_WEBHOOK_SECRET")
		}
		if !loopback(c.Addr) {
			what := "is required"
			if raw != "" {
				what = "is blank"
			}
			return fmt.Errorf("SAPERLY_WEBHOOK_SECRET %s when BRAIN_ADDR (%s) is not a loopback address: set it to the line's signing secret", what, c.Addr)
		}
		c.Secret, c.DevSecret = "", true
	}
	if !loopback(c.Addr) {
		// Anyone can sign with a guessable secret: off loopback, refuse what cannot be real.
		for _, v := range []struct{ name, value string }{{"SAPERLY_WEBHOOK_SECRET", c.Secret}, {"SAPERLY_WEBHOOK_SECRET_NEXT", c.SecretNext}} {
			if v.value != "" && len(v.value) < minSecretLen {
				return fmt.Errorf("%s is too short to be a signing secret (%d characters; at least %d, Saperly's are 64 hex characters) while BRAIN_ADDR (%s) is not a loopback address",
					v.name, len(strings.TrimSpace(v.value)), minSecretLen, c.Addr)
			}
		}
	}
	return nil
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
