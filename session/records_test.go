package session_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/redistest"
)

// records is what both record stores promise; the contract below runs against each.
type records interface {
	ClaimEvent(ctx context.Context, key string, ttl time.Duration) (bool, error)
	FinishEvent(ctx context.Context, key string, ttl time.Duration) error
	ReleaseEvent(ctx context.Context, key string) error
	ApplyCall(ctx context.Context, u session.CallUpdate) error
	ApplyCallsOnce(ctx context.Context, us []session.OnceUpdate) []session.OnceResult
	Call(ctx context.Context, platform, callID string) (session.CallRecord, error)
}

// applyOnce applies one event through ApplyCallsOnce.
func applyOnce(ctx context.Context, s records, key string, ttl time.Duration, u session.CallUpdate) (bool, error) {
	res := s.ApplyCallsOnce(ctx, []session.OnceUpdate{{Key: key, TTL: ttl, Update: u}})
	return res[0].Applied, res[0].Err
}

func TestMemoryRecords(t *testing.T) {
	t.Parallel()
	testRecords(t, func(*testing.T) records { return session.NewMemoryRecords() })
}

func TestRedisRecords(t *testing.T) {
	t.Parallel()
	testRecords(t, func(t *testing.T) records {
		rdb := newRedisClient(t)
		return session.NewRedisRecords(rdb, testPrefix(t, rdb), time.Hour)
	})
}

