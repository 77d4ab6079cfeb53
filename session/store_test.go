package session_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

// waitFor bounds every wait for something that should happen at once, so a hang fails the
// test instead of stalling it. It is a deadlock guard, not a performance limit.
const waitFor = 5 * time.Second

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	testStore(t, func(_ *testing.T, opts session.Options) session.Store {
		return session.NewMemoryStore(opts)
	})
}

func TestRedisStore(t *testing.T) {
	t.Parallel()
	rdb := newRedisClient(t)
	testStore(t, func(t *testing.T, opts session.Options) session.Store {
		return newRedisStore(t, rdb, opts)
	})
}

// testStore checks everything session.Store promises. newStore returns an empty store with
// opts, which are set only by the subtests about expiry.
func testStore(t *testing.T, newStore func(*testing.T, session.Options) session.Store) {
	store := func(t *testing.T) session.Store {
		t.Helper()
		return newStore(t, session.Options{})
	}

	t.Run("BeginTurnOnce", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		c := session.Call{ID: "c1", LineID: "l1"}

		b, err := s.BeginTurnOnce(ctx, c, "e1", 0, "d1", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, session.TurnClaimed, b.Status, "a new delivery begins the turn")
		assert.Equal(t, 1, b.State.Turns)

		again, err := s.BeginTurnOnce(ctx, c, "e1", 0, "d1", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, session.TurnDuplicate, again.Status, "the same delivery id again: nothing begun")
		// A message's delivery ids are checked in its call's slot (one round trip on Redis
		// Cluster too), apart from FirstDelivery's: a delivery's signature binds its id to its
		// body, so a replay of it always names the same call.
		seen, err := s.FirstDelivery(ctx, "d1", time.Minute)
		require.NoError(t, err)
		assert.True(t, seen, "FirstDelivery's ids are its own")

		retry, err := s.BeginTurnOnce(ctx, c, "e1", 0, "d2", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, session.TurnHeld, retry.Status, "a retry of the event under a new delivery id follows the turn")
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, 1, st.Turns, "neither the duplicate nor the retry counted a turn")

		other, err := s.BeginTurnOnce(ctx, session.Call{ID: "c2"}, "e1", 0, "d1", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, session.TurnClaimed, other.Status, "ids are checked per call")

		_, err = s.BeginTurnOnce(ctx, c, "e4", 0, "", time.Minute)
		assert.Error(t, err, "empty delivery id")
		_, err = s.BeginTurnOnce(ctx, c, "e4", 0, "d4", 0)
		assert.Error(t, err, "zero ttl")
	})

	t.Run("UpdateCallOnce", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		c := session.Call{ID: "c1", LineID: "l1", Status: "active", Owner: "l1"}

		first, err := s.UpdateCallOnce(ctx, c, "d1", time.Minute)
		require.NoError(t, err)
		assert.True(t, first, "a new delivery writes the record")
		ended := session.Call{ID: "c1", Status: "ended", Owner: "l1"}
		first, err = s.UpdateCallOnce(ctx, ended, "d1", time.Minute)
		require.NoError(t, err)
		assert.False(t, first, "the same delivery id again")
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, "active", st.Call.Status, "the replay wrote nothing")

		seen, err := s.FirstDelivery(ctx, "d1", time.Minute)
		require.NoError(t, err)
		assert.True(t, seen, "ids checked in the call's slot are not FirstDelivery's")
		_, err = s.BeginTurnOnce(ctx, session.Call{ID: "c1", LineID: "l1", Owner: "l1"}, "e1", 0, "d1", time.Minute)
		require.NoError(t, err)

		_, err = s.UpdateCallOnce(ctx, session.Call{ID: "c1", Status: "hijacked", Owner: "l2"}, "d3", time.Minute)
		require.ErrorIs(t, err, session.ErrWrongLine)
		first, err = s.UpdateCallOnce(ctx, ended, "d4", time.Minute)
		require.NoError(t, err)
		assert.True(t, first)
		st, err = s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, "ended", st.Call.Status)

		_, err = s.UpdateCallOnce(ctx, ended, "", time.Minute)
		assert.Error(t, err, "empty delivery id")
	})

	t.Run("FirstDelivery", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()

		first, err := s.FirstDelivery(ctx, "d1", time.Minute)
		require.NoError(t, err)
		assert.True(t, first, "a new delivery id")
		again, err := s.FirstDelivery(ctx, "d1", time.Minute)
		require.NoError(t, err)
		assert.False(t, again, "a repeated delivery id")
		other, err := s.FirstDelivery(ctx, "d2", time.Minute)
		require.NoError(t, err)
		assert.True(t, other, "another delivery id")

		_, err = s.FirstDelivery(ctx, "", time.Minute)
		assert.Error(t, err, "empty delivery id")
		_, err = s.FirstDelivery(ctx, "d3", 0)
		assert.Error(t, err, "zero ttl")
	})

	t.Run("FirstDeliveryExpires", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		const ttl = 50 * time.Millisecond

		start := time.Now()
		first, err := s.FirstDelivery(ctx, "d1", ttl)
		require.NoError(t, err)
		require.True(t, first)
		again, err := s.FirstDelivery(ctx, "d1", ttl)
		require.NoError(t, err)
		if time.Since(start) < ttl { // otherwise this machine was too slow to tell
			assert.False(t, again, "a repeat within the ttl")
		}
		require.Eventually(t, func() bool {
			ok, err := s.FirstDelivery(ctx, "d1", ttl)
			return err == nil && ok
		}, waitFor, 10*time.Millisecond, "a repeat after the ttl is new again")
	})

	t.Run("FirstDeliveryConcurrent", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			fresh int
		)
		for range 8 {
			wg.Go(func() {
				ok, err := s.FirstDelivery(ctx, "d1", time.Minute)
				assert.NoError(t, err)
				if ok {
					mu.Lock()
					fresh++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, 1, fresh, "exactly one replica sees the delivery as new")
	})

	t.Run("UpdateCallMerges", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		started := time.UnixMilli(1711900000123).Add(456 * time.Microsecond) // below a ms: dropped
		ended := time.UnixMilli(1711900042000)

		require.NoError(t, s.UpdateCall(ctx, session.Call{
			ID: "c1", LineID: "l1", From: "+14155551234", To: "+14155550123",
			Direction: "inbound", Status: "ringing", StartedAt: started,
		}))
		require.NoError(t, s.UpdateCall(ctx, session.Call{
			ID: "c1", Status: "completed", EndedAt: ended, Duration: 42.5,
		}))

		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, session.Call{
			ID: "c1", LineID: "l1", From: "+14155551234", To: "+14155550123",
			Direction: "inbound", Status: "completed",
			StartedAt: time.UnixMilli(1711900000123).UTC(), EndedAt: ended.UTC(), Duration: 42.5,
		}, st.Call, "zero fields keep what was stored; times keep milliseconds")
		assert.Empty(t, st.History)

		assert.Error(t, s.UpdateCall(ctx, session.Call{Status: "ringing"}), "empty call id")
	})

	t.Run("LoadUnknown", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		_, err := s.Load(ctx, "nobody")
		require.ErrorIs(t, err, session.ErrNotFound)
	})

	t.Run("BeginTurn", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()

		before := time.Now().Truncate(time.Millisecond)
		st, claimed, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e1")
		require.NoError(t, err)
		assert.True(t, claimed, "the first delivery claims the event")
		assert.Equal(t, "c1", st.Call.ID, "an unknown call gets a record")
		assert.WithinRange(t, st.Call.StartedAt, before, time.Now())
		assert.Empty(t, st.History)

		loaded, err := s.Load(ctx, "c1")
		require.NoError(t, err, "the record BeginTurn created")
		assert.Equal(t, st, loaded)

		st2, claimed, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e1")
		require.NoError(t, err)
		assert.False(t, claimed, "a retry of the same event")
		assert.Equal(t, st, st2, "a retry still loads the state; StartedAt is not reset")

		_, claimed, err = beginTurn(s, ctx, session.Call{ID: "c1"}, "e2")
		require.NoError(t, err)
		assert.True(t, claimed, "another event")

		for range 2 {
			_, claimed, err = beginTurn(s, ctx, session.Call{ID: "c1"}, "")
			require.NoError(t, err)
			assert.True(t, claimed, "an event without id is always claimed")
		}

		_, _, err = beginTurn(s, ctx, session.Call{ID: ""}, "e3")
		assert.Error(t, err, "empty call id")
	})

	t.Run("BeginTurnKnownCall", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		started := time.UnixMilli(1711900000000).UTC()
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "c1", LineID: "l1", StartedAt: started}))
		turn := []session.Entry{
			{Kind: session.EntryUser, Text: "hi", At: 1000, EventID: "e1"},
			{Kind: session.EntryAssistant, Text: "Hello!", At: 1000, EventID: "e1"},
		}
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil, turn...))

		st, claimed, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e2")
		require.NoError(t, err)
		assert.True(t, claimed)
		assert.Equal(t, session.Call{ID: "c1", LineID: "l1", StartedAt: started}, st.Call)
		assert.Equal(t, turn, st.History)
	})

	t.Run("BeginTurnConcurrent", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			claims int
		)
		for range 8 {
			wg.Go(func() {
				_, claimed, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e1")
				assert.NoError(t, err)
				if claimed {
					mu.Lock()
					claims++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, 1, claims, "exactly one delivery answers the event")
	})

	t.Run("ClaimExpires", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t, session.Options{TurnLease: 100 * time.Millisecond}), t.Context()
		_, claimed, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e1")
		require.NoError(t, err)
		require.True(t, claimed)
		require.Eventually(t, func() bool {
			_, claimed, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e1")
			return err == nil && claimed
		}, waitFor, 10*time.Millisecond, "an unrenewed claim of a turn that logged nothing is free again after TurnLease")
	})

	t.Run("TurnsKeyedByLineCallAndEvent", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		// One event id on two calls, and on two lines' views of one call: four turns.
		var leases []session.Lease
		for _, c := range []session.Call{{ID: "c1", LineID: "l1"}, {ID: "c2", LineID: "l1"}, {ID: "c3", LineID: "l1"}, {ID: "c3", LineID: "l2"}} {
			b, err := s.BeginTurn(ctx, c, "e1", 0)
			require.NoError(t, err)
			assert.Equal(t, session.TurnClaimed, b.Status, "call %s on line %s has its own turn", c.ID, c.LineID)
			assert.Equal(t, session.TurnRef{Line: c.LineID, Call: c.ID, Event: "e1"}, b.Lease.Ref)
			require.NoError(t, s.AppendLines(ctx, b.Lease, "Answer to "+c.ID+" on "+c.LineID+"."))
			leases = append(leases, b.Lease)
		}
		for _, l := range leases {
			require.NoError(t, s.CommitTurn(ctx, l, nil))
			f := follow(ctx, s, l.Ref)
			require.NoError(t, f.wait(t))
			assert.Equal(t, []string{"Answer to " + l.Ref.Call + " on " + l.Ref.Line + "."}, f.got, "only its own turn's lines")
		}
		// Ids that would run together with a plain separator stay apart.
		a, err := s.BeginTurn(ctx, session.Call{ID: "c4", LineID: "a:b"}, "c", 0)
		require.NoError(t, err)
		b, err := s.BeginTurn(ctx, session.Call{ID: "c4", LineID: "a"}, "b:c", 0)
		require.NoError(t, err)
		assert.Equal(t, session.TurnClaimed, a.Status)
		assert.Equal(t, session.TurnClaimed, b.Status)
	})

	t.Run("OwnerCheckedByBeginTurn", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		b, err := s.BeginTurn(ctx, session.Call{ID: "c1", LineID: "l1", Owner: "l1"}, "e1", 0)
		require.NoError(t, err)
		require.Equal(t, session.TurnClaimed, b.Status)
		assert.Equal(t, "l1", b.State.Call.Owner, "the first turn sets the owner")
		before, err := s.Load(ctx, "c1")
		require.NoError(t, err)

		_, err = s.BeginTurn(ctx, session.Call{ID: "c1", LineID: "l2", Owner: "l2", From: "+1555", Agent: "x"}, "e2", 0)
		require.ErrorIs(t, err, session.ErrWrongLine, "another line's turn about the call")
		_, err = s.BeginTurn(ctx, session.Call{ID: "c1", Owner: "*"}, "e2", 0)
		require.ErrorIs(t, err, session.ErrWrongLine, "the global secrets' turn about a listed line's call")
		after, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, before, after, "a refused turn writes nothing, and is not counted")

		b, err = s.BeginTurn(ctx, session.Call{ID: "c1", LineID: "l1", Owner: "l1"}, "e2", 0)
		require.NoError(t, err)
		assert.Equal(t, session.TurnClaimed, b.Status, "the refused event was not claimed")
		b, err = s.BeginTurn(ctx, session.Call{ID: "c1", LineID: "l1"}, "e3", 0)
		require.NoError(t, err)
		assert.Equal(t, session.TurnClaimed, b.Status, "no owner given: not checked")
	})

	t.Run("BeginTurnLoadsTail", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		const turns = 300
		for i := range turns {
			ev := fmt.Sprintf("e%d", i)
			b, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, ev, 0)
			require.NoError(t, err)
			require.NoError(t, s.CommitTurn(ctx, b.Lease, nil,
				session.Entry{Kind: session.EntryUser, Text: ev, At: int64(2 * i), EventID: ev},
				session.Entry{Kind: session.EntryAssistant, Text: "A" + ev, At: int64(2 * i), EventID: ev}))
		}
		require.NoError(t, s.AppendEntry(ctx, "c1", "", session.Entry{Kind: session.EntryInterrupt, Text: "cut", At: 2*turns - 1}))
		full, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		require.Len(t, full.History, 2*turns, "Load keeps the whole conversation")
		assert.Equal(t, turns, full.Turns)

		b, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "next", 9)
		require.NoError(t, err)
		assert.Equal(t, turns+1, b.State.Turns, "the turn count covers the whole call")
		assert.Equal(t, full.History[len(full.History)-8:], b.State.History,
			"the last 9 log entries, folded: 4 turns and the interrupt applied to the last answer")
		assert.True(t, b.State.History[len(b.State.History)-1].Interrupted)

		_, err = s.BeginTurn(ctx, session.Call{ID: "c1"}, "next", 9)
		require.NoError(t, err)
		again, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, turns+1, again.Turns, "a retry is not another turn")
	})

	t.Run("LeaseRenewedAndFenced", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		b, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e1", 0)
		require.NoError(t, err)
		owner := b.Lease
		require.NotEmpty(t, owner.Token)
		require.NoError(t, s.AppendLines(ctx, owner, "One."))
		require.NoError(t, s.AppendLines(ctx, owner), "a renewal alone")

		held, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e1", 0)
		require.NoError(t, err)
		assert.Equal(t, session.TurnHeld, held.Status, "a retry while the owner is live")
		assert.Empty(t, held.Lease.Token)
		assert.Positive(t, held.Left)
		to, err := s.TakeOver(ctx, owner.Ref)
		require.NoError(t, err)
		assert.False(t, to.Taken(), "a live owner is never taken over")
		assert.Positive(t, to.Left)

		forged := session.Lease{Ref: owner.Ref, Token: "not-the-owner"}
		require.ErrorIs(t, s.AppendLines(ctx, forged, "Two."), session.ErrLeaseLost)
		require.ErrorIs(t, s.CommitTurn(ctx, forged, nil, session.Entry{Kind: session.EntryUser, Text: "x", At: 1, EventID: "e1"}), session.ErrLeaseLost)
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Empty(t, st.History, "a fenced commit writes nothing")

		require.NoError(t, s.CommitTurn(ctx, owner, nil, session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"}))
		require.ErrorIs(t, s.AppendLines(ctx, owner, "Late."), session.ErrLeaseLost, "the turn is over")
		to, err = s.TakeOver(ctx, owner.Ref)
		require.NoError(t, err)
		assert.False(t, to.Taken(), "a finished turn is never taken over")
		done, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e1", 0)
		require.NoError(t, err)
		assert.Equal(t, session.TurnHeld, done.Status, "a retry of a finished turn replays it")
	})

	t.Run("LapsedLeaseTakenOver", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t, session.Options{TurnLease: 100 * time.Millisecond}), t.Context()
		c := session.Call{ID: "c1", LineID: "l1"}
		b, err := s.BeginTurn(ctx, c, "e1", 0)
		require.NoError(t, err)
		dead := b.Lease
		tool := session.Entry{Kind: session.EntryTool, EventID: "e1", At: 1, ToolCall: "call_1", ToolName: "lookup", ToolArgs: "{}", Text: `{"ok":true}`}
		require.NoError(t, s.AppendLines(ctx, dead, "One.", "Two."))
		require.NoError(t, s.AppendTools(ctx, dead, tool))
		require.NoError(t, s.AppendLines(ctx, dead, "Three."))

		// The owner dies: nobody renews. A follower takes over once the lease lapses.
		var to session.Takeover
		require.Eventually(t, func() bool {
			to, err = s.TakeOver(ctx, dead.Ref)
			return err == nil && to.Taken()
		}, waitFor, 10*time.Millisecond)
		assert.Equal(t, session.TurnLog{Lines: []string{"One.", "Two.", "Three."}, Tools: []session.Entry{tool}}, to.Log)
		assert.NotEqual(t, dead.Token, to.Lease.Token)

		again, err := s.TakeOver(ctx, dead.Ref)
		require.NoError(t, err)
		assert.False(t, again.Taken(), "one taker")
		require.ErrorIs(t, s.AppendLines(ctx, dead, "Four."), session.ErrLeaseLost, "the old owner is fenced")
		require.NoError(t, s.AppendLines(ctx, to.Lease, "Four."))
		entries := []session.Entry{
			{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"},
			tool,
			{Kind: session.EntryAssistant, Text: "One. Two. Three. Four.", At: 1, EventID: "e1"},
		}
		require.ErrorIs(t, s.CommitTurn(ctx, dead, nil, entries...), session.ErrLeaseLost)
		require.NoError(t, s.CommitTurn(ctx, to.Lease, nil, entries...))
		require.ErrorIs(t, s.CommitTurn(ctx, dead, nil, entries...), session.ErrLeaseLost)
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, entries, st.History, "the turn is recorded once, by its new owner")
		f := follow(ctx, s, dead.Ref)
		require.NoError(t, f.wait(t))
		assert.Equal(t, []string{"One.", "Two.", "Three.", "Four."}, f.got, "followers get the lines only")

		// A retry that arrives after the lease lapsed takes over in BeginTurn itself.
		b, err = s.BeginTurn(ctx, c, "e2", 0)
		require.NoError(t, err)
		require.NoError(t, s.AppendLines(ctx, b.Lease, "Hello."))
		var late session.Begun
		require.Eventually(t, func() bool {
			late, err = s.BeginTurn(ctx, c, "e2", 0)
			return err == nil && late.Status == session.TurnTakenOver
		}, waitFor, 10*time.Millisecond)
		assert.Equal(t, session.TurnLog{Lines: []string{"Hello."}}, late.Log)
		assert.NotEmpty(t, late.Lease.Token)
		assert.Equal(t, 2, late.State.Turns, "a takeover is not another turn")

		// A lease that lapsed with nobody taking it is taken back by its owner.
		b, err = s.BeginTurn(ctx, c, "e3", 0)
		require.NoError(t, err)
		waitUntil(t, time.Now().Add(150*time.Millisecond))
		require.NoError(t, s.AppendLines(ctx, b.Lease, "Still here."))
		require.NoError(t, s.CommitTurn(ctx, b.Lease, nil))
	})

	t.Run("FollowTurn", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()

		early := follow(ctx, s, turnRef("c1", "e1"))
		b, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e1", 0)
		require.NoError(t, err)
		require.Equal(t, session.TurnClaimed, b.Status)
		owner := b.Lease
		require.NoError(t, s.AppendLines(ctx, owner, "One."))
		assert.Equal(t, "One.", early.next(t))

		mid := follow(ctx, s, turnRef("c1", "e1"))
		assert.Equal(t, "One.", mid.next(t), "a follower starting mid-turn gets earlier lines")
		for _, line := range []string{"Two.", "", "Three."} {
			require.NoError(t, s.AppendLines(ctx, owner, line))
		}
		require.NoError(t, s.AppendLines(ctx, owner, "Four.", "Five."), "a batch keeps its order")
		require.NoError(t, s.AppendLines(ctx, owner), "an empty batch")
		require.NoError(t, s.CommitTurn(ctx, owner, []string{"Six.", "Seven."},
			session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"},
			session.Entry{Kind: session.EntryAssistant, Text: "One. Two. Three. Four. Five. Six. Seven.", At: 1, EventID: "e1"},
		), "the commit carries the last lines into the log before closing it")
		require.NoError(t, s.AppendLines(ctx, lease("c1", "e1"), "Too late."), "a line after the close")
		require.ErrorIs(t, s.CommitTurn(ctx, session.Lease{Ref: turnRef("c1", "e1"), Token: "retried"}, []string{"Again."}),
			session.ErrLeaseLost, "a commit of a closed turn")

		late := follow(ctx, s, turnRef("c1", "e1"))
		want := []string{"One.", "Two.", "", "Three.", "Four.", "Five.", "Six.", "Seven."}
		for name, f := range map[string]*follower{"early": early, "mid": mid, "late": late} {
			assert.NoError(t, f.wait(t), name)
			assert.Equal(t, want, f.got, name)
		}
	})

	t.Run("CommitWithoutLeaseLeavesAHeldLogAlone", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		b, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e1", 0)
		require.NoError(t, err)
		require.Equal(t, session.TurnClaimed, b.Status)
		require.NoError(t, s.AppendLines(ctx, b.Lease, "One."))
		// A delivery that answered without the store (no lease) commits the same event late.
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), []string{"Other."},
			session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"}))
		require.NoError(t, s.CommitTurn(ctx, b.Lease, []string{"Two."},
			session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"},
			session.Entry{Kind: session.EntryAssistant, Text: "One. Two.", At: 1, EventID: "e1"}),
			"the holder still commits: its log was not closed under it")
		f := follow(ctx, s, turnRef("c1", "e1"))
		require.NoError(t, f.wait(t))
		assert.Equal(t, []string{"One.", "Two."}, f.got)

		// Without a lease, on a turn nobody claimed: the log takes the lines once.
		for range 2 {
			require.NoError(t, s.CommitTurn(ctx, lease("c1", "e2"), []string{"Hello."},
				session.Entry{Kind: session.EntryUser, Text: "hey", At: 2, EventID: "e2"}))
		}
		_, err = s.TakeOver(ctx, turnRef("c1", "e2"))
		require.NoError(t, err)
		f = follow(ctx, s, turnRef("c1", "e2"))
		require.NoError(t, f.wait(t))
		assert.Equal(t, []string{"Hello."}, f.got)
	})

	t.Run("FollowTurnCancel", func(t *testing.T) {
		t.Parallel()
		s := store(t)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		require.NoError(t, s.AppendLines(ctx, lease("c1", "e1"), "One."))
		f := follow(ctx, s, turnRef("c1", "e1"))
		assert.Equal(t, "One.", f.next(t), "the follower is now waiting for more")
		cancel()
		require.ErrorIs(t, f.wait(t), context.Canceled)
	})

	t.Run("FollowTurnDeadline", func(t *testing.T) {
		t.Parallel()
		s := store(t)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		f := follow(ctx, s, turnRef("c1", "never"))
		require.ErrorIs(t, f.wait(t), context.DeadlineExceeded, "a log that never appears")
		assert.Empty(t, f.got)
	})

	t.Run("FollowTurnCallbackError", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		for _, line := range []string{"One.", "Two."} {
			require.NoError(t, s.AppendLines(ctx, lease("c1", "e1"), line))
		}
		errStop := errors.New("caller hung up")
		calls := 0
		err := s.FollowTurn(ctx, turnRef("c1", "e1"), func(string) error {
			calls++
			return errStop
		})
		require.ErrorIs(t, err, errStop)
		assert.Equal(t, 1, calls)
	})

	t.Run("TurnWithoutEventID", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		require.NoError(t, s.AppendLines(ctx, lease("c1", ""), "One."), "no log: dropped")
		err := s.FollowTurn(ctx, turnRef("c1", ""), func(string) error { return nil })
		require.ErrorIs(t, err, session.ErrNotFound)
		require.NoError(t, s.CommitTurn(ctx, lease("c1", ""), []string{"Hello."},
			session.Entry{Kind: session.EntryUser, Text: "hi", At: 1}), "no log: its lines are dropped")
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Len(t, st.History, 1)
	})

	t.Run("TurnLogExpires", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t, session.Options{TurnTTL: 100 * time.Millisecond}), t.Context()
		require.NoError(t, s.AppendLines(ctx, lease("c1", "e1"), "One."))
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil))
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			err := s.FollowTurn(ctx, turnRef("c1", "e1"), func(string) error { return nil })
			return errors.Is(err, context.DeadlineExceeded) // waiting for a log that is gone
		}, waitFor, 10*time.Millisecond)
	})

	t.Run("CommitTurn", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		turn := []session.Entry{
			{Kind: session.EntryUser, Text: "What time do you open?", At: 1000, EventID: "e1"},
			{Kind: session.EntryAssistant, Text: "At nine.", At: 1000, EventID: "e1", Cut: true},
		}
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil, turn...))

		st, err := s.Load(ctx, "c1")
		require.NoError(t, err, "history alone makes a call known")
		assert.Equal(t, session.Call{ID: "c1"}, st.Call)
		assert.Equal(t, turn, st.History)

		f := follow(ctx, s, turnRef("c1", "e1"))
		require.NoError(t, f.wait(t), "the log is closed")
		assert.Empty(t, f.got)

		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e2"), nil), "no entries: only closes the log")
		require.NoError(t, follow(ctx, s, turnRef("c1", "e2")).wait(t))

		assert.Error(t, s.CommitTurn(ctx, lease("", "e3"), nil), "empty call id")
	})

	t.Run("ConcurrentWritersKeepEverything", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				ev := fmt.Sprintf("e%d", i)
				assert.NoError(t, s.CommitTurn(ctx, lease("c1", ev), nil,
					session.Entry{Kind: session.EntryUser, Text: ev, At: int64(i), EventID: ev}))
			})
		}
		wg.Wait()
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Len(t, st.History, 10)
	})

	t.Run("FoldOnLoad", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		user := func(at int64, ev, text string) session.Entry {
			return session.Entry{Kind: session.EntryUser, Text: text, At: at, EventID: ev}
		}
		answer := func(at int64, ev, text string) session.Entry {
			return session.Entry{Kind: session.EntryAssistant, Text: text, At: at, EventID: ev}
		}
		cut := func(e session.Entry, text string) session.Entry {
			e.Text, e.Interrupted = text, true
			return e
		}
		interrupt := func(at int64, text string) session.Entry {
			return session.Entry{Kind: session.EntryInterrupt, Text: text, At: at}
		}
		u1, a1 := user(1000, "e1", "Hi."), answer(1000, "e1", "Hello, how can I help you today?")
		u2, a2 := user(3000, "e2", "Opening hours?"), answer(3000, "e2", "We open at nine and close at five.")

		// The interrupted event overtook the turn it refers to.
		require.NoError(t, s.CommitTurn(ctx, lease("early", "e1"), nil, u1, a1))
		require.NoError(t, s.AppendEntry(ctx, "early", "", interrupt(3500, "We open at")))
		require.NoError(t, s.CommitTurn(ctx, lease("early", "e2"), nil, u2, a2))
		// The interrupted event arrived after the next turn.
		require.NoError(t, s.CommitTurn(ctx, lease("late", "e1"), nil, u1, a1))
		require.NoError(t, s.CommitTurn(ctx, lease("late", "e2"), nil, u2, a2))
		require.NoError(t, s.AppendEntry(ctx, "late", "", interrupt(1500, "Hello,")))
		// A turn committed twice (a claim expired under a slow answer), and a cut before any
		// word was played.
		require.NoError(t, s.CommitTurn(ctx, lease("dup", "e1"), nil, u1, a1))
		require.NoError(t, s.CommitTurn(ctx, lease("dup", "e1"), nil, u1, a1))
		require.NoError(t, s.AppendEntry(ctx, "dup", "", interrupt(1200, "")))

		for _, tc := range []struct {
			name string
			call string
			want []session.Entry
		}{
			{name: "interrupt before its turn", call: "early", want: []session.Entry{u1, a1, u2, cut(a2, "We open at")}},
			{name: "interrupt after the next turn", call: "late", want: []session.Entry{u1, cut(a1, "Hello,"), u2, a2}},
			{name: "duplicate turn and empty partial", call: "dup", want: []session.Entry{u1, cut(a1, "")}},
		} {
			st, err := s.Load(ctx, tc.call)
			require.NoError(t, err, tc.name)
			assert.Equal(t, tc.want, st.History, tc.name)
		}
	})

	t.Run("LateCommitOfEarlierTurn", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		turn := func(at int64, ev, said, answer string) []session.Entry {
			return []session.Entry{
				{Kind: session.EntryUser, Text: said, At: at, EventID: ev},
				{Kind: session.EntryAssistant, Text: answer, At: at, EventID: ev},
			}
		}
		t1 := turn(1000, "e1", "Hi.", "Hello, how can I help?")
		t2 := turn(3000, "e2", "Hours?", "Nine to five.")
		t3 := turn(5000, "e3", "Thanks.", "You're welcome.")

		// Turn 1 was answered by a replica that could not reach the store; turn 2 was
		// committed by another replica once the store was back; then turn 1's retried commit
		// lands, twice (the first attempt timed out after the store had applied it).
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e2"), nil, t2...))
		require.NoError(t, s.AppendEntry(ctx, "c1", "", session.Entry{Kind: session.EntryInterrupt, Text: "Hello,", At: 1500}))
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil, t1...))
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil, t1...))
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e3"), nil, t3...))

		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		cut := t1[1]
		cut.Text, cut.Interrupted = "Hello,", true
		assert.Equal(t, []session.Entry{t1[0], cut, t2[0], t2[1], t3[0], t3[1]}, st.History,
			"every turn once, in the order it began, the interrupt on the turn it cut")
		begun, err := s.BeginTurn(ctx, session.Call{ID: "c1"}, "e4", 0)
		require.NoError(t, err)
		assert.Equal(t, st.History, begun.State.History, "BeginTurn folds the same way")
	})

	t.Run("PinsAreWrittenOnce", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		st, _, err := beginTurn(s, ctx, session.Call{ID: "c1", LineID: "l1", Agent: "reception", PromptVersion: "v1"}, "e1")
		require.NoError(t, err)
		assert.Equal(t, "reception", st.Call.Agent)
		assert.Equal(t, "v1", st.Call.PromptVersion)
		assert.Equal(t, "l1", st.Call.LineID)

		// A prompt edited mid-call: later turns and events must not move the call to it.
		st, _, err = beginTurn(s, ctx, session.Call{ID: "c1", LineID: "l2", Agent: "orders", PromptVersion: "v2"}, "e2")
		require.NoError(t, err)
		assert.Equal(t, "v1", st.Call.PromptVersion, "BeginTurn keeps the first pin")
		assert.Equal(t, "l1", st.Call.LineID, "BeginTurn only fills blanks")
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "c1", Status: "ended", PromptVersion: "v3", Agent: "x"}))
		st, err = s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, "reception", st.Call.Agent, "UpdateCall keeps the first pin")
		assert.Equal(t, "v1", st.Call.PromptVersion)
		assert.Equal(t, "ended", st.Call.Status, "other fields still merge")

		// call_started pins first; the first turn then finds the pin.
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "c2", Agent: "orders", PromptVersion: "v7", Returning: true}))
		st, _, err = beginTurn(s, ctx, session.Call{ID: "c2", Agent: "reception", PromptVersion: "v8"}, "e3")
		require.NoError(t, err)
		assert.Equal(t, "v7", st.Call.PromptVersion)
		assert.True(t, st.Call.Returning)
		assert.False(t, st.Call.StartedAt.IsZero(), "BeginTurn fills the start time")
	})

	t.Run("OwnerGuardsWrites", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		interrupt := session.Entry{Kind: session.EntryInterrupt, Text: "forged", At: 9}

		// The first event's signer owns the call.
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "b1", LineID: "lineB", Owner: "lineB", Status: "active"}))
		require.NoError(t, s.AppendEntry(ctx, "b1", "lineB", session.Entry{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "m1"}))

		// Another line's scope, and the global one, change nothing.
		for _, owner := range []string{"lineA", session.OwnerGlobal} {
			err := s.UpdateCall(ctx, session.Call{ID: "b1", LineID: "lineB", Owner: owner, Status: "ended", From: "+1555"})
			require.ErrorIs(t, err, session.ErrWrongLine, owner)
			err = s.AppendEntry(ctx, "b1", owner, interrupt)
			require.ErrorIs(t, err, session.ErrWrongLine, owner)
		}
		st, err := s.Load(ctx, "b1")
		require.NoError(t, err)
		assert.Equal(t, "lineB", st.Call.Owner)
		assert.Equal(t, "active", st.Call.Status, "a refused UpdateCall wrote nothing")
		assert.Empty(t, st.Call.From, "a refused UpdateCall wrote nothing")
		require.Len(t, st.History, 1, "a refused AppendEntry wrote nothing")

		// The owner itself, and internal writes that name no owner, go through.
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "b1", Owner: "lineB", Status: "ended"}))
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "b1", Duration: 42}))
		st, err = s.Load(ctx, "b1")
		require.NoError(t, err)
		assert.Equal(t, "ended", st.Call.Status)
		assert.Equal(t, "lineB", st.Call.Owner, "the owner is written once")

		// An interrupt about a call nobody owns yet makes its signer the owner.
		require.NoError(t, s.AppendEntry(ctx, "g1", session.OwnerGlobal, interrupt))
		err = s.UpdateCall(ctx, session.Call{ID: "g1", LineID: "lineA", Owner: "lineA", Status: "active"})
		require.ErrorIs(t, err, session.ErrWrongLine)
		st, err = s.Load(ctx, "g1")
		require.NoError(t, err)
		assert.Equal(t, session.OwnerGlobal, st.Call.Owner)
		assert.Empty(t, st.Call.LineID)

		// A turn's pin fills the owner of a call without one.
		b, err := s.BeginTurn(ctx, session.Call{ID: "t1", LineID: "lineA", Owner: "lineA"}, "", 0)
		require.NoError(t, err)
		assert.Equal(t, "lineA", b.State.Call.Owner)
		require.ErrorIs(t, s.UpdateCall(ctx, session.Call{ID: "t1", Owner: "lineB", Status: "ended"}), session.ErrWrongLine)
	})

	t.Run("OwnerRaceHasOneWinner", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				owner := fmt.Sprintf("line-%d", i)
				if i%2 == 0 {
					errs[i] = s.UpdateCall(ctx, session.Call{ID: "race", Owner: owner, Status: owner})
				} else {
					errs[i] = s.AppendEntry(ctx, "race", owner, session.Entry{Kind: session.EntryInterrupt, Text: owner, At: int64(i)})
				}
			})
		}
		wg.Wait()
		winners := 0
		for _, err := range errs {
			if err == nil {
				winners++
				continue
			}
			require.ErrorIs(t, err, session.ErrWrongLine)
		}
		assert.Equal(t, 1, winners, "the first write owns the call; every other scope is refused")
		st, err := s.Load(ctx, "race")
		require.NoError(t, err)
		if st.Call.Status != "" {
			assert.Equal(t, st.Call.Owner, st.Call.Status, "only the owner's write landed")
		}
	})

	t.Run("SeenCaller", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		seen, err := s.SeenCaller(ctx, "l1", "+14155551234", "c1")
		require.NoError(t, err)
		assert.False(t, seen, "first call")
		seen, err = s.SeenCaller(ctx, "l1", "+14155551234", "c1")
		require.NoError(t, err)
		assert.False(t, seen, "the same call asked again (a retried call_started)")
		seen, err = s.SeenCaller(ctx, "l1", "+14155551234", "c2")
		require.NoError(t, err)
		assert.True(t, seen, "second call")
		seen, err = s.SeenCaller(ctx, "l2", "+14155551234", "c3")
		require.NoError(t, err)
		assert.False(t, seen, "callers are remembered per line")
		_, err = s.SeenCaller(ctx, "l1", "", "c4")
		assert.Error(t, err, "empty number")
	})

	t.Run("SeenCallerExpires", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t, session.Options{CallerMemory: 50 * time.Millisecond}), t.Context()
		_, err := s.SeenCaller(ctx, "l1", "+1555", "c1")
		require.NoError(t, err)
		// Each look remembers the caller again, so look less often than the memory lasts.
		n := 1
		require.Eventually(t, func() bool {
			n++
			seen, err := s.SeenCaller(ctx, "l1", "+1555", fmt.Sprintf("c%d", n))
			return err == nil && !seen
		}, waitFor, 150*time.Millisecond, "forgotten after CallerMemory")
	})

	t.Run("ToolEntriesAndEndPending", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		u := session.Entry{Kind: session.EntryUser, Text: "Where is order 12345?", At: 1000, EventID: "e1"}
		tool := func(id, result string) session.Entry {
			return session.Entry{Kind: session.EntryTool, EventID: "e1", At: 1000, ToolCall: id, ToolName: "get_order_status", ToolArgs: `{"order_id":"12345"}`, Text: result}
		}
		t1, t2 := tool("call_1", `{"status":"shipped"}`), tool("call_2", `{"status":"late"}`)
		a := session.Entry{Kind: session.EntryAssistant, Text: "It shipped. Goodbye!", At: 1000, EventID: "e1", EndCall: true}
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil, u, t1, t2, a))
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, []session.Entry{u, t1, t2, a}, st.History, "two tool calls of one turn are both kept")
		assert.False(t, st.EndPending(), "the goodbye was heard in full")

		require.NoError(t, s.AppendEntry(ctx, "c1", "", session.Entry{Kind: session.EntryInterrupt, Text: "It shipped.", At: 1500}))
		st, err = s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.True(t, st.EndPending(), "the caller talked over the goodbye")

		cut := a
		cut.EventID, cut.Cut, cut.At = "e2", true, 2000
		require.NoError(t, s.CommitTurn(ctx, lease("c2", "e2"), nil, cut))
		st, err = s.Load(ctx, "c2")
		require.NoError(t, err)
		assert.True(t, st.EndPending(), "the connection closed during the goodbye")
	})

	t.Run("AppendEntry", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		e := session.Entry{Kind: session.EntryUser, Text: "hi", At: 1}
		require.NoError(t, s.AppendEntry(ctx, "c1", "", e))
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, []session.Entry{e}, st.History)
		assert.Error(t, s.AppendEntry(ctx, "", "", e), "empty call id")
	})

	t.Run("AddSMS", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		msg := session.SMS{ID: "SM1", From: "+14155551234", To: "+14155550123", Text: "Hello", At: time.UnixMilli(1711900000000)}
		require.NoError(t, s.AddSMS(ctx, "l1", msg))
		require.NoError(t, s.AddSMS(ctx, "l1", msg), "a repeat is recorded again")
		assert.Error(t, s.AddSMS(ctx, "", msg), "empty line id")
	})

	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		require.NoError(t, store(t).Ping(t.Context()))
	})

	t.Run("CopiesInAndOut", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "c1", Status: "in-progress"}))
		turn := []session.Entry{
			{Kind: session.EntryUser, Text: "hi", At: 1, EventID: "e1"},
			{Kind: session.EntryAssistant, Text: "Hello!", At: 1, EventID: "e1"},
		}
		require.NoError(t, s.CommitTurn(ctx, lease("c1", "e1"), nil, turn...))
		want, err := s.Load(ctx, "c1")
		require.NoError(t, err)

		turn[0].Text = "changed by the caller after the commit"
		st, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		st.Call.Status = "mutated"
		st.History[1].Text = "mutated"
		st.History = append(st.History, session.Entry{Kind: session.EntryUser})
		begun, _, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e2")
		require.NoError(t, err)
		begun.History[0].Text = "mutated"

		got, err := s.Load(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, want.History, got.History)
		assert.Equal(t, "in-progress", got.Call.Status)
		assert.Equal(t, "hi", got.History[0].Text)
	})

	t.Run("RetentionRefresh", func(t *testing.T) {
		t.Parallel()
		const retention = 300 * time.Millisecond
		for _, tc := range []struct {
			name  string
			write func(context.Context, session.Store) error
		}{
			{name: "UpdateCall", write: func(ctx context.Context, s session.Store) error {
				return s.UpdateCall(ctx, session.Call{ID: "c1", Direction: "inbound"})
			}},
			{name: "BeginTurn", write: func(ctx context.Context, s session.Store) error {
				_, _, err := beginTurn(s, ctx, session.Call{ID: "c1"}, "e2")
				return err
			}},
			{name: "CommitTurn", write: func(ctx context.Context, s session.Store) error {
				return s.CommitTurn(ctx, lease("c1", "e2"), nil)
			}},
			{name: "AppendEntry", write: func(ctx context.Context, s session.Store) error {
				return s.AppendEntry(ctx, "c1", "", session.Entry{Kind: session.EntryInterrupt, At: 5})
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s, ctx := newStore(t, session.Options{Retention: retention}), t.Context()
				require.NoError(t, s.UpdateCall(ctx, session.Call{ID: "c1", Status: "in-progress"}))
				require.NoError(t, s.AppendEntry(ctx, "c1", "", session.Entry{Kind: session.EntryUser, Text: "hi", At: 1}))
				created := time.Now() // both keys expire by created+retention unless refreshed

				waitUntil(t, created.Add(retention/2))
				refreshed := time.Now() // both keys live until at least refreshed+retention
				require.NoError(t, tc.write(ctx, s))

				waitUntil(t, created.Add(retention+retention/4))
				st, err := s.Load(ctx, "c1")
				if time.Since(refreshed) < retention { // otherwise this machine was too slow to tell
					require.NoError(t, err, "the write refreshed the call")
					assert.Equal(t, "in-progress", st.Call.Status, "the record was refreshed")
					assert.Len(t, st.History, 1, "the history was refreshed")
				}
				require.Eventually(t, func() bool {
					_, err := s.Load(ctx, "c1")
					return errors.Is(err, session.ErrNotFound)
				}, waitFor, 10*time.Millisecond, "the call expires after its last write")
			})
		}
	})

	t.Run("PromptVersions", func(t *testing.T) {
		t.Parallel()
		s, ctx := store(t), t.Context()
		vs, ok := s.(versionStore)
		require.True(t, ok, "%T shares prompt versions", s)

		_, err := vs.LoadVersion(ctx, "abc123def456")
		require.ErrorIs(t, err, session.ErrNotFound, "a version nobody stored")
		v := session.PromptVersion{Version: "abc123def456", Agent: "default", File: []byte("You are helpful.\n")}
		require.NoError(t, vs.SaveVersion(ctx, v))
		require.NoError(t, vs.SaveVersion(ctx, v), "saving again refreshes it")
		got, err := vs.LoadVersion(ctx, v.Version)
		require.NoError(t, err)
		assert.Equal(t, v, got)

		for _, bad := range []session.PromptVersion{
			{Version: "", Agent: "a", File: []byte("x")},
			{Version: "a{b}", Agent: "a", File: []byte("x")},
			{Version: "v", Agent: "", File: []byte("x")},
			{Version: "v", Agent: "a"},
			{Version: "v", Agent: "a", File: make([]byte, 1<<20+1)},
		} {
			assert.Error(t, vs.SaveVersion(ctx, bad), "%q/%q/%d bytes", bad.Version, bad.Agent, len(bad.File))
		}
		_, err = vs.LoadVersion(ctx, "")
		assert.Error(t, err)
		_, err = vs.LoadVersion(ctx, "x}{")
		assert.Error(t, err)
	})
}

