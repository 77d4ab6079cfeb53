package mockllm_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/mockllm"
)

var (
	checkOrderTool = openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
		Name:        "check_order",
		Description: "Look up the status of an order.",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}`),
	}}
	endCallTool = openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
		Name:        "end_call",
		Description: "Hang up after saying goodbye.",
		Parameters:  json.RawMessage(`{"type":"object","properties":{}}`),
	}}
	endCallWithReasonTool = openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
		Name:       "end_call",
		Parameters: json.RawMessage(`{"type":"object","properties":{"reason":{"type":"string"}}}`),
	}}
	weatherTool = openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
		Name:       "weather",
		Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}}}`),
	}}
)

// call is one tool call as a streaming client reassembles it.
type call struct {
	id, typ, name, args string
	// deltas is how many deltas carried it; fragments how many of them carried arguments.
	deltas, fragments int
	// headerOK: its first delta had the id, type and name, and empty arguments; later
	// deltas had neither id nor name.
	headerOK bool
}

// toolStreamed is everything a go-openai stream yielded, with tool calls accumulated by
// index as a client must do.
type toolStreamed struct {
	text   string
	roles  []string
	calls  []call
	finish []openai.FinishReason
	err    error
}

func streamTools(ctx context.Context, t *testing.T, c *openai.Client, req openai.ChatCompletionRequest) toolStreamed {
	t.Helper()
	req.Stream = true
	st, err := c.CreateChatCompletionStream(ctx, req)
	require.NoError(t, err)
	defer st.Close()
	var out toolStreamed
	var text strings.Builder
	for {
		resp, err := st.Recv()
		if err != nil {
			out.err = err
			out.text = text.String()
			return out
		}
		for _, ch := range resp.Choices {
			if ch.Delta.Role != "" {
				out.roles = append(out.roles, ch.Delta.Role)
			}
			text.WriteString(ch.Delta.Content)
			for _, tc := range ch.Delta.ToolCalls {
				require.NotNil(t, tc.Index, "every tool call delta has its index")
				i := *tc.Index
				if i == len(out.calls) {
					out.calls = append(out.calls, call{
						id: tc.ID, typ: string(tc.Type), name: tc.Function.Name,
						headerOK: tc.ID != "" && tc.Type == openai.ToolTypeFunction && tc.Function.Name != "" && tc.Function.Arguments == "",
					})
				} else {
					require.Less(t, i, len(out.calls), "indexes come in order")
					if tc.ID != "" || tc.Function.Name != "" {
						out.calls[i].headerOK = false
					}
				}
				out.calls[i].deltas++
				out.calls[i].args += tc.Function.Arguments
				if tc.Function.Arguments != "" {
					out.calls[i].fragments++
				}
			}
			if ch.FinishReason != "" {
				out.finish = append(out.finish, ch.FinishReason)
			}
		}
	}
}

func toolRequest(tools []openai.Tool, msgs ...openai.ChatCompletionMessage) openai.ChatCompletionRequest {
	return openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: append([]openai.ChatCompletionMessage{{Role: openai.ChatMessageRoleSystem, Content: "You are an order desk."}}, msgs...),
		Tools:    tools,
	}
}

func user(text string) openai.ChatCompletionMessage {
	return openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: text}
}

