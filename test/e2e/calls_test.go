package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// callScript is a recorded call in test/testdata/calls: the events Saperly sends, in order,
// what the model is scripted to do for each message, and what the brain must answer.
type callScript struct {
	Description string       `json:"description"`
	Steps       []scriptStep `json:"steps"`
}

type scriptStep struct {
	// Path is the endpoint: /webhook (default) or /status.
	Path string `json:"path"`
	// Event is the body. The runner adds line_id, call_id, a fresh event_id and a timestamp
	// unless the step gives them.
	Event saperly.Event `json:"event"`
	// Model is queued on the mock before the step (a message's answer); absent, the mock
	// answers as the demo receptionist.
	Model *mockllm.Behavior `json:"model"`
	Want  struct {
		// Status is the HTTP status; default 200.
		Status int `json:"status"`
		// Body is the exact JSON answer of a non-message event.
		Body json.RawMessage `json:"body"`
		// Speech is what a message's answer says, joined, after any opening holding phrase.
		Speech string `json:"speech"`
	} `json:"want"`
}

// TestCallScripts replays every recorded call against a brain on Redis and one on the
// in-process store (STYLE §10, end to end). Beyond each step's expected answer it checks
// that every model request carries the whole conversation so far, as the caller heard it,
// and nothing of the events in between, and that each turn is logged once with its number.
func TestCallScripts(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "test", "testdata", "calls", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no call scripts in test/testdata/calls")
	for _, store := range []string{"redis", "memory"} {
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			t.Run(store+"/"+name, func(t *testing.T) {
				t.Parallel()
				raw, err := os.ReadFile(f)
				require.NoError(t, err)
				var s callScript
				require.NoError(t, json.Unmarshal(raw, &s), "call script %s", f)
				m := startMock(t)
				bc := brainConfig{Model: m.URL + "/v1"}
				if store == "redis" {
					bc.Redis = sharedRedisURL(t)
				}
				runScript(t, startBrain(t, bc), m, s)
			})
		}
	}
}

func runScript(t *testing.T, b *brain, m *mock, s callScript) {
	t.Helper()
	c := newCall(b)
	var convo []mockllm.Message // what the model must be sent before the next utterance
	turns := 0
	for i, st := range s.Steps {
		kind, _ := st.Event["event"].(string)
		ok := t.Run(fmt.Sprintf("%02d_%s", i+1, kind), func(t *testing.T) {
			ev := c.event(kind)
			for k, v := range st.Event {
				ev[k] = v
			}
			path := st.Path
			if path == "" {
				path = saperly.WebhookPath
			}
			if st.Model != nil {
				m.script(t, *st.Model)
			}
			res, err := deliver(t, b.client, path, ev)
			status := st.Want.Status
			if status == 0 {
				status = 200
			}
			if kind != "message" || path != saperly.WebhookPath {
				require.NoError(t, err)
				require.Equal(t, status, res.Status, "body: %s", res.Body)
				if st.Want.Body != nil {
					assert.JSONEq(t, string(st.Want.Body), string(res.Body))
				}
				return
			}

			checkSpoken(t, res, err)
			turns++
			text, _ := ev["text"].(string)
			if st.Want.Speech != "" {
				assert.Equal(t, norm(st.Want.Speech), modelSpeech(res))
			}
			reqs := m.requests(t)
			require.Len(t, reqs, turns, "one model request per message")
			checkConversation(t, reqs[turns-1], append(convo, user(text)))
			convo = append(convo, user(text), assistant(res.Text()))

			line := b.turnLine(t, ev["event_id"].(string))
			assert.Equal(t, "turn done", line.str("msg"))
			assert.Equal(t, c.ID, line.str("call_id"))
			assert.EqualValues(t, turns, line.num("turn"), "the turn number counts the call's messages")
			assert.EqualValues(t, len(res.Lines), line.num("lines"), "the turn line counts the lines spoken")
			assert.Equal(t, "answered", line.str("outcome"))
		})
		if !ok {
			return // later steps depend on this one
		}
	}
	assert.Len(t, m.requests(t), turns, "only messages reach the model")
}
