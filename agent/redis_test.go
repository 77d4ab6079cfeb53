package agent_test

import (
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testRedis connects to the test Redis (TEST_REDIS_URL, which CI always sets) and returns a
// key prefix of the test's own.
func testRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv("TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("TEST_REDIS_URL is unset; CI must run the Redis tests")
		}
		t.Skip("TEST_REDIS_URL is unset")
	}
	opt, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { assert.NoError(t, rdb.Close()) })
	return rdb, "agent-test:" + t.Name() + ":" + time.Now().Format("150405.000000") + ":"
}