// versionStore is what the agent needs of a store to share prompt versions.
type versionStore interface {
	SaveVersion(ctx context.Context, v session.PromptVersion) error
	LoadVersion(ctx context.Context, version string) (session.PromptVersion, error)
}

// beginTurn is BeginTurn with the whole history, reporting whether the delivery answers a
// new turn.
func beginTurn(s session.Store, ctx context.Context, c session.Call, eventID string) (session.State, bool, error) {
	b, err := s.BeginTurn(ctx, c, eventID, 0)
	return b.State, b.Status == session.TurnClaimed, err
}

// turnRef names the turn of event on call, on no line.
func turnRef(call, event string) session.TurnRef { return session.TurnRef{Call: call, Event: event} }

// lease is an unchecked lease (no token) on the turn of event on call.
func lease(call, event string) session.Lease { return session.Lease{Ref: turnRef(call, event)} }

// waitUntil blocks until deadline, or fails t when its context ends first.
func waitUntil(t *testing.T, deadline time.Time) {
	t.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatal("test ended while waiting")
	}
}

// follower runs FollowTurn in a goroutine that the test owns: the test waits for it with wait,
// or its context (at the latest t.Context) ends it.
type follower struct {
	got      []string // read only after wait returns
	progress chan string
	done     chan error
}

