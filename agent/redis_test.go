package agent_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callbrain/callbrain/test/redistest"
)

// testRedis connects to the test Redis (TEST_REDIS_URL, which CI always sets) and returns a
// key prefix of the test's own.
func testRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	return redistest.Client(t), "agent-test:" + t.Name() + ":" + time.Now().Format("150405.000000") + ":"
}
