package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/orderdesk"
	"github.com/callbrain/callbrain/test/saperly"
)

// The agent files feature end to end (docs/agents.md): hot reload of PROMPTS_DIR under the
// running binary, per-line agents and secrets from lines.yaml, HTTP tools, end_call, and
// `brain prompts check`.

// reloadWait bounds how long a test waits for a saved file to be in force. The brain promises
// "within a second"; this is only a bound on the wait, never a measurement.
const reloadWait = 5 * time.Second

// writePrompt saves a file in a prompts directory the way an editor that writes a temporary
// file and renames it over the old one does, so the brain never reads it half written. The
// temporary name starts with a dot, which the brain ignores.
func writePrompt(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, ".~"+name)
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, name)))
}

// orderAgent is an agent file whose one tool, get_order_status, is POSTed to toolURL with the
// order desk's token (from ORDERDESK_TOKEN): the example orders agent, reduced to its tool.
func orderAgent(toolURL string) string {
	return `---
tools:
  - name: get_order_status
    description: Look an order up by its number.
    parameters:
      type: object
      properties:
        order_id: {type: string}
      required: [order_id]
    url: ` + toolURL + `
    method: POST
    headers:
      Authorization: ORDERDESK_TOKEN
    timeout: 5s
---
You answer the order line of Northwind Goods. Look orders up with get_order_status.
`
}

// promptVersion is an agent file's version as the brain logs it: the first 12 hex digits of
// the SHA-256 of the whole file (docs/agents.md, Versions).
func promptVersion(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])[:12]
}

// randomSecret is a signing secret as Saperly shows it: 64 hex characters.
func randomSecret() string {
	return strings.ReplaceAll(saperly.NewUUID()+saperly.NewUUID(), "-", "")[:64]
}

// requestSaying returns the one model request whose conversation ends with the caller saying
// said: the first model round of that message's turn.
func requestSaying(t *testing.T, m *mock, said string) mockllm.Request {
	t.Helper()
	var found []mockllm.Request
	for _, r := range m.requests(t) {
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == "user" && norm(r.Messages[n-1].Content) == norm(said) {
			found = append(found, r)
		}
	}
	require.Len(t, found, 1, "one model request answers %q", said)
	return found[0]
}

// systemOf returns a request's system prompt.
func systemOf(t *testing.T, r mockllm.Request) string {
	t.Helper()
	require.NotEmpty(t, r.Messages)
	require.Equal(t, "system", r.Messages[0].Role, "the system prompt comes first")
	return r.Messages[0].Content
}

// lineMessage is a message event of callID on a line other than the brain's default one.
func lineMessage(b *brain, lineID, callID, text string) saperly.Event {
	ev := b.client.NewEvent("message", callID, lineID)
	ev["text"] = text
	return ev
}