// follow starts following ref in s.
func follow(ctx context.Context, s session.Store, ref session.TurnRef) *follower {
	f := &follower{progress: make(chan string, 64), done: make(chan error, 1)}
	go func() {
		f.done <- s.FollowTurn(ctx, ref, func(text string) error {
			f.got = append(f.got, text)
			f.progress <- text
			return nil
		})
	}()
	return f
}

// next returns the next line the follower gets.
func (f *follower) next(t *testing.T) string {
	t.Helper()
	select {
	case line := <-f.progress:
		return line
	case <-time.After(waitFor):
		t.Fatal("follower got no line")
		return ""
	}
}

// wait returns what FollowTurn returned.
func (f *follower) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.done:
		return err
	case <-time.After(waitFor):
		t.Fatal("follower did not return")
		return nil
	}
}

func TestFold(t *testing.T) {
	t.Parallel()
	user := func(at int64, ev, text string) session.Entry {
		return session.Entry{Kind: session.EntryUser, Text: text, At: at, EventID: ev}
	}
	answer := func(at int64, ev, text string) session.Entry {
		return session.Entry{Kind: session.EntryAssistant, Text: text, At: at, EventID: ev}
	}
	cut := func(e session.Entry, text string) session.Entry {
		e.Text, e.Interrupted = text, true
		return e
	}
	interrupt := func(at int64, text string) session.Entry {
		return session.Entry{Kind: session.EntryInterrupt, Text: text, At: at}
	}
	ref := func(e session.Entry, eventID string) session.Entry {
		e.Ref = eventID
		return e
	}
	es := func(e ...session.Entry) []session.Entry { return e }
	u1, a1 := user(1000, "e1", "Hi."), answer(1000, "e1", "Hello, how can I help?")
	u2, a2 := user(3000, "e2", "Hours?"), answer(3000, "e2", "Nine to five.")

	tests := []struct {
		name string
		log  []session.Entry
		want []session.Entry
	}{
		{name: "empty", log: nil, want: []session.Entry{}},
		{name: "in order", log: es(u1, a1, u2, a2), want: es(u1, a1, u2, a2)},
		{name: "repeated event kept once", log: es(u1, a1, u1, a1, u2), want: es(u1, a1, u2)},
		{
			name: "entries without event id are all kept",
			log:  es(user(1, "", "yes"), user(2, "", "yes")),
			want: es(user(1, "", "yes"), user(2, "", "yes")),
		},
		{
			name: "interrupt cuts the turn it falls in",
			log:  es(u1, a1, u2, a2, interrupt(1500, "Hello,")),
			want: es(u1, cut(a1, "Hello,"), u2, a2),
		},
		{
			name: "interrupt before its turn in the log",
			log:  es(u1, a1, interrupt(3200, "Nine"), u2, a2),
			want: es(u1, a1, u2, cut(a2, "Nine")),
		},
		{
			name: "interrupt at the turn's start",
			log:  es(u1, a1, interrupt(1000, "")),
			want: es(u1, cut(a1, "")),
		},
		{
			name: "interrupt before every answer",
			log:  es(interrupt(500, "x"), u1, a1),
			want: es(u1, a1),
		},
		{
			name: "shorter duplicate interrupt wins",
			log:  es(u1, a1, interrupt(1500, "Hello, how"), interrupt(1500, "Hello,")),
			want: es(u1, cut(a1, "Hello,")),
		},
		{
			name: "longer late interrupt ignored",
			log:  es(u1, a1, interrupt(1500, "Hello,"), interrupt(1600, "Hello, how")),
			want: es(u1, cut(a1, "Hello,")),
		},
		{
			name: "a turn written late goes back to where it began",
			log:  es(u2, a2, u1, a1),
			want: es(u1, a1, u2, a2),
		},
		{
			name: "a commit retried after it was applied is kept once, in place",
			log:  es(u1, a1, u2, a2, u1, a1),
			want: es(u1, a1, u2, a2),
		},
		{
			name: "a late turn keeps its own entries in order",
			log: es(u2, a2, u1,
				session.Entry{Kind: session.EntryTool, EventID: "e1", At: 1000, ToolCall: "c1", Text: "{}"}, a1),
			want: es(u1, session.Entry{Kind: session.EntryTool, EventID: "e1", At: 1000, ToolCall: "c1", Text: "{}"}, a1, u2, a2),
		},
		{
			name: "an interrupt finds a turn written late",
			log:  es(u2, a2, interrupt(1500, "Hello,"), u1, a1),
			want: es(u1, cut(a1, "Hello,"), u2, a2),
		},
		{
			name: "turns that began in the same millisecond keep log order",
			log:  es(user(5, "x", "first"), user(5, "y", "second")),
			want: es(user(5, "x", "first"), user(5, "y", "second")),
		},
		{
			// Issue 8 §4: an interrupted event stamped an hour ahead rewrote the newest answer.
			name: "interrupt far after every answer cuts nothing",
			log:  es(u1, a1, u2, a2, interrupt(3000+time.Hour.Milliseconds(), "Forged.")),
			want: es(u1, a1, u2, a2),
		},
		{
			name: "interrupt at the end of the window still cuts",
			log:  es(u1, a1, u2, a2, interrupt(3000+session.MaxInterruptLag.Milliseconds(), "Nine")),
			want: es(u1, a1, u2, cut(a2, "Nine")),
		},
		{
			name: "interrupt naming its message cuts that answer whatever its time",
			log:  es(u1, a1, u2, a2, ref(interrupt(3000+time.Hour.Milliseconds(), "Hello,"), "e1")),
			want: es(u1, cut(a1, "Hello,"), u2, a2),
		},
		{
			name: "interrupt naming its message before the answer is in the log",
			log:  es(u1, ref(interrupt(900, "Nine"), "e2"), a1, u2, a2),
			want: es(u1, a1, u2, cut(a2, "Nine")),
		},
		{
			name: "interrupt naming an unknown message cuts nothing",
			log:  es(u1, a1, ref(interrupt(1500, "Hello,"), "e9")),
			want: es(u1, a1),
		},
		{
			name: "unknown kind ignored",
			log:  es(u1, session.Entry{Kind: "summary_v9", Text: "x", At: 1000}, a1),
			want: es(u1, a1),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := append([]session.Entry(nil), tc.log...)
			assert.Equal(t, tc.want, session.Fold(log))
			assert.Equal(t, tc.log, log, "Fold leaves its input alone")
		})
	}
}
