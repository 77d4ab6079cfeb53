package serve_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/serve"
)

func TestRunStopsAndCutsHungRequests(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	entered := make(chan struct{})
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // hangs until the server cuts it
	})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve.Run(ctx, srv, ln, 50*time.Millisecond) }()

	reqErr := make(chan error, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String())
		if err == nil {
			res.Body.Close()
		}
		reqErr <- err
	}()
	<-entered
	cancel()
	assert.NoError(t, <-done, "a clean stop, though a request hung")
	assert.Error(t, <-reqErr, "the hung request was cut")
}

func TestRunReportsServeFailure(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = serve.Run(t.Context(), &http.Server{ReadHeaderTimeout: time.Second}, ln, time.Second)
	assert.ErrorContains(t, err, "serve:")
}

func TestWait(t *testing.T) {
	t.Parallel()
	require.NoError(t, serve.Wait(t.Context(), time.Millisecond))
	require.NoError(t, serve.Wait(t.Context(), 0), "nothing to wait for")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, serve.Wait(ctx, time.Hour), context.Canceled, "an ended context ends the wait at once")
	assert.ErrorIs(t, serve.Wait(ctx, 0), context.Canceled)
}
