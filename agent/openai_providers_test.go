package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// rawSSE serves body verbatim as a text/event-stream answer to every request, through real HTTP
// for the real go-openai client. With hold, the connection then stays open, as a provider's does
// while it computes usage or before it gives up, until the client leaves or the test ends.
func rawSSE(t *testing.T, body string, hold bool) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body)
		w.(http.Flusher).Flush()
		if hold {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets held handlers end before Close waits
	return srv.URL + "/v1"
}

// sse frames each payload as one data event; a payload starting with ":" or "event:" is sent
// as that line (a comment, or a field of the next event).
func sse(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, ":"):
			b.WriteString(l + "\n\n")
		case strings.HasPrefix(l, "event:"):
			b.WriteString(l + "\n")
		default:
			b.WriteString("data: " + l + "\n\n")
		}
	}
	return b.String()
}

func content(s string) string {
	return fmt.Sprintf(`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`, s)
}

func finish(reason string) string {
	return fmt.Sprintf(`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":%q}]}`, reason)
}

// TestOpenAIStreamProviderShapes reads each provider's stream shape through the real go-openai
// client: keep-alives, filter annotations and usage chunks are skipped; an error reported inside
// the stream, in any shape, is an ErrModel carrying the provider's message; a finish_reason ends
// the answer at once, without waiting for the connection to close.
//
// A held connection matters: a reader that waits for more after an error or a finish_reason
// blocks until the request's deadline, and the context error that then ends it is rejected.
func TestOpenAIStreamProviderShapes(t *testing.T) {
	t.Parallel()
	const said = "Sure, your order"
	cases := []struct {
		name    string
		body    string
		hold    bool
		text    string
		err     error  // io.EOF for a clean end
		message string // in the error, for a provider's error
	}{
		{
			// OpenAI, stream_options.include_usage: "an additional chunk will be streamed
			// before the data: [DONE] message ... the choices field will always be an empty
			// array" (platform.openai.com/docs/api-reference/chat/create#stream_options).
			name: "openai usage chunk",
			body: sse(`{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}`,
				content("Sure, "), content("Tuesday works."), finish("stop"),
				`{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`,
				"[DONE]"),
			text: "Sure, Tuesday works.", err: io.EOF,
		},
		{
			// OpenAI mid-stream: "the OpenAI API emits a single data: line carrying an error
			// object (no choices)"; the official SDKs raise APIError on it (openai-python
			// _streaming.py; block/goose#8031 for vLLM, SGLang and OpenAI). Held open after it.
			name: "openai error object",
			body: sse(content("Sure, "), content("your order"),
				`{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}`),
			hold: true, text: said, err: agent.ErrModel, message: "The server had an error",
		},
		{
			// Azure OpenAI: the first chunk has empty choices and prompt_filter_results, and
			// content chunks carry content_filter_results (learn.microsoft.com, Azure OpenAI
			// content filtering / content streaming).
			name: "azure filter annotations",
			body: sse(`{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}`,
				`{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Sure, "},"finish_reason":null,"index":0}],"id":"c1","object":"chat.completion.chunk"}`,
				`{"choices":[{"content_filter_results":{},"delta":{"content":"your order"},"finish_reason":null,"index":0}],"id":"c1","object":"chat.completion.chunk"}`,
				finish("stop"), "[DONE]"),
			text: said, err: io.EOF,
		},
		{
			// Azure OpenAI: the filter stops the answer with finish_reason "content_filter"
			// (finish_reason enum: stop, length, tool_calls, content_filter, function_call).
			name: "azure content filter cut",
			body: sse(content("Sure, "), content("your order"), finish("content_filter")),
			hold: true, text: said, err: agent.ErrModel, message: "content_filter",
		},
		{
			// OpenRouter: "occasionally sends comments to prevent connection timeouts ...
			// : OPENROUTER PROCESSING" (openrouter.ai/docs/api-reference/streaming).
			name: "openrouter keep-alive comments",
			body: sse(": OPENROUTER PROCESSING", ": OPENROUTER PROCESSING", content("Sure, "),
				": OPENROUTER PROCESSING", content("your order"), finish("stop"), "[DONE]"),
			text: said, err: io.EOF,
		},
		{
			// OpenRouter mid-stream: "errors that occur mid-generation still arrive as regular
			// data: events with an error field", beside choices with finish_reason "error"
			// (openrouter.ai/docs/api-reference/streaming, Handling Errors During Streaming).
			name: "openrouter error beside choices",
			body: sse(content("Sure, "), content("your order"),
				`{"id":"cmpl-abc123","object":"chat.completion.chunk","created":1,"model":"gpt-3.5-turbo","provider":"openai","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}`,
				"[DONE]"),
			text: said, err: agent.ErrModel, message: "Provider disconnected unexpectedly",
		},
		{
			// OpenRouter keep-alives before an error object: go-openai alone keeps the comment
			// in its error accumulator and then cannot decode the error.
			name: "openrouter comment then error object",
			body: sse(content("Sure, "), ": OPENROUTER PROCESSING", content("your order"),
				`{"error":{"code":502,"message":"Upstream idle timeout"}}`),
			hold: true, text: said, err: agent.ErrModel, message: "Upstream idle timeout",
		},
		{
			// vLLM: create_streaming_error_response yields json.dumps({"error": ...}) with
			// Python's spacing (vllm/entrypoints/openai/serving_engine.py).
			name: "vllm error object",
			body: sse(content("Sure, "), content("your order"),
				`{"error": {"object": "error", "message": "CUDA out of memory", "type": "InternalServerError", "param": null, "code": 500}}`),
			hold: true, text: said, err: agent.ErrModel, message: "CUDA out of memory",
		},
		{
			// vLLM, older releases: the bare ErrorResponse {"object":"error","message":...}
			// (block/goose#8031 handles both vLLM shapes).
			name: "vllm bare error",
			body: sse(content("Sure, "), content("your order"),
				`{"object": "error", "message": "engine dead", "type": "InternalServerError", "param": null, "code": 500}`, "[DONE]"),
			text: said, err: agent.ErrModel, message: "engine dead",
		},
		{
			// Ollama /v1: the last content rides on the chunk with finish_reason "stop"
			// (system_fingerprint fp_ollama), and errors are {"error":{"message","type":
			// "api_error"}} data events (ollama/openai/openai.go). Held after the finish.
			name: "ollama content on finish chunk",
			body: sse(content("Sure, "),
				`{"id":"chatcmpl-768","object":"chat.completion.chunk","created":1,"model":"qwen","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"your order"},"finish_reason":"stop"}]}`),
			hold: true, text: said, err: io.EOF,
		},
		{
			name: "ollama error object",
			body: sse(content("Sure, "), content("your order"),
				`{"error":{"message":"model runner has unexpectedly stopped","type":"api_error","param":null,"code":null}}`),
			hold: true, text: said, err: agent.ErrModel, message: "model runner has unexpectedly stopped",
		},
		{
			// Groq: x_groq carries the request id on the first chunk and usage on the last
			// (console.groq.com/docs/api-reference, chat completion chunk).
			name: "groq x_groq usage",
			body: sse(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama-3.3-70b-versatile","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_01"}}`,
				content("Sure, "), content("your order"),
				`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama-3.3-70b-versatile","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_01","usage":{"queue_time":0.01,"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}}`,
				"[DONE]"),
			text: said, err: io.EOF,
		},
		{
			name: "groq error object",
			body: sse(content("Sure, "), content("your order"),
				`{"error":{"message":"Service Unavailable","type":"internal_server_error"}}`),
			hold: true, text: said, err: agent.ErrModel, message: "Service Unavailable",
		},
		{
			// An event named "error" (SSE spec: the event field names the event), as gateways
			// in front of these providers send it; its data need not be an error object.
			name: "event error with object",
			body: sse(content("Sure, "), content("your order"), "event: error", `{"message":"upstream overloaded"}`),
			hold: true, text: said, err: agent.ErrModel, message: "upstream overloaded",
		},
		{
			name: "event error with text",
			body: sse(content("Sure, "), content("your order"), "event: error", `overloaded, try later`),
			hold: true, text: said, err: agent.ErrModel, message: "overloaded, try later",
		},
		{
			// Hugging Face TGI's OpenAI route: {"error":"...","error_type":"..."}.
			name: "error as a string",
			body: sse(content("Sure, "), content("your order"), `{"error":"Input validation error","error_type":"validation"}`),
			hold: true, text: said, err: agent.ErrModel, message: "Input validation error",
		},
		{
			// finish_reason ends the answer: the usage chunk and [DONE] may come late.
			name: "finish then connection held",
			body: sse(content("Sure, "), content("your order"), finish("stop")),
			hold: true, text: said, err: io.EOF,
		},
		{
			name: "length then connection held",
			body: sse(content("Sure, "), content("your order"), finish("length")),
			hold: true, text: said, err: agent.ErrTruncated,
		},
		{
			// Neither finish_reason nor [DONE]: the connection was lost mid-answer.
			name: "closed without an end",
			body: sse(content("Sure, "), content("your order")),
			text: said, err: agent.ErrModel,
		},
		{
			// A chunk longer than the filter's 4 KiB read buffer is assembled whole.
			name: "long chunk",
			body: sse(content("Sure, "), content(strings.Repeat("very ", 2500)+"long."), finish("stop"), "[DONE]"),
			text: "Sure, " + strings.Repeat("very ", 2500) + "long.", err: io.EOF,
		},
		{
			// A provider that never ends a line is a failed model, not unbounded memory.
			name: "line without end",
			body: "data: " + content("Sure, ") + "\n\ndata: " + strings.Repeat("x", 2<<20),
			hold: true, text: "Sure, ", err: agent.ErrModel, message: "longer than 1 MiB",
		},
		{
			name: "crlf line ends",
			body: strings.ReplaceAll(sse(": ping", content("Sure, "), content("your order"), finish("stop"), "[DONE]"), "\n", "\r\n"),
			text: said, err: io.EOF,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			llm := agent.NewOpenAI(rawSSE(t, tc.body, tc.hold), "k")
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a hang guard, not a limit
			defer cancel()
			s, err := llm.Stream(ctx, agent.Request{Model: "m", Messages: []agent.Message{{Role: "user", Text: "Hi"}}})
			require.NoError(t, err)
			text, err := drain(t, s)
			require.NoError(t, s.Close())
			assert.Equal(t, tc.text, text)
			require.ErrorIs(t, err, tc.err)
			assert.NotErrorIs(t, err, context.DeadlineExceeded, "the stream waited for the connection instead of ending")
			if tc.message != "" {
				assert.Contains(t, err.Error(), tc.message)
			}
		})
	}
}

