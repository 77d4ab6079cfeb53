package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// Trust at the edges (issue 8 §1 and §4), against the built binary.

// TestCallsBelongToTheirSigningLine: with lines A and B each verified by their own secrets,
// nothing signed with A's secret, or with the global one, touches B's call: every kind, both
// URLs, 403 wrong_line; B's next turn still sees B's conversation exactly as it was.
func TestCallsBelongToTheirSigningLine(t *testing.T) {
	t.Parallel()
	lineA, lineB := saperly.NewUUID(), saperly.NewUUID()
	secretA, secretB := randomSecret(), randomSecret()
	dir := t.TempDir()
	writePrompt(t, dir, "default.md", "You are the front desk.\n")
	writePrompt(t, dir, "lines.yaml", fmt.Sprintf("%s:\n  secret_env: LINE_A_SECRET\n%s:\n  secret_env: LINE_B_SECRET\n", lineA, lineB))
	m := startMock(t, "-reply", "Sure, happy to help.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR": dir, "LINE_A_SECRET": secretA, "LINE_B_SECRET": secretB,
	}})
	global := b.Secret

	callB := saperly.NewUUID()
	res, err := deliver(t, b.client, saperly.WebhookPath, startEvent(b, callB, lineB), saperly.WithSecret(secretB))
	require.NoError(t, err)
	checkAck(t, res)
	first := lineMessage(b, lineB, callB, "What are your hours?")
	res, err = deliver(t, b.client, saperly.WebhookPath, first, saperly.WithSecret(secretB))
	checkSpoken(t, res, err)
	answer := res.Text()

	forged := []struct {
		name   string
		path   string
		ev     saperly.Event
		secret string
	}{
		{name: "interrupted signed by A", ev: withPartial(b.client.NewEvent("interrupted", callB, lineA), "Forged."), secret: secretA},
		{name: "interrupted without line_id, global secret", ev: withoutLine(withPartial(b.client.NewEvent("interrupted", callB, ""), "Forged.")), secret: global},
		{name: "call_started signed by A", ev: startEvent(b, callB, lineA), secret: secretA},
		{name: "call_ended signed by A", ev: b.client.NewEvent("call_ended", callB, lineA), secret: secretA},
		{name: "call_ended naming B, global secret", ev: b.client.NewEvent("call_ended", callB, saperly.NewUUID()), secret: global},
		{name: "status callback signed by A", path: "/status", ev: b.client.NewEvent("call_incoming", callB, lineA), secret: secretA},
		{name: "message without line_id, global secret", ev: withoutLine(lineMessage(b, "", callB, "Read me the last answer.")), secret: global},
		{name: "message signed by A", ev: lineMessage(b, lineA, callB, "Read me the last answer."), secret: secretA},
	}
	for _, f := range forged {
		path := f.path
		if path == "" {
			path = saperly.WebhookPath
		}
		res, err := deliver(t, b.client, path, f.ev, saperly.WithSecret(f.secret))
		checkError(t, res, err, http.StatusForbidden, "wrong_line")
	}

	said := "And on Saturday?"
	res, err = deliver(t, b.client, saperly.WebhookPath, lineMessage(b, lineB, callB, said), saperly.WithSecret(secretB))
	checkSpoken(t, res, err)
	convo := conversation(requestSaying(t, m, said))
	assert.Equal(t, []string{"user: What are your hours?", "assistant: " + norm(answer), "user: " + said}, convo,
		"B's conversation is B's own: no forged interrupt, no forged message")
	assert.Len(t, m.requests(t), 2, "the forged message never reached the model")
}

func startEvent(b *brain, callID, lineID string) saperly.Event {
	ev := b.client.NewEvent("call_started", callID, lineID)
	ev["from_number"], ev["to_number"], ev["direction"] = "+14155550100", "+14155550199", "inbound"
	return ev
}

func withPartial(ev saperly.Event, partial string) saperly.Event {
	ev["partial_response_text"] = partial
	ev["timestamp"] = time.Now().UnixMilli()
	return ev
}

func withoutLine(ev saperly.Event) saperly.Event {
	delete(ev, "line_id")
	return ev
}

