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
		msgs[i] = openai.ChatCompletionMessage{Role: m.Role, Content: m.Text}
	}
	s, err := o.client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
		Model:       req.Model,
		Messages:    msgs,
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
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
		if c.Delta.Content != "" {
			return c.Delta.Content, nil
		}
	}
}

func (o *openaiStream) Close() error { return o.s.Close() }
