package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/transport"
)

// received is one verified delivery at the fake brain.
type received struct {
	path string
	body map[string]any
}

// brain is a fake brain: it verifies every delivery with transport.Verify, records it, and
// answers a message with two NDJSON lines, each after a short pause.
type brain struct {
	srv    *httptest.Server
	secret string
	gap    time.Duration

	mu   sync.Mutex
	got  []received
	open chan struct{} // one value per message stream that ended (or was cut)
}

func newBrain(t *testing.T, secret string) *brain {
	t.Helper()
	b := &brain{secret: secret, gap: 20 * time.Millisecond, open: make(chan struct{}, 16)}
	b.srv = httptest.NewServer(b)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *brain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if err := transport.Verify(r.Header, raw, []string{b.secret}, time.Now(), 300*time.Second); err != nil {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":%q}`, err.(*transport.VerifyError).Reason)
		return
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	b.got = append(b.got, received{path: r.URL.Path, body: body})
	b.mu.Unlock()
	if body["event"] != "message" {
		_, _ = io.WriteString(w, "{}")
		return
	}
	switch body["text"] {
	case "fail":
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"internal error"}`)
		return
	case "plain":
		_, _ = io.WriteString(w, `{"text":"Sure, what day works for you?"}`)
		return
	}
	defer func() { b.open <- struct{}{} }()
	w.Header().Set("Content-Type", "application/x-ndjson")
	for _, line := range []string{"Sure, I can help you book that.", "Which day works better?"} {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(b.gap):
		}
		fmt.Fprintf(w, `{"type":"speak","text":%q}`+"\n", line)
		_ = http.NewResponseController(w).Flush()
	}
}

func (b *brain) received() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.got...)
}

func (b *brain) kinds() []string {
	var kinds []string
	for _, r := range b.received() {
		kinds = append(kinds, r.body["event"].(string))
	}
	return kinds
}

// env returns a getenv holding only vars.
func env(vars ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(vars); i += 2 {
		m[vars[i]] = vars[i+1]
	}
	return func(k string) string { return m[k] }
}

// callsim runs the command and returns its output and error.
func callsim(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	var out, errOut strings.Builder
	err := run(t.Context(), args, getenv, &out, &errOut)
	return out.String(), err
}

var (
	callLine    = regexp.MustCompile(`^call ([0-9a-f-]{36})$`)
	spokenLine  = regexp.MustCompile(`^\+ *(\d+)ms  (.*)$`)
	summaryLine = regexp.MustCompile(`^(\d+) lines?, first line (\d+)ms, total (\d+)ms$`)
)

func TestSayStartsACallAndPrintsTheAnswer(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "I'd like to book a cleaning")

	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 4, out)
	m := callLine.FindStringSubmatch(lines[0])
	require.NotNil(t, m, lines[0])
	call := m[1]
	first := spokenLine.FindStringSubmatch(lines[1])
	require.NotNil(t, first, lines[1])
	assert.Equal(t, "Sure, I can help you book that.", first[2])
	second := spokenLine.FindStringSubmatch(lines[2])
	require.NotNil(t, second, lines[2])
	assert.Equal(t, "Which day works better?", second[2])
	assert.Regexp(t, `^\+ {0,4}\d{1,5}ms  `, lines[1], "the time is right-aligned")
	sum := summaryLine.FindStringSubmatch(lines[3])
	require.NotNil(t, sum, lines[3])
	assert.Equal(t, "2", sum[1])
	assert.Equal(t, first[1], sum[2], "first line latency")

	got := b.received()
	require.Len(t, got, 2)
	assert.Equal(t, "call_started", got[0].body["event"])
	assert.Equal(t, "message", got[1].body["event"])
	assert.Equal(t, "I'd like to book a cleaning", got[1].body["text"])
	for _, r := range got {
		assert.Equal(t, saperly.WebhookPath, r.path)
		assert.Equal(t, call, r.body["call_id"])
		assert.Equal(t, defaultLine, r.body["line_id"])
	}
	assert.Equal(t, defaultFrom, got[0].body["from_number"])
	assert.Equal(t, defaultTo, got[0].body["to_number"])
}

func TestSayContinuesACall(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)

	// Flags may follow the words, as people type them.
	out, err := callsim(t, env(), "say", "--url", b.srv.URL, "--call", "call-7", "--line", "line-9",
		"hello", "book a cleaning", "--end")

	require.NoError(t, err)
	assert.NotRegexp(t, `(?m)^call [0-9a-f-]{36}$`, out, "no new call")
	assert.Contains(t, out, "> hello\n", "several turns show what the caller said")
	assert.Contains(t, out, "> book a cleaning\n")
	assert.Equal(t, 2, strings.Count(out, "2 lines, first line "))
	assert.True(t, strings.HasSuffix(out, "call call-7 ended\n"), out)
	assert.Equal(t, []string{"message", "message", "call_ended"}, b.kinds())
	for _, r := range b.received() {
		assert.Equal(t, "call-7", r.body["call_id"])
		assert.Equal(t, "line-9", r.body["line_id"])
	}
}

func TestSayPlainJSONAnswer(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--call", "c", "plain")

	require.NoError(t, err)
	assert.Regexp(t, `^\+ *\d+ms  Sure, what day works for you\?\n1 line, first line \d+ms, total \d+ms\n$`, out)
}

func TestSayBargeIn(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)
	b.gap = 50 * time.Millisecond

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--call", "c", "--barge-in", "1", "book")

	require.NoError(t, err)
	assert.Contains(t, out, "Sure, I can help you book that.")
	assert.NotContains(t, out, "Which day")
	assert.Contains(t, out, "(caller talks over the answer after 1 line)")
	select { // the brain's stream ended: the hang-up reached it
	case <-b.open:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the brain never saw the hang-up")
	}
	got := b.received()
	require.Len(t, got, 2)
	assert.Equal(t, "interrupted", got[1].body["event"])
	assert.Equal(t, "Sure, I can help you book that.", got[1].body["partial_response_text"])
}

func TestSecretFromEnvironment(t *testing.T) {
	t.Parallel()
	b := newBrain(t, "line-secret")

	_, err := callsim(t, env("BRAIN_URL", b.srv.URL, "SAPERLY_WEBHOOK_SECRET", "line-secret"), "say", "--call", "c", "hi")
	require.NoError(t, err)

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--call", "c", "hi")
	require.Error(t, err, "the development secret does not verify")
	assert.Equal(t, `message: status 401: {"error":"signature_mismatch"}`, err.Error())
	assert.NotContains(t, out, "line-secret")
}

func TestNon200IsAnError(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--call", "c", "fail")

	require.Error(t, err)
	assert.Equal(t, `message: status 503: {"error":"internal error"}`, err.Error())
	assert.NotContains(t, out, "lines,", "no summary for a failed delivery")
}

func TestEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		path  string
		check func(t *testing.T, body map[string]any)
	}{
		{
			name: "interrupted",
			args: []string{"--kind", "interrupted", "--call", "c", "--partial", "Sure, I can"},
			path: saperly.WebhookPath,
			check: func(t *testing.T, body map[string]any) {
				assert.Equal(t, "Sure, I can", body["partial_response_text"])
				assert.Equal(t, "c", body["call_id"])
			},
		},
		{
			name:  "interrupted with nothing heard",
			args:  []string{"--kind", "interrupted", "--call", "c"},
			path:  saperly.WebhookPath,
			check: func(t *testing.T, body map[string]any) { assert.Equal(t, "", body["partial_response_text"]) },
		},
		{
			name:  "call_ended",
			args:  []string{"--kind", "call_ended", "--call", "c"},
			path:  saperly.WebhookPath,
			check: func(t *testing.T, body map[string]any) { assert.Equal(t, "completed", body["status"]) },
		},
		{
			name:  "test",
			args:  []string{"--kind", "test"},
			path:  saperly.WebhookPath,
			check: func(t *testing.T, body map[string]any) { assert.NotContains(t, body, "call_id") },
		},
		{
			name: "sms_received",
			args: []string{"--kind", "sms_received", "--text", "Running late"},
			path: saperly.WebhookPath,
			check: func(t *testing.T, body map[string]any) {
				assert.Equal(t, "Running late", body["message"])
				assert.Equal(t, defaultFrom, body["from_number"])
			},
		},
		{
			name:  "call_incoming goes to the status callback",
			args:  []string{"--kind", "call_incoming", "--call", "c"},
			path:  saperly.StatusPath,
			check: func(t *testing.T, body map[string]any) { assert.Equal(t, "inbound", body["direction"]) },
		},
		{
			name: "extra fields",
			args: []string{"--kind", "future_kind", "--data", `{"flavour":"new","event_id":"fixed"}`},
			path: saperly.WebhookPath,
			check: func(t *testing.T, body map[string]any) {
				assert.Equal(t, "new", body["flavour"])
				assert.Equal(t, "fixed", body["event_id"])
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBrain(t, saperly.DevSecret)

			out, err := callsim(t, env("BRAIN_URL", b.srv.URL), append([]string{"event"}, tt.args...)...)

			require.NoError(t, err)
			got := b.received()
			require.Len(t, got, 1)
			assert.Equal(t, tt.path, got[0].path)
			assert.Equal(t, tt.args[1], got[0].body["event"])
			assert.Equal(t, defaultLine, got[0].body["line_id"])
			tt.check(t, got[0].body)
			assert.Regexp(t, `^`+regexp.QuoteMeta(tt.args[1])+`: 200 \{\} \(\d+ms\)\n$`, out)
		})
	}
	t.Run("message prints the answer", func(t *testing.T) {
		t.Parallel()
		b := newBrain(t, saperly.DevSecret)

		out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "event", "--kind", "message", "--call", "c", "--text", "book")

		require.NoError(t, err)
		assert.Contains(t, out, "Sure, I can help you book that.")
		assert.Contains(t, out, "2 lines, first line")
	})
	t.Run("call_started without a call starts one", func(t *testing.T) {
		t.Parallel()
		b := newBrain(t, saperly.DevSecret)

		out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "event", "--kind", "call_started")

		require.NoError(t, err)
		m := regexp.MustCompile(`^call ([0-9a-f-]{36})\n`).FindStringSubmatch(out)
		require.NotNil(t, m, out)
		assert.Equal(t, m[1], b.received()[0].body["call_id"])
	})
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no command", args: nil, want: "missing command"},
		{name: "unknown command", args: []string{"dial"}, want: `unknown command "dial"`},
		{name: "nothing to say", args: []string{"say", "--end"}, want: "nothing to say"},
		{name: "unknown flag", args: []string{"say", "--nope", "hi"}, want: "flag provided but not defined"},
		{name: "no kind", args: []string{"event", "--call", "c"}, want: "--kind is required"},
		{name: "call required", args: []string{"event", "--kind", "call_ended"}, want: "--call is required for call_ended"},
		{name: "stray argument", args: []string{"event", "--kind", "test", "extra"}, want: "unexpected argument"},
		{name: "bad data", args: []string{"event", "--kind", "test", "--data", "[1]"}, want: "--data is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut strings.Builder
			err := run(t.Context(), tt.args, env(), &out, &errOut)

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			var ue usageError
			assert.ErrorAs(t, err, &ue, "exit status 2")
			assert.Empty(t, out.String())
		})
	}
}

func TestDashDashEndsFlags(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)

	_, err := callsim(t, env("BRAIN_URL", b.srv.URL), "say", "--call", "c", "--", "-5 degrees outside")

	require.NoError(t, err)
	assert.Equal(t, "-5 degrees outside", b.received()[0].body["text"])
}

func TestUnreachableBrain(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()

	_, err := callsim(t, env("BRAIN_URL", url), "say", "--call", "c", "hi")

	require.Error(t, err)
	assert.Contains(t, err.Error(), "message: post /webhook")
}

func TestSummary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		lines []saperly.Line
		want  string
	}{
		{name: "none", want: "0 lines, total 1500ms"},
		{name: "one", lines: []saperly.Line{{At: 412 * time.Millisecond}}, want: "1 line, first line 412ms, total 1500ms"},
		{name: "two", lines: []saperly.Line{{At: 412 * time.Millisecond}, {At: 980 * time.Millisecond}}, want: "2 lines, first line 412ms, total 1500ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, summary(tt.lines, 1500*time.Millisecond))
		})
	}
	var out strings.Builder
	printAnswer(&out, &saperly.Result{
		ContentType: "application/x-ndjson",
		Lines:       []saperly.Line{{Type: "speak", Text: "Sure, I can help you book that.", At: 412 * time.Millisecond}},
		Elapsed:     1530 * time.Millisecond,
	})
	assert.Equal(t, "+  412ms  Sure, I can help you book that.\n1 line, first line 412ms, total 1530ms\n", out.String())
}
