package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsScrape: a brain with BRAIN_METRICS_ADDR serves Prometheus text on that port,
// not on the public one, and after a call it counts the deliveries, the turn with its
// latencies, the store operations and the active calls; a forged delivery is counted by
// reason. No label carries the call id or a phone number.
func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1",
		Env: map[string]string{"BRAIN_METRICS_ADDR": metricsAddr}})

	c := newCall(b)
	c.ack(t, c.event("call_started"))
	_, res := c.say(t, "Hi, I'd like to book a cleaning.")
	require.NotEmpty(t, modelSpeech(res))
	forged := *b.client // a copy: the brain's own client keeps its secret
	forged.Secret = strings.Repeat("0", 64)
	fr, err := forged.StartCall(t.Context(), "forged-call", b.Line, "+14155550100", "+14155550000")
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, fr.Status)

	status, _ := b.get("/metrics")
	assert.Equal(t, http.StatusNotFound, status, "metrics stay off the public port")

	body := scrape(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{
		`callbrain_deliveries_total{kind="call_started",route="/webhook",status="200"} 1`,
		`callbrain_deliveries_total{kind="message",route="/webhook",status="200"} 1`,
		`callbrain_turns_total{budget="none",outcome="answered"} 1`,
		`callbrain_turn_first_line_seconds_count 1`,
		`callbrain_turn_time_to_first_token_seconds_count 1`,
		`callbrain_turn_pre_model_seconds_count 1`,
		`callbrain_turn_duration_seconds_count 1`,
		`callbrain_store_operations_total{operation="begin_turn"} 1`,
		`callbrain_store_operations_total{operation="commit_turn"} 1`,
		`callbrain_calls_active 1`,
		`callbrain_turns_active 0`,
		`callbrain_verification_failures_total{reason=`,
		`callbrain_deliveries_total{kind="none",route="/webhook",status="401"} 1`,
	} {
		assert.Contains(t, body, want)
	}
	assert.NotContains(t, body, c.ID)
	assert.NotContains(t, body, "forged-call")
	assert.NotContains(t, body, "4155550")
	assert.NotContains(t, body, `callbrain_store_errors_total`, "no store errors on a healthy Redis")

	c.ack(t, c.event("call_ended"))
	assert.Contains(t, scrape(t, "http://"+metricsAddr+"/metrics"), `callbrain_calls_active 0`)
}

// TestReadyzUnreadyWhileDraining: on SIGTERM /readyz answers 503 at once, while the brain
// keeps serving for BRAIN_DRAIN_DELAY (a retry or a new turn is still answered), then it
// exits cleanly.
func TestReadyzUnreadyWhileDraining(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1",
		Env: map[string]string{"BRAIN_DRAIN_DELAY": "4s"}})
	c := newCall(b)
	c.ack(t, c.event("call_started"))

	require.NoError(t, b.cmd.Process.Signal(syscall.SIGTERM))
	b.waitStatus(t, "/readyz", http.StatusServiceUnavailable, 3*time.Second)
	status, body := b.get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.JSONEq(t, `{"status":"unready","error":"draining"}`, string(body))
	_, res := c.say(t, "Are you still there?")
	assert.NotEmpty(t, modelSpeech(res), "a call in progress is still answered while draining")
	select {
	case <-b.done:
	case <-time.After(stopWait):
		t.Fatal("brain did not exit after its drain delay")
	}
	require.NoError(t, b.waitErr)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(body)
}