func TestScriptedToolCallsStream(t *testing.T) {
	t.Parallel()
	type want struct{ name, args string }
	tests := []struct {
		name  string
		reply string
		calls []mockllm.ToolCall
		want  []want
	}{
		{
			name:  "one call",
			calls: []mockllm.ToolCall{{Name: "check_order", Arguments: `{"order_id":"12345"}`}},
			want:  []want{{"check_order", `{"order_id":"12345"}`}},
		},
		{
			name: "parallel calls",
			calls: []mockllm.ToolCall{
				{Name: "check_order", Arguments: `{"order_id":"12345"}`},
				{Name: "weather", Arguments: `{"city":"Zürich, 東京"}`},
			},
			want: []want{{"check_order", `{"order_id":"12345"}`}, {"weather", `{"city":"Zürich, 東京"}`}},
		},
		{
			name:  "a sentence, then the call",
			reply: "Let me look that up.",
			calls: []mockllm.ToolCall{{Name: "check_order", Arguments: `{"order_id":"777"}`}},
			want:  []want{{"check_order", `{"order_id":"777"}`}},
		},
		{
			name:  "no arguments are sent as an empty object",
			calls: []mockllm.ToolCall{{Name: "end_call"}},
			want:  []want{{"end_call", `{}`}},
		},
		{
			name:  "invalid arguments are sent as written",
			calls: []mockllm.ToolCall{{Name: "check_order", Arguments: `{"order_id": 12`}},
			want:  []want{{"check_order", `{"order_id": 12`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: tt.reply, ToolCalls: tt.calls}}))

			got := streamTools(t.Context(), t, c, toolRequest([]openai.Tool{checkOrderTool, weatherTool, endCallTool}, user("hello")))

			require.ErrorIs(t, got.err, io.EOF, "a clean end")
			assert.Equal(t, tt.reply, got.text)
			assert.Equal(t, []string{"assistant"}, got.roles, "the role comes once")
			assert.Equal(t, []openai.FinishReason{openai.FinishReasonToolCalls}, got.finish)
			require.Len(t, got.calls, len(tt.want))
			ids := map[string]bool{}
			for i, w := range tt.want {
				c := got.calls[i]
				assert.Equal(t, w.name, c.name)
				assert.Equal(t, w.args, c.args, "arguments reassembled")
				assert.Equal(t, "function", c.typ)
				assert.True(t, strings.HasPrefix(c.id, "call_"), c.id)
				assert.True(t, c.headerOK, "first delta: index, id, type, name, empty arguments; then fragments only")
				assert.Equal(t, c.deltas, c.fragments+1)
				if len(w.args) > 4 {
					assert.Greater(t, c.fragments, 1, "arguments come in several pieces")
				}
				ids[c.id] = true
			}
			assert.Len(t, ids, len(tt.want), "ids are distinct")
		})
	}
}

func TestToolCallsWireFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		reply     string
		wantFirst map[string]any // the first chunk's delta, without the call's id
	}{
		{
			name:  "calls only: the role rides on the first call",
			reply: "",
			wantFirst: map[string]any{
				"role": "assistant", "content": nil, "refusal": nil,
				"tool_calls": []any{map[string]any{
					"index": float64(0), "type": "function",
					"function": map[string]any{"name": "check_order", "arguments": ""},
				}},
			},
		},
		{
			name:      "words first: the usual role chunk",
			reply:     "One moment.",
			wantFirst: map[string]any{"role": "assistant", "content": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{
				Reply: tt.reply, ToolCalls: []mockllm.ToolCall{{Name: "check_order", Arguments: `{"order_id":"12345"}`}},
			}}))

			body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hello"}]}`
			res, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
			require.NoError(t, err)
			defer res.Body.Close()
			raw, err := io.ReadAll(res.Body)
			require.NoError(t, err)

			events := strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n")
			require.GreaterOrEqual(t, len(events), 3)
			assert.Equal(t, "data: [DONE]", events[len(events)-1])
			d := eventDelta(t, events[0])
			if calls, ok := d["tool_calls"].([]any); ok {
				id := calls[0].(map[string]any)["id"]
				assert.Regexp(t, `^call_[0-9a-z]+$`, id)
				delete(calls[0].(map[string]any), "id")
			}
			assert.Equal(t, tt.wantFirst, d)

			var sawOpen bool
			for _, ev := range events[1 : len(events)-2] {
				d := eventDelta(t, ev)
				calls, ok := d["tool_calls"].([]any)
				if !ok {
					continue
				}
				tc := calls[0].(map[string]any)
				if _, ok := tc["id"]; ok {
					sawOpen = true
					continue
				}
				assert.Equal(t, []string{"function", "index"}, keys(tc), "a fragment carries only index and arguments")
				assert.Equal(t, []string{"arguments"}, keys(tc["function"].(map[string]any)))
			}
			assert.Equal(t, tt.reply != "", sawOpen, "after words, the call opens in its own delta")
			assert.Contains(t, events[len(events)-2], `"finish_reason":"tool_calls"`)
		})
	}
}

