package rediscluster_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/rediscluster"
)

func TestClusterFailover(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c, err := rediscluster.Start(t.Context(), t.TempDir(), 3, 1)
	require.NoError(t, err)
	t.Cleanup(c.Stop)
	t.Logf("6-node cluster up in %v", time.Since(start))

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	ctx := t.Context()
	for _, k := range []string{"a", "call:{c1}", "{x}y", "foo{}bar", "{}"} {
		want, err := rdb.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		assert.Equal(t, int(want), rediscluster.Slot(k), "slot of %q", k)
	}

	const key = "call:{failover}"
	require.NoError(t, rdb.Set(ctx, key, "before", 0).Err())
	before, err := c.MasterOf(ctx, key)
	require.NoError(t, err)
	start = time.Now()
	from, to, err := c.Failover(ctx, key)
	require.NoError(t, err)
	t.Logf("failover %s -> %s in %v", from, to, time.Since(start))
	assert.Equal(t, before, from)
	after, err := c.MasterOf(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, to, after)
	assert.NotEqual(t, from, to)
	got, err := rdb.Get(ctx, key).Result()
	require.NoError(t, err, "the client follows the slot to its new master")
	assert.Equal(t, "before", got)
}
