package mockllm_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/mockllm"
)

// newMock serves m over real HTTP and returns a go-openai client pointed at it.
func newMock(t *testing.T, m http.Handler) (*httptest.Server, *openai.Client) {
	t.Helper()
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	cfg := openai.DefaultConfig("any-key")
	cfg.BaseURL = srv.URL + "/v1"
	return srv, openai.NewClientWithConfig(cfg)
}

func chatRequest(model, userText string) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model: model,
		Messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: "You are a receptionist."},
			{Role: openai.ChatMessageRoleUser, Content: userText},
		},
	}
}

// token is one content delta and when it arrived, measured from the request's start.
type token struct {
	text string
	at   time.Duration
}

// streamed is everything a go-openai stream yielded.
type streamed struct {
	tokens  []token
	roles   []string
	finish  []openai.FinishReason
	ids     []string
	usage   *openai.Usage
	err     error // the error that ended the stream (io.EOF on a clean end)
	started time.Duration
}

func (s streamed) text() string {
	var b strings.Builder
	for _, t := range s.tokens {
		b.WriteString(t.text)
	}
	return b.String()
}

// stream runs one streamed completion through the real go-openai client.
func stream(ctx context.Context, t *testing.T, c *openai.Client, req openai.ChatCompletionRequest) streamed {
	t.Helper()
	req.Stream = true
	start := time.Now()
	st, err := c.CreateChatCompletionStream(ctx, req)
	require.NoError(t, err)
	defer st.Close()
	out := streamed{started: time.Since(start)}
	for {
		resp, err := st.Recv()
		if err != nil {
			out.err = err
			return out
		}
		out.ids = append(out.ids, resp.ID)
		if resp.Usage != nil {
			out.usage = resp.Usage
		}
		for _, ch := range resp.Choices {
			if ch.Delta.Role != "" {
				out.roles = append(out.roles, ch.Delta.Role)
			}
			if ch.Delta.Content != "" {
				out.tokens = append(out.tokens, token{ch.Delta.Content, time.Since(start)})
			}
			if ch.FinishReason != "" {
				out.finish = append(out.finish, ch.FinishReason)
			}
		}
	}
}

func TestStreamAnswersLikeTheDemoModel(t *testing.T) {
	t.Parallel()
	_, c := newMock(t, mockllm.New(mockllm.Options{}))

	got := stream(t.Context(), t, c, chatRequest("gpt-4o-mini", "I'd like to book a cleaning"))

	require.ErrorIs(t, got.err, io.EOF, "a clean end")
	want := agent.DemoReply([]agent.Message{{Role: "system", Text: "You are a receptionist."}, {Role: "user", Text: "I'd like to book a cleaning"}})
	assert.Equal(t, want, got.text())
	wantToks := agent.DemoTokens(want)
	require.Len(t, got.tokens, len(wantToks), "one chunk per token")
	for i, tok := range got.tokens {
		assert.Equal(t, wantToks[i], tok.text)
	}
	assert.Equal(t, []string{"assistant"}, got.roles, "the role comes once, first")
	assert.Equal(t, []openai.FinishReason{openai.FinishReasonStop}, got.finish)
	require.NotEmpty(t, got.ids)
	for _, id := range got.ids {
		assert.Equal(t, got.ids[0], id, "every chunk of a completion has its id")
	}
	assert.Nil(t, got.usage, "usage only when stream_options asks for it")
}

func TestStreamWireFormat(t *testing.T) {
	t.Parallel()
	srv, _ := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "Hi there."}}))

	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hello"}]}`
	res, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)

	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	events := strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n")
	require.Len(t, events, 1+2+1+1, "role, 2 tokens, finish, [DONE]")
	assert.Equal(t, "data: [DONE]", events[len(events)-1])
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(events[0], "data: ")), &first))
	assert.Equal(t, "chat.completion.chunk", first["object"])
	assert.Equal(t, "m", first["model"])
	assert.NotZero(t, first["created"])
	choice := first["choices"].([]any)[0].(map[string]any)
	assert.Equal(t, map[string]any{"role": "assistant", "content": ""}, choice["delta"])
	assert.Contains(t, choice, "finish_reason")
	assert.Nil(t, choice["finish_reason"])
	assert.Contains(t, events[3], `"finish_reason":"stop"`)
}

func TestStreamIncludeUsage(t *testing.T) {
	t.Parallel()
	_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "One two three."}}))
	req := chatRequest("m", "hello")
	req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}

	got := stream(t.Context(), t, c, req)

	require.ErrorIs(t, got.err, io.EOF)
	require.NotNil(t, got.usage)
	assert.Equal(t, 3, got.usage.CompletionTokens) // "One", " two", " three."
	assert.Equal(t, got.usage.PromptTokens+got.usage.CompletionTokens, got.usage.TotalTokens)
}