func eventDelta(t *testing.T, ev string) map[string]any {
	t.Helper()
	var c struct {
		Choices []struct {
			Delta map[string]any `json:"delta"`
		} `json:"choices"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &c), ev)
	require.Len(t, c.Choices, 1)
	return c.Choices[0].Delta
}

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestScriptedToolCallsWithoutStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply string
	}{
		{name: "calls only"},
		{name: "words and calls", reply: "Let me check."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{Reply: tt.reply, ToolCalls: []mockllm.ToolCall{
				{Name: "check_order", Arguments: `{"order_id":"12345"}`},
				{ID: "call_fixed", Name: "end_call"},
			}}}))

			resp, err := c.CreateChatCompletion(t.Context(), toolRequest([]openai.Tool{checkOrderTool, endCallTool}, user("hello")))

			require.NoError(t, err)
			require.Len(t, resp.Choices, 1)
			msg := resp.Choices[0].Message
			assert.Equal(t, openai.FinishReasonToolCalls, resp.Choices[0].FinishReason)
			assert.Equal(t, tt.reply, msg.Content)
			require.Len(t, msg.ToolCalls, 2)
			assert.True(t, strings.HasPrefix(msg.ToolCalls[0].ID, "call_"))
			assert.Equal(t, "call_fixed", msg.ToolCalls[1].ID, "a scripted id is kept")
			for i, w := range [][2]string{{"check_order", `{"order_id":"12345"}`}, {"end_call", `{}`}} {
				assert.Equal(t, openai.ToolTypeFunction, msg.ToolCalls[i].Type)
				assert.Equal(t, w[0], msg.ToolCalls[i].Function.Name)
				assert.Equal(t, w[1], msg.ToolCalls[i].Function.Arguments)
			}
		})
	}
}

func TestToolCallIDsAreUnique(t *testing.T) {
	t.Parallel()
	b := mockllm.Behavior{ToolCalls: []mockllm.ToolCall{{Name: "end_call"}}}
	_, c1 := newMock(t, mockllm.New(mockllm.Options{Default: b}))
	_, c2 := newMock(t, mockllm.New(mockllm.Options{Default: b}))

	seen := map[string]bool{}
	for _, c := range []*openai.Client{c1, c1, c2, c2} {
		got := streamTools(t.Context(), t, c, toolRequest([]openai.Tool{endCallTool}, user("hello")))
		require.Len(t, got.calls, 1)
		assert.False(t, seen[got.calls[0].id], "id %s repeated", got.calls[0].id)
		seen[got.calls[0].id] = true
	}
}

func TestToolCallsArePacedAndCut(t *testing.T) {
	t.Parallel()
	calls := []mockllm.ToolCall{{Name: "check_order", Arguments: `{"order_id":"12345"}`}} // opening + 5 fragments

	t.Run("cut inside the arguments", func(t *testing.T) {
		t.Parallel()
		_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{ToolCalls: calls, CutAfter: 3}}))

		got := streamTools(t.Context(), t, c, toolRequest([]openai.Tool{checkOrderTool}, user("hello")))

		require.Error(t, got.err)
		assert.NotErrorIs(t, got.err, io.EOF, "a broken stream")
		require.Len(t, got.calls, 1)
		assert.Equal(t, 3, got.calls[0].deltas)
		assert.Empty(t, got.finish)
	})
	t.Run("max_tokens ends with length", func(t *testing.T) {
		t.Parallel()
		_, c := newMock(t, mockllm.New(mockllm.Options{Default: mockllm.Behavior{ToolCalls: calls}}))
		req := toolRequest([]openai.Tool{checkOrderTool}, user("hello"))
		req.MaxTokens = 2

		got := streamTools(t.Context(), t, c, req)
		resp, err := c.CreateChatCompletion(t.Context(), req)

		require.ErrorIs(t, got.err, io.EOF)
		assert.Equal(t, []openai.FinishReason{openai.FinishReasonLength}, got.finish)
		require.Len(t, got.calls, 1)
		assert.Equal(t, `{"or`, got.calls[0].args)
		require.NoError(t, err)
		assert.Equal(t, openai.FinishReasonLength, resp.Choices[0].FinishReason)
		require.Len(t, resp.Choices[0].Message.ToolCalls, 1)
		assert.Equal(t, `{"or`, resp.Choices[0].Message.ToolCalls[0].Function.Arguments)
	})
}