// TestAgentHotReload: a saved agent file is in force for new calls without a restart, while a
// call already under way keeps the version it started with; a broken file is refused with a
// log line naming the file and the line, the last good version staying in force; once fixed,
// the fixed version is used (docs/agents.md, Hot reload and Versions).
func TestAgentHotReload(t *testing.T) {
	t.Parallel()
	const (
		v1 = "Version one of the front desk. Answer briefly.\n"
		v2 = "Version two of the front desk. Answer briefly and kindly.\n"
		v3 = "---\nvars:\n  desk: the front desk\n---\nVersion three of {{.Vars.desk}}. Answer briefly.\n"
		// The mistake is on line 6 of the file: front matter lines count.
		broken     = "---\nvars:\n  desk: the front desk\n---\nVersion broken of {{.Vars.desk}}.\nAsk {{.Vars.nope}} for help.\n"
		brokenLine = 6
	)
	dir := t.TempDir()
	writePrompt(t, dir, "default.md", v1)
	m := startMock(t, "-reply", "Sure, happy to help.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{"PROMPTS_DIR": dir}})

	// turn sends one message on c and returns its system prompt and its turn log line.
	turn := func(t *testing.T, c *call, said string) (string, logEntry) {
		t.Helper()
		ev, _ := c.say(t, said)
		return systemOf(t, requestSaying(t, m, said)), b.turnLine(t, ev["event_id"].(string))
	}
	// newCallsUntil makes new calls until one is answered with a system prompt holding want,
	// for at most reloadWait. Calls before it must hold before: the previous good version.
	calls := 0
	newCallsUntil := func(t *testing.T, want, before string) logEntry {
		t.Helper()
		deadline := time.Now().Add(reloadWait)
		for {
			calls++
			sys, line := turn(t, newCall(b), fmt.Sprintf("Hello, this is new call number %d.", calls))
			if strings.Contains(sys, want) {
				return line
			}
			require.Contains(t, sys, before, "until the reload, new calls get the previous version")
			if time.Now().After(deadline) {
				t.Fatalf("no new call got %q within %s of the save", want, reloadWait)
			}
			time.Sleep(poll)
		}
	}

	early := newCall(b)
	sys, line := turn(t, early, "Hi, I have a question.")
	assert.Contains(t, sys, strings.TrimSpace(v1))
	assert.Equal(t, "default", line.str("agent"))
	assert.Equal(t, promptVersion(v1), line.str("prompt_version"))

	// An edit reaches new calls.
	writePrompt(t, dir, "default.md", v2)
	line = newCallsUntil(t, "Version two", "Version one")
	assert.Equal(t, promptVersion(v2), line.str("prompt_version"), "the turn line names the new version")
	b.waitLog(t, "the reload of version two", func(e logEntry) bool {
		return e.str("msg") == "prompts reloaded" && strings.Contains(fmt.Sprint(e["versions"]), "default@"+promptVersion(v2))
	})

	// The call that started before the edit keeps its version.
	sys, line = turn(t, early, "Are you still there?")
	assert.Contains(t, sys, "Version one", "a call keeps the prompt it started with")
	assert.NotContains(t, sys, "Version two")
	assert.Equal(t, promptVersion(v1), line.str("prompt_version"))
	assert.NotEqual(t, promptVersion(v1), promptVersion(v2))

	// A broken save is refused, naming the file and the line; the last good version stays.
	writePrompt(t, dir, "default.md", broken)
	rejected := b.waitLog(t, "the broken file's rejection", func(e logEntry) bool {
		return e.str("msg") == "prompt rejected"
	})
	assert.Equal(t, filepath.Join(dir, "default.md"), rejected.str("file"))
	assert.EqualValues(t, brokenLine, rejected.num("line"))
	assert.Contains(t, rejected.str("error"), "nope", "the error says what is wrong")
	assert.Equal(t, "error", rejected.str("level"))
	assert.NotContains(t, rejected, "stacktrace", "an expected error logs no Go stack")
	calls++
	sys, line = turn(t, newCall(b), fmt.Sprintf("Hello, this is new call number %d.", calls))
	assert.Contains(t, sys, "Version two", "after a rejected save new calls keep the last good version")
	assert.NotContains(t, sys, "Version broken")
	assert.Equal(t, promptVersion(v2), line.str("prompt_version"))

	// Fixed, it is taken.
	writePrompt(t, dir, "default.md", v3)
	line = newCallsUntil(t, "Version three of the front desk.", "Version two")
	assert.Equal(t, promptVersion(v3), line.str("prompt_version"))

	sys, line = turn(t, early, "One more thing.")
	assert.Contains(t, sys, "Version one", "the early call still keeps its version")
	assert.Equal(t, promptVersion(v1), line.str("prompt_version"))
}

// TestAgentLineSecrets: lines.yaml sends each line's calls to its agent, with the line's
// variables, and verifies each line's deliveries with its own secrets: the current and the
// staged one during a rotation, and not the global secret. A line without secrets uses the
// global one (PROTOCOL §1.3; docs/agents.md, lines.yaml).
func TestAgentLineSecrets(t *testing.T) {
	t.Parallel()
	lineA, lineB := saperly.NewUUID(), saperly.NewUUID()
	secretA, nextA := randomSecret(), randomSecret()
	dir := t.TempDir()
	writePrompt(t, dir, "default.md",
		"---\nvars:\n  business_name: Default Company\n---\nYou are the general desk of {{.Vars.business_name}}.\n")
	writePrompt(t, dir, "orders.md",
		"---\nvars:\n  business_name: Fallback Goods\n---\nYou answer the order line of {{.Vars.business_name}}. Ask for the order number.\n")
	writePrompt(t, dir, "lines.yaml", fmt.Sprintf(`# line A rotates its secret; line B uses the global one
%s:
  agent: orders
  secret_env: LINE_A_SECRET
  secret_next_env: LINE_A_NEXT
  vars:
    business_name: Northwind Goods
%s:
  agent: default
`, lineA, lineB))
	m := startMock(t, "-reply", "Sure, happy to help.", "-token-delay", "1ms")
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR":   dir,
		"LINE_A_SECRET": secretA,
		"LINE_A_NEXT":   nextA,
	}})
	global := b.Secret

	cases := []struct {
		name   string
		line   string
		secret string
		ok     bool
	}{
		{name: "line A with its secret", line: lineA, secret: secretA, ok: true},
		{name: "line A with its staged secret", line: lineA, secret: nextA, ok: true},
		{name: "line A with the global secret", line: lineA, secret: global},
		{name: "line B with the global secret", line: lineB, secret: global, ok: true},
		{name: "line B with line A's secret", line: lineB, secret: secretA},
	}
	t.Run("deliveries", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				said := "Hello, this is " + tc.name + "."
				ev := lineMessage(b, tc.line, saperly.NewUUID(), said)
				res, err := deliver(t, b.client, saperly.WebhookPath, ev, saperly.WithSecret(tc.secret))
				if !tc.ok {
					checkError(t, res, err, http.StatusUnauthorized, "signature_mismatch")
					return
				}
				checkSpoken(t, res, err)
				sys := systemOf(t, requestSaying(t, m, said))
				line := b.turnLine(t, ev["event_id"].(string))
				if tc.line == lineA {
					assert.Contains(t, sys, "You answer the order line of Northwind Goods. Ask for the order number.",
						"line A's calls get the orders agent, rendered with the line's vars")
					assert.NotContains(t, sys, "Fallback Goods", "the line's vars override the agent's")
					assert.Equal(t, "orders", line.str("agent"))
				} else {
					assert.Contains(t, sys, "You are the general desk of Default Company.", "line B's calls get the default agent")
					assert.NotContains(t, sys, "order line")
					assert.Equal(t, "default", line.str("agent"))
				}
			})
		}
	})
	assert.Len(t, m.requests(t), 3, "refused deliveries never reach the model")
}

