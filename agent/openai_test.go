package agent_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// newMock serves the stand-in model over real HTTP for the real go-openai client.
func newMock(t *testing.T) (*mockllm.Server, *agent.OpenAI) {
	t.Helper()
	m := mockllm.New(mockllm.Options{})
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, agent.NewOpenAI(srv.URL+"/v1", "test-key")
}

// drain reads a stream to its end: the text, and the error that ended it (io.EOF when clean).
func drain(t *testing.T, s agent.TokenStream) (string, error) {
	t.Helper()
	var b strings.Builder
	for {
		tok, err := s.Recv()
		if err != nil {
			return b.String(), err
		}
		b.WriteString(tok)
	}
}

func TestOpenAIStreamsText(t *testing.T) {
	t.Parallel()
	m, llm := newMock(t)
	m.Push(mockllm.Behavior{Reply: "Sure, Tuesday at 3:30 p.m. works."})
	s, err := llm.Stream(t.Context(), agent.Request{Model: "m", Messages: []agent.Message{{Role: "user", Text: "Hi"}}, MaxTokens: 50})
	require.NoError(t, err)
	defer s.Close()
	text, err := drain(t, s)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "Sure, Tuesday at 3:30 p.m. works.", text)
	assert.Empty(t, s.ToolCalls())
	assert.Equal(t, 50, m.Requests()[0].MaxTokens)
}

func TestOpenAITruncatedAtMaxTokens(t *testing.T) {
	t.Parallel()
	_, llm := newMock(t)
	s, err := llm.Stream(t.Context(), agent.Request{Model: "m", Messages: []agent.Message{{Role: "user", Text: "book a cleaning"}}, MaxTokens: 3})
	require.NoError(t, err)
	defer s.Close()
	_, err = drain(t, s)
	assert.ErrorIs(t, err, agent.ErrTruncated)
}

func TestOpenAIErrorStatusIsModelError(t *testing.T) {
	t.Parallel()
	m, llm := newMock(t)
	m.Push(mockllm.Behavior{Status: http.StatusServiceUnavailable})
	_, err := llm.Stream(t.Context(), agent.Request{Model: "m", Messages: []agent.Message{{Role: "user", Text: "Hi"}}})
	require.Error(t, err)
	assert.ErrorIs(t, err, agent.ErrModel)
}

func TestOpenAIToolCallsRoundTrip(t *testing.T) {
	t.Parallel()
	m, llm := newMock(t)
	m.Push(mockllm.Behavior{Reply: "Let me check.", ToolCalls: []mockllm.ToolCall{
		{ID: "call_1", Name: "get_order_status", Arguments: `{"order_id":"12345"}`},
		{ID: "call_2", Name: "end_call", Arguments: `{"reason":"done"}`},
	}})
	params := json.RawMessage(`{"type":"object","properties":{"order_id":{"type":"string"}}}`)
	req := agent.Request{
		Model: "m",
		Messages: []agent.Message{
			{Role: "system", Text: "You help."},
			{Role: "user", Text: "Where is order 999?"},
			{Role: "assistant", ToolCalls: []agent.ToolCall{{ID: "call_0", Name: "get_order_status", Args: `{"order_id":"999"}`}}},
			{Role: "tool", ToolCallID: "call_0", Text: `{"error":"order not found"}`},
			{Role: "user", Text: "Try 12345."},
		},
		Tools: []agent.ToolDef{{Name: "get_order_status", Description: "Look up an order.", Parameters: params}},
	}
	s, err := llm.Stream(t.Context(), req)
	require.NoError(t, err)
	defer s.Close()
	text, err := drain(t, s)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "Let me check.", text)
	assert.Equal(t, []agent.ToolCall{
		{ID: "call_1", Name: "get_order_status", Args: `{"order_id":"12345"}`},
		{ID: "call_2", Name: "end_call", Args: `{"reason":"done"}`},
	}, s.ToolCalls(), "fragments reassembled by index")

	got := m.Requests()[0]
	assert.Equal(t, []string{"get_order_status"}, got.Tools)
	require.Len(t, got.Messages, 5)
	assert.Equal(t, "call_0", got.Messages[2].ToolCalls[0].ID)
	assert.JSONEq(t, `{"order_id":"999"}`, got.Messages[2].ToolCalls[0].Arguments)
	assert.Equal(t, "call_0", got.Messages[3].ToolCallID)
	assert.Equal(t, "tool", got.Messages[3].Role)
}

func TestSaperlyAPIHangUp(t *testing.T) {
	t.Parallel()
	api := saperly.NewAPI("api-key")
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	require.NoError(t, agent.NewSaperlyAPI(srv.URL+saperly.APIBasePath, "api-key").HangUp(t.Context(), "call-1"))
	assert.Equal(t, 1, api.Count("call-1"))

	err := agent.NewSaperlyAPI(srv.URL+saperly.APIBasePath, "wrong").HangUp(t.Context(), "call-2")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")

	api.SetFault(saperly.Fault{Status: http.StatusBadGateway, Times: 1})
	err = agent.NewSaperlyAPI(srv.URL+saperly.APIBasePath, "api-key").HangUp(t.Context(), "call-3")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "502")
}