func TestDefaultAnswerWithTools(t *testing.T) {
	t.Parallel()
	// history is a turn that called check_order (or end_call) and got result back.
	history := func(tool, result string) []openai.ChatCompletionMessage {
		return []openai.ChatCompletionMessage{
			user("Where is order 12345?"),
			{Role: openai.ChatMessageRoleAssistant, ToolCalls: []openai.ToolCall{{
				ID: "call_a", Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: tool, Arguments: `{"order_id":"12345"}`},
			}}},
			{Role: openai.ChatMessageRoleTool, ToolCallID: "call_a", Content: result},
		}
	}
	both := []openai.Tool{checkOrderTool, endCallTool}
	type toolCall struct{ name, args string }
	tests := []struct {
		name   string
		tools  []openai.Tool
		msgs   []openai.ChatCompletionMessage
		text   string
		calls  []toolCall
		finish openai.FinishReason
	}{
		{
			name:   "an object result is read from its fields",
			tools:  both,
			msgs:   history("check_order", `{"order_id":"12345","status":"shipped","carrier":"UPS","eta":"Thursday"}`),
			text:   "I checked that for you: status shipped, carrier UPS, eta Thursday.",
			finish: openai.FinishReasonStop,
		},
		{
			name:   "numbers are read, nested values and ids skipped",
			tools:  both,
			msgs:   history("check_order", `{"id":"x","items":3,"lines":[1,2],"note":{"a":"b"},"eta":"Friday"}`),
			text:   "I checked that for you: items 3, eta Friday.",
			finish: openai.FinishReasonStop,
		},
		{
			name:   "an error result is an apology",
			tools:  both,
			msgs:   history("check_order", `{"error":"order not found"}`),
			text:   "I'm sorry, I couldn't check that: order not found.",
			finish: openai.FinishReasonStop,
		},
		{
			name:   "a text result is read as it is",
			tools:  both,
			msgs:   history("check_order", "The parcel left the depot."),
			text:   "I checked that for you: The parcel left the depot.",
			finish: openai.FinishReasonStop,
		},
		{
			name:   "an empty object",
			tools:  both,
			msgs:   history("check_order", `{}`),
			text:   "I checked that for you.",
			finish: openai.FinishReasonStop,
		},
		{
			name:   "nothing more after end_call",
			tools:  both,
			msgs:   history("end_call", `{"status":"hanging_up"}`),
			text:   "",
			finish: openai.FinishReasonStop,
		},
		{
			name:   "an order number calls the order tool",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("Hi, where is my order 12345?")},
			calls:  []toolCall{{"check_order", `{"order_id":"12345"}`}},
			finish: openai.FinishReasonToolCalls,
		},
		{
			name:   "a spoken number grouped with spaces and hyphens",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("It's 1 2 3-4 5.")},
			calls:  []toolCall{{"check_order", `{"order_id":"12345"}`}},
			finish: openai.FinishReasonToolCalls,
		},
		{
			name:   "the order tool is found by its order_id parameter",
			tools:  []openai.Tool{weatherTool, {Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: "lookup", Parameters: checkOrderTool.Function.Parameters}}},
			msgs:   []openai.ChatCompletionMessage{user("order 987")},
			calls:  []toolCall{{"lookup", `{"order_id":"987"}`}},
			finish: openai.FinishReasonToolCalls,
		},
		{
			name:   "two digits are not an order number",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("I have 12 questions")},
			text:   agent.DemoReply([]agent.Message{{Role: "user", Text: "I have 12 questions"}}),
			finish: openai.FinishReasonStop,
		},
		{
			name:   "a number without an order tool",
			tools:  []openai.Tool{weatherTool, endCallTool},
			msgs:   []openai.ChatCompletionMessage{user("order 12345")},
			text:   agent.DemoReply([]agent.Message{{Role: "user", Text: "order 12345"}}),
			finish: openai.FinishReasonStop,
		},
		{
			name:   "goodbye says goodbye and ends the call",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("Great, thank you, bye!")},
			text:   mockllm.GoodbyeReply,
			calls:  []toolCall{{"end_call", `{}`}},
			finish: openai.FinishReasonToolCalls,
		},
		{
			name:   "that's all",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("No, that’s all.")},
			text:   mockllm.GoodbyeReply,
			calls:  []toolCall{{"end_call", `{}`}},
			finish: openai.FinishReasonToolCalls,
		},
		{
			name:   "end_call with a reason parameter gets one",
			tools:  []openai.Tool{endCallWithReasonTool},
			msgs:   []openai.ChatCompletionMessage{user("Goodbye")},
			text:   mockllm.GoodbyeReply,
			calls:  []toolCall{{"end_call", `{"reason":"caller said goodbye"}`}},
			finish: openai.FinishReasonToolCalls,
		},
		{
			name:   "goodbye without end_call is the demo's",
			tools:  []openai.Tool{checkOrderTool},
			msgs:   []openai.ChatCompletionMessage{user("thank you, bye")},
			text:   agent.DemoReply([]agent.Message{{Role: "user", Text: "thank you, bye"}}),
			finish: openai.FinishReasonStop,
		},
		{
			name:   "bye inside a word is no goodbye",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("I'd like to book a byeline")},
			text:   agent.DemoReply([]agent.Message{{Role: "user", Text: "I'd like to book a byeline"}}),
			finish: openai.FinishReasonStop,
		},
		{
			name:   "anything else is the demo reply",
			tools:  both,
			msgs:   []openai.ChatCompletionMessage{user("What are your hours?")},
			text:   agent.DemoReply([]agent.Message{{Role: "user", Text: "What are your hours?"}}),
			finish: openai.FinishReasonStop,
		},
		{
			name:   "no tools offered, no tool calls",
			msgs:   []openai.ChatCompletionMessage{user("order 12345, bye")},
			text:   agent.DemoReply([]agent.Message{{Role: "user", Text: "order 12345, bye"}}),
			finish: openai.FinishReasonStop,
		},
	}
	_, c := newMock(t, mockllm.New(mockllm.Options{}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := streamTools(t.Context(), t, c, toolRequest(tt.tools, tt.msgs...))

			require.ErrorIs(t, got.err, io.EOF)
			assert.Equal(t, tt.text, got.text)
			var calls []toolCall
			for _, c := range got.calls {
				calls = append(calls, toolCall{c.name, c.args})
			}
			assert.Equal(t, tt.calls, calls)
			assert.Equal(t, []openai.FinishReason{tt.finish}, got.finish)
		})
	}
}