// TestTurnOverProviderStreamError: a provider's error mid-answer, after a sentence was spoken,
// gives the caller the recovery line, never the half sentence and then silence; a finish_reason
// on a connection kept open ends the turn with the last phrase spoken.
func TestTurnOverProviderStreamError(t *testing.T) {
	t.Parallel()
	openRouterErr := `{"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"m","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}`
	cases := []struct {
		name     string
		body     string
		hold     bool
		heard    []string
		outcome  string
		modelErr string // on the turn line (TurnStats.ModelError)
	}{
		{
			name:     "error after a sentence",
			body:     sse(content("Sure, I can help. "), content("Your order "), content("shipped on"), openRouterErr, "[DONE]"),
			heard:    []string{"Sure, I can help.", agent.DefaultRecoveryLine},
			outcome:  agent.OutcomeRecovered,
			modelErr: "Provider disconnected unexpectedly",
		},
		{
			name:    "finish on a held connection",
			body:    sse(content("Sure, I can help. "), content("Your order shipped today."), finish("stop")),
			hold:    true,
			heard:   []string{"Sure, I can help.", "Your order shipped today."},
			outcome: agent.OutcomeAnswered,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
			require.NoError(t, err)
			var stats agent.TurnStats
			a := agent.New(agent.Config{Model: "m", OnTurn: func(s agent.TurnStats) { stats = s }}, agent.Deps{
				Primary: agent.NewOpenAI(rawSSE(t, tc.body, tc.hold), "k"),
				Store:   session.NewMemoryStore(session.Options{}),
				Prompts: lib,
			})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a hang guard, not a limit
			defer cancel()
			ev := agent.Event{
				Kind: agent.EventMessage, ID: "ev-1", CallID: "call-1", LineID: "line-1", Text: "Where is my order?",
				Delivery: agent.Delivery{ID: "d-1", ReceivedAt: time.Now()},
			}
			var heard []string
			require.NoError(t, a.Respond(ctx, ev, func(c agent.Chunk) error {
				heard = append(heard, c.Text)
				return nil
			}))
			require.NoError(t, ctx.Err(), "the turn waited for the connection")
			assert.Equal(t, tc.heard, heard)
			assert.Equal(t, tc.outcome, stats.Outcome)
			if tc.modelErr == "" {
				assert.Empty(t, stats.ModelError)
			} else {
				assert.Contains(t, stats.ModelError, tc.modelErr, "the failure is on the turn line")
			}
		})
	}
}