func testRecords(t *testing.T, newStore func(*testing.T) records) {
	at := time.UnixMilli(1767225600123).UTC()
	t.Run("claim once", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		ok, err := s.ClaimEvent(ctx, "salpre:k1", time.Hour)
		require.NoError(t, err)
		assert.True(t, ok)
		_, err = s.ClaimEvent(ctx, "salpre:k1", time.Hour)
		assert.ErrorIs(t, err, session.ErrInProgress, "claimed, not finished")
		require.NoError(t, s.FinishEvent(ctx, "salpre:k1", time.Hour))
		ok, err = s.ClaimEvent(ctx, "salpre:k1", time.Hour)
		require.NoError(t, err)
		assert.False(t, ok, "finished: a duplicate")
	})
	t.Run("release lets the retry claim", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		ok, err := s.ClaimEvent(ctx, "k2", time.Hour)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, s.ReleaseEvent(ctx, "k2"))
		ok, err = s.ClaimEvent(ctx, "k2", time.Hour)
		require.NoError(t, err)
		assert.True(t, ok)
	})
	t.Run("record shape", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		_, err := s.Call(ctx, "salpre", "9")
		require.ErrorIs(t, err, session.ErrNotFound)
		require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "9", From: "+1555", Direction: "inbound",
			Status: "initiated", StartedAt: at, At: at, Test: true}))
		require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "9", Status: "answered",
			StartedAt: at.Add(time.Hour), Turns: []session.RecordTurn{{Role: "caller", Text: "hi", At: at}}, At: at}))
		require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "9",
			Turns: []session.RecordTurn{{Role: "agent", Text: "hello"}}, At: at.Add(time.Second)}))
		got, err := s.Call(ctx, "salpre", "9")
		require.NoError(t, err)
		assert.Equal(t, "+1555", got.From, "a later event without the field keeps it")
		assert.Equal(t, "answered", got.Status)
		assert.Equal(t, at, got.StartedAt, "the first start time stays")
		assert.True(t, got.Test)
		assert.Equal(t, 3, got.Events)
		assert.Equal(t, []session.RecordTurn{{Role: "caller", Text: "hi", At: at}, {Role: "agent", Text: "hello"}}, got.Turns)

		analysis := json.RawMessage(`{"score":9}`)
		require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "9", Replace: true, Close: true,
			EndedAt: at.Add(time.Minute), Duration: 60, Analysis: analysis,
			Turns: []session.RecordTurn{{Role: "agent", Text: "final"}}, At: at.Add(time.Minute)}))
		got, err = s.Call(ctx, "salpre", "9")
		require.NoError(t, err)
		assert.Equal(t, []session.RecordTurn{{Role: "agent", Text: "final"}}, got.Turns, "a final transcript replaces the live one")
		assert.True(t, got.Closed)
		assert.Equal(t, at.Add(time.Minute), got.EndedAt)
		assert.InDelta(t, 60, got.Duration, 0)
		assert.JSONEq(t, `{"score":9}`, string(got.Analysis))
		analysis[2] = 'X'
		again, err := s.Call(ctx, "salpre", "9")
		require.NoError(t, err)
		assert.JSONEq(t, `{"score":9}`, string(again.Analysis), "the store kept a copy")
	})
	t.Run("apply once", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		said := session.CallUpdate{Platform: "saperly", CallID: "c1", Status: "in-progress", At: at,
			Turns: []session.RecordTurn{{Role: "caller", Text: "hi", At: at}, {Role: "agent", Text: "Hello!", At: at}}}
		applied, err := applyOnce(ctx, s, "saperly:e1", time.Hour, said)
		require.NoError(t, err)
		assert.True(t, applied)
		applied, err = applyOnce(ctx, s, "saperly:e1", time.Hour, said)
		require.NoError(t, err)
		assert.False(t, applied, "the same event again (a retry) changes nothing")
		applied, err = applyOnce(ctx, s, "saperly:e2", time.Hour, session.CallUpdate{Platform: "saperly", CallID: "c1", At: at.Add(time.Second),
			Turns: []session.RecordTurn{{Role: "caller", Text: "bye"}}})
		require.NoError(t, err)
		assert.True(t, applied)
		got, err := s.Call(ctx, "saperly", "c1")
		require.NoError(t, err)
		assert.Equal(t, 2, got.Events)
		assert.Equal(t, "in-progress", got.Status)
		assert.Equal(t, []session.RecordTurn{{Role: "caller", Text: "hi", At: at}, {Role: "agent", Text: "Hello!", At: at}, {Role: "caller", Text: "bye"}}, got.Turns)

		_, err = applyOnce(ctx, s, "", time.Hour, said)
		assert.Error(t, err, "no event key")
	})
	t.Run("apply once forgets after ttl", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		u := session.CallUpdate{Platform: "saperly", CallID: "c2", At: at}
		applied, err := applyOnce(ctx, s, "saperly:e1", 50*time.Millisecond, u)
		require.NoError(t, err)
		require.True(t, applied)
		require.Eventually(t, func() bool {
			applied, err := applyOnce(ctx, s, "saperly:e1", 50*time.Millisecond, u)
			return err == nil && applied
		}, 5*time.Second, 10*time.Millisecond)
	})
	t.Run("long final transcript", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		turns := make([]session.RecordTurn, 9000) // past Lua's unpack limit
		for i := range turns {
			turns[i] = session.RecordTurn{Role: "caller", Text: "uh"}
		}
		applied, err := applyOnce(ctx, s, "salpre:final", time.Hour, session.CallUpdate{Platform: "salpre", CallID: "long", Replace: true, Turns: turns, At: at})
		require.NoError(t, err)
		require.True(t, applied)
		got, err := s.Call(ctx, "salpre", "long")
		require.NoError(t, err)
		assert.Len(t, got.Turns, len(turns))
	})
	t.Run("apply many once", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := t.Context()
		turn := func(text string) session.CallUpdate {
			return session.CallUpdate{Platform: "saperly", CallID: "c3", At: at, Turns: []session.RecordTurn{{Role: "caller", Text: text}}}
		}
		once := func(key string, u session.CallUpdate) session.OnceUpdate {
			return session.OnceUpdate{Key: key, TTL: time.Hour, Update: u}
		}
		got := s.ApplyCallsOnce(ctx, []session.OnceUpdate{
			once("saperly:e1", turn("one")),
			once("saperly:e2", turn("two")),
			once("saperly:e1", turn("one")), // a retry in the same batch
			once("", turn("no key")),
			once("saperly:e4", session.CallUpdate{Platform: "saperly", At: at}),
			once("saperly:e3", turn("three")),
		})
		require.Len(t, got, 6)
		assert.Equal(t, []bool{true, true, false, false, false, true}, []bool{got[0].Applied, got[1].Applied, got[2].Applied, got[3].Applied, got[4].Applied, got[5].Applied})
		for _, i := range []int{0, 1, 2, 5} {
			assert.NoError(t, got[i].Err, i)
		}
		assert.Error(t, got[3].Err, "no event key: that event fails alone")
		assert.Error(t, got[4].Err, "no call id: that event fails alone")
		rec, err := s.Call(ctx, "saperly", "c3")
		require.NoError(t, err)
		assert.Equal(t, 3, rec.Events)
		var texts []string
		for _, tr := range rec.Turns {
			texts = append(texts, tr.Text)
		}
		assert.Equal(t, []string{"one", "two", "three"}, texts, "applied in order")
		again := s.ApplyCallsOnce(ctx, []session.OnceUpdate{once("saperly:e2", turn("two"))})
		assert.Equal(t, []session.OnceResult{{Applied: false}}, again, "remembered across batches")
		assert.Empty(t, s.ApplyCallsOnce(ctx, nil))
	})
	t.Run("empty id refused", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		assert.Error(t, s.ApplyCall(t.Context(), session.CallUpdate{Platform: "salpre", At: at}))
	})
}

