package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// newRedisPair starts a mock model and a brain on the shared Redis.
func newRedisPair(t *testing.T, env map[string]string, mockArgs ...string) (*mock, *brain) {
	t.Helper()
	m := startMock(t, mockArgs...)
	return m, startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: env})
}

// tokensOf counts the mock's tokens in text: scripted faults are placed in tokens.
func tokensOf(text string) int { return len(agent.DemoTokens(text)) }

// countUser counts the model messages that are this user utterance.
func countUser(msgs []mockllm.Message, text string) int {
	n := 0
	for _, m := range msgs {
		if m.Role == "user" && norm(m.Content) == norm(text) {
			n++
		}
	}
	return n
}

// TestRetryOfFinishedMessage: a retried delivery of an answered message (same event_id, new
// delivery id, attempt 2) replays the same lines word for word without asking the model
// again, and the turn enters the history once (PROTOCOL §1.4).
func TestRetryOfFinishedMessage(t *testing.T) {
	t.Parallel()
	m, b := newRedisPair(t, nil)
	c := newCall(b)
	reply := "Sure, I can help with that. We have Tuesday at three or Wednesday at ten. Which one works for you?"
	m.script(t, mockllm.Behavior{Reply: reply}, mockllm.Behavior{Reply: "Great, Tuesday at three it is."})

	const said = "I'd like to book a cleaning."
	ev := c.message(said)
	first, err := c.send(t, ev)
	checkSpoken(t, first, err)
	retry, err := c.send(t, ev, saperly.WithAttempt(2))
	checkSpoken(t, retry, err)

	assert.NotEqual(t, first.DeliveryID, retry.DeliveryID)
	assert.Equal(t, reply, modelSpeech(first))
	assert.Equal(t, texts(first), texts(retry), "a retry answers with the same lines, byte for byte")
	require.Len(t, m.requests(t), 1, "a retry must not call the model again")

	const next = "Tuesday at three, please."
	c.say(t, next)
	reqs := m.requests(t)
	require.Len(t, reqs, 2)
	checkConversation(t, reqs[1], []mockllm.Message{user(said), assistant(first.Text()), user(next)})
	assert.Equal(t, 1, countUser(reqs[1].Messages, said), "the retried turn is in the history once")
	b.waitLog(t, "the replayed turn", func(e logEntry) bool {
		msg := e.str("msg")
		return (msg == "turn done" || msg == "turn degraded") && e.str("event_id") == ev["event_id"] && e["replayed"] == true
	})
}

// TestRetryWhileStreaming: a retry that arrives while the first delivery's answer is still
// streaming gets every line from the first, and the model is asked once (PROTOCOL §1.4).
func TestRetryWhileStreaming(t *testing.T) {
	t.Parallel()
	m, b := newRedisPair(t, nil)
	c := newCall(b)
	reply := "Of course. We have openings on Tuesday at three thirty and on Wednesday at ten in the morning. " +
		"Both are with Doctor Patel, who does most of our cleanings. Which one would you prefer?"
	m.script(t, mockllm.Behavior{Reply: reply, TokenDelay: 150 * time.Millisecond}, mockllm.Behavior{Reply: "Wonderful."})

	const said = "When can I come in for a cleaning?"
	ev := c.message(said)
	first, retry := retryWhileStreaming(t, b, c, ev)
	assert.Equal(t, reply, modelSpeech(first))
	assert.Equal(t, texts(first), texts(retry), "the retry hears every line, from the first")
	require.Len(t, m.requests(t), 1, "a retry must not call the model again")

	const next = "Wednesday, please."
	c.say(t, next)
	reqs := m.requests(t)
	require.Len(t, reqs, 2)
	checkConversation(t, reqs[1], []mockllm.Message{user(said), assistant(first.Text()), user(next)})
}

// bargeInReply is long and slow, so the caller can talk over it.
const bargeInReply = "Of course, I can book that for you. We have openings on Tuesday at three thirty " +
	"and on Wednesday at ten in the morning. Which one would you prefer?"

