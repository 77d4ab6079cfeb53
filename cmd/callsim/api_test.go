package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAPIStandIn(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	out := make(lineWriter, 16)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"api", "--addr", "127.0.0.1:0", "--key", "k", "--call", "c7=L7"}, env(), out, io.Discard)
	}()
	next := func() string {
		select {
		case l := <-out:
			return l
		case <-time.After(10 * time.Second): // a deadlock guard, not a performance limit
			t.Fatal("no output")
			return ""
		}
	}
	first := next()
	base := strings.TrimPrefix(first, "saperly api stand-in on ")
	require.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), first)

	hangUp := func(key string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/calls/c1/hangup", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, http.StatusOK, hangUp("k"))
	assert.Contains(t, next(), "POST /api/v1/calls/c1/hangup -> 200")
	assert.Equal(t, http.StatusUnauthorized, hangUp("wrong"))
	assert.Contains(t, next(), "-> 401")

	sreq, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/messages",
		strings.NewReader(`{"line_id":"L7","to":"+14155551234","text":"See you Tuesday."}`))
	require.NoError(t, err)
	sreq.Header.Set("Authorization", "Bearer k")
	sres, err := http.DefaultClient.Do(sreq)
	require.NoError(t, err)
	sres.Body.Close()
	assert.Equal(t, http.StatusOK, sres.StatusCode)
	assert.Contains(t, next(), "POST /api/v1/messages -> 200")
	assert.Equal(t, `  sms from line L7 to +14155551234: "See you Tuesday."`, next(), "the text sent is shown")

	lookUp := func(id string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/calls/"+id, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer k")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	code, body := lookUp("c7")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"line_id":"L7"`, "a call given with --call")
	assert.Contains(t, next(), "GET /api/v1/calls/c7 -> 200")
	code, _ = lookUp("c8")
	assert.Equal(t, http.StatusNotFound, code)
	assert.Contains(t, next(), "-> 404")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, strings.TrimSuffix(base, "/api/v1")+"/mock/calls/c8", strings.NewReader(`{"line_id":"L8"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer k")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, next(), "PUT /mock/calls/c8 -> 200")
	code, body = lookUp("c8")
	assert.Equal(t, http.StatusOK, code, "a call registered while running")
	assert.Contains(t, body, `"line_id":"L8"`)
	next()

	cancel()
	assert.NoError(t, <-done)
}

// lineWriter hands each write (callsim prints whole lines) to the test.
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	w <- strings.TrimSuffix(string(p), "\n")
	return len(p), nil
}