func TestCompleteWithoutStream(t *testing.T) {
	t.Parallel()
	_, c := newMock(t, mockllm.New(mockllm.Options{}))

	resp, err := c.CreateChatCompletion(t.Context(), chatRequest("gpt-4o-mini", "what are your hours?"))

	require.NoError(t, err)
	require.Len(t, resp.Choices, 1)
	want := agent.DemoReply([]agent.Message{{Role: "user", Text: "what are your hours?"}})
	assert.Equal(t, want, resp.Choices[0].Message.Content)
	assert.Equal(t, openai.ChatMessageRoleAssistant, resp.Choices[0].Message.Role)
	assert.Equal(t, openai.FinishReasonStop, resp.Choices[0].FinishReason)
	assert.Equal(t, "chat.completion", resp.Object)
	assert.Equal(t, "gpt-4o-mini", resp.Model)
	assert.Equal(t, len(agent.DemoTokens(want)), resp.Usage.CompletionTokens)
}

func TestReplyOverridesTheDemo(t *testing.T) {
	t.Parallel()
	_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "Scripted, word for word."}}))

	got := stream(t.Context(), t, c, chatRequest("m", "hello"))
	resp, err := c.CreateChatCompletion(t.Context(), chatRequest("m", "hello"))

	require.ErrorIs(t, got.err, io.EOF)
	assert.Equal(t, "Scripted, word for word.", got.text())
	require.NoError(t, err)
	assert.Equal(t, "Scripted, word for word.", resp.Choices[0].Message.Content)
}

func TestMaxTokensEndsWithLength(t *testing.T) {
	t.Parallel()
	_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "one two three four five"}}))
	req := chatRequest("m", "hello")
	req.MaxTokens = 3

	got := stream(t.Context(), t, c, req)
	resp, err := c.CreateChatCompletion(t.Context(), req)

	require.ErrorIs(t, got.err, io.EOF)
	assert.Equal(t, "one two three", got.text())
	assert.Equal(t, []openai.FinishReason{openai.FinishReasonLength}, got.finish)
	require.NoError(t, err)
	assert.Equal(t, "one two three", resp.Choices[0].Message.Content)
	assert.Equal(t, openai.FinishReasonLength, resp.Choices[0].FinishReason)
}

// Timing is checked only from below, and from the request's start: a loaded CI machine may
// deliver a token late, never early, so a gap between two arrivals can be shorter than the
// server's pause (CI saw 16.8 ms for a 20 ms gap after a late first token), while the time
// from the start to each token cannot.
func TestTiming(t *testing.T) {
	t.Parallel()
	const ttft, gap, stall = 80 * time.Millisecond, 20 * time.Millisecond, 120 * time.Millisecond
	_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{
		Reply: "a b c d", TTFT: ttft, TokenDelay: gap, StallAfter: 2, Stall: stall,
	}}))

	t.Run("stream", func(t *testing.T) {
		t.Parallel()
		got := stream(t.Context(), t, c, chatRequest("m", "hello"))

		require.ErrorIs(t, got.err, io.EOF)
		require.Len(t, got.tokens, 4)
		assert.Less(t, got.started, got.tokens[0].at, "the stream opens before the first token")
		assert.GreaterOrEqual(t, got.tokens[0].at, ttft)
		assert.GreaterOrEqual(t, got.tokens[1].at, ttft+gap)
		assert.GreaterOrEqual(t, got.tokens[2].at, ttft+2*gap+stall, "the stall is paced in, by the third token")
		assert.GreaterOrEqual(t, got.tokens[3].at, ttft+3*gap+stall)
	})
	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		_, err := c.CreateChatCompletion(t.Context(), chatRequest("m", "hello"))

		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(start), ttft+3*gap+stall, "the whole answer is paced as the stream would be")
	})
}

func TestStatusIsAnAPIError(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			m := mockllm.New(mockllm.Options{Default: mockllm.Behavior{Status: status}})
			_, c := newMock(t, m)

			_, streamErr := c.CreateChatCompletionStream(t.Context(), chatRequest("m", "hello"))
			_, completeErr := c.CreateChatCompletion(t.Context(), chatRequest("m", "hello"))

			for _, err := range []error{streamErr, completeErr} {
				var apiErr *openai.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, status, apiErr.HTTPStatusCode)
				assert.Contains(t, apiErr.Message, "scripted status")
			}
			assert.Len(t, m.Requests(), 2, "failed requests are recorded too")
		})
	}
}

func TestCutAfterBreaksTheStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cutAfter int
	}{
		{name: "mid answer", cutAfter: 2},
		{name: "before the final chunk", cutAfter: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "a b c d", CutAfter: tt.cutAfter}}))

			got := stream(t.Context(), t, c, chatRequest("m", "hello"))

			assert.Len(t, got.tokens, tt.cutAfter)
			assert.Empty(t, got.finish, "no clean finish")
			require.Error(t, got.err)
			assert.NotErrorIs(t, got.err, io.EOF, "a broken stream, not a clean end")
		})
	}
	t.Run("shorter answer ends normally", func(t *testing.T) {
		t.Parallel()
		_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "a b", CutAfter: 3}}))

		got := stream(t.Context(), t, c, chatRequest("m", "hello"))

		assert.ErrorIs(t, got.err, io.EOF)
		assert.Equal(t, "a b", got.text())
	})
	t.Run("without stream", func(t *testing.T) {
		t.Parallel()
		_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "a b c d", CutAfter: 2}}))

		_, err := c.CreateChatCompletion(t.Context(), chatRequest("m", "hello"))

		require.Error(t, err)
		var apiErr *openai.APIError
		assert.NotErrorAs(t, err, &apiErr, "a dropped connection, not an HTTP error")
	})
}

// hangWatch tells when a request reached the mock and when its handler returned.
type hangWatch struct {
	next           http.Handler
	arrived, ended chan struct{}
}

func (h hangWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.arrived <- struct{}{}
	defer func() { h.ended <- struct{}{} }()
	h.next.ServeHTTP(w, r)
}

func TestHangEndsWhenTheClientGoes(t *testing.T) {
	t.Parallel()
	for _, streaming := range []bool{true, false} {
		name := map[bool]string{true: "stream", false: "complete"}[streaming]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := hangWatch{
				next:    mockllm.New(mockllm.Options{Default: mockllm.Behavior{Hang: true}}),
				arrived: make(chan struct{}, 1),
				ended:   make(chan struct{}, 1),
			}
			_, c := newMock(t, h)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()

			errc := make(chan error, 1)
			go func() {
				req := chatRequest("m", "hello")
				var err error
				if streaming {
					req.Stream = true
					_, err = c.CreateChatCompletionStream(ctx, req)
				} else {
					_, err = c.CreateChatCompletion(ctx, req)
				}
				errc <- err
			}()
			<-h.arrived
			cancel()

			assert.ErrorIs(t, receive(t, errc), context.Canceled)
			receive(t, h.ended) // the handler returned: nothing is left waiting
		})
	}
}

// receive waits for one value, failing the test instead of hanging forever.
func receive[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, "timed out")
		var zero T
		return zero
	}
}

func TestScriptQueueOrderAndModelMatching(t *testing.T) {
	t.Parallel()
	m := mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: "default"}})
	_, c := newMock(t, m)
	m.Push(
		mockllm.Behavior{Model: "big", Reply: "for big"},
		mockllm.Behavior{Reply: "first any"},
		mockllm.Behavior{Reply: "second any"},
	)

	ask := func(model string) string {
		resp, err := c.CreateChatCompletion(t.Context(), chatRequest(model, "hello"))
		require.NoError(t, err)
		return resp.Choices[0].Message.Content
	}

	assert.Equal(t, "first any", ask("small"), "the first behaviour for big is skipped")
	assert.Equal(t, "for big", ask("big"))
	assert.Equal(t, "second any", ask("big"))
	assert.Equal(t, "default", ask("small"), "an empty queue falls back to the default")
}

