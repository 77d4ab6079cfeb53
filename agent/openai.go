package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// ErrTruncated ends a stream the model cut short at its max_tokens: the answer stops mid-thought,
// so the unfinished sentence is dropped rather than spoken.
var ErrTruncated = errors.New("answer truncated at max_tokens")

// OpenAI is the LLM adapter for any OpenAI-compatible chat completions endpoint.
type OpenAI struct {
	client *openai.Client
}

var _ LLM = (*OpenAI)(nil)

// NewOpenAI returns an adapter for the endpoint at baseURL (e.g. https://api.openai.com/v1).
// The HTTP client keeps enough idle connections per host for many concurrent calls, and bounds
// only connection set-up: how long the model may take is the turn engine's decision.
func NewOpenAI(baseURL, apiKey string) *OpenAI {
	cfg := openai.DefaultConfig(apiKey)
	if baseURL != "" {
		cfg.BaseURL = baseURL
	}
	cfg.HTTPClient = &http.Client{Transport: sseTransport{base: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   3 * time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		ExpectContinueTimeout: time.Second,
	}}}
	return &OpenAI{client: openai.NewClientWithConfig(cfg)}
}

// Stream implements LLM. Errors are wrapped with ErrModel.
func (o *OpenAI) Stream(ctx context.Context, req Request) (TokenStream, error) {
	msgs := make([]openai.ChatCompletionMessage, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = openai.ChatCompletionMessage{Role: m.Role, Content: m.Text, ToolCallID: m.ToolCallID}
		for _, c := range m.ToolCalls {
			msgs[i].ToolCalls = append(msgs[i].ToolCalls, openai.ToolCall{
				ID: c.ID, Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: c.Name, Arguments: c.Args},
			})
		}
	}
	var tools []openai.Tool
	for _, t := range req.Tools {
		tools = append(tools, openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name: t.Name, Description: t.Description, Parameters: t.Parameters,
		}})
	}
	s, err := o.client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Model:       req.Model,
		Messages:    msgs,
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
		Tools:       tools,
		Stream:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", ErrModel, req.Model, err)
	}
	return &openaiStream{s: s}, nil
}

type openaiStream struct {
	s      *openai.ChatCompletionStream
	finish string     // the finish_reason, once the model gave one
	eof    bool       // the stream was read to its end ([DONE] or the body's end)
	calls  []ToolCall // assembled from the deltas, by index
}

// chunkWire is the part of a streamed chunk the brain reads. It is decoded here rather than by
// go-openai's ChatCompletionStreamResponse, which has no field for an error reported inside the
// stream and decodes a dozen fields the brain never reads (see docs/performance.md).
type chunkWire struct {
	Object      string          `json:"object"`       // "error" in vLLM's bare error object
	Message     string          `json:"message"`      // its text
	Error       json.RawMessage `json:"error"`        // OpenRouter's error beside the choices
	StreamError json.RawMessage `json:"stream_error"` // an error event, as sseBody marks it
	Choices     []struct {
		Delta struct {
			Content   string            `json:"content"`
			ToolCalls []openai.ToolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// Finish reasons that end an answer badly: Azure's and OpenAI's content filter cut the answer
// off, and OpenRouter reports a provider failing mid-answer as "error".
const (
	finishLength = "length"
	finishFilter = "content_filter"
	finishError  = "error"
)

// Recv implements TokenStream. A finish_reason ends the answer at once: the next Recv reports
// the end without waiting for the provider's usage chunk, [DONE] or the connection's close.
// Any error the provider reports inside the stream, in any of the shapes listed on sseBody, is
// an ErrModel; so is a stream that stops with neither a finish_reason nor [DONE].
func (o *openaiStream) Recv() (string, error) {
	for {
		switch o.finish {
		case "":
		case finishLength:
			return "", ErrTruncated
		case finishFilter, finishError:
			return "", fmt.Errorf("%w: stream: finish_reason %q", ErrModel, o.finish)
		default:
			return "", io.EOF
		}
		raw, err := o.s.RecvRaw()
		if errors.Is(err, io.EOF) {
			o.eof = true
			return "", io.EOF
		}
		if err != nil {
			o.eof = true
			return "", fmt.Errorf("%w: stream: %w", ErrModel, err)
		}
		var c chunkWire
		if err := json.Unmarshal(raw, &c); err != nil {
			return "", fmt.Errorf("%w: stream: decode chunk: %w", ErrModel, err)
		}
		if e := streamError(c); e != "" {
			return "", fmt.Errorf("%w: stream: provider error: %s", ErrModel, e)
		}
		if len(c.Choices) == 0 {
			continue // usage-only chunk, Azure's prompt filter results
		}
		ch := &c.Choices[0]
		o.finish = ch.FinishReason
		for _, d := range ch.Delta.ToolCalls {
			o.addCallDelta(d)
		}
		if ch.Delta.Content != "" && o.finish != finishFilter && o.finish != finishError {
			return ch.Delta.Content, nil
		}
	}
}

// streamError is the provider's error carried by chunk c, or "" when it carries none.
func streamError(c chunkWire) string {
	for _, raw := range []json.RawMessage{c.StreamError, c.Error} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		return errorText(raw)
	}
	if c.Object == "error" {
		return cap512(c.Message)
	}
	return ""
}

// errorText is the message of an error object in any of the common shapes ({"message"},
// {"error":{"message"}}, {"error":"text"}), else the raw JSON, bounded for the log.
func errorText(raw json.RawMessage) string {
	var e struct {
		Message string          `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil {
		if e.Message != "" {
			return cap512(e.Message)
		}
		if len(e.Error) > 0 && string(e.Error) != "null" {
			return errorText(e.Error)
		}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return cap512(s)
	}
	return cap512(string(raw))
}

func cap512(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}

// addCallDelta folds one streamed tool call fragment into the call at its index: the first
// fragment carries the id and name, the others pieces of the arguments.
func (o *openaiStream) addCallDelta(d openai.ToolCall) {
	i := len(o.calls)
	if d.Index != nil {
		i = *d.Index
	} else if d.ID == "" && i > 0 {
		i-- // an unindexed continuation belongs to the last call
	}
	if i < 0 || i > 64 {
		return // no answer makes that many calls; ignore rather than grow without bound
	}
	for len(o.calls) <= i {
		o.calls = append(o.calls, ToolCall{})
	}
	c := &o.calls[i]
	if d.ID != "" {
		c.ID = d.ID
	}
	c.Name += d.Function.Name
	c.Args += d.Function.Arguments
}

// ToolCalls implements TokenStream: the calls with a name, in index order.
func (o *openaiStream) ToolCalls() []ToolCall {
	out := make([]ToolCall, 0, len(o.calls))
	for _, c := range o.calls {
		if c.Name != "" {
			out = append(out, c)
		}
	}
	return out
}

// Close implements TokenStream. A stream ended by its finish_reason has at most a usage chunk
// and [DONE] left: they are read in the background, for at most drainWait, so the connection
// goes back to the pool instead of being closed under a provider about to end it cleanly.
func (o *openaiStream) Close() error {
	if o.eof || o.finish == "" {
		return o.s.Close()
	}
	go func() {
		stop := time.AfterFunc(drainWait, func() { _ = o.s.Close() })
		defer stop.Stop()
		for range 16 {
			if _, err := o.s.RecvRaw(); err != nil {
				break
			}
		}
		_ = o.s.Close()
	}()
	return nil
}

// drainWait bounds the background read of what follows a finish_reason (see Close). It is not
// a setting: a provider answers the last bytes at once or the connection is not worth keeping.
const drainWait = time.Second