// toolRig is a brain whose orders agent has an HTTP tool on an in-process order desk.
type toolRig struct {
	m    *mock
	b    *brain
	desk *orderdesk.Server
}

// startToolRig starts an order desk that takes deskDelay to look an order up and requires a
// token, and a brain whose line answers with an orders agent calling it, the token coming from
// the environment variable the agent file names.
func startToolRig(t *testing.T, deskDelay time.Duration) *toolRig {
	t.Helper()
	token := "od-" + saperly.NewUUID()
	desk := orderdesk.New(orderdesk.Config{Token: token, Delay: deskDelay})
	srv := httptest.NewServer(desk)
	t.Cleanup(srv.Close)

	line := saperly.NewUUID()
	dir := t.TempDir()
	writePrompt(t, dir, "orders.md", `---
vars:
  business_name: Northwind Goods
tools:
  - name: get_order_status
    description: Look an order up by its number; returns its status and delivery date.
    parameters:
      type: object
      properties:
        order_id: {type: string, description: The order number as the caller gave it.}
      required: [order_id]
    url: `+srv.URL+`/orders/status
    method: POST
    headers:
      Authorization: ORDERDESK_TOKEN
    timeout: 5s
---
You answer the order line of {{.Vars.business_name}}. Look orders up with get_order_status.
`)
	writePrompt(t, dir, "lines.yaml", line+":\n  agent: orders\n")
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR":     dir,
		"ORDERDESK_TOKEN": "Bearer " + token,
	}})
	b.Line = line // newCall's events go to the orders line
	return &toolRig{m: m, b: b, desk: desk}
}

