package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer collects what run writes on stderr from its handlers' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const recordedScript = `name: orders
turns:
  - start: {}
  - say: Hi there
    answer:
      lines:
        - {text: "Hello, this is Northwind.", at: 300ms}
        - {text: "How can I help?", at: 600ms}
  - say: Where is my order 12345?
    answer:
      lines:
        - {text: One moment., at: 150ms, hold: true}
        - {text: "It shipped on Monday.", at: 900ms}
      tools:
        - {name: get_order_status, args: '{"order_id":"12345"}'}
  - say: Thanks, bye
    answer:
      lines:
        - {text: "Goodbye from the recording!", at: 200ms}
      tools: [end_call]
      ended_call: true
`

// startRecorded runs mockllm -scripts over a directory holding the script above.
func startRecorded(t *testing.T) (*openai.Client, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "orders.yaml"), []byte(recordedScript), 0o600))
	ctx, cancel := context.WithCancel(t.Context())
	stderr := &lockedBuffer{}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-scripts", dir, "-token-delay", "0s"}, pw, stderr)
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, wait(t, done))
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "mockllm listening on ")
	require.True(t, ok, "listening line: %q", line)
	cfg := openai.DefaultConfig("any")
	cfg.BaseURL = base
	return openai.NewClientWithConfig(cfg), stderr
}

var orderTools = []openai.Tool{
	{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "get_order_status",
		Parameters: json.RawMessage(`{"type":"object","properties":{"order_id":{"type":"string"}}}`)}},
	{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "end_call",
		Parameters: json.RawMessage(`{"type":"object","properties":{}}`)}},
}

// stream asks for a streamed answer and returns its words, its tool calls and how long the
// first word took.
func stream(t *testing.T, c *openai.Client, msgs []openai.ChatCompletionMessage) (string, []openai.ToolCall, time.Duration) {
	t.Helper()
	start := time.Now()
	s, err := c.CreateChatCompletionStream(t.Context(), openai.ChatCompletionRequest{Model: "gpt-4o-mini", Messages: msgs, Tools: orderTools, Stream: true})
	require.NoError(t, err)
	defer s.Close()
	var words strings.Builder
	var first time.Duration
	calls := map[int]*openai.ToolCall{}
	for {
		r, err := s.Recv()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		d := r.Choices[0].Delta
		if d.Content != "" && first == 0 {
			first = time.Since(start)
		}
		words.WriteString(d.Content)
		for _, tc := range d.ToolCalls {
			c, ok := calls[*tc.Index]
			if !ok {
				c = &openai.ToolCall{ID: tc.ID, Type: tc.Type}
				calls[*tc.Index] = c
			}
			c.Function.Name += tc.Function.Name
			c.Function.Arguments += tc.Function.Arguments
		}
	}
	var out []openai.ToolCall
	for i := range len(calls) {
		out = append(out, *calls[i])
	}
	return words.String(), out, first
}

func user(text string) openai.ChatCompletionMessage {
	return openai.ChatCompletionMessage{Role: "user", Content: text}
}

// TestScriptsAnswerAsRecorded: with -scripts, each utterance gets the answer recorded for it,
// at the recorded pace, tool calls included; unknown words get the default answer and are
// named once on stderr.
func TestScriptsAnswerAsRecorded(t *testing.T) {
	t.Parallel()
	c, stderr := startRecorded(t)
	assert.Contains(t, stderr.String(), "mockllm: 3 recorded answers from 1 script")

	words, calls, first := stream(t, c, []openai.ChatCompletionMessage{{Role: "system", Content: "You answer the phone."}, user("hi there!")})
	assert.Equal(t, "Hello, this is Northwind. How can I help?", words)
	assert.Empty(t, calls)
	// Paced as recorded, not at the flag's 0s: 5 tokens a line, the lines complete at 300ms
	// and 600ms, so 60ms a token after a first token at 60ms. Timers never fire early.
	assert.GreaterOrEqual(t, first, 60*time.Millisecond)

	history := []openai.ChatCompletionMessage{user("Hi there"), {Role: "assistant", Content: "Hello, this is Northwind. How can I help?"},
		user("Where is my order 12345?")}
	words, calls, _ = stream(t, c, history)
	assert.Empty(t, words, "the recorded tool call comes first")
	require.Len(t, calls, 1)
	assert.Equal(t, "get_order_status", calls[0].Function.Name)
	assert.JSONEq(t, `{"order_id":"12345"}`, calls[0].Function.Arguments)

	history = append(history, openai.ChatCompletionMessage{Role: "assistant", ToolCalls: calls},
		openai.ChatCompletionMessage{Role: "tool", ToolCallID: calls[0].ID, Content: `{"status":"shipped"}`})
	words, calls, _ = stream(t, c, history)
	assert.Equal(t, "It shipped on Monday.", words, "then the recorded words, without the brain's holding phrase")
	assert.Empty(t, calls)

	words, calls, _ = stream(t, c, []openai.ChatCompletionMessage{user("Thanks, bye")})
	assert.Equal(t, "Goodbye from the recording!", words, "the goodbye comes with end_call")
	require.Len(t, calls, 1)
	assert.Equal(t, "end_call", calls[0].Function.Name)

	words, _, _ = stream(t, c, []openai.ChatCompletionMessage{user("What are your hours?")})
	assert.Contains(t, words, "We're open Monday to Friday", "unknown words: the default (demo) answer")
	_, _, _ = stream(t, c, []openai.ChatCompletionMessage{user("What are your hours?")})
	assert.Equal(t, 1, strings.Count(stderr.String(), `no recorded answer for "What are your hours?"`), "named once")
}

func TestScriptsRefused(t *testing.T) {
	t.Parallel()
	broken := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(broken, "b.yaml"), []byte("turns:\n  - say: hi\n    answer: {lines: [{text: x, at: soon}]}\n"), 0o600))
	empty := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(empty, "e.yaml"), []byte("turns: [{say: hi}]\n"), 0o600))
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"broken script", broken, filepath.Join(broken, "b.yaml") + `:3: answer line at: "soon" is not a duration`},
		{"no answers", empty, "no script records an answer"},
		{"missing dir", filepath.Join(empty, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			err := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-scripts", tt.dir}, &out, io.Discard)
			require.ErrorContains(t, err, tt.want)
			assert.Empty(t, out.String(), "nothing listening")
		})
	}
}
