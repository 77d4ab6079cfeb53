package session_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/rediscluster"
)

// One Redis Cluster (3 masters, 1 replica each) serves every cluster test of this binary;
// TestMain stops it.
var (
	clusterOnce sync.Once
	cluster     struct {
		c   *rediscluster.Cluster
		dir string
		err error
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.c != nil {
		cluster.c.Stop()
	}
	if cluster.dir != "" {
		_ = os.RemoveAll(cluster.dir) // a temporary directory; nothing to report
	}
	os.Exit(code)
}

// sharedCluster starts the binary's Redis Cluster on first use. Without redis-server it
// skips, except in CI, which must run the cluster tests.
func sharedCluster(tb testing.TB) *rediscluster.Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-server is not on PATH; CI must run the Redis Cluster tests")
		}
		tb.Skip("redis-server is not on PATH: skipping the Redis Cluster tests")
	}
	clusterOnce.Do(func() {
		if cluster.dir, cluster.err = rediscluster.TempDir(); cluster.err != nil {
			return
		}
		cluster.c, cluster.err = rediscluster.Start(context.Background(), cluster.dir, 3, 1)
	})
	require.NoError(tb, cluster.err, "start the Redis Cluster")
	return cluster.c
}

// newClusterClient connects to the shared cluster as cmd/brain would, through REDIS_URL.
func newClusterClient(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	target, err := session.ParseRedisURL(sharedCluster(tb).URL())
	require.NoError(tb, err)
	require.Equal(tb, session.RedisCluster, target.Kind)
	rdb := target.Client(session.RedisTuning{})
	tb.Cleanup(func() { assert.NoError(tb, rdb.Close()) })
	require.NoError(tb, rdb.Ping(tb.Context()).Err(), "ping the cluster")
	return rdb
}

// The store contract suite on a real 3-master Redis Cluster: every script and pipeline must
// keep to one slot (a cross-slot one fails with CROSSSLOT).
func TestRedisClusterStore(t *testing.T) {
	t.Parallel()
	rdb := newClusterClient(t)
	testStore(t, func(t *testing.T, opts session.Options) session.Store {
		return newRedisStore(t, rdb, opts)
	})
}

// A failover of the master holding a call's slot, in the middle of a turn: the turn's
// lines, its commit and the next turn all land, and nothing written before is lost.
func TestRedisClusterFailoverMidTurn(t *testing.T) {
	t.Parallel()
	c := sharedCluster(t)
	rdb := newClusterClient(t)
	s := newRedisStore(t, rdb, session.Options{})
	ctx := t.Context()
	call := session.Call{ID: "failover-" + fmt.Sprint(time.Now().UnixNano()), LineID: "line-1"}

	b, err := s.BeginTurn(ctx, call, "e1", 10)
	require.NoError(t, err)
	require.Equal(t, session.TurnClaimed, b.Status)
	require.NoError(t, s.AppendLines(ctx, b.Lease, "Hello,"))
	fol := follow(ctx, s, b.Lease.Ref)
	assert.Equal(t, "Hello,", fol.next(t))

	from, to, err := c.Failover(ctx, "call:{"+call.ID+"}")
	require.NoError(t, err)
	t.Logf("failed over the call's slot from %s to %s", from, to)

	require.NoError(t, s.AppendLines(ctx, b.Lease, "how can I help?"), "speech continues on the new master")
	assert.Equal(t, "how can I help?", fol.next(t), "a follower on the old master carries on")
	require.NoError(t, s.CommitTurn(ctx, b.Lease, nil,
		session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"},
		session.Entry{Kind: session.EntryAssistant, Text: "Hello, how can I help?", At: 1, EventID: "e1"}))
	require.NoError(t, fol.wait(t))

	b2, err := s.BeginTurn(ctx, call, "e2", 10)
	require.NoError(t, err)
	assert.Equal(t, session.TurnClaimed, b2.Status)
	require.Len(t, b2.State.History, 2, "nothing lost across the failover")
	assert.Equal(t, "Hello, how can I help?", b2.State.History[1].Text)

	again, err := s.BeginTurn(ctx, call, "e1", 10)
	require.NoError(t, err)
	assert.Equal(t, session.TurnHeld, again.Status, "the committed turn is not run twice")
}

// The store contract suite through a Sentinel group (REDIS_URL redis+sentinel://…), then a
// Sentinel failover between two turns of a call: the client follows the new master and the
// call's history is all there (its replica had it).
func TestRedisSentinelStore(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH; CI must run the Sentinel tests")
		}
		t.Skip("redis-server is not on PATH: skipping the Sentinel tests")
	}
	sg, err := rediscluster.StartSentinel(t.Context(), t.TempDir())
	require.NoError(t, err)
	t.Cleanup(sg.Stop)
	target, err := session.ParseRedisURL(sg.URL())
	require.NoError(t, err)
	require.Equal(t, session.RedisSentinel, target.Kind)
	rdb := target.Client(session.RedisTuning{})
	t.Cleanup(func() { assert.NoError(t, rdb.Close()) })

	t.Run("Contract", func(t *testing.T) {
		testStore(t, func(t *testing.T, opts session.Options) session.Store {
			return newRedisStore(t, rdb, opts)
		})
	})
	t.Run("Failover", func(t *testing.T) {
		s := newRedisStore(t, rdb, session.Options{})
		ctx := t.Context()
		call := session.Call{ID: "sentinel-call", LineID: "line-1"}
		b, err := s.BeginTurn(ctx, call, "e1", 10)
		require.NoError(t, err)
		require.NoError(t, s.CommitTurn(ctx, b.Lease, nil,
			session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"},
			session.Entry{Kind: session.EntryAssistant, Text: "Hello!", At: 1, EventID: "e1"}))
		// WAIT: the replica has the turn before it is promoted.
		require.NoError(t, rdb.Do(ctx, "WAIT", 1, 5000).Err())
		to, err := sg.Failover(ctx)
		require.NoError(t, err)
		t.Logf("sentinel failed over to %s", to)
		var b2 session.Begun
		require.Eventually(t, func() bool { // the client finds the new master on its next dial
			b2, err = s.BeginTurn(ctx, call, "e2", 10)
			return err == nil
		}, waitFor, 50*time.Millisecond, "the store follows the new master: %v", err)
		assert.Equal(t, session.TurnClaimed, b2.Status)
		require.Len(t, b2.State.History, 2, "nothing lost")
	})
}