// TestAgentTools: the model calls an HTTP tool in the middle of an answer; the caller hears a
// holding phrase while it runs, then the result in words; the tool's side effect happens once
// even when the message is retried or the caller talks over the holding phrase, and the call
// and its result are in the history of the next turn (docs/agents.md, Tools; PROTOCOL §1.4).
func TestAgentTools(t *testing.T) {
	t.Parallel()
	const (
		deskDelay = 500 * time.Millisecond
		question  = "Where is order 12345?"
	)
	// heardStatus checks an answer: a holding phrase first, then the order's status in words.
	heardStatus := func(t *testing.T, res *saperly.Result) {
		t.Helper()
		require.GreaterOrEqual(t, len(res.Lines), 2, "%q", texts(res))
		assert.True(t, isHolding(res.Lines[0].Text), "the caller hears a holding phrase while the tool runs: %q", texts(res))
		speech := modelSpeech(res)
		assert.Contains(t, speech, "shipped", "then the order's status")
		assert.Contains(t, speech, "Thursday", "and its delivery day")
	}

	t.Run("answer", func(t *testing.T) {
		t.Parallel()
		r := startToolRig(t, deskDelay)
		c := newCall(r.b)
		ev, res := c.say(t, question)
		heardStatus(t, res)
		assert.Equal(t, orderdesk.Stats{Requests: 1, SideEffects: 1}, r.desk.Stats(),
			"one authorised lookup (the token comes from the environment)")
		reqs := r.m.requests(t)
		require.Len(t, reqs, 2, "one model request per round: the tool call, then the answer")
		assert.Contains(t, reqs[0].Tools, "get_order_status", "the agent's tool is offered")
		assert.NotContains(t, reqs[0].Tools, "end_call", "end_call is not offered without a Saperly API key")
		line := r.b.turnLine(t, ev["event_id"].(string))
		assert.EqualValues(t, 1, line.num("tool_calls"))
		assert.Equal(t, "orders", line.str("agent"))
	})

	t.Run("retry while the tool runs", func(t *testing.T) {
		t.Parallel()
		r := startToolRig(t, deskDelay)
		c := newCall(r.b)
		ev := c.message(question)
		first, retry := retryWhileStreaming(t, r.b, c, ev)
		heardStatus(t, first)
		assert.Equal(t, texts(first), texts(retry), "the retry hears the same lines")
		assert.Equal(t, 1, r.desk.Stats().SideEffects, "the tool's side effect happens once")
		assert.Equal(t, 1, r.desk.Stats().Requests, "the retry does not call the tool")
		assert.Len(t, r.m.requests(t), 2, "one model request per round, not per delivery")
	})

	t.Run("barge-in during the tool", func(t *testing.T) {
		t.Parallel()
		r := startToolRig(t, deskDelay)
		c := newCall(r.b)
		ev := c.message(question)
		res, err := c.send(t, ev, saperly.WithCloseAfter(1))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.Status)
		require.True(t, res.Cut)
		require.Len(t, res.Lines, 1)
		require.True(t, isHolding(res.Lines[0].Text), "the first line is the holding phrase: %q", res.Lines[0].Text)
		in := c.event("interrupted")
		in["partial_response_text"] = res.Lines[0].Text
		c.ack(t, in)
		r.b.turnLine(t, ev["event_id"].(string)) // the turn is over, its tool call finished

		const next = "Sorry, go on."
		c.say(t, next)
		assert.Equal(t, 1, r.desk.Stats().SideEffects, "the lookup ran once: not cut by the barge-in, not repeated")
		req := requestSaying(t, r.m, next)
		var callID string
		for _, msg := range req.Messages {
			for _, tc := range msg.ToolCalls {
				if msg.Role == "assistant" && tc.Name == "get_order_status" {
					callID = tc.ID
					assert.JSONEq(t, `{"order_id":"12345"}`, tc.Arguments)
				}
			}
		}
		require.NotEmpty(t, callID, "the next turn's history has the tool call: %+v", req.Messages)
		var result string
		for _, msg := range req.Messages {
			if msg.Role == "tool" && msg.ToolCallID == callID {
				result = msg.Content
			}
		}
		assert.Contains(t, result, "shipped", "and the tool's result")
		assert.Equal(t, 1, countUser(req.Messages, question), "the cut turn's question is in the history once")
	})
}

