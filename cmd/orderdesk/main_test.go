package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// start runs the binary's run on a free port with this environment and returns its base URL
// and run's result.
func start(ctx context.Context, t *testing.T, env map[string]string, args ...string) (string, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pr.Close() })
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), func(k string) string { return env[k] }, pw, io.Discard)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "orderdesk listening on ")
	require.True(t, ok, "listening line: %q", line)
	base, _, _ := strings.Cut(rest, " ")
	assert.NotContains(t, base, ":0", "the real port is printed")
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

func do(t *testing.T, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Idempotency-Key", "key-1")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		auth string
	}{
		{name: "open", env: nil, auth: ""},
		{name: "with a token", env: map[string]string{"ORDERDESK_TOKEN": "tok"}, auth: "Bearer tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			base, done := start(ctx, t, tt.env, "-delay", "1ms")

			if tt.auth != "" {
				status, _ := do(t, http.MethodPost, base+"/orders/status", "", `{"order_id":"12345"}`)
				assert.Equal(t, http.StatusUnauthorized, status)
			}
			for range 2 {
				status, body := do(t, http.MethodPost, base+"/orders/status", tt.auth, `{"order_id":"12345"}`)
				assert.Equal(t, http.StatusOK, status)
				assert.JSONEq(t, `{"order_id":"12345","status":"shipped","carrier":"UPS","eta":"Thursday"}`, body)
			}
			status, body := do(t, http.MethodGet, base+"/stats", tt.auth, "")
			assert.Equal(t, http.StatusOK, status)
			assert.JSONEq(t, `{"requests":2,"side_effects":1}`, body)

			cancel()
			assert.NoError(t, wait(t, done))
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag", args: []string{"-nope"}, want: "flag provided but not defined"},
		{name: "negative delay", args: []string{"-delay", "-1s"}, want: "negative"},
		{name: "argument", args: []string{"extra"}, want: "unexpected argument"},
		{name: "bad address", args: []string{"-addr", "nowhere:-1"}, want: "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			err := run(t.Context(), tt.args, func(string) string { return "" }, &out, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, out.String(), "nothing listening, nothing printed")
		})
	}
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		var usage strings.Builder
		err := run(t.Context(), []string{"-h"}, func(string) string { return "" }, io.Discard, &usage)
		assert.ErrorIs(t, err, flag.ErrHelp)
		assert.Contains(t, usage.String(), "-delay")
		assert.Contains(t, usage.String(), "ORDERDESK_TOKEN")
	})
}