// A scripted behaviour that only sets pacing keeps the default answer, tools included.
func TestPacingKeepsTheDefaultToolAnswer(t *testing.T) {
	t.Parallel()
	m := mockllm.New(mockllm.Options{})
	m.Push(mockllm.Behavior{TokenDelay: 1})
	_, c := newMock(t, m)

	got := streamTools(t.Context(), t, c, toolRequest([]openai.Tool{checkOrderTool}, user("order 4242")))

	require.ErrorIs(t, got.err, io.EOF)
	require.Len(t, got.calls, 1)
	assert.Equal(t, `{"order_id":"4242"}`, got.calls[0].args)
}

func TestToolsAndToolMessagesAreRecorded(t *testing.T) {
	t.Parallel()
	m := mockllm.New(mockllm.Options{})
	srv, c := newMock(t, m)
	req := toolRequest([]openai.Tool{checkOrderTool, endCallTool},
		user("Where is order 12345?"),
		openai.ChatCompletionMessage{Role: openai.ChatMessageRoleAssistant, Content: "Let me check.", ToolCalls: []openai.ToolCall{
			{ID: "call_1", Type: openai.ToolTypeFunction, Function: openai.FunctionCall{Name: "check_order", Arguments: `{"order_id":"12345"}`}},
			{ID: "call_2", Type: openai.ToolTypeFunction, Function: openai.FunctionCall{Name: "end_call", Arguments: `{}`}},
		}},
		openai.ChatCompletionMessage{Role: openai.ChatMessageRoleTool, ToolCallID: "call_1", Content: `{"status":"shipped"}`},
		openai.ChatCompletionMessage{Role: openai.ChatMessageRoleTool, ToolCallID: "call_2", Name: "end_call", Content: `ok`},
	)
	req.ToolChoice = "auto"

	got := streamTools(t.Context(), t, c, req)
	require.ErrorIs(t, got.err, io.EOF)
	_, err := c.CreateChatCompletion(t.Context(), chatRequest("m", "no tools"))
	require.NoError(t, err)

	wantMsgs := []mockllm.Message{
		{Role: "system", Content: "You are an order desk."},
		{Role: "user", Content: "Where is order 12345?"},
		{Role: "assistant", Content: "Let me check.", ToolCalls: []mockllm.ToolCall{
			{ID: "call_1", Name: "check_order", Arguments: `{"order_id":"12345"}`},
			{ID: "call_2", Name: "end_call", Arguments: `{}`},
		}},
		{Role: "tool", Content: `{"status":"shipped"}`, ToolCallID: "call_1"},
		{Role: "tool", Content: "ok", ToolCallID: "call_2", Name: "end_call"},
	}
	check := func(t *testing.T, reqs []mockllm.Request) {
		t.Helper()
		require.Len(t, reqs, 2)
		assert.Equal(t, wantMsgs, reqs[0].Messages)
		assert.Equal(t, []string{"check_order", "end_call"}, reqs[0].Tools)
		require.Len(t, reqs[0].ToolDefs, 2)
		assert.Equal(t, "Look up the status of an order.", reqs[0].ToolDefs[0].Description)
		assert.JSONEq(t, string(checkOrderTool.Function.Parameters.(json.RawMessage)), string(reqs[0].ToolDefs[0].Parameters))
		assert.Equal(t, "auto", reqs[0].ToolChoice)
		assert.Empty(t, reqs[1].Tools)
		assert.Empty(t, reqs[1].ToolDefs)
		assert.Empty(t, reqs[1].ToolChoice)
	}
	check(t, m.Requests())

	t.Run("through the control API", func(t *testing.T) {
		res, err := http.Get(srv.URL + "/mock/requests")
		require.NoError(t, err)
		defer res.Body.Close()
		var reqs []mockllm.Request
		require.NoError(t, json.NewDecoder(res.Body).Decode(&reqs))
		check(t, reqs)
	})
	t.Run("Requests returns a copy", func(t *testing.T) {
		reqs := m.Requests()
		reqs[0].Messages[2].ToolCalls[0].Name = "changed"
		reqs[0].Tools[0] = "changed"
		reqs[0].ToolDefs[0].Parameters[0] = 'X'
		check(t, m.Requests())
	})
}

