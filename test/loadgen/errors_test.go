package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
)

// brokenBrain serves what a broken brain answers: a 500, NDJSON that is not JSON, an answer
// cut by a connection reset, an answer that never comes.
func brokenBrain(t *testing.T) *httptest.Server {
	t.Helper()
	hang := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/500/webhook", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
	})
	mux.HandleFunc("/ndjson/webhook", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, "{\"type\":\"speak\",\"text\":\"Hello\"}\nnot json at all\n")
	})
	mux.HandleFunc("/reset/webhook", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, "{\"type\":\"speak\",\"text\":\"Hello\"}\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with a RST, as a crashed process's kernel does
		}
		_ = conn.Close()
	})
	mux.HandleFunc("/hang/webhook", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		close(hang)
		srv.Close()
	})
	return srv
}

// Each failure of a real HTTP exchange is classified by what the caller side saw.
func TestClassifyRealFailures(t *testing.T) {
	srv := brokenBrain(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // nothing listens there any more

	for _, tc := range []struct {
		name, url string
		timeout   time.Duration
		want      ErrorKind
	}{
		{"non-200", srv.URL + "/500", 0, KindNon200},
		{"bad ndjson", srv.URL + "/ndjson", 0, KindBadNDJSON},
		{"connection reset", srv.URL + "/reset", 0, KindReset},
		{"timeout", srv.URL + "/hang", 50 * time.Millisecond, KindTimeout},
		{"refused", closedURL, 0, KindRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &saperly.Client{URL: tc.url, Secret: saperly.DevSecret}
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			res, err := c.Say(ctx, saperly.NewUUID(), saperly.NewUUID(), "hello")
			status := 0
			if res != nil {
				status = res.Status
			}
			if tc.want != KindNon200 {
				require.Error(t, err)
			}
			assert.Equal(t, tc.want, Classify(status, err), "status %d, error %v", status, err)
		})
	}
	assert.Equal(t, ErrorKind(""), Classify(http.StatusOK, nil))
	assert.Equal(t, KindOther, Classify(0, errors.New("something else")))
}