// cutAfterFirstLine sends a message whose answer the caller talks over: Saperly hangs up
// after the first line (PROTOCOL §1.5). It returns the message and a prefix of that line, as
// partial_response_text would report it, and waits until the brain has closed the turn (by
// the time Saperly sends the next message the caller has spoken and ~700 ms of silence passed).
func cutAfterFirstLine(t *testing.T, m *mock, b *brain, c *call, said string) (saperly.Event, string) {
	t.Helper()
	m.script(t, mockllm.Behavior{Reply: bargeInReply, TokenDelay: 150 * time.Millisecond})
	ev := c.message(said)
	res, err := c.send(t, ev, saperly.WithCloseAfter(1))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status)
	require.True(t, res.Cut)
	require.Len(t, res.Lines, 1)
	checkLines(t, res)
	words := strings.Fields(res.Lines[0].Text)
	partial := strings.Join(words[:max(1, len(words)/2)], " ")
	return ev, partial
}

// TestBargeIn: when the caller talks over the answer, the history keeps only what was heard,
// as the interrupted event reports it, whether it arrives before or after the next message
// (PROTOCOL §1.5, §1.8).
func TestBargeIn(t *testing.T) {
	t.Parallel()
	const said1, said2, said3 = "I'd like to book a cleaning.", "Sorry, do you have anything on Friday?", "Friday at nine then."

	t.Run("interrupted before the next message", func(t *testing.T) {
		t.Parallel()
		m, b := newRedisPair(t, nil)
		c := newCall(b)
		ev1, partial := cutAfterFirstLine(t, m, b, c, said1)
		in := c.event("interrupted")
		in["partial_response_text"] = partial
		c.ack(t, in)
		line := b.turnLine(t, ev1["event_id"].(string))
		assert.Equal(t, "cut", line.str("outcome"))

		m.script(t, mockllm.Behavior{Reply: "Friday at nine is open. Shall I book it?"})
		c.say(t, said2)
		reqs := m.requests(t)
		require.Len(t, reqs, 2)
		checkConversation(t, reqs[1], []mockllm.Message{user(said1), assistant(partial), user(said2)})
		assert.Equal(t, 1, countUser(reqs[1].Messages, said1), "the cut turn's utterance is in the history once")
	})

	t.Run("interrupted after the next message", func(t *testing.T) {
		t.Parallel()
		m, b := newRedisPair(t, nil)
		c := newCall(b)
		ev1, partial := cutAfterFirstLine(t, m, b, c, said1)
		cutAt := time.Now().UnixMilli()
		require.Less(t, ev1["timestamp"].(int64), cutAt)
		b.turnLine(t, ev1["event_id"].(string))

		// Saperly queues the next message behind the cut one, but not the interrupted event,
		// which here arrives late: its timestamp still places it inside the first answer.
		m.script(t, mockllm.Behavior{Reply: "Friday at nine is open. Shall I book it?"})
		ev2 := c.message(said2)
		ev2["timestamp"] = max(time.Now().UnixMilli(), cutAt+1)
		res2, err := c.send(t, ev2)
		checkSpoken(t, res2, err)
		in := c.event("interrupted")
		in["partial_response_text"], in["timestamp"] = partial, cutAt
		c.ack(t, in)

		m.script(t, mockllm.Behavior{Reply: "You're booked for Friday at nine."})
		c.say(t, said3)
		reqs := m.requests(t)
		require.Len(t, reqs, 3)
		checkConversation(t, reqs[2], []mockllm.Message{
			user(said1), assistant(partial), user(said2), assistant(res2.Text()), user(said3),
		})
	})
}

// TestSlowFirstToken: a model slow to start gets one short holding phrase long before its
// first token, then its answer (README: holding phrase after 1.2 s).
func TestSlowFirstToken(t *testing.T) {
	t.Parallel()
	const ttft = 4 * time.Second
	m, b := newRedisPair(t, nil)
	c := newCall(b)
	reply := "Yes, we're open until six today. Is there anything else I can help with?"
	m.script(t, mockllm.Behavior{Reply: reply, TTFT: ttft})

	ev, res := c.say(t, "Are you open today?")
	require.GreaterOrEqual(t, len(res.Lines), 2, "a holding phrase, then the answer: %q", texts(res))
	assert.True(t, isHolding(res.Lines[0].Text), "the first line is a holding phrase: %q", res.Lines[0].Text)
	assert.Less(t, res.Lines[0].At, ttft-time.Second, "the holding phrase comes well before the model's first token")
	holds := 0
	for _, l := range res.Lines {
		if isHolding(l.Text) {
			holds++
		}
	}
	assert.Equal(t, 1, holds, "exactly one holding phrase: %q", texts(res))
	assert.Equal(t, reply, modelSpeech(res), "then the model's answer")
	assert.EqualValues(t, 1, b.turnLine(t, ev["event_id"].(string)).num("holds"))
}

