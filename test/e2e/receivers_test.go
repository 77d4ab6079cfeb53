package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
)

// The receivers' secrets in these tests, and the sources.yaml naming them.
const (
	e2eSalpreKey    = "salpre-e2e-key-0123456789abcdef"
	e2eSalpreNext   = "salpre-e2e-next-0123456789abcdef"
	e2eItellicoKey  = "itellico-e2e-secret-0123456789abcdef"
	e2eSpeakNodeKey = "speaknode-e2e-secret-0123456789abcdef"
	e2eSources      = `salpre:
  headers:
    - {name: X-Api-Key, value_env: SALPRE_KEY}
    - {name: X-Api-Key, value_env: SALPRE_KEY_NEXT}
itellico:
  secret_env: ITELLICO_SECRET
speaknode:
  secret_env: SPEAKNODE_SECRET
`
)

// startReceiverBrain runs a brain on Redis with all three receivers on.
func startReceiverBrain(t *testing.T, model string) *brain {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.yaml"), []byte(e2eSources), 0o600))
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "prompts", "default.md"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"), raw, 0o600))
	return startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: model, Env: map[string]string{
		"PROMPTS_DIR":      dir,
		"SALPRE_KEY":       e2eSalpreKey,
		"SALPRE_KEY_NEXT":  e2eSalpreNext,
		"ITELLICO_SECRET":  e2eItellicoKey,
		"SPEAKNODE_SECRET": e2eSpeakNodeKey,
	}})
}

// hookFixture reads a platform's documented envelope and gives it this test's own ids, so
// runs sharing a Redis never meet each other's records.
func hookFixture(t *testing.T, name string, ids map[string]string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "transport", "testdata", "hooks", name))
	require.NoError(t, err)
	raw = bytes.TrimSpace(raw)
	for from, to := range ids {
		raw = bytes.ReplaceAll(raw, []byte(from), []byte(to))
	}
	return raw
}

func hookPost(t *testing.T, b *brain, path string, body []byte, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(out)
}

func macHex(secret string, signed []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(signed)
	return hex.EncodeToString(m.Sum(nil))
}

// itellicoSigned signs body as itellicoAI does: HMAC-SHA256 over body + "." + timestamp.
func itellicoSigned(body []byte, at time.Time, secret string) map[string]string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return map[string]string{"X-Itellico-Timestamp": ts, "X-Itellico-Signature": macHex(secret, []byte(string(body)+"."+ts))}
}

// brainCalls runs `brain calls …` against the suite's Redis.
func brainCalls(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryBrainCalls(t, args...)
	require.NoError(t, err, "brain calls %s: %s", strings.Join(args, " "), out)
	return out
}

// tryBrainCalls is brainCalls for a caller that expects it may fail (a record not written yet).
func tryBrainCalls(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"calls"}, args...)...)
	cmd.Env = childEnv(map[string]string{"REDIS_URL": sharedRedisURL(t)})
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type shownCall struct {
	Platform  string `json:"platform"`
	CallID    string `json:"call_id"`
	From      string `json:"from"`
	Status    string `json:"status"`
	Direction string `json:"direction"`
	Test      bool   `json:"is_test"`
	Closed    bool   `json:"closed"`
	Events    int    `json:"events"`
	Turns     []struct {
		Role, Text string
	} `json:"turns"`
	Analysis json.RawMessage `json:"analysis"`
}

func showCall(t *testing.T, id string) shownCall {
	t.Helper()
	var c shownCall
	out := brainCalls(t, "show", id)
	require.NoError(t, json.Unmarshal([]byte(out), &c), out)
	return c
}

