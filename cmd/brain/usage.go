package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"
)

// Set at link time by release builds (the Dockerfile):
// -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234". Otherwise the Go toolchain's
// build info is used: the module version and the VCS revision it stamps into binaries built
// from a checkout.
var (
	version = ""
	commit  = ""
)

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

// usage prints what `brain -h` shows: the subcommands and every setting with its default.
func usage(w io.Writer) {
	fmt.Fprint(w, `brain: the callbrain webhook server for Saperly phone lines.

Usage:
  brain                       serve (configured from the environment, see below)
  brain prompts check [-q] [dir]
                              check agent files and lines.yaml, print what each renders to
  brain version               print the version and commit
  brain health [path]         GET path (default /healthz) on BRAIN_ADDR; exit 0 on 200 (container health checks)
  brain -h | --help | help    this text

Settings (environment variables; see README.md):
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range settings {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.name, s.def, s.doc)
	}
	_ = tw.Flush()
	fmt.Fprint(w, "\nSecret-bearing variables named in lines.yaml (secret_env) and agent files (tool headers) are read too.\n")
}

// healthCommand probes the server on BRAIN_ADDR over loopback, for a container's HEALTHCHECK.
func healthCommand(args []string, getenv func(string) string, stderr io.Writer) int {
	path := "/healthz"
	if len(args) > 0 {
		path = args[0]
	}
	if !strings.HasPrefix(path, "/") {
		fmt.Fprintf(stderr, "brain health: path %q must start with /\n", path)
		return 2
	}
	_, port, err := net.SplitHostPort(or(getenv("BRAIN_ADDR"), "127.0.0.1:8080"))
	if err != nil {
		fmt.Fprintln(stderr, "brain health: BRAIN_ADDR: want host:port")
		return 2
	}
	host := "127.0.0.1"
	if h, _, _ := net.SplitHostPort(getenv("BRAIN_ADDR")); h != "" && h != "0.0.0.0" && h != "::" {
		host = h
	}
	c := http.Client{Timeout: 3 * time.Second}
	res, err := c.Get("http://" + net.JoinHostPort(host, port) + path)
	if err != nil {
		fmt.Fprintln(stderr, "brain health:", err)
		return 1
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "brain health: GET %s: %d\n", path, res.StatusCode)
		return 1
	}
	return 0
}

// versionString is the build's version and commit, from the linker flags or the build info.
func versionString() string {
	v, c, dirty := version, commit, false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if c == "" {
					c = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true" && commit == ""
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	if dirty {
		c += "-dirty"
	}
	return fmt.Sprintf("brain %s commit %s", v, strings.TrimSpace(c))
}