func TestRequestsAreRecorded(t *testing.T) {
	t.Parallel()
	m := mockllm.New(mockllm.Options{})
	_, c := newMock(t, m)
	before := time.Now()

	req := chatRequest("gpt-4o-mini", "hello")
	req.MaxTokens = 450
	req.Temperature = 0.25
	req.Messages = append(req.Messages, openai.ChatCompletionMessage{Role: "assistant", Content: "Hi!"})
	got := stream(t.Context(), t, c, req)
	require.ErrorIs(t, got.err, io.EOF)
	_, err := c.CreateChatCompletion(t.Context(), chatRequest("other", "bye"))
	require.NoError(t, err)

	reqs := m.Requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "gpt-4o-mini", reqs[0].Model)
	assert.True(t, reqs[0].Stream)
	assert.Equal(t, 450, reqs[0].MaxTokens)
	assert.InDelta(t, 0.25, reqs[0].Temperature, 1e-6)
	assert.Equal(t, []mockllm.Message{
		{Role: "system", Content: "You are a receptionist."},
		{Role: "user", Content: "hello"},
		{Role: "assistant", Content: "Hi!"},
	}, reqs[0].Messages)
	assert.False(t, reqs[0].Time.Before(before))
	assert.Equal(t, "other", reqs[1].Model)
	assert.False(t, reqs[1].Stream)
	assert.False(t, reqs[1].Time.Before(reqs[0].Time))

	reqs[0].Messages[0].Content = "changed"
	assert.Equal(t, "You are a receptionist.", m.Requests()[0].Messages[0].Content, "Requests returns a copy")

	m.Push(mockllm.Behavior{Reply: "queued"})
	m.Reset()
	assert.Empty(t, m.Requests())
	resp, err := c.CreateChatCompletion(t.Context(), chatRequest("m", "bye"))
	require.NoError(t, err)
	assert.NotEqual(t, "queued", resp.Choices[0].Message.Content, "Reset empties the script")
}

func TestListModels(t *testing.T) {
	t.Parallel()
	_, c := newMock(t, mockllm.New(mockllm.Options{Models: []string{"a", "b"}}))

	list, err := c.ListModels(t.Context())

	require.NoError(t, err)
	require.Len(t, list.Models, 2)
	assert.Equal(t, "a", list.Models[0].ID)
	assert.Equal(t, "b", list.Models[1].ID)
}

func TestControlAPI(t *testing.T) {
	t.Parallel()
	srv, c := newMock(t, mockllm.New(mockllm.Options{}))
	post := func(path, body string) (int, string) {
		t.Helper()
		res, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}

	status, body := post("/mock/script", `[{"reply":"scripted one"},{"model":"x","status":503},{"reply":"slow","ttft_ms":5}]`)
	require.Equal(t, http.StatusOK, status, body)
	assert.JSONEq(t, `{"queued":3}`, body)

	resp, err := c.CreateChatCompletion(t.Context(), chatRequest("m", "hello"))
	require.NoError(t, err)
	assert.Equal(t, "scripted one", resp.Choices[0].Message.Content)
	_, err = c.CreateChatCompletion(t.Context(), chatRequest("x", "hello"))
	var apiErr *openai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusServiceUnavailable, apiErr.HTTPStatusCode)

	res, err := http.Get(srv.URL + "/mock/requests")
	require.NoError(t, err)
	defer res.Body.Close()
	var reqs []mockllm.Request
	require.NoError(t, json.NewDecoder(res.Body).Decode(&reqs))
	require.Len(t, reqs, 2)
	assert.Equal(t, []string{"m", "x"}, []string{reqs[0].Model, reqs[1].Model})
	assert.Equal(t, "hello", reqs[0].Messages[1].Content)

	status, _ = post("/mock/reset", "")
	assert.Equal(t, http.StatusOK, status)
	resp, err = c.CreateChatCompletion(t.Context(), chatRequest("m", "hello"))
	require.NoError(t, err)
	assert.NotEqual(t, "slow", resp.Choices[0].Message.Content, "reset emptied the script")

	for _, bad := range []string{`[{"ttft":5}]`, `[{"ttft_ms":-1}]`, `[{"error_after":-1}]`, `{"reply":"not an array"}`, `[{"status":42}]`} {
		status, _ := post("/mock/script", bad)
		assert.Equal(t, http.StatusBadRequest, status, bad)
	}
}

func TestBehaviorJSON(t *testing.T) {
	t.Parallel()
	b := mockllm.Behavior{
		Model: "m", Reply: "r", TTFT: 1500 * time.Millisecond, TokenDelay: 30 * time.Millisecond,
		Status: 429, StallAfter: 3, Stall: 2 * time.Second, CutAfter: 7, Hang: true,
	}

	data, err := json.Marshal(b)
	require.NoError(t, err)
	assert.JSONEq(t, `{"model":"m","reply":"r","ttft_ms":1500,"token_delay_ms":30,"status":429,
		"stall_after":3,"stall_ms":2000,"cut_after":7,"hang":true}`, string(data))
	var back mockllm.Behavior
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, b, back)

	data, err = json.Marshal(mockllm.Behavior{})
	require.NoError(t, err)
	assert.JSONEq(t, `{}`, string(data))
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	srv, c := newMock(t, mockllm.New(mockllm.Options{}))

	res, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{not json`))
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)

	_, err = c.CreateChatCompletion(t.Context(), chatRequest("", "hello"))
	var apiErr *openai.APIError
	require.True(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, http.StatusBadRequest, apiErr.HTTPStatusCode)
}