// TestRedisRecordsAfterScriptFlush: a Redis that lost its scripts (restarted, failed over to a
// replica that never ran them) still takes the record in the pipelined write.
func TestRedisRecordsAfterScriptFlush(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	s := session.NewRedisRecords(rdb, testPrefix(t, rdb), time.Hour)
	ctx := t.Context()
	at := time.UnixMilli(1767225600123).UTC()
	require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "saperly", CallID: "c1", Status: "started", At: at}))
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	applied, err := applyOnce(ctx, s, "saperly:e1", time.Hour, session.CallUpdate{Platform: "saperly", CallID: "c1", Status: "ended", At: at})
	require.NoError(t, err)
	assert.True(t, applied)
	got, err := s.Call(ctx, "saperly", "c1")
	require.NoError(t, err)
	assert.Equal(t, "ended", got.Status)
	assert.Equal(t, 2, got.Events)
	all, err := s.Calls(ctx, at.Add(-time.Second), "saperly", 0)
	require.NoError(t, err)
	assert.Len(t, all, 1, "indexed once")

	// A batch whose every script is refused is sent again once the script is loaded: one
	// more pipeline for the batch, not a round trip per event (CI's fresh Redis cost the
	// records writer one per delivery).
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	trips := &redistest.Counter{}
	rdb.AddHook(trips)
	batch := make([]session.OnceUpdate, 10)
	for i := range batch {
		batch[i] = session.OnceUpdate{Key: fmt.Sprintf("saperly:f%d", i), TTL: time.Hour,
			Update: session.CallUpdate{Platform: "saperly", CallID: fmt.Sprintf("c%d", i), At: at}}
	}
	for i, res := range s.ApplyCallsOnce(ctx, batch) {
		assert.Equal(t, session.OnceResult{Applied: true}, res, i)
	}
	assert.LessOrEqual(t, trips.RoundTrips(), int64(3), "the batch, SCRIPT LOAD, the batch again")
}

func TestRedisRecordsList(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	s := session.NewRedisRecords(rdb, testPrefix(t, rdb), time.Hour)
	ctx := t.Context()
	base := time.UnixMilli(1767225600000).UTC()
	var seen time.Time // when the service first sees each call: what the list goes by
	s.SetClock(func() time.Time { return seen })
	for i, u := range []session.CallUpdate{
		{Platform: "salpre", CallID: "1", StartedAt: base},
		{Platform: "speaknode", CallID: "s1", At: base.Add(time.Minute)},
		{Platform: "salpre", CallID: "2", StartedAt: base.Add(2 * time.Minute)},
	} {
		if u.At.IsZero() {
			u.At = u.StartedAt
		}
		seen = u.At
		require.NoError(t, s.ApplyCall(ctx, u), i)
	}
	all, err := s.Calls(ctx, base, "", 0)
	require.NoError(t, err)
	assert.Len(t, all, 3)
	sal, err := s.Calls(ctx, base.Add(time.Second), "salpre", 0)
	require.NoError(t, err)
	require.Len(t, sal, 1)
	assert.Equal(t, "2", sal[0].CallID)
	last, err := s.Calls(ctx, base, "", 1)
	require.NoError(t, err)
	require.Len(t, last, 1)
	assert.Equal(t, "2", last[0].CallID, "the limit keeps the newest")
}

