package session_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

func TestMemoryStoreSMSKeepsNewest(t *testing.T) {
	t.Parallel()
	s, ctx := session.NewMemoryStore(session.Options{}), t.Context()
	for i := range 1005 {
		require.NoError(t, s.AddSMS(ctx, "l1", session.SMS{ID: fmt.Sprint(i), Text: "hi", At: time.UnixMilli(int64(i))}))
	}
	got, err := s.SMS("l1")
	require.NoError(t, err)
	require.Len(t, got, 1000)
	assert.Equal(t, "1004", got[0].ID)
	assert.Equal(t, "5", got[len(got)-1].ID)
	assert.True(t, got[0].At.Equal(time.UnixMilli(1004)))
}

func TestMemoryStorePrunesExpiredKeys(t *testing.T) {
	t.Parallel()
	s, ctx := session.NewMemoryStore(session.Options{TurnTTL: 20 * time.Millisecond}), t.Context()
	for i := range 1000 {
		_, err := s.FirstDelivery(ctx, fmt.Sprint("old", i), 20*time.Millisecond)
		require.NoError(t, err)
	}
	require.NoError(t, s.AppendLines(ctx, lease("c1", "e1"), "One."))
	// A follower that gave up leaves a placeholder log behind.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.FollowTurn(waitCtx, turnRef("c1", "e2"), func(string) error { return nil }), context.DeadlineExceeded)

	// Nothing reads the expired keys again: only later writes can sweep them.
	writes := 0
	require.Eventually(t, func() bool {
		_, err := s.FirstDelivery(ctx, fmt.Sprint("new", writes), time.Minute)
		writes++
		return err == nil && s.Keys() == writes // only the new deliveries are left
	}, 5*time.Second, time.Millisecond)
}
