package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// TestNonMessageEvents: every event but a message on the webhook gets 200 {} and never
// reaches the model (PROTOCOL §1.5–§1.7), unknown kinds and unknown fields included.
func TestNonMessageEvents(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1"})

	cases := []struct {
		name string
		path string
		body func(c *call) saperly.Event
	}{
		{name: "call_started", path: saperly.WebhookPath, body: func(c *call) saperly.Event {
			ev := c.event("call_started")
			ev["from_number"], ev["to_number"], ev["direction"] = "+15551230001", "+15559870002", "inbound"
			return ev
		}},
		{name: "call_ended", path: saperly.WebhookPath, body: func(c *call) saperly.Event {
			ev := c.event("call_ended")
			ev["status"], ev["duration"] = "completed", 61
			return ev
		}},
		{name: "sms_received", path: saperly.WebhookPath, body: func(c *call) saperly.Event {
			ev := b.client.NewEvent("sms_received", "", b.Line)
			ev["from_number"], ev["to_number"] = "+14155551234", "+14155550123"
			ev["message"], ev["message_sid"] = "Hello, can I move my appointment?", "SM9f1c2e"
			return ev
		}},
		{name: "test", path: saperly.WebhookPath, body: func(*call) saperly.Event {
			return b.client.NewEvent("test", "", b.Line)
		}},
		{name: "interrupted", path: saperly.WebhookPath, body: func(c *call) saperly.Event {
			ev := c.event("interrupted")
			ev["partial_response_text"] = "Sure, I can"
			return ev
		}},
		{name: "unknown kind with unknown fields", path: saperly.WebhookPath, body: func(c *call) saperly.Event {
			ev := c.event("call_transferred_v9")
			ev["transfer"] = map[string]any{"to": "sip:desk@example.com", "legs": []any{1, "two", nil}}
			ev["confidence"], ev["beta"] = 0.87, true
			return ev
		}},
		{name: "status call_incoming", path: saperly.StatusPath, body: func(c *call) saperly.Event {
			ev := c.event("call_incoming")
			ev["from_number"], ev["to_number"], ev["status"], ev["duration"] = "+15551230001", "+15559870002", "completed", 42
			return ev
		}},
		{name: "status call_outgoing", path: saperly.StatusPath, body: func(c *call) saperly.Event {
			ev := c.event("call_outgoing")
			ev["from_number"], ev["to_number"], ev["status"] = "+15559870002", "+15551230001", "ringing"
			return ev
		}},
		{name: "status body that says message", path: saperly.StatusPath, body: func(c *call) saperly.Event {
			ev := c.event("message")
			ev["text"] = "This must never be answered with speech."
			return ev
		}},
	}
	t.Run("events", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				res, err := deliver(t, b.client, tc.path, tc.body(newCall(b)))
				require.NoError(t, err)
				checkAck(t, res)
			})
		}
	})
	assert.Empty(t, m.requests(t), "no event but a message on the webhook reaches the model")
}

// TestRejectedDeliveries: the signature, replay and body rules (PROTOCOL §1.2, §1.4) and the
// README's error answers.
func TestRejectedDeliveries(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1"})

	t.Run("rules", func(t *testing.T) {
		t.Run("wrong secret", func(t *testing.T) {
			t.Parallel()
			c := newCall(b)
			res, err := c.send(t, c.message("hello"), saperly.WithSecret(strings.Repeat("ab", 32)))
			checkError(t, res, err, http.StatusUnauthorized, "signature_mismatch")
		})
		t.Run("stale timestamp", func(t *testing.T) {
			t.Parallel()
			c := newCall(b)
			res, err := c.send(t, c.message("hello"), saperly.WithTimestamp(time.Now().Add(-10*time.Minute)))
			checkError(t, res, err, http.StatusUnauthorized, "stale_timestamp")
		})
		t.Run("missing signature", func(t *testing.T) {
			t.Parallel()
			c := newCall(b)
			res, err := c.send(t, c.message("hello"), saperly.WithHeader("X-Saperly-Signature", ""))
			checkError(t, res, err, http.StatusUnauthorized, "missing_signature")
		})
		t.Run("replayed delivery id", func(t *testing.T) {
			t.Parallel()
			c := newCall(b)
			ev := c.message("Hi, what are your hours?")
			first, err := c.send(t, ev)
			checkSpoken(t, first, err)
			res, err := c.send(t, ev, saperly.WithDeliveryID(first.DeliveryID))
			checkError(t, res, err, http.StatusConflict, "duplicate_delivery")
		})
		t.Run("replayed call_ended delivery id", func(t *testing.T) {
			t.Parallel()
			c := newCall(b)
			ev := c.event("call_ended")
			first, err := c.send(t, ev)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, first.Status)
			res, err := c.send(t, ev, saperly.WithDeliveryID(first.DeliveryID))
			checkError(t, res, err, http.StatusConflict, "duplicate_delivery")
		})
		t.Run("malformed json", func(t *testing.T) {
			t.Parallel()
			body := []byte(fmt.Sprintf(`{"event":"message","line_id":%q,"call_id":%q,"text":"hel`, b.Line, saperly.NewUUID()))
			res, err := deliver(t, b.client, saperly.WebhookPath, body)
			checkError(t, res, err, http.StatusBadRequest, "")
		})
		t.Run("no event", func(t *testing.T) {
			t.Parallel()
			ev := newCall(b).message("hello")
			delete(ev, "event")
			res, err := deliver(t, b.client, saperly.WebhookPath, ev)
			checkError(t, res, err, http.StatusBadRequest, "")
		})
		t.Run("oversized body", func(t *testing.T) {
			t.Parallel()
			ev := newCall(b).message(strings.Repeat("la ", (1<<20)/3+100))
			raw, err := json.Marshal(ev)
			require.NoError(t, err)
			require.Greater(t, len(raw), 1<<20)
			res, err := deliver(t, b.client, saperly.WebhookPath, raw)
			require.NoError(t, err)
			assert.Equal(t, http.StatusRequestEntityTooLarge, res.Status, "body: %s", res.Body)
		})
	})
	// Only the first delivery of the replayed message was answered.
	assert.Len(t, m.requests(t), 1, "rejected deliveries never reach the model")
}

