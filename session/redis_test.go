package session_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/redistest"
)

// newRedisClient connects to TEST_REDIS_URL, configured as cmd/brain configures its client. It
// skips tb when the variable is unset, except in CI, which must run the Redis tests.
func newRedisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(redistest.URL(tb))
	require.NoError(tb, err, "parse TEST_REDIS_URL")
	opt.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { assert.NoError(tb, rdb.Close()) })
	require.NoError(tb, rdb.Ping(tb.Context()).Err(), "ping TEST_REDIS_URL")
	return rdb
}

// newRedisStore returns a RedisStore on rdb under a prefix of its own, whose keys are
// deleted when tb ends. opts.Prefix is replaced.
func newRedisStore(tb testing.TB, rdb redis.UniversalClient, opts session.Options) *session.RedisStore {
	tb.Helper()
	opts.Prefix = testPrefix(tb, rdb)
	return session.NewRedisStore(rdb, opts)
}

// testPrefix returns a key prefix no other test uses, and deletes its keys when tb ends.
func testPrefix(tb testing.TB, rdb redis.UniversalClient) string {
	tb.Helper()
	prefix := "callbrain-test:" + rand.Text()[:12] + ":"
	tb.Cleanup(func() {
		ctx := context.Background() // tb.Context is already cancelled here
		unlink := func(ctx context.Context, node *redis.Client) error {
			var keys []string
			iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			for iter.Next(ctx) {
				keys = append(keys, iter.Val())
			}
			if err := iter.Err(); err != nil {
				return fmt.Errorf("list test keys: %w", err)
			}
			for _, k := range keys { // one by one: on a cluster they lie in many slots
				if err := node.Unlink(ctx, k).Err(); err != nil {
					return fmt.Errorf("delete test key: %w", err)
				}
			}
			return nil
		}
		switch c := rdb.(type) {
		case *redis.Client:
			assert.NoError(tb, unlink(ctx, c))
		case *redis.ClusterClient:
			assert.NoError(tb, c.ForEachMaster(ctx, unlink))
		}
	})
	return prefix
}

// newCountedRedisStore returns a RedisStore whose client counts round trips. The client's
// connections are already open, since opening one sends commands through the hook too.
func newCountedRedisStore(tb testing.TB, opts session.Options) (*session.RedisStore, *redistest.Counter) {
	tb.Helper()
	rdb := newRedisClient(tb)
	_, err := rdb.Pipelined(tb.Context(), func(p redis.Pipeliner) error {
		p.Ping(tb.Context())
		return nil
	})
	require.NoError(tb, err, "open a pipeline connection")
	rtts := &redistest.Counter{}
	rdb.AddHook(rtts)
	return newRedisStore(tb, rdb, opts), rtts
}

