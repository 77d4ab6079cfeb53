package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// TestSMSAnswers: a text to a line is answered by the line's agent in SMS mode through
// Saperly's API. The first send fails and is retried; a retried sms_received delivery does not
// send again; the second text sees the thread so far.
func TestSMSAnswers(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startRedis(t, port)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	const key = "sk-test-sms-0123456789"
	api := saperly.NewAPI(key)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	m := startMock(t)
	replies := []string{"Sure, Tuesday at 3 works. See you then!", "You're welcome, bye!"}
	m.script(t, mockllm.Behavior{Reply: replies[0]}, mockllm.Behavior{Reply: replies[1]})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"),
		[]byte("You answer for Acme Dental. Channel: {{.Channel}}.\n"), 0o600))
	b := startBrain(t, brainConfig{Redis: redisURL, Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR": dir, "BRAIN_SMS_ANSWER": "1", "SAPERLY_API_KEY": key,
		"SAPERLY_API_BASE": srv.URL + saperly.APIBasePath, "BRAIN_JOB_BACKOFF": "100ms",
	}})

	api.SetFault(saperly.Fault{Status: http.StatusServiceUnavailable, Times: 1}) // the first send fails
	text := func(body, sid string) saperly.Event {
		ev := b.client.NewEvent("sms_received", "", b.Line)
		ev["from_number"], ev["to_number"] = "+14155551234", "+14155550123"
		ev["message"], ev["message_sid"] = body, sid
		return ev
	}
	first := text("Can I move my cleaning to Tuesday?", "SM1")
	for range 2 { // Saperly's retry of the same event: a new delivery, the same event_id
		res, err := deliver(t, b.client, saperly.WebhookPath, first)
		require.NoError(t, err)
		checkAck(t, res)
	}
	res, err := deliver(t, b.client, saperly.WebhookPath, text("Thanks!", "SM2"))
	require.NoError(t, err)
	checkAck(t, res)

	sent := func() []saperly.SMS {
		var ok []saperly.SMS
		for _, s := range api.Messages() {
			if s.Status == http.StatusOK {
				ok = append(ok, s)
			}
		}
		return ok
	}
	// Jobs run in order on one worker: once the second text is answered, the retried
	// delivery's job and the failed send's retry have both run.
	require.Eventually(t, func() bool {
		for _, s := range sent() {
			if s.Text == replies[1] {
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(api.Messages()) >= 3 }, 10*time.Second, 20*time.Millisecond)
	ok := sent()
	require.Len(t, ok, 2, "one reply per text, the retried delivery and the failed send included: %+v", api.Messages())
	assert.Equal(t, replies[0], ok[0].Text)
	assert.Equal(t, "+14155551234", ok[0].To)
	assert.Equal(t, b.Line, ok[0].LineID)

	reqs := m.requests(t)
	require.Len(t, reqs, 2, "the model answers each text once")
	assert.Equal(t, "You answer for Acme Dental. Channel: sms.", reqs[0].Messages[0].Content)
	var convo []string
	for _, msg := range reqs[1].Messages[1:] {
		convo = append(convo, msg.Role+": "+msg.Content)
	}
	assert.Equal(t, []string{"user: Can I move my cleaning to Tuesday?", "assistant: " + replies[0], "user: Thanks!"}, convo,
		"the second text is answered with the thread so far")
}