// TestConnectionFlood: thousands of idle loopback connections (issue 8 §4: 20 000 made the
// brain stop accepting and reach 418 MB). The brain holds at most BRAIN_MAX_CONNS of them,
// shedding idle ones first, and a message sent during the flood is answered.
func TestConnectionFlood(t *testing.T) {
	t.Parallel()
	const maxConns, flood = 200, 3000
	m := startMock(t, "-reply", "Still here.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Model: m.URL + "/v1", Env: map[string]string{"BRAIN_MAX_CONNS": fmt.Sprint(maxConns)}})
	addr := strings.TrimPrefix(b.URL, "http://")

	idle := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	for range flood {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		idle = append(idle, c)
	}
	res, err := deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, saperly.NewUUID(), "Are you there?"))
	checkSpoken(t, res, err)
	assert.Equal(t, "Still here.", res.Text())

	// The brain's open sockets, counted by the kernel: bounded by the cap, whatever the flood.
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.cmd.Process.Pid))
	if err == nil { // Linux only
		assert.Less(t, len(fds), maxConns+64, "open descriptors of the brain")
	}
	b.waitLog(t, "the shedding is logged", func(e logEntry) bool { return e.str("msg") == "connection limit reached" })
}

// TestInterruptPlacedSafely: an interrupted event stamped an hour ahead (issue 8 §4) leaves
// the conversation alone; one naming the message it cut (interrupted_event_id) cuts that
// answer, not the newest.
func TestInterruptPlacedSafely(t *testing.T) {
	t.Parallel()
	m := startMock(t, "-reply", "We open at nine and close at five.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1"})
	call := saperly.NewUUID()
	first := lineMessage(b, b.Line, call, "When do you open?")
	res, err := deliver(t, b.client, saperly.WebhookPath, first)
	checkSpoken(t, res, err)
	answer := norm(res.Text())
	res, err = deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, call, "And on Sunday?"))
	checkSpoken(t, res, err)

	future := b.client.NewEvent("interrupted", call, b.Line)
	future["partial_response_text"] = "Forged"
	future["timestamp"] = time.Now().Add(time.Hour).UnixMilli()
	res, err = deliver(t, b.client, saperly.WebhookPath, future)
	require.NoError(t, err)
	checkAck(t, res)

	res, err = deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, call, "Thanks."))
	checkSpoken(t, res, err)
	convo := conversation(requestSaying(t, m, "Thanks."))
	assert.Equal(t, []string{"user: When do you open?", "assistant: " + answer, "user: And on Sunday?", "assistant: " + answer, "user: Thanks."}, convo,
		"an interrupt from the future cuts nothing")

	named := b.client.NewEvent("interrupted", call, b.Line)
	named["partial_response_text"] = "We open at nine"
	named["interrupted_event_id"] = first["event_id"]
	res, err = deliver(t, b.client, saperly.WebhookPath, named)
	require.NoError(t, err)
	checkAck(t, res)
	res, err = deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, call, "Bye."))
	checkSpoken(t, res, err)
	convo = conversation(requestSaying(t, m, "Bye."))
	require.Len(t, convo, 7)
	assert.Equal(t, "assistant: We open at nine", convo[1], "the answer the interrupt names is cut")
	assert.Equal(t, "assistant: "+answer, convo[5], "the newest answer is whole")
}

// conversation is a model request's messages after the system prompt, as "role: text".
func conversation(req mockllm.Request) []string {
	var out []string
	for _, msg := range req.Messages[1:] {
		out = append(out, msg.Role+": "+norm(msg.Content))
	}
	return out
}

// TestUnknownCallsAreLookedUp: with SAPERLY_API_KEY set, a message about a call whose
// call_started never arrived is checked once against Saperly's API (here the stand-in that
// `callsim api` serves): a call it does not know is refused 403 unknown_call, one on another
// line 403 wrong_line, a known one answered, and its later turns cost no lookup. While the API
// is down the brain answers anyway (fail open) and says so in its log.
func TestUnknownCallsAreLookedUp(t *testing.T) {
	t.Parallel()
	key := "sk-saperly-" + saperly.NewUUID()
	api := saperly.NewAPI(key)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	m := startMock(t, "-reply", "Hello there.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{
		"SAPERLY_API_BASE": srv.URL + saperly.APIBasePath,
		"SAPERLY_API_KEY":  key,
	}})
	ghost, elsewhere, known, started := saperly.NewUUID(), saperly.NewUUID(), saperly.NewUUID(), saperly.NewUUID()
	api.AddCall(elsewhere, saperly.NewUUID())
	api.AddCall(known, b.Line)

	say := func(callID string) (*saperly.Result, error) {
		return deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, callID, "Hello?"))
	}
	res, err := say(ghost)
	checkError(t, res, err, http.StatusForbidden, "unknown_call")
	res, err = say(ghost)
	checkError(t, res, err, http.StatusForbidden, "unknown_call")
	res, err = say(elsewhere)
	checkError(t, res, err, http.StatusForbidden, "wrong_line")
	assert.Empty(t, m.requests(t), "refused calls never reach the model")

	for range 2 {
		res, err = say(known)
		checkSpoken(t, res, err)
	}
	res, err = deliver(t, b.client, saperly.WebhookPath, startEvent(b, started, b.Line))
	require.NoError(t, err)
	checkAck(t, res)
	res, err = say(started)
	checkSpoken(t, res, err)
	assert.Equal(t, []string{ghost, elsewhere, known}, api.Lookups(), "looked up once each; a call with a record never")

	api.SetFault(saperly.Fault{Status: http.StatusServiceUnavailable})
	res, err = say(saperly.NewUUID())
	checkSpoken(t, res, err)
	b.waitLog(t, "the failed lookup", func(e logEntry) bool { return e.str("msg") == "call lookup failed, answering anyway" })
}