func TestRedisStoreRoundTrips(t *testing.T) {
	t.Parallel()
	s, rtts := newCountedRedisStore(t, session.Options{})
	ctx := t.Context()
	entry := session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"}

	// Steps run in order: later ones read what earlier ones wrote.
	steps := []struct {
		name string
		run  func() error
	}{
		{name: "FirstDelivery", run: func() error { _, err := s.FirstDelivery(ctx, "d1", time.Minute); return err }},
		{name: "UpdateCall", run: func() error { return s.UpdateCall(ctx, session.Call{ID: "c1", Status: "ringing"}) }},
		{name: "UpdateCallOnce, replay check included", run: func() error {
			_, err := s.UpdateCallOnce(ctx, session.Call{ID: "c1", Status: "active"}, "d0", time.Minute)
			return err
		}},
		{name: "BeginTurn", run: func() error { _, _, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e1"); return err }},
		{name: "BeginTurnOnce, replay check included", run: func() error {
			_, err := s.BeginTurnOnce(ctx, session.Call{ID: "c1"}, "e2", 0, "d2", time.Minute)
			return err
		}},
		{name: "BeginTurn without event id", run: func() error { _, _, err := beginTurn(s, ctx, session.Call{ID: "c1"}, ""); return err }},
		{name: "AppendLines", run: func() error { return s.AppendLines(ctx, lease("c1", "e1"), "One.") }},
		{name: "AppendTools", run: func() error {
			return s.AppendTools(ctx, lease("c1", "e1"), session.Entry{Kind: session.EntryTool, ToolCall: "t1", At: 1})
		}},
		{name: "AppendLines renewing a lease", run: func() error {
			return s.AppendLines(ctx, session.Lease{Ref: turnRef("c1", "e9"), Token: "tok"})
		}},
		{name: "TakeOver", run: func() error { _, err := s.TakeOver(ctx, turnRef("c1", "e9")); return err }},
		{name: "CommitTurn, with the last lines", run: func() error { return s.CommitTurn(ctx, lease("c1", "e7"), []string{"Two."}, entry) }},
		{name: "FollowTurn of a closed log", run: func() error {
			return s.FollowTurn(ctx, turnRef("c1", "e7"), func(string) error { return nil })
		}},
		{name: "Load", run: func() error { _, err := s.Load(ctx, "c1"); return err }},
		{name: "AppendEntry", run: func() error { return s.AppendEntry(ctx, "c1", "", entry) }},
		{name: "AddSMS", run: func() error { return s.AddSMS(ctx, "l1", session.SMS{Text: "hi"}) }},
		{name: "Ping", run: func() error { return s.Ping(ctx) }},
	}
	for _, step := range steps {
		require.NoError(t, step.run(), "%s, loading its script into Redis", step.name)
	}
	for _, step := range steps {
		before := rtts.RoundTrips()
		require.NoError(t, step.run(), step.name)
		assert.Equal(t, int64(1), rtts.RoundTrips()-before, "round trips of %s", step.name)
	}
}

func TestRedisStoreKeys(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	ctx := t.Context()
	prefix := testPrefix(t, rdb)
	s := session.NewRedisStore(rdb, session.Options{
		Prefix: prefix, Retention: time.Hour, TurnTTL: time.Minute,
	})

	_, err := s.FirstDelivery(ctx, "d1", 5*time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.UpdateCall(ctx, session.Call{
		ID: "c1", Status: "ringing", StartedAt: time.UnixMilli(1711900000123),
	}))
	b, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e1", 0)
	require.NoError(t, err)
	require.NoError(t, s.AppendLines(ctx, b.Lease, "One."))
	require.NoError(t, s.CommitTurn(ctx, b.Lease, nil, session.Entry{Kind: session.EntryUser, Text: "hi", At: 1}))
	require.NoError(t, s.AddSMS(ctx, "l1", session.SMS{Text: "hi"}))

	ttls := map[string]time.Duration{
		"dlv:d1":          5 * time.Minute,
		"call:{c1}":       time.Hour,
		"hist:{c1}":       time.Hour,
		"claim:{c1}0::e1": time.Minute,
		"turn:{c1}0::e1":  time.Minute,
		"sms:{l1}":        time.Hour,
	}
	for key, want := range ttls {
		ttl, err := rdb.PTTL(ctx, prefix+key).Result()
		require.NoError(t, err, key)
		assert.InDelta(t, want, ttl, float64(10*time.Second), "ttl of %s", key)
	}

	rec, err := rdb.HGetAll(ctx, prefix+"call:{c1}").Result()
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"id": "c1", "status": "ringing", "started_at": "1711900000123", "turns": "1"}, rec,
		"BeginTurn keeps the stored start, and counts the turn")
	claim, err := rdb.Get(ctx, prefix+"claim:{c1}0::e1").Result()
	require.NoError(t, err)
	assert.Equal(t, "done", claim, "a committed turn's claim")

	hist, err := rdb.LRange(ctx, prefix+"hist:{c1}", 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{`{"k":"user","t":"hi","at":1}`}, hist)

	turn, err := rdb.XRange(ctx, prefix+"turn:{c1}0::e1", "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, turn, 2)
	assert.Equal(t, map[string]any{"t": "One."}, turn[0].Values)
	assert.Contains(t, turn[1].Values, "end", "the closing entry")
}

func TestRedisStoreSMSKeepsNewest(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	ctx := t.Context()
	prefix := testPrefix(t, rdb)
	s := session.NewRedisStore(rdb, session.Options{Prefix: prefix})

	for i := range 1005 {
		require.NoError(t, s.AddSMS(ctx, "l1", session.SMS{ID: fmt.Sprint(i), Text: "hi", At: time.UnixMilli(int64(i))}))
	}
	raw, err := rdb.LRange(ctx, prefix+"sms:{l1}", 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, raw, 1000)
	var newest, oldest session.SMS
	require.NoError(t, json.Unmarshal([]byte(raw[0]), &newest))
	require.NoError(t, json.Unmarshal([]byte(raw[len(raw)-1]), &oldest))
	assert.Equal(t, "1004", newest.ID)
	assert.Equal(t, "5", oldest.ID)
}