// startEndCallRig starts a stand-in for Saperly's REST API and a brain that may hang up
// through it, whose default agent may end calls.
func startEndCallRig(t *testing.T) (*mock, *brain, *saperly.API) {
	t.Helper()
	key := "sk-saperly-" + saperly.NewUUID()
	api := saperly.NewAPI(key)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writePrompt(t, dir, "default.md", "---\nend_call: true\n---\nYou are the front desk of a small clinic. "+
		"When the caller has what they need and says goodbye, say a short goodbye and end the call.\n")
	m := startMock(t)
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR":      dir,
		"SAPERLY_API_BASE": srv.URL + saperly.APIBasePath,
		"SAPERLY_API_KEY":  key,
	}})
	return m, b, api
}

// TestAgentEndCall: an agent with end_call says goodbye and the brain hangs the call up through
// Saperly's API once the goodbye has been heard; a caller who talks over the goodbye keeps the
// call, and the next turn's prompt says the call was meant to end (docs/agents.md; PROTOCOL
// §1.9).
func TestAgentEndCall(t *testing.T) {
	t.Parallel()
	const bye = "That's all, bye."

	t.Run("goodbye heard", func(t *testing.T) {
		t.Parallel()
		m, b, api := startEndCallRig(t)
		c := newCall(b)
		c.ack(t, c.event("call_started"))
		sent := time.Now()
		ev, res := c.say(t, bye)
		assert.Equal(t, norm(mockllm.GoodbyeReply), modelSpeech(res), "the goodbye is spoken")
		assert.Contains(t, requestSaying(t, m, bye).Tools, "end_call", "end_call is offered")

		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		h, err := api.WaitHangup(ctx, c.ID)
		require.NoError(t, err, "the brain hangs up after the goodbye")
		heard := sent.Add(res.Lines[len(res.Lines)-1].At)
		assert.True(t, h.At.After(heard), "the hang-up comes after the goodbye's last line was delivered")
		line := b.turnLine(t, ev["event_id"].(string))
		assert.Equal(t, true, line["end_call"])
		assert.Equal(t, "sent", line.str("hang_up"))
		assert.Equal(t, 1, api.Count(c.ID), "hung up once")
	})

	t.Run("caller talks over the goodbye", func(t *testing.T) {
		t.Parallel()
		m, b, api := startEndCallRig(t)
		c := newCall(b)
		c.ack(t, c.event("call_started"))
		// A goodbye that is one spoken line (no clause boundary), so closing after the first
		// line is talking over the goodbye, after the model has called end_call.
		const goodbye = "Thanks for calling and have a lovely day."
		m.script(t, mockllm.Behavior{
			Reply:      goodbye,
			ToolCalls:  []mockllm.ToolCall{{Name: "end_call", Arguments: `{"reason":"caller said goodbye"}`}},
			TokenDelay: time.Millisecond,
		})
		ev := c.message(bye)
		res, err := c.send(t, ev, saperly.WithCloseAfter(1))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.Status)
		require.True(t, res.Cut)
		require.Equal(t, []string{goodbye}, texts(res), "the whole goodbye arrived before the caller spoke")
		in := c.event("interrupted")
		in["partial_response_text"] = "Thanks for calling and"
		c.ack(t, in)

		line := b.turnLine(t, ev["event_id"].(string))
		assert.Equal(t, true, line["end_call"], "the model ended the call")
		assert.Equal(t, "skipped", line.str("hang_up"), "a goodbye talked over does not hang up")
		assert.Zero(t, api.Count(c.ID), "no hang-up was sent")
		assert.Empty(t, api.Hangups(), "no hang-up was even tried")

		const next = "Wait, one more question."
		ev2, _ := c.say(t, next)
		sys := systemOf(t, requestSaying(t, m, next))
		assert.Contains(t, sys, "meant to end the call", "the next turn knows the goodbye was talked over")
		assert.NotContains(t, systemOf(t, requestSaying(t, m, bye)), "meant to end the call")
		b.turnLine(t, ev2["event_id"].(string))
		assert.Zero(t, api.Count(c.ID), "the call is still up")
	})
}