func TestSalpreReceiver(t *testing.T) {
	t.Parallel()
	b := startReceiverBrain(t, "")
	n, err := rand.Int(rand.Reader, big.NewInt(1<<40))
	require.NoError(t, err)
	callID := n.String()
	ids := map[string]string{`"call_id": 1`: `"call_id": ` + callID, `"call_id":1`: `"call_id":` + callID, `"id":1`: `"id":` + callID}
	auth := map[string]string{"X-Api-Key": e2eSalpreKey}
	for _, name := range []string{"salpre_call_initiated.json", "salpre_call_answered.json", "salpre_transcript.json"} {
		status, body := hookPost(t, b, "/hooks/salpre", hookFixture(t, name, ids), auth)
		require.Equal(t, http.StatusOK, status, "%s: %s", name, body)
	}
	// Duplicate: the same transcript line again is acknowledged, not appended.
	status, body := hookPost(t, b, "/hooks/salpre", hookFixture(t, "salpre_transcript.json", ids), auth)
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"duplicate":true}`, body)
	live := showCall(t, "salpre:"+callID)
	require.Len(t, live.Turns, 1, "live transcript appended once")
	assert.Equal(t, "Hello, how are you?", live.Turns[0].Text)

	// Tampering: a wrong or missing header value, and the rotated next key is accepted.
	status, body = hookPost(t, b, "/hooks/salpre", hookFixture(t, "salpre_error.json", ids), map[string]string{"X-Api-Key": "guess"})
	assert.Equal(t, http.StatusUnauthorized, status, body)
	assert.JSONEq(t, `{"error":"invalid_credentials"}`, body)
	status, _ = hookPost(t, b, "/hooks/salpre", hookFixture(t, "salpre_error.json", ids), nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	status, body = hookPost(t, b, "/hooks/salpre", hookFixture(t, "salpre_call_ended.json", ids), map[string]string{"X-Api-Key": e2eSalpreNext})
	require.Equal(t, http.StatusOK, status, body)
	// A replay of call_ended (a late platform retry) changes nothing.
	status, body = hookPost(t, b, "/hooks/salpre", hookFixture(t, "salpre_call_ended.json", ids), auth)
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"duplicate":true}`, body)
	// Bad input: a clear 400.
	status, body = hookPost(t, b, "/hooks/salpre", []byte(`{"event_type":"call_ringing","payload":{}}`), auth)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "missing call id")

	got := showCall(t, "salpre:"+callID)
	assert.Equal(t, "salpre", got.Platform)
	assert.Equal(t, callID, got.CallID)
	assert.Equal(t, "ended", got.Status)
	assert.Equal(t, "outbound", got.Direction)
	assert.True(t, got.Test, "is_test kept on the record")
	assert.True(t, got.Closed)
	assert.Equal(t, 4, got.Events)
	assert.NotContains(t, got.From, "5555555555", "numbers masked unless -numbers")
	require.Len(t, got.Turns, 3, "call_ended's final transcript replaced the live one")
	assert.Equal(t, "Greeting message", got.Turns[0].Text)

	list := brainCalls(t, "list", "-platform", "salpre", "-since", "87600h")
	assert.Contains(t, list, callID)
	line := b.waitLog(t, "the hook delivery line", func(e logEntry) bool {
		return e.str("msg") == "hook delivery" && e.str("call_id") == callID && e.str("outcome") == "duplicate"
	})
	assert.Equal(t, "salpre", line.str("platform"))
	assert.NotContains(t, b.logs.String(), "+905555555555", "numbers are masked in the log")
	assert.NotContains(t, b.logs.String(), e2eSalpreKey)
}

