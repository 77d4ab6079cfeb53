package session_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

func TestRedisJobs(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	prefix := testPrefix(t, rdb)
	q := session.NewRedisJobs(rdb, prefix, 50*time.Millisecond)
	ctx := t.Context()

	_, err := q.Fetch(ctx, "w1", time.Millisecond)
	require.ErrorIs(t, err, session.ErrNoJob)

	require.NoError(t, q.Enqueue(ctx, "forward", "salpre:1", "p"))
	j, err := q.Fetch(ctx, "w1", time.Second)
	require.NoError(t, err)
	assert.Equal(t, session.Job{ID: j.ID, Kind: "forward", Key: "salpre:1", Payload: "p", Attempt: 1}, j)

	// w1 "dies": after the visibility timeout the same job goes to w2.
	var again session.Job
	require.Eventually(t, func() bool {
		again, err = q.Fetch(ctx, "w2", time.Millisecond)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, j.ID, again.ID, "the unacknowledged job is handed over")

	// A failure schedules the next attempt; it is not fetched before it is due.
	require.NoError(t, q.Retry(ctx, again, time.Now().Add(time.Hour), "boom"))
	_, err = q.Fetch(ctx, "w2", time.Millisecond)
	require.ErrorIs(t, err, session.ErrNoJob)
	pending, err := q.Pending(ctx)
	require.NoError(t, err)
	assert.Zero(t, pending)

	require.NoError(t, q.Retry(ctx, session.Job{ID: "0-1", Kind: "forward", Key: "salpre:2", Attempt: 1}, time.Now().Add(-time.Second), "boom"))
	due, err := q.Fetch(ctx, "w2", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "salpre:2", due.Key)
	assert.Equal(t, 2, due.Attempt)
	assert.Equal(t, "boom", due.Error)

	require.NoError(t, q.Bury(ctx, due, "gave up"))
	dead, err := q.Dead(ctx)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "gave up", dead[0].Error)
	assert.Equal(t, 2, dead[0].Attempt)

	back, err := q.Redrive(ctx, dead[0].ID)
	require.NoError(t, err)
	assert.Equal(t, 1, back.Attempt)
	_, err = q.Redrive(ctx, dead[0].ID)
	require.ErrorIs(t, err, session.ErrNotFound, "a dead letter is re-driven once")
	got, err := q.Fetch(ctx, "w3", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "salpre:2", got.Key)
	require.NoError(t, q.Ack(ctx, got))
	dead, err = q.Dead(ctx)
	require.NoError(t, err)
	assert.Empty(t, dead)
}