// TestRedisRecordsIndexIsTrimmed: every write drops the index entries of calls first seen more
// than the retention and a day ago (their records have expired), so the index does not grow
// with every call ever seen.
func TestRedisRecordsIndexIsTrimmed(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	prefix := testPrefix(t, rdb)
	s := session.NewRedisRecords(rdb, prefix, time.Hour)
	ctx := t.Context()
	now := time.Now()
	seen := now.Add(-26 * time.Hour)
	s.SetClock(func() time.Time { return seen })
	require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "old", At: seen}))
	seen = now.Add(-24 * time.Hour)
	require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "recent", At: seen}))
	seen = now
	require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "new", At: now}))
	members, err := rdb.ZRange(ctx, prefix+"rec:index", 0, -1).Result()
	require.NoError(t, err)
	assert.Equal(t, []string{"salpre:recent", "salpre:new"}, members)
}

// TestRedisRecordsListsOldStampedCalls reproduces CI's TestSalpreReceiver failure: a test
// event stamped a year ago (the platform's clock, or its canned sample) was listed by its
// own timestamp, so the next call's write trimmed it from the index while its record lived
// on, unlisted. The index goes by when this service first saw the call.
func TestRedisRecordsListsOldStampedCalls(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	s := session.NewRedisRecords(rdb, testPrefix(t, rdb), time.Hour)
	ctx := t.Context()
	now := time.Now()
	stamped := now.AddDate(-1, 0, 0)
	require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "sample", StartedAt: stamped, At: stamped}))
	require.NoError(t, s.ApplyCall(ctx, session.CallUpdate{Platform: "salpre", CallID: "live", StartedAt: now, At: now}))

	list, err := s.Calls(ctx, now.Add(-time.Minute), "salpre", 0)
	require.NoError(t, err)
	started := map[string]time.Time{}
	for _, rec := range list {
		started[rec.CallID] = rec.StartedAt
	}
	require.Len(t, started, 2, "both listed: %v", started)
	assert.Equal(t, stamped.Truncate(time.Millisecond).UTC(), started["sample"], "the record keeps the platform's start time")
}

// TestRedisRecordsReportAnUnlistedEvent: an event whose record was written but whose index
// entry was not is reported failed, so the sender retries; the retry, a duplicate, lists it.
func TestRedisRecordsReportAnUnlistedEvent(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	prefix := testPrefix(t, rdb)
	s := session.NewRedisRecords(rdb, prefix, time.Hour)
	ctx := t.Context()
	require.NoError(t, rdb.Set(ctx, prefix+"rec:index", "not a sorted set", time.Hour).Err())
	u := session.OnceUpdate{Key: "salpre:e1", TTL: time.Hour, Update: session.CallUpdate{Platform: "salpre", CallID: "c1", At: time.Now()}}

	res := s.ApplyCallsOnce(ctx, []session.OnceUpdate{u})
	require.Error(t, res[0].Err, "the index write failed")
	require.NoError(t, rdb.Del(ctx, prefix+"rec:index").Err())
	res = s.ApplyCallsOnce(ctx, []session.OnceUpdate{u})
	assert.Equal(t, session.OnceResult{Applied: false}, res[0], "the retry is a duplicate")
	list, err := s.Calls(ctx, time.Now().Add(-time.Minute), "salpre", 0)
	require.NoError(t, err)
	require.Len(t, list, 1, "and lists the call")
	assert.Equal(t, 1, list[0].Events)
}
