package agent

import (
	"context"
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
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   3 * time.Second,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		ExpectContinueTimeout: time.Second,
	}}
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
	finish openai.FinishReason
	calls  []ToolCall // assembled from the deltas, by index
}

func (o *openaiStream) Recv() (string, error) {
	for {
		resp, err := o.s.Recv()
		if errors.Is(err, io.EOF) {
			if o.finish == openai.FinishReasonLength {
				return "", ErrTruncated
			}
			return "", io.EOF
		}
		if err != nil {
			return "", fmt.Errorf("%w: stream: %w", ErrModel, err)
		}
		if len(resp.Choices) == 0 {
			continue // usage-only or keep-alive chunk
		}
		c := resp.Choices[0]
		if c.FinishReason != "" {
			o.finish = c.FinishReason
		}
		for _, d := range c.Delta.ToolCalls {
			o.addCallDelta(d)
		}
		if c.Delta.Content != "" {
			return c.Delta.Content, nil
		}
	}
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

func (o *openaiStream) Close() error { return o.s.Close() }
