package agent

import (
	"context"
	"errors"
)

// Message is one chat message sent to the model.
type Message struct {
	Role string // "system", "user" or "assistant"
	Text string
}

// Request is one chat completion request.
type Request struct {
	Model       string
	Messages    []Message
	MaxTokens   int
	Temperature float32
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
	Close() error
}

// ErrModel marks an error that came from the model provider (HTTP status, broken stream).
var ErrModel = errors.New("model error")