// TestStallMidAnswer: a model that stops mid-answer for longer than Saperly's 15 s line
// budget never leaves a 15 s gap; the caller hears a holding phrase and/or a graceful
// closing sentence, and the turn ends without waiting for the model (PROTOCOL §1.8).
func TestStallMidAnswer(t *testing.T) {
	t.Parallel()
	m, b := newRedisPair(t, nil)
	c := newCall(b)
	const before = "Sure, I can help with that."
	reply := before + " Let me look at the calendar for next week. Tuesday at three works well for most people."
	m.script(t, mockllm.Behavior{Reply: reply, StallAfter: tokensOf(before + " Let me look"), Stall: 25 * time.Second})

	_, res := c.say(t, "Can I come in next week?") // checks every gap is under 15 s
	ts := texts(res)
	assert.True(t, strings.HasPrefix(modelSpeech(res), before), "the words before the stall are spoken: %q", ts)
	last := ts[len(ts)-1]
	graceful := last == stallLine
	for _, l := range ts[1:] {
		graceful = graceful || isHolding(l)
	}
	assert.True(t, graceful, "a holding phrase or the closing line covers the stall: %q", ts)
	assert.True(t, endsSentence(last), "the answer ends on a sentence: %q", last)
	assert.NotContains(t, res.Text(), "Tuesday at three", "the turn ended without waiting out the stall")
}

// TestModelError: a model answering 500 is retried on the fallback model when one is
// configured; without one, the caller hears the apology (README; PROTOCOL §1.8).
func TestModelError(t *testing.T) {
	t.Parallel()
	t.Run("fallback answers", func(t *testing.T) {
		t.Parallel()
		m, b := newRedisPair(t, map[string]string{"OPENAI_MODEL": "primary-model", "OPENAI_FALLBACK_MODEL": "fallback-model"})
		c := newCall(b)
		reply := "Sure, I can check that for you. Which day were you thinking of?"
		m.script(t,
			mockllm.Behavior{Model: "primary-model", Status: http.StatusInternalServerError},
			mockllm.Behavior{Model: "fallback-model", Reply: reply})

		ev, res := c.say(t, "Do you have anything free this week?")
		assert.Equal(t, reply, modelSpeech(res), "the fallback's answer is spoken")
		var models []string
		for _, r := range m.requests(t) {
			models = append(models, r.Model)
		}
		assert.Equal(t, []string{"primary-model", "fallback-model"}, models)
		assert.Equal(t, true, b.turnLine(t, ev["event_id"].(string))["fallback"])
	})
	t.Run("no fallback", func(t *testing.T) {
		t.Parallel()
		m, b := newRedisPair(t, nil)
		c := newCall(b)
		m.script(t, mockllm.Behavior{Status: http.StatusInternalServerError})
		_, res := c.say(t, "Do you have anything free this week?")
		assert.Equal(t, apologyLine, modelSpeech(res), "the caller hears the apology")
		assert.Len(t, m.requests(t), 1)
	})
}