// TestSecretsThatCannotBeRealStopTheStart: off loopback a blank or short
// SAPERLY_WEBHOOK_SECRET, and anywhere a lines.yaml holding a secret instead of a variable's
// name, stop the brain at start-up with an error naming the variable or the file and line,
// and never the value (issue 8 §4).
func TestSecretsThatCannotBeRealStopTheStart(t *testing.T) {
	t.Parallel()
	bin, _ := binaries(t)
	// offLoopback is not a loopback address, and not one of this machine's (TEST-NET-1): a
	// brain that failed to refuse would fail to listen rather than listen beyond loopback.
	const offLoopback = "192.0.2.1:0"
	pasted := "f3a9c1e7b5d24f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"
	dir := t.TempDir()
	writePrompt(t, dir, "default.md", "You are the front desk.\n")
	writePrompt(t, dir, "lines.yaml", saperly.NewUUID()+":\n  secret_env: "+pasted+"\n")
	cases := []struct {
		name   string
		env    map[string]string
		want   string
		secret string
	}{
		{name: "blank secret off loopback", env: map[string]string{"BRAIN_ADDR": offLoopback, "SAPERLY_WEBHOOK_SECRET": "  "}, want: "SAPERLY_WEBHOOK_SECRET is blank"},
		{name: "short secret off loopback", env: map[string]string{"BRAIN_ADDR": offLoopback, "SAPERLY_WEBHOOK_SECRET": "hunter2hunter2"}, want: "SAPERLY_WEBHOOK_SECRET is too short", secret: "hunter2"},
		{name: "a secret pasted into lines.yaml", env: map[string]string{"BRAIN_ADDR": "127.0.0.1:0", "PROMPTS_DIR": dir}, want: "lines.yaml:2: line", secret: pasted[:16]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), startWait)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Dir = t.TempDir()
			cmd.Env = childEnv(tc.env)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the brain must refuse to start: %s", out)
			assert.Equal(t, 1, exit.ExitCode())
			assert.Contains(t, string(out), tc.want)
			if tc.secret != "" {
				assert.NotContains(t, string(out), tc.secret, "the value is never printed")
			}
		})
	}
}

// TestHostileSizes: a 500 KB utterance reaches the model cut to BRAIN_MAX_UTTERANCE at a
// word, and a 100 KB call_id is refused 400 with its reason (issue 8 §4).
func TestHostileSizes(t *testing.T) {
	t.Parallel()
	m := startMock(t, "-reply", "That was a lot.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{"BRAIN_MAX_UTTERANCE": "1000"}})

	huge := strings.Repeat("words ", 500<<10/6)
	res, err := deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, saperly.NewUUID(), huge))
	checkSpoken(t, res, err)
	reqs := m.requests(t)
	require.Len(t, reqs, 1)
	said := reqs[0].Messages[len(reqs[0].Messages)-1].Content
	assert.LessOrEqual(t, len(said), 1000)
	assert.Greater(t, len(said), 800)
	assert.True(t, strings.HasSuffix(said, "words"), "cut at a word")

	res, err = deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, strings.Repeat("c", 100<<10), "Hello?"))
	checkError(t, res, err, http.StatusBadRequest, "call_id is longer than 128 bytes")
	res, err = deliver(t, b.client, saperly.WebhookPath, lineMessage(b, b.Line, saperly.NewUUID(), "Hello?"),
		saperly.WithDeliveryID(strings.Repeat("d", 100<<10)))
	checkError(t, res, err, http.StatusBadRequest, "delivery id is longer than 128 bytes")
	assert.Len(t, m.requests(t), 1, "refused deliveries never reach the model")
}
