package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// start runs the binary's run on a free port and returns its base URL and run's result.
func start(t *testing.T, ctx context.Context, args ...string) (string, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pr.Close() })
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "mockllm listening on ")
	require.True(t, ok, "listening line: %q", line)
	assert.NotContains(t, base, ":0/", "the real port is printed")
	return base, done
}

func wait(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		require.FailNow(t, "timed out")
		return nil
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, done := start(t, ctx, "-reply", "Hello from the flags.", "-token-delay", "0s")

	cfg := openai.DefaultConfig("any")
	cfg.BaseURL = base
	resp, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "hi"}},
	})
	require.NoError(t, err)
	assert.Equal(t, "Hello from the flags.", resp.Choices[0].Message.Content)

	cancel()
	assert.NoError(t, wait(t, done))
}

func TestRunCallsToolsByDefault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, done := start(t, ctx, "-token-delay", "0s")

	cfg := openai.DefaultConfig("any")
	cfg.BaseURL = base
	resp, err := openai.NewClientWithConfig(cfg).CreateChatCompletion(t.Context(), openai.ChatCompletionRequest{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessage{{Role: "user", Content: "Where is order 12345?"}},
		Tools: []openai.Tool{{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name:       "check_order",
			Parameters: json.RawMessage(`{"type":"object","properties":{"order_id":{"type":"string"}}}`),
		}}},
	})
	require.NoError(t, err)
	require.Len(t, resp.Choices, 1)
	assert.Equal(t, openai.FinishReasonToolCalls, resp.Choices[0].FinishReason)
	require.Len(t, resp.Choices[0].Message.ToolCalls, 1)
	assert.Equal(t, "check_order", resp.Choices[0].Message.ToolCalls[0].Function.Name)
	assert.JSONEq(t, `{"order_id":"12345"}`, resp.Choices[0].Message.ToolCalls[0].Function.Arguments)

	cancel()
	assert.NoError(t, wait(t, done))
}

func TestRunCutsHungRequestsOnShutdown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, done := start(t, ctx, "-hang")

	errc := make(chan error, 1)
	go func() {
		res, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[]}`))
		if err == nil {
			_ = res.Body.Close()
		}
		errc <- err
	}()
	// Wait until the request is being held, through the control API.
	for {
		res, err := http.Get(strings.TrimSuffix(base, "/v1") + "/mock/requests")
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		require.NoError(t, res.Body.Close())
		require.NoError(t, err)
		if string(body) != "[]\n" {
			break
		}
		select {
		case <-t.Context().Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}

	cancel()
	assert.NoError(t, wait(t, done), "run ends despite the hung request")
	assert.Error(t, wait(t, errc), "the hung request is cut")
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag", args: []string{"-nope"}, want: "flag provided but not defined"},
		{name: "bad status", args: []string{"-status", "42"}, want: "not an HTTP status"},
		{name: "negative", args: []string{"-ttft", "-1s"}, want: "negative"},
		{name: "argument", args: []string{"extra"}, want: "unexpected argument"},
		{name: "bad address", args: []string{"-addr", "nowhere:-1"}, want: "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			err := run(t.Context(), tt.args, &out, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, out.String(), "nothing listening, nothing printed")
		})
	}
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		var usage strings.Builder
		err := run(t.Context(), []string{"-h"}, io.Discard, &usage)
		assert.ErrorIs(t, err, flag.ErrHelp)
		assert.Contains(t, usage.String(), "-token-delay")
		assert.Contains(t, usage.String(), "tool_calls")
		assert.Contains(t, usage.String(), "order_id")
	})
}