// TestStreamBreaksMidAnswer: a model stream that breaks mid-answer, by a cut connection or by
// an error a provider reports inside its 200 stream (OpenRouter's shape), ends with the last
// complete sentence and a short recovery line, still 200 (README): never the half sentence
// that followed, and the turn line says why.
func TestStreamBreaksMidAnswer(t *testing.T) {
	t.Parallel()
	const sentence = "Sure, I can help with that."
	reply := sentence + " Let me look at the calendar for next week and find you a good time."
	breakAt := tokensOf(sentence + " Let me look")
	for _, tc := range []struct {
		name       string
		behavior   mockllm.Behavior
		modelError string // on the turn line; "" when not asserted
	}{
		{name: "connection cut", behavior: mockllm.Behavior{Reply: reply, CutAfter: breakAt}},
		{name: "error in the stream", behavior: mockllm.Behavior{Reply: reply, ErrorAfter: breakAt},
			modelError: "Provider disconnected unexpectedly"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, b := newRedisPair(t, nil)
			c := newCall(b)
			m.script(t, tc.behavior)

			ev, res := c.say(t, "Can I come in next week?")
			ts := texts(res)
			require.GreaterOrEqual(t, len(ts), 2, "%q", ts)
			assert.Equal(t, recoveryLine, ts[len(ts)-1], "a recovery line closes the answer")
			spoken := strings.TrimSpace(strings.TrimSuffix(modelSpeech(res), recoveryLine))
			assert.Equal(t, sentence, spoken, "the model's words up to the last complete sentence")
			line := b.turnLine(t, ev["event_id"].(string))
			assert.Equal(t, "recovered", line.str("outcome"))
			if tc.modelError != "" {
				assert.Contains(t, line.str("model_error"), tc.modelError)
			}
		})
	}
}

// TestTurnCap: an answer far longer than Saperly's 1800-character cap is ended on a sentence
// boundary within the cap, and the model is asked for a bounded answer (PROTOCOL §1.8).
func TestTurnCap(t *testing.T) {
	t.Parallel()
	m, b := newRedisPair(t, nil)
	c := newCall(b)
	var sb strings.Builder
	for i := 1; sb.Len() < 3000; i++ {
		fmt.Fprintf(&sb, "Option %d is a visit on day %d of next month at %d in the morning, which suits most schedules. ", i, i, 7+i%5)
	}
	reply := strings.TrimSpace(sb.String())
	m.script(t, mockllm.Behavior{Reply: reply, TokenDelay: 2 * time.Millisecond})

	_, res := c.say(t, "What times do you have next month?") // checks the 1800 characters
	total := utf8.RuneCountInString(res.Text())
	assert.Greater(t, total, 1000, "the answer runs on to near the cap")
	ts := texts(res)
	assert.True(t, endsSentence(ts[len(ts)-1]), "the last line ends a sentence: %q", ts[len(ts)-1])
	speech := modelSpeech(res)
	assert.True(t, strings.HasPrefix(reply, speech[:min(100, len(speech))]), "the model's words, in order")
	reqs := m.requests(t)
	require.Len(t, reqs, 1)
	assert.Positive(t, reqs[0].MaxTokens, "the model request bounds the answer")
}

// TestRedisRestart: Redis dies mid-call and comes back on the same port. The caller hears
// speech on every turn throughout, and the brain is ready again once Redis is back.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	r := startRedis(t, port)
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Model: m.URL + "/v1"})
	c := newCall(b)
	c.ack(t, c.event("call_started"))
	c.say(t, "Hi, what are your hours?")

	r.kill()
	b.waitStatus(t, "/readyz", http.StatusServiceUnavailable, 10*time.Second)
	ev, _ := c.say(t, "Can I book a cleaning?")
	assert.Equal(t, true, b.turnLine(t, ev["event_id"].(string))["degraded"], "the turn went on without state")

	startRedis(t, port)
	c.say(t, "Tuesday, please.")
	b.waitStatus(t, "/readyz", http.StatusOK, 15*time.Second)

	// Back to normal: turns are kept again (the restarted Redis kept nothing from before, and
	// the turn right after the restart may have gone without it).
	const said4, said5 = "What should I bring?", "Thank you, bye."
	ev, res4 := c.say(t, said4)
	assert.Equal(t, false, b.turnLine(t, ev["event_id"].(string))["degraded"])
	c.say(t, said5)
	reqs := m.requests(t)
	require.Len(t, reqs, 5)
	msgs := reqs[4].Messages
	require.GreaterOrEqual(t, len(msgs), 4, "the last turn is in the history again")
	var tail []mockllm.Message
	for _, msg := range msgs[len(msgs)-3:] {
		tail = append(tail, mockllm.Message{Role: msg.Role, Content: norm(msg.Content)})
	}
	assert.Equal(t, []mockllm.Message{user(said4), assistant(norm(res4.Text())), user(said5)}, tail)
}
