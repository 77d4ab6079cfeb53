package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
)

// TestLogging: the brain's log is what PROTOCOL §1.10 and the README promise: JSON lines on
// stderr, one event line per delivery and one turn line per message with their fields, and no
// secret, phone number or caller's words in it (BRAIN_LOG_TEXT is off).
func TestLogging(t *testing.T) {
	t.Parallel()
	const (
		from  = "+15551234567"
		words = "Purple elephants juggle marmalade on Tuesdays."
	)
	apiKey := "sk-e2e-" + saperly.NewUUID()

	// run makes a short call and returns its message's event id.
	run := func(t *testing.T, b *brain) string {
		t.Helper()
		c := newCall(b)
		ev := c.event("call_started")
		ev["from_number"], ev["to_number"], ev["direction"] = from, "+15559870002", "inbound"
		_, err := c.send(t, ev) // its status depends on the store; only its log line matters
		require.NoError(t, err)
		msg, _ := c.say(t, words)
		b.turnLine(t, msg["event_id"].(string))
		return msg["event_id"].(string)
	}
	// private checks that nothing personal or secret is in the log.
	private := func(t *testing.T, b *brain) {
		t.Helper()
		logs := b.logs.String()
		assert.NotContains(t, logs, b.Secret, "the signing secret is never logged")
		assert.NotContains(t, logs, apiKey, "the model API key is never logged")
		assert.NotContains(t, logs, from[len(from)-7:], "phone numbers are masked")
		assert.NotContains(t, logs, "elephants", "the caller's words are logged only when switched on")
	}
	// jsonOnly checks that every line on stderr is a zap JSON object with a level and a message.
	jsonOnly := func(t *testing.T, b *brain) {
		t.Helper()
		var bad []string
		for line := range strings.SplitSeq(strings.TrimSpace(b.logs.String()), "\n") {
			var e logEntry
			if json.Unmarshal([]byte(line), &e) != nil || e.str("level") == "" || e.str("msg") == "" {
				bad = append(bad, line)
			}
		}
		assert.Empty(t, bad, "every line on stderr is a JSON log entry (README: JSON (zap) on stderr)")
	}

	t.Run("fields", func(t *testing.T) {
		t.Parallel()
		m := startMock(t)
		b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{"OPENAI_API_KEY": apiKey}})
		id := run(t, b)

		turn := b.turnLine(t, id)
		for _, k := range []string{"call_id", "event_id", "line_id", "turn", "outcome", "model", "prompt_version",
			"verify_ms", "state_load_ms", "pre_model_ms", "ttft_ms", "first_line_ms", "first_line_lag_ms", "elapsed_ms",
			"lines", "holds", "fallback"} {
			assert.Contains(t, turn, k, "the turn line has %s", k)
		}
		for k, v := range turn {
			if strings.HasSuffix(k, "_ms") {
				assert.IsType(t, float64(0), v, "%s is a number of milliseconds", k)
			}
		}
		event := b.waitLog(t, "the message's event line", func(e logEntry) bool {
			return e.str("msg") == "event" && e.str("event_id") == id
		})
		for _, k := range []string{"event_type", "call_id", "line_id", "delivery_id", "event_id", "attempt", "verify",
			"status", "outcome", "elapsed_ms", "lines", "first_line_ms"} {
			assert.Contains(t, event, k, "the event line has %s", k)
		}
		for _, k := range []string{"elapsed", "first_chunk", "chunks", "ttft", "state_load", "stacktrace"} {
			assert.NotContains(t, turn, k, "no duration key without its unit, no stack")
			assert.NotContains(t, event, k, "no duration key without its unit, no stack")
		}
		assert.LessOrEqual(t, turn.num("first_line_ms"), turn.num("elapsed_ms"))
		assert.Equal(t, "message", event.str("event_type"))
		assert.Equal(t, "ok", event.str("verify"))
		assert.EqualValues(t, 200, event.num("status"))
		private(t, b)
		jsonOnly(t, b)
	})

	t.Run("during a redis outage", func(t *testing.T) {
		t.Parallel()
		m := startMock(t)
		b := startBrain(t, brainConfig{
			Redis:   fmt.Sprintf("redis://127.0.0.1:%d/0", freePort(t)),
			Model:   m.URL + "/v1",
			Env:     map[string]string{"OPENAI_API_KEY": apiKey},
			Unready: true,
		})
		run(t, b)
		private(t, b)
		jsonOnly(t, b)
	})
}
