package session_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

// recordings is what both stores offer the recorder.
type recordings interface {
	AppendCaptures(ctx context.Context, caps ...session.Capture) error
	IdleCaptures(ctx context.Context, since time.Time, limit int) ([]string, error)
	TakeCaptures(ctx context.Context, callID string) ([][]byte, bool, error)
	PublishRecording(ctx context.Context, maxLen int64, r session.Recording) (string, error)
	Recordings(ctx context.Context, after string, count int64) ([]session.Recording, error)
}

var (
	_ recordings = (*session.RedisStore)(nil)
	_ recordings = (*session.MemoryRecordings)(nil)
)

func TestMemoryRecordings(t *testing.T) {
	t.Parallel()
	testRecordings(t, func(*testing.T) recordings { return session.NewMemoryRecordings(session.Options{}) })
}

func TestRedisRecordings(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	testRecordings(t, func(t *testing.T) recordings { return newRedisStore(t, rdb, session.Options{}) })
}

func testRecordings(t *testing.T, newStore func(*testing.T) recordings) {
	capture := func(call, data string) session.Capture { return session.Capture{CallID: call, Data: []byte(data)} }

	t.Run("captures are taken once, in order", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.AppendCaptures(ctx, capture("c1", "a"), capture("c2", "x"), capture("c1", "b")))
		require.NoError(t, s.AppendCaptures(ctx, capture("c1", "c")))

		items, claimed, err := s.TakeCaptures(ctx, "c1")
		require.NoError(t, err)
		assert.True(t, claimed)
		assert.Equal(t, [][]byte{[]byte("a"), []byte("b"), []byte("c")}, items)

		// Another replica (or a late sweep) gets nothing, and late captures are discarded.
		require.NoError(t, s.AppendCaptures(ctx, capture("c1", "late")))
		items, claimed, err = s.TakeCaptures(ctx, "c1")
		require.NoError(t, err)
		assert.False(t, claimed)
		assert.Empty(t, items)

		items, claimed, err = s.TakeCaptures(ctx, "c2")
		require.NoError(t, err)
		assert.True(t, claimed)
		assert.Equal(t, [][]byte{[]byte("x")}, items)
	})

	t.Run("idle calls, oldest first, bounded", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		require.NoError(t, s.AppendCaptures(ctx, capture("old", "1")))
		ids, err := s.IdleCaptures(ctx, time.Now().Add(-time.Hour), 10)
		require.NoError(t, err)
		assert.Empty(t, ids, "nothing is idle for an hour yet")

		ids, err = s.IdleCaptures(ctx, time.Now().Add(time.Minute), 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"old"}, ids)

		require.NoError(t, s.AppendCaptures(ctx, capture("new", "1")))
		ids, err = s.IdleCaptures(ctx, time.Now().Add(time.Minute), 1)
		require.NoError(t, err)
		assert.Len(t, ids, 1, "the limit bounds the sweep")

		_, _, err = s.TakeCaptures(ctx, "old")
		require.NoError(t, err)
		ids, err = s.IdleCaptures(ctx, time.Now().Add(time.Minute), 10)
		require.NoError(t, err)
		assert.Equal(t, []string{"new"}, ids, "a taken call is no longer open")
	})

	t.Run("empty call id", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		assert.Error(t, s.AppendCaptures(ctx, capture("", "x")))
		_, _, err := s.TakeCaptures(ctx, "")
		assert.Error(t, err)
	})

	t.Run("recordings stream: after, count, bound", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		var ids []string
		for i := range 5 {
			id, err := s.PublishRecording(ctx, 1000, session.Recording{CallID: fmt.Sprint("c", i), Script: []byte(fmt.Sprint("s", i))})
			require.NoError(t, err)
			ids = append(ids, id)
		}
		all, err := s.Recordings(ctx, "", 100)
		require.NoError(t, err)
		require.Len(t, all, 5)
		assert.Equal(t, "c0", all[0].CallID)
		assert.Equal(t, []byte("s4"), all[4].Script)
		assert.Equal(t, ids[4], all[4].ID)

		rest, err := s.Recordings(ctx, ids[2], 100)
		require.NoError(t, err)
		require.Len(t, rest, 2, "strictly after the given id")
		assert.Equal(t, "c3", rest[0].CallID)

		two, err := s.Recordings(ctx, "", 2)
		require.NoError(t, err)
		assert.Len(t, two, 2)

		ms := strings.SplitN(ids[0], "-", 2)[0]
		since, err := s.Recordings(ctx, fmt.Sprint(ms, "-0"), 100)
		require.NoError(t, err)
		assert.NotEmpty(t, since, "a time as <ms>-0 starts there")

		_, err = s.Recordings(ctx, "yesterday", 10)
		assert.ErrorIs(t, err, session.ErrBadStreamID)
	})

	t.Run("recordings stream is trimmed", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		// Redis trims approximately (whole macro nodes): publish well past the bound.
		for i := range 400 {
			_, err := s.PublishRecording(ctx, 10, session.Recording{CallID: fmt.Sprint("c", i), Script: []byte("s")})
			require.NoError(t, err)
		}
		all, err := s.Recordings(ctx, "", 1000)
		require.NoError(t, err)
		assert.Less(t, len(all), 400, "the stream is bounded")
		assert.Equal(t, "c399", all[len(all)-1].CallID, "the newest are kept")
	})
}
