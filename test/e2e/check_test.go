package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// Saperly's hard limits on a streamed answer (PROTOCOL §1.8).
const (
	lineBudget = 15 * time.Second
	turnLimit  = 5 * time.Minute
	maxChars   = 1800
)

// sendTimeout bounds one delivery in a test: far above any answer the suite provokes, far
// below the 5 min a hung brain could otherwise hold a test.
const sendTimeout = 90 * time.Second

// call is one phone call on a brain.
type call struct {
	b  *brain
	ID string
}

func newCall(b *brain) *call { return &call{b: b, ID: saperly.NewUUID()} }

// event returns an event of this call, with a fresh event_id and the current timestamp.
func (c *call) event(kind string) saperly.Event {
	return c.b.client.NewEvent(kind, c.ID, c.b.Line)
}

// message returns a message event carrying the caller's words.
func (c *call) message(text string) saperly.Event {
	ev := c.event("message")
	ev["text"] = text
	return ev
}

// send delivers an event to the webhook as Saperly does.
func (c *call) send(t *testing.T, ev saperly.Event, opts ...saperly.Option) (*saperly.Result, error) {
	t.Helper()
	return deliver(t, c.b.client, saperly.WebhookPath, ev, opts...)
}

// say sends a message and checks that the answer is well-formed speech within the budgets.
func (c *call) say(t *testing.T, text string, opts ...saperly.Option) (saperly.Event, *saperly.Result) {
	t.Helper()
	ev := c.message(text)
	res, err := c.send(t, ev, opts...)
	checkSpoken(t, res, err)
	return ev, res
}

// ack sends a non-message event and checks the 200 {} answer.
func (c *call) ack(t *testing.T, ev saperly.Event) {
	t.Helper()
	res, err := c.send(t, ev)
	require.NoError(t, err)
	checkAck(t, res)
}

func deliver(t *testing.T, sc *saperly.Client, path string, body any, opts ...saperly.Option) (*saperly.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), sendTimeout)
	defer cancel()
	return sc.Send(ctx, path, body, opts...)
}

// checkAck checks the answer to a non-message event: 200 and {} (PROTOCOL §1.7).
func checkAck(t *testing.T, res *saperly.Result) {
	t.Helper()
	require.NotNil(t, res)
	assert.Equal(t, 200, res.Status, "body: %s", res.Body)
	mt, _, _ := mime.ParseMediaType(res.ContentType)
	assert.Equal(t, "application/json", mt)
	assert.JSONEq(t, `{}`, string(res.Body))
}

// checkError checks a rejected delivery: the status and a JSON {"error": reason}; an empty
// reason only needs to be non-empty.
func checkError(t *testing.T, res *saperly.Result, err error, status int, reason string) {
	t.Helper()
	require.NoError(t, err)
	assert.Equal(t, status, res.Status, "body: %s", res.Body)
	var body struct {
		Error string `json:"error"`
	}
	require.NoError(t, json.Unmarshal(res.Body, &body), "an error answer is JSON: %q", res.Body)
	if reason == "" {
		assert.NotEmpty(t, strings.TrimSpace(body.Error), "the error says what is wrong")
		return
	}
	assert.Equal(t, reason, body.Error)
}

// checkSpoken checks a whole answer to a message against PROTOCOL §1.7 and §1.8: 200 NDJSON,
// at least one line, each a {"type":"speak","text":…} object with words in it and its
// newline, no gap of 15 s, the end within 5 min, at most 1800 characters.
func checkSpoken(t *testing.T, res *saperly.Result, err error) {
	t.Helper()
	if res != nil {
		t.Logf("answer %d in %s:%s", res.Status, res.Elapsed.Round(time.Millisecond), describe(res))
	}
	require.NoError(t, err, "the answer must be well-formed NDJSON")
	require.Equal(t, 200, res.Status, "a message is always answered 200; body: %s", res.Body)
	mt, _, _ := mime.ParseMediaType(res.ContentType)
	require.Equal(t, "application/x-ndjson", mt)
	require.NotEmpty(t, res.Lines, "a message is never answered with silence")
	checkLines(t, res)
	if !res.Cut {
		assert.Less(t, res.Elapsed-res.Lines[len(res.Lines)-1].At, lineBudget, "silence after the last line before the answer ended")
		assert.Less(t, res.Elapsed, turnLimit, "the answer must end within Saperly's turn limit")
	}
	assert.LessOrEqual(t, utf8.RuneCountInString(res.Text()), maxChars, "a turn is capped at 1800 characters")
}

func checkLines(t *testing.T, res *saperly.Result) {
	t.Helper()
	var prev time.Duration
	for i, l := range res.Lines {
		var obj map[string]any
		if assert.NoError(t, json.Unmarshal([]byte(l.Raw), &obj), "line %d", i+1) {
			assert.Equal(t, []string{"text", "type"}, slices.Sorted(maps.Keys(obj)), "line %d is a speak line and nothing else: %s", i+1, l.Raw)
		}
		assert.Equal(t, "speak", l.Type, "line %d: %s", i+1, l.Raw)
		assert.NotEmpty(t, strings.TrimSpace(l.Text), "line %d says something", i+1)
		assert.Less(t, l.At-prev, lineBudget, "silence before line %d (%q)", i+1, l.Text)
		prev = l.At
	}
}