// TestModelDown: with nothing listening at the model's address, a message still gets a 200
// NDJSON answer with a spoken apology, never silence or a 5xx (PROTOCOL §1.8).
func TestModelDown(t *testing.T) {
	t.Parallel()
	b := startBrain(t, brainConfig{
		Redis: sharedRedisURL(t),
		Model: fmt.Sprintf("http://127.0.0.1:%d/v1", freePort(t)),
	})
	c := newCall(b)
	c.ack(t, c.event("call_started"))
	for _, text := range []string{"Hi, I'd like to book a cleaning.", "Hello? Are you there?"} {
		ev, res := c.say(t, text)
		assert.Equal(t, apologyLine, modelSpeech(res), "the caller hears the apology")
		line := b.turnLine(t, ev["event_id"].(string))
		assert.Equal(t, "apology", line.str("outcome"))
	}
}

// TestHealthAndReadiness: both probes answer 200 on a brain whose store is up.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1"})
	for _, path := range []string{"/healthz", "/readyz"} {
		status, body := b.get(path)
		assert.Equal(t, http.StatusOK, status, "GET %s: %s", path, body)
	}
}

// TestRedisUnreachable: with Redis down from the start the brain still starts, says it is
// not ready, and still answers every message with speech. The call's turns are kept in
// memory for Redis, so the next turn still sees the last; those it cannot write within
// BRAIN_PENDING_RETENTION are logged as lost, each once, with its call and event ids (README).
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startBrain(t, brainConfig{
		Redis:   fmt.Sprintf("redis://127.0.0.1:%d/0", freePort(t)),
		Model:   m.URL + "/v1",
		Unready: true,
		Env:     map[string]string{"BRAIN_PENDING_RETENTION": "5s"},
	})
	status, body := b.get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status, "GET /readyz: %s", body)
	status, _ = b.get("/healthz")
	assert.Equal(t, http.StatusOK, status)

	c := newCall(b)
	res, err := c.send(t, c.event("call_started"))
	checkError(t, res, err, http.StatusServiceUnavailable, "store_unavailable")

	replies := []string{"Sure, I can help with that. What day suits you?", "Tuesday works. See you then!"}
	m.script(t, mockllm.Behavior{Reply: replies[0]}, mockllm.Behavior{Reply: replies[1]})
	ev, first := c.say(t, "I'd like to book a cleaning.")
	assert.Equal(t, replies[0], modelSpeech(first))
	ev2, res := c.say(t, "Tuesday, please.")
	assert.Equal(t, replies[1], modelSpeech(res))

	reqs := m.requests(t)
	require.Len(t, reqs, 2)
	checkConversation(t, reqs[1], []mockllm.Message{
		user("I'd like to book a cleaning."), assistant(first.Text()), user("Tuesday, please."),
	})
	line := b.turnLine(t, ev["event_id"].(string))
	assert.Equal(t, true, line["degraded"], "the turn line says it went without state")
	assert.Equal(t, true, line["pending"], "and that the turn is kept for the store")

	for _, id := range []string{ev["event_id"].(string), ev2["event_id"].(string)} {
		lost := b.waitLog(t, "the lost turn "+id, func(e logEntry) bool {
			return e.str("msg") == "turn lost" && e.str("event_id") == id
		})
		assert.Equal(t, "error", lost.str("level"))
		assert.Equal(t, c.ID, lost.str("call_id"))
		assert.Equal(t, "retention", lost.str("reason"))
		assert.Contains(t, lost, "pending_ms")
	}
}