func TestItellicoReceiver(t *testing.T) {
	t.Parallel()
	b := startReceiverBrain(t, "")
	conv := "c0a8f2e4-0000-4000-8000-" + fmt.Sprintf("%012d", time.Now().UnixNano()%1e12)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	ids := map[string]string{"c0a8f2e4-1d3b-4a5c-9e7f-0b2d4f6a8c1e": conv, `"event_id":"evt_`: `"event_id":"evt_` + suffix}
	for _, name := range []string{"itellico_conversation_started.json", "itellico_conversation_ended.json", "itellico_analysis_completed.json"} {
		body := hookFixture(t, name, ids)
		status, out := hookPost(t, b, "/hooks/itellico", body, itellicoSigned(body, time.Now(), e2eItellicoKey))
		require.Equal(t, http.StatusOK, status, "%s: %s", name, out)
	}
	ended := hookFixture(t, "itellico_conversation_ended.json", ids)
	// Duplicate: itellicoAI retries with the same event_id, freshly signed.
	status, out := hookPost(t, b, "/hooks/itellico", ended, itellicoSigned(ended, time.Now(), e2eItellicoKey))
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"duplicate":true}`, out)
	// Stale or replayed: a captured delivery signed 10 minutes ago.
	status, out = hookPost(t, b, "/hooks/itellico", ended, itellicoSigned(ended, time.Now().Add(-10*time.Minute), e2eItellicoKey))
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.JSONEq(t, `{"error":"stale_timestamp"}`, out)
	// Tampered: the body changed after signing.
	h := itellicoSigned(ended, time.Now(), e2eItellicoKey)
	status, out = hookPost(t, b, "/hooks/itellico", bytes.Replace(ended, []byte(`"completed"`), []byte(`"failed"`), 1), h)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.JSONEq(t, `{"error":"signature_mismatch"}`, out)

	got := showCall(t, "itellico:"+conv)
	assert.Equal(t, "completed", got.Status)
	assert.Equal(t, 3, got.Events)
	assert.Len(t, got.Turns, 2)
	assert.Contains(t, string(got.Analysis), "Caller booked a cleaning.")
}

func TestSpeakNodeReceiver(t *testing.T) {
	t.Parallel()
	b := startReceiverBrain(t, "")
	sess := "sess_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ids := map[string]string{"sess_01HZX4K7Q2": sess}
	sig := func(body []byte) map[string]string {
		return map[string]string{"X-SpeakNode-Signature": macHex(e2eSpeakNodeKey, body)}
	}
	for _, name := range []string{"speaknode_session_started.json", "speaknode_conversation_complete.json"} {
		body := hookFixture(t, name, ids)
		status, out := hookPost(t, b, "/hooks/speaknode", body, sig(body))
		require.Equal(t, http.StatusOK, status, "%s: %s", name, out)
	}
	complete := hookFixture(t, "speaknode_conversation_complete.json", ids)
	// Replayed: no timestamp to go stale, so the dedupe on session_id + event catches it.
	status, out := hookPost(t, b, "/hooks/speaknode", complete, sig(complete))
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"duplicate":true}`, out)
	tampered := bytes.Replace(complete, []byte("My order never arrived."), []byte("All is fine."), 1)
	status, out = hookPost(t, b, "/hooks/speaknode", tampered, sig(complete))
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.JSONEq(t, `{"error":"signature_mismatch"}`, out)

	got := showCall(t, "speaknode:"+sess)
	assert.Equal(t, "completed", got.Status)
	assert.Equal(t, 2, got.Events)
	require.Len(t, got.Turns, 2)
	assert.Equal(t, "My order never arrived.", got.Turns[1].Text)
	assert.Equal(t, "caller", got.Turns[1].Role)
}

// TestSaperlyCallRecord: a Saperly call the brain answers lands in the same call records.
func TestSaperlyCallRecord(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startReceiverBrain(t, m.URL+"/v1")
	reply := "Sure, I can help with that. What day suits you?"
	m.script(t, mockllm.Behavior{Reply: reply})
	c := newCall(b)
	c.ack(t, c.event("call_started"))
	_, res := c.say(t, "I'd like to book a cleaning.")
	c.ack(t, c.event("call_ended"))
	require.Equal(t, reply, modelSpeech(res))

	var got shownCall
	require.Eventually(t, func() bool { // the records are written off the request path, gathered
		out, err := tryBrainCalls(t, "show", c.ID)
		got = shownCall{}
		return err == nil && json.Unmarshal([]byte(out), &got) == nil && got.Closed && len(got.Turns) == 2
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "saperly", got.Platform)
	assert.Equal(t, "I'd like to book a cleaning.", got.Turns[0].Text)
	assert.Equal(t, res.Text(), got.Turns[1].Text)
}

// TestReceiverStoreOutage: with Redis unreachable a receiver answers 503, so the platform
// retries; nothing is acknowledged that was not recorded.
func TestReceiverStoreOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.yaml"), []byte(e2eSources), 0o600))
	b := startBrain(t, brainConfig{
		Redis: fmt.Sprintf("redis://127.0.0.1:%d/0", freePort(t)), Unready: true,
		Env: map[string]string{"PROMPTS_DIR": dir, "SALPRE_KEY": e2eSalpreKey, "SALPRE_KEY_NEXT": e2eSalpreNext, "ITELLICO_SECRET": e2eItellicoKey, "SPEAKNODE_SECRET": e2eSpeakNodeKey},
	})
	body := hookFixture(t, "speaknode_session_started.json", nil)
	status, out := hookPost(t, b, "/hooks/speaknode", body, map[string]string{"X-SpeakNode-Signature": macHex(e2eSpeakNodeKey, body)})
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.JSONEq(t, `{"error":"store_unavailable"}`, out)
}