// describe lists an answer's lines with their arrival times, for the test log.
func describe(res *saperly.Result) string {
	var sb strings.Builder
	for _, l := range res.Lines {
		fmt.Fprintf(&sb, "\n  +%6dms  %s", l.At.Milliseconds(), l.Raw)
	}
	if res.Cut {
		sb.WriteString("\n  (hung up)")
	}
	return sb.String()
}

// texts returns the text of every line.
func texts(res *saperly.Result) []string {
	out := make([]string, len(res.Lines))
	for i, l := range res.Lines {
		out[i] = l.Text
	}
	return out
}

func isHolding(s string) bool {
	return slices.Contains(holdingPhrases, strings.TrimSpace(s))
}

// modelSpeech is what an answer says after any holding phrases it opened with, joined: the
// model's words and any fixed line that followed them.
func modelSpeech(res *saperly.Result) string {
	ts := texts(res)
	for len(ts) > 0 && isHolding(ts[0]) {
		ts = ts[1:]
	}
	return norm(strings.Join(ts, " "))
}

// norm collapses white space, so texts compare regardless of how they were split into lines.
func norm(s string) string { return strings.Join(strings.Fields(s), " ") }

// systemPromptHead is a piece of the default agent's prompt file that the model's system
// message must carry: the first stretch of plain text in the prompt, after any front matter
// and outside template actions (the prompt may be a template over the call).
func systemPromptHead(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "prompts", "default.md"))
	require.NoError(t, err)
	body := strings.ReplaceAll(string(raw), "\r\n", "\n")
	if rest, ok := strings.CutPrefix(body, "---\n"); ok {
		if _, after, ok := strings.Cut(rest, "\n---\n"); ok {
			body = after
		}
	}
	for line := range strings.SplitSeq(body, "\n") {
		for _, lit := range templateAction.Split(line, -1) {
			if lit = strings.TrimSpace(lit); len(lit) >= 20 {
				return lit
			}
		}
	}
	t.Fatal("prompts/default.md has no plain text to look for")
	return ""
}

var templateAction = regexp.MustCompile(`\{\{.*?\}\}`)

// checkConversation checks what the model was sent: the system prompt, then exactly want
// (roles and words, white space aside).
func checkConversation(t *testing.T, req mockllm.Request, want []mockllm.Message) {
	t.Helper()
	require.NotEmpty(t, req.Messages)
	assert.Equal(t, "system", req.Messages[0].Role, "the system prompt comes first")
	assert.Contains(t, req.Messages[0].Content, systemPromptHead(t), "the system message is the default agent's prompt")
	got := make([]mockllm.Message, 0, len(req.Messages)-1)
	for _, m := range req.Messages[1:] {
		got = append(got, mockllm.Message{Role: m.Role, Content: norm(m.Content)})
	}
	exp := make([]mockllm.Message, len(want))
	for i, m := range want {
		exp[i] = mockllm.Message{Role: m.Role, Content: norm(m.Content)}
	}
	assert.Equal(t, exp, got, "the conversation the model saw")
}

func user(text string) mockllm.Message      { return mockllm.Message{Role: "user", Content: text} }
func assistant(text string) mockllm.Message { return mockllm.Message{Role: "assistant", Content: text} }

// endsSentence reports whether s ends on a sentence boundary.
func endsSentence(s string) bool {
	s = strings.TrimRight(strings.TrimSpace(s), `"')”’`)
	return strings.HasSuffix(s, ".") || strings.HasSuffix(s, "!") || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "…")
}

// retryWhileStreaming delivers ev, and once its first line has arrived, delivers it again as
// Saperly's retry does (new delivery id, attempt 2), while the first answer still streams. It
// returns both answers after checking each was spoken, and that the retry really overlapped.
func retryWhileStreaming(t *testing.T, b *brain, c *call, ev saperly.Event) (first, retry *saperly.Result) {
	t.Helper()
	watch := newFirstLineTransport()
	watched := *b.client
	watched.HTTP = &http.Client{Transport: watch}
	type outcome struct {
		res *saperly.Result
		err error
		end time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := deliver(t, &watched, saperly.WebhookPath, ev)
		done <- outcome{res, err, time.Now()}
	}()
	select {
	case <-watch.first:
	case o := <-done:
		t.Fatalf("the first delivery ended before its first line arrived: %v", o.err)
	}

	retryAt := time.Now()
	retry, err := c.send(t, ev, saperly.WithAttempt(2))
	o := <-done
	checkSpoken(t, o.res, o.err)
	checkSpoken(t, retry, err)
	assert.True(t, o.end.After(retryAt), "precondition: the retry was sent while the first answer streamed")
	return o.res, retry
}