func TestToolCallsInTheControlAPI(t *testing.T) {
	t.Parallel()
	srv, c := newMock(t, mockllm.New(mockllm.Options{}))
	post := func(body string) int {
		t.Helper()
		res, err := http.Post(srv.URL+"/mock/script", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		return res.StatusCode
	}

	require.Equal(t, http.StatusOK, post(`[
		{"tool_calls":[{"name":"check_order","arguments":{"order_id": "12345"}}]},
		{"reply":"One moment.","tool_calls":[{"name":"end_call","arguments":"{\"reason\":\"done\"}"},{"name":"end_call"}]}
	]`))

	first := streamTools(t.Context(), t, c, toolRequest(nil, user("hello")))
	second := streamTools(t.Context(), t, c, toolRequest(nil, user("hello")))

	require.Len(t, first.calls, 1)
	assert.Equal(t, `{"order_id":"12345"}`, first.calls[0].args, "an object is sent as its compact JSON")
	assert.Equal(t, "One moment.", second.text)
	require.Len(t, second.calls, 2)
	assert.Equal(t, `{"reason":"done"}`, second.calls[0].args, "a string is sent as written")
	assert.Equal(t, `{}`, second.calls[1].args)

	for _, bad := range []string{
		`[{"tool_calls":[{"arguments":{}}]}]`,            // no name
		`[{"tool_calls":[{"name":"x","args":{}}]}]`,      // unknown key
		`[{"tool_calls":{"name":"x"}}]`,                  // not an array
		`[{"tool_calls":[{"name":"x","arguments":{]}]}]`, // broken JSON
	} {
		assert.Equal(t, http.StatusBadRequest, post(bad), bad)
	}
}

func TestToolCallJSON(t *testing.T) {
	t.Parallel()
	b := mockllm.Behavior{Reply: "r", ToolCalls: []mockllm.ToolCall{
		{ID: "call_x", Name: "check_order", Arguments: `{"order_id":"1"}`},
		{Name: "end_call"},
	}}

	data, err := json.Marshal(b)
	require.NoError(t, err)
	assert.JSONEq(t, `{"reply":"r","tool_calls":[
		{"id":"call_x","name":"check_order","arguments":"{\"order_id\":\"1\"}"},
		{"name":"end_call"}]}`, string(data))
	var back mockllm.Behavior
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, b, back)
}
