// Package redistest gives tests the Redis server the test command starts (TEST_REDIS_URL).
package redistest

import (
	"context"
	"os"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// URL returns TEST_REDIS_URL. Without it tb is skipped, except in CI (CI=true), which must
// run every Redis test: there tb fails.
func URL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("TEST_REDIS_URL is unset; CI must run the Redis tests")
		}
		tb.Skip("TEST_REDIS_URL is unset (make test starts a Redis; or TEST_REDIS_URL=redis://127.0.0.1:6379/0)")
	}
	return url
}

// Client connects to URL(tb) with go-redis's defaults, pings it, and closes it when tb ends.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(URL(tb))
	require.NoError(tb, err, "parse TEST_REDIS_URL")
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { assert.NoError(tb, rdb.Close()) })
	require.NoError(tb, rdb.Ping(tb.Context()).Err(), "ping TEST_REDIS_URL")
	return rdb
}

// Counter is a go-redis hook that counts what a client sends: pipelines, and commands on
// their own (a new connection's HELLO and CLIENT aside). Each is one round trip.
type Counter struct{ pipelines, alone atomic.Int64 }

// Pipelines returns the pipelines sent so far.
func (c *Counter) Pipelines() int64 { return c.pipelines.Load() }

// Alone returns the commands sent on their own so far.
func (c *Counter) Alone() int64 { return c.alone.Load() }

// RoundTrips returns the pipelines and the commands sent on their own so far.
func (c *Counter) RoundTrips() int64 { return c.Pipelines() + c.Alone() }

// DialHook implements redis.Hook.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "hello" && name != "client" {
			c.alone.Add(1)
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.pipelines.Add(1)
		return next(ctx, cmds)
	}
}
