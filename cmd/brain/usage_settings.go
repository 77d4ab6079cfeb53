package main

// This list is what `brain -h` prints. When the settings are declared once in config.go (a
// settings table with name, def and doc), delete this file: usage reads the same fields.

// setting is one environment variable as `brain -h` lists it. Its name and default must
// match loadConfig (TestUsageListsEverySetting reads every name loadConfig asks for).
type setting struct{ name, def, doc string }

var settings = []setting{
	{"BRAIN_ADDR", "127.0.0.1:8080", "listen address (webhook, status, health probes)"},
	{"BRAIN_METRICS_ADDR", "off", "GET /metrics (Prometheus) on this address, e.g. :9090; must differ from BRAIN_ADDR"},
	{"REDIS_URL", "in-process store", "redis:// or rediss:// URL of the shared store"},
	{"OPENAI_BASE_URL", "OpenAI", "OpenAI-compatible endpoint"},
	{"OPENAI_API_KEY", "unset", "without a key and a base URL the offline demo model answers"},
	{"OPENAI_MODEL", "gpt-4o-mini", "the model"},
	{"OPENAI_FALLBACK_MODEL", "unset", "a second model for failures and late answers"},
	{"OPENAI_FALLBACK_BASE_URL", "the primary's", "where the fallback model lives"},
	{"OPENAI_FALLBACK_API_KEY", "the primary's", "the fallback's key"},
	{"SAPERLY_WEBHOOK_SECRET", "dev secret on loopback", "the signing secret; required off loopback (32+ characters)"},
	{"SAPERLY_WEBHOOK_SECRET_NEXT", "unset", "a staged rotation secret"},
	{"SAPERLY_API_BASE", "https://saperly.com/api/v1", "Saperly's REST API"},
	{"SAPERLY_API_KEY", "unset", "its key: hang-ups and call lookups"},
	{"PROMPTS_DIR", "./prompts", "agent files and lines.yaml, reloaded on change"},
	{"BRAIN_LOG_TEXT", "0", "1 logs caller and agent text (personal data)"},
	{"BRAIN_LOG_LEVEL", "info", "debug, info, warn, error"},
	{"BRAIN_RETENTION", "24h", "how long a call's record is kept after its last event"},
	{"BRAIN_DRAIN_DELAY", "0", "after SIGTERM, keep serving this long with /readyz 503 before closing the listener"},
	{"BRAIN_DRAIN_TIMEOUT", "5m", "after that, how long turns in progress may finish"},
	{"BRAIN_DEMO_TOKEN_DELAY", "30ms", "pace of the offline demo model"},
	{"BRAIN_MAX_ID_LEN", "128", "longest id accepted (bytes)"},
	{"BRAIN_MAX_CONNS", "4096", "open connections"},
	{"BRAIN_MAX_TOKENS", "450", "max_tokens on every model request"},
	{"BRAIN_MAX_CHARS", "1800", "characters spoken per turn"},
	{"BRAIN_HISTORY_LIMIT", "40", "past entries sent to the model"},
	{"BRAIN_MAX_UTTERANCE", "2000", "characters of the caller's words kept per message"},
	{"BRAIN_HOLD_AFTER", "1.2s", "nothing speakable by then: a holding phrase"},
	{"BRAIN_FIRST_CUT", "600ms", "first line at a word boundary this long after the first token"},
	{"BRAIN_HEDGE_AFTER", "2.5s", "no first token by then: start the fallback in parallel"},
	{"BRAIN_FALLBACK_WITHIN", "8s", "a failed model is retried on the fallback only this soon"},
	{"BRAIN_STALL_AFTER", "6s", "longest silence between lines"},
	{"BRAIN_TURN_BUDGET", "4m30s", "the answer ends gracefully by then"},
	{"BRAIN_STORE_TIMEOUT", "400ms", "bound on each store operation in a turn"},
	{"BRAIN_TURN_LEASE", "2s", "a turn's claim lapses this long after its replica stops renewing it"},
	{"BRAIN_PENDING_TURNS", "10000", "turns kept in memory for the store during an outage"},
	{"BRAIN_PENDING_BYTES", "67108864", "the same bound in bytes"},
	{"BRAIN_PENDING_RETENTION", "15m", "a kept turn not written by then is logged as lost"},
	{"BRAIN_APOLOGY_LINE", "built in", "spoken when the model fails before speaking"},
	{"BRAIN_RECOVERY_LINE", "built in", "spoken when the answer breaks mid-way"},
	{"BRAIN_STALL_LINE", "built in", "spoken when the model stalls for good"},
	{"BRAIN_HOLDING_PHRASES", "built in", "|-separated holding phrases"},
	{"BRAIN_RECORD", "off", "record calls: dir:PATH and/or redis, comma-separated"},
	{"BRAIN_RECORD_TEXT", "0", "1 keeps the words in recordings"},
	{"BRAIN_RECORD_IDLE", "30m", "a call silent this long is recorded without its call_ended"},
	{"BRAIN_RECORD_MAXLEN", "10000", "about how many scripts the recordings stream keeps"},
}