// TestAgentPromptsCheck: `brain prompts check` passes the shipped examples and fails a broken
// directory, naming the file and the line of each mistake (docs/agents.md, Checking).
func TestAgentPromptsCheck(t *testing.T) {
	t.Parallel()
	bin, _ := binaries(t)
	root := repoRoot(t)
	cases := []struct {
		name  string
		files map[string]string // nil: check prompts/examples
		// want is the file:line of the mistake, one of which the failed check must print.
		want []string
	}{
		{name: "examples"},
		{
			name:  "unset template variable",
			files: map[string]string{"default.md": "---\nvars:\n  desk: front desk\n---\nYou are the {{.Vars.desk}}.\nAsk {{.Vars.nope}}.\n"},
			want:  []string{"default.md:6:"},
		},
		{
			name: "misspelt front matter key",
			files: map[string]string{
				"default.md": "You are the front desk.\n",
				"orders.md":  "---\n# the order line\ntemprature: 0.3\n---\nYou answer the order line.\n",
			},
			want: []string{"orders.md:3:"},
		},
		{
			name: "line naming a missing agent",
			files: map[string]string{
				"default.md": "You are the front desk.\n",
				"lines.yaml": "5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f:\n  agent: default\n9d1e7b3c-2a4f-4e6d-8b0c-5f7a9e1d3c2b:\n  agent: nobody\n",
			},
			// The line's entry or its agent key.
			want: []string{"lines.yaml:3:", "lines.yaml:4:"},
		},
		{
			// Issue 8 §4: an unclosed [ on line 4 was reported on line 3.
			name: "unclosed bracket",
			files: map[string]string{
				"default.md": "You are the front desk.\n",
				"lines.yaml": "L1:\n  agent: default\nL2:\n  vars: [a, b\nL3:\n  agent: default\n",
			},
			want: []string{"lines.yaml:4:"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("prompts", "examples")
			if tc.files != nil {
				dir = t.TempDir()
				for name, content := range tc.files {
					writePrompt(t, dir, name, content)
				}
			}
			cmd := exec.Command(bin, "prompts", "check", "-q", dir)
			cmd.Dir = root
			cmd.Env = childEnv(nil) // CI has neither the secrets' nor the tools' variables
			cmd.SysProcAttr = childAttr()
			out, err := cmd.CombinedOutput()
			t.Logf("brain prompts check -q %s:\n%s", dir, out)
			if tc.files == nil {
				require.NoError(t, err, "the examples pass")
				for _, name := range []string{"orders", "receptionist", "all good"} {
					assert.Contains(t, string(out), name)
				}
				return
			}
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "a broken directory fails the check: %v", err)
			assert.NotZero(t, exit.ExitCode())
			named := false
			for _, w := range tc.want {
				named = named || strings.Contains(string(out), filepath.Join(dir, w))
			}
			assert.True(t, named, "the output names the file and the line, one of %q", tc.want)
		})
	}
}
