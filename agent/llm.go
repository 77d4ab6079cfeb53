package agent

import (
	"context"
	"encoding/json"
	"errors"
)

// Message is one chat message sent to the model.
type Message struct {
	Role string // "system", "user", "assistant" or "tool"
	Text string
	// ToolCalls are the calls an assistant message made.
	ToolCalls []ToolCall
	// ToolCallID is the call a "tool" message answers.
	ToolCallID string
}

// ToolCall is one function call the model asked for.
type ToolCall struct {
	ID   string
	Name string
	Args string // JSON object, as the model wrote it
}

// ToolDef is a function offered to the model.
type ToolDef struct {
	Name        string
	Description string
	Parameters  json.RawMessage // JSON Schema of the arguments
}

// Request is one chat completion request.
type Request struct {
	Model       string
	Messages    []Message
	MaxTokens   int
	Temperature float32
	Tools       []ToolDef
}

// LLM starts streamed chat completions. It lives here, beside its go-openai adapter, so tests
// and the offline demo can provide their own.
type LLM interface {
	// Stream starts a completion. Cancelling ctx aborts the request and makes Recv fail.
	Stream(ctx context.Context, req Request) (TokenStream, error)
}

// TokenStream yields the text deltas of one completion.
type TokenStream interface {
	// Recv returns the next text delta, io.EOF at the normal end of the answer, or the error
	// that broke the stream.
	Recv() (string, error)
	// ToolCalls returns the tool calls the answer made, complete once Recv returned io.EOF.
	ToolCalls() []ToolCall
	Close() error
}

// ErrModel marks an error that came from the model provider (HTTP status, broken stream).
var ErrModel = errors.New("model error")
