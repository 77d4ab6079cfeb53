package transport

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadyzDraining: /readyz answers 503 as soon as draining starts, even while the store is
// fine, and deliveries are still answered (a retry of a call in progress must not be lost).
func TestReadyzDraining(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, func(c *Config) { c.Ready = func(context.Context) error { return nil } })
	assertJSON(t, f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil)), 200, `{"status":"ready"}`)
	f.s.Drain()
	f.s.Drain() // idempotent: Shutdown drains again
	assertJSON(t, f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil)), 503, `{"status":"unready","error":"draining"}`)
	assertJSON(t, f.do(t, httptest.NewRequest(http.MethodGet, "/healthz", nil)), 200, `{"status":"ok"}`)
	rec := f.send(t, deliveryReq{body: readEvent(t, "call_started.json")})
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Len(t, f.logs.FilterMessage("draining").AllUntimed(), 1)
}

// TestOnResult: every delivery is reported once, rejected ones included, with the failure's
// reason and no id.
func TestOnResult(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		got []Result
	)
	f := newFixture(t, nil, func(c *Config) {
		c.OnResult = func(r Result) { mu.Lock(); got = append(got, r); mu.Unlock() }
	})
	f.send(t, deliveryReq{body: readEvent(t, "call_started.json")})
	f.send(t, deliveryReq{body: readEvent(t, "call_started.json"), secret: "not-the-secret"})
	f.send(t, deliveryReq{path: "/status", body: readEvent(t, "call_started.json")})
	f.do(t, httptest.NewRequest(http.MethodGet, "/healthz", nil)) // not a delivery
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 3)
	assert.Equal(t, Result{Route: "/webhook", Kind: "call_started", Status: 200, Outcome: "recorded", Verify: "ok", Elapsed: got[0].Elapsed}, got[0])
	assert.Equal(t, "/webhook", got[1].Route)
	assert.Equal(t, http.StatusUnauthorized, got[1].Status)
	assert.Equal(t, "rejected", got[1].Outcome)
	assert.NotEqual(t, "ok", got[1].Verify)
	assert.NotEmpty(t, got[1].Verify)
	assert.Empty(t, got[1].Kind, "an unverified body is not decoded")
	assert.Equal(t, "/status", got[2].Route)
}
