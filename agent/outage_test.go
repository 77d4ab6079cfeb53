package agent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// errStoreDown is what the flaky store answers while it is down.
var errStoreDown = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

// flaky is a real MemoryStore that can be taken down, as Redis is in an outage, and can apply
// a commit and still report it failed, as a Redis that times out after it applied a command.
type flaky struct {
	*session.MemoryStore
	mu          sync.Mutex
	down        bool
	appliedLost map[string]bool // calls whose next commit is applied and then reported failed
	commits     []string        // event id of each commit the store applied, in order
}

func newFlaky() *flaky { return &flaky{MemoryStore: session.NewMemoryStore(session.Options{})} }

func (f *flaky) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *flaky) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *flaky) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commits...)
}

func (f *flaky) BeginTurn(ctx context.Context, c session.Call, eventID string, tail int) (session.Begun, error) {
	if f.isDown() {
		return session.Begun{}, errStoreDown
	}
	return f.MemoryStore.BeginTurn(ctx, c, eventID, tail)
}

func (f *flaky) AppendLines(ctx context.Context, l session.Lease, lines ...string) error {
	if f.isDown() {
		return errStoreDown
	}
	return f.MemoryStore.AppendLines(ctx, l, lines...)
}

func (f *flaky) CommitTurn(ctx context.Context, l session.Lease, lines []string, entries ...session.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errStoreDown
	}
	if err := f.MemoryStore.CommitTurn(ctx, l, lines, entries...); err != nil {
		return err
	}
	callID, eventID := l.Ref.Call, l.Ref.Event
	id := eventID
	if id == "" && len(entries) > 0 {
		id = entries[0].EventID
	}
	f.commits = append(f.commits, id)
	if f.appliedLost[callID] {
		delete(f.appliedLost, callID)
		return context.DeadlineExceeded
	}
	return nil
}

func (f *flaky) UpdateCall(ctx context.Context, c session.Call) error {
	if f.isDown() {
		return errStoreDown
	}
	return f.MemoryStore.UpdateCall(ctx, c)
}

func (f *flaky) AppendEntry(ctx context.Context, callID, owner string, e session.Entry) error {
	if f.isDown() {
		return errStoreDown
	}
	return f.MemoryStore.AppendEntry(ctx, callID, owner, e)
}

// outageRig is an agent on a flaky store, with its log observed.
type outageRig struct {
	store *flaky
	llm   *scripted
	agent *agent.Agent
	logs  *observer.ObservedLogs
	stats []agent.TurnStats
	mu    sync.Mutex
}

// newOutageRig returns an agent on a flaky store whose model answers every message with
// reply.
func newOutageRig(t *testing.T, cfg agent.Config) *outageRig {
	t.Helper()
	lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
	require.NoError(t, err)
	r := &outageRig{store: newFlaky()}
	r.llm = newScripted(map[string][]step{"primary": say(reply, 50*time.Millisecond, 5*time.Millisecond)})
	core, logs := observer.New(zapcore.InfoLevel)
	r.logs = logs
	cfg.Model = "primary"
	cfg.OnTurn = func(s agent.TurnStats) {
		r.mu.Lock()
		r.stats = append(r.stats, s)
		r.mu.Unlock()
	}
	r.agent = agent.New(cfg, agent.Deps{Primary: r.llm, Store: r.store, Prompts: lib, Log: zap.New(core)})
	return r
}

func (r *outageRig) turn(t *testing.T, ev agent.Event) agent.TurnStats {
	t.Helper()
	var heard []string
	_ = r.agent.Respond(t.Context(), ev, func(c agent.Chunk) error {
		heard = append(heard, c.Text)
		return nil
	})
	require.NotEmpty(t, heard, "every message is answered")
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats[len(r.stats)-1]
}

// said lists the history as kind and text.
func said(hist []session.Entry) []string {
	var out []string
	for _, e := range hist {
		out = append(out, e.Kind+": "+e.Text)
	}
	return out
}

const reply = "Sure, I can help with that."

func TestOutageTurnsKeptAndWrittenInOrderWhenStoreReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{})
		st := r.turn(t, message("c1", "e1", "Hi, I need a cleaning."))
		assert.False(t, st.Pending, "the store was up")

		r.store.setDown(true)
		st = r.turn(t, message("c1", "e2", "Is Tuesday free?"))
		assert.True(t, st.Degraded)
		assert.NotEmpty(t, st.StoreError, "the failure is on the turn line")
		assert.True(t, st.Pending, "the commit failed: kept for the store")
		time.Sleep(time.Second) // the caller speaks again; the retrier keeps failing meanwhile
		st = r.turn(t, message("c1", "e3", "In the morning, please."))
		assert.Equal(t, 2, st.Turn, "the turn kept in memory counts, although the store is down")
		reqs := r.llm.requests()
		require.Len(t, reqs, 3)
		assert.Equal(t, []agent.Message{
			{Role: "user", Text: "Is Tuesday free?"}, {Role: "assistant", Text: reply},
			{Role: "user", Text: "In the morning, please."},
		}, reqs[2].Messages[1:], "the next turn sees the kept turn (and nothing of the store's)")
		assert.Equal(t, 2, r.agent.Pending().Turns)

		r.store.setDown(false)
		time.Sleep(10 * time.Second) // past the longest backoff: the retrier's next round
		synctest.Wait()
		assert.Equal(t, agent.PendingStats{Written: 2}, r.agent.Pending(), "both kept turns written; nothing left or lost")
		assert.Equal(t, []string{"e1", "e2", "e3"}, r.store.applied(), "in the order they were answered")
		assert.Equal(t, []string{
			"user: Hi, I need a cleaning.", "assistant: " + reply,
			"user: Is Tuesday free?", "assistant: " + reply,
			"user: In the morning, please.", "assistant: " + reply,
		}, said(history(t, r.store, "c1")))
		assert.Equal(t, 2, r.logs.FilterMessage("pending turn written").Len())
		assert.Zero(t, r.logs.FilterMessage("turn lost").Len())
	})
}

func TestOutageNextTurnWritesKeptTurnsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{})
		r.store.setDown(true)
		r.turn(t, message("c1", "e1", "One."))
		r.turn(t, message("c1", "e2", "Two."))
		r.store.setDown(false)
		// The call's next turn commits while the kept turns may still wait for the retrier's
		// next round: whichever writes them, they go in first.
		st := r.turn(t, message("c1", "e3", "Three."))
		assert.False(t, st.Pending)
		assert.Equal(t, []string{"e1", "e2", "e3"}, r.store.applied())
		assert.Equal(t, []string{
			"user: One.", "assistant: " + reply, "user: Two.", "assistant: " + reply, "user: Three.", "assistant: " + reply,
		}, said(history(t, r.store, "c1")))
		assert.Zero(t, r.agent.Pending().Turns)
	})
}

func TestOutageTurnWrittenLateByAnotherReplicaLandsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Two replicas on one store; replica A loses it (a partition) while B keeps it.
		a := newOutageRig(t, agent.Config{})
		b := newOutageRig(t, agent.Config{})
		b.store.MemoryStore = a.store.MemoryStore
		a.turn(t, message("c1", "e1", "One."))
		a.store.setDown(true)
		a.turn(t, message("c1", "e2", "Two."))   // answered by A, kept for the store
		time.Sleep(time.Second)                  // the caller speaks again
		b.turn(t, message("c1", "e3", "Three.")) // answered and written by B first
		a.store.setDown(false)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"e3"}, b.store.applied())
		assert.Equal(t, []string{"e1", "e2"}, a.store.applied(), "A wrote its kept turn after B's")
		assert.Equal(t, []string{
			"user: One.", "assistant: " + reply, "user: Two.", "assistant: " + reply, "user: Three.", "assistant: " + reply,
		}, said(history(t, a.store, "c1")), "the history is in the order the caller spoke")
	})
}

func TestOutageCommitAppliedThenTimedOutIsWrittenOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{})
		r.store.appliedLost = map[string]bool{"c1": true, "c2": true} // Redis applied the commit, but its answer never came back
		st := r.turn(t, message("c1", "e1", "Hello?"))
		assert.True(t, st.Pending)
		noID := message("c2", "", "Are you there?")
		noID.Timestamp = noID.Delivery.ReceivedAt.UnixMilli()
		st = r.turn(t, noID)
		assert.True(t, st.Pending)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		writes := map[string]int{}
		for _, id := range r.store.applied() {
			writes[id]++
		}
		require.Len(t, writes, 2, "%v", writes)
		// The retry of e1 finds its turn's claim closed by the write that went through, and
		// writes nothing (session.ErrLeaseLost); a turn without event_id has no claim, so its
		// retry is written again, under the same synthetic id, and Fold keeps it once.
		assert.Equal(t, 1, writes["e1"], "the applied write closed the turn: the retry is fenced out")
		delete(writes, "e1")
		for id, n := range writes {
			assert.Regexp(t, "^syn-", id, "a message without event_id gets a synthetic id")
			assert.Equal(t, 2, n, "written twice, under the same id")
		}
		assert.Equal(t, []string{"user: Hello?", "assistant: " + reply}, said(history(t, r.store, "c1")), "once")
		assert.Equal(t, []string{"user: Are you there?", "assistant: " + reply}, said(history(t, r.store, "c2")), "once")
		assert.Equal(t, agent.PendingStats{Written: 2}, r.agent.Pending())
	})
}

func TestOutageTurnsPastRetentionAreLostAndLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{PendingRetention: time.Minute})
		r.store.setDown(true)
		r.turn(t, message("c1", "e1", "One."))
		time.Sleep(30 * time.Second)
		r.turn(t, message("c1", "e2", "Two."))
		time.Sleep(45 * time.Second)
		synctest.Wait()
		assert.Equal(t, agent.PendingStats{Turns: 1, Bytes: r.agent.Pending().Bytes, Lost: 1}, r.agent.Pending())
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, agent.PendingStats{Lost: 2}, r.agent.Pending())
		lost := r.logs.FilterMessage("turn lost").All()
		require.Len(t, lost, 2, "each lost turn logged once")
		for i, e := range lost {
			assert.Equal(t, zapcore.ErrorLevel, e.Level)
			fields := e.ContextMap()
			assert.Equal(t, "c1", fields["call_id"])
			assert.Equal(t, []string{"e1", "e2"}[i], fields["event_id"])
			assert.Equal(t, "retention", fields["reason"])
			assert.EqualValues(t, i+1, fields["lost_total"])
			assert.GreaterOrEqual(t, fields["pending_ms"], int64(60_000))
		}
		r.store.setDown(false)
		_, err := r.store.Load(t.Context(), "c1")
		assert.ErrorIs(t, err, session.ErrNotFound, "nothing was written")
	})
}

func TestOutageMemoryBoundDropsTheOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{PendingTurns: 2})
		r.store.setDown(true)
		for _, m := range [][3]string{{"c1", "e1", "One."}, {"c2", "f1", "Uno."}, {"c1", "e2", "Two."}} {
			r.turn(t, message(m[0], m[1], m[2]))
			time.Sleep(time.Second)
		}
		lost := r.logs.FilterMessage("turn lost").All()
		require.Len(t, lost, 1)
		assert.Equal(t, "e1", lost[0].ContextMap()["event_id"])
		assert.Equal(t, "memory", lost[0].ContextMap()["reason"])
		assert.Equal(t, 2, r.agent.Pending().Turns)

		r.store.setDown(false)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, []string{"user: Two.", "assistant: " + reply}, said(history(t, r.store, "c1")))
		assert.Equal(t, []string{"user: Uno.", "assistant: " + reply}, said(history(t, r.store, "c2")))
	})
}

func TestOutageCloseWritesWhatIsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{})
		r.store.setDown(true)
		r.turn(t, message("c1", "e1", "One."))
		r.turn(t, message("c2", "f1", "Uno."))
		// Shutdown: the store comes back while the brain drains.
		time.AfterFunc(3*time.Second, func() { r.store.setDown(false) })
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		r.agent.Close(ctx)
		assert.Less(t, time.Since(start), 10*time.Second, "written as soon as the store is back")
		assert.Equal(t, agent.PendingStats{Written: 2}, r.agent.Pending())
		assert.Len(t, history(t, r.store, "c1"), 2)
		assert.Len(t, history(t, r.store, "c2"), 2)
		assert.Equal(t, 1, r.logs.FilterMessage("pending turns written before exit").Len())
	})
}

func TestOutageCloseLogsWhatIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newOutageRig(t, agent.Config{})
		r.store.setDown(true)
		r.turn(t, message("c1", "e1", "One."))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		r.agent.Close(ctx)
		assert.Equal(t, agent.PendingStats{Lost: 1}, r.agent.Pending())
		lost := r.logs.FilterMessage("turn lost").All()
		require.Len(t, lost, 1)
		assert.Equal(t, "shutdown", lost[0].ContextMap()["reason"])
		assert.Equal(t, "e1", lost[0].ContextMap()["event_id"])
		left := r.logs.FilterMessage("pending turns left unwritten at exit").All()
		require.Len(t, left, 1)
		assert.EqualValues(t, 1, left[0].ContextMap()["turns"])
	})
}

func TestOutageEventsNotRecordedAreErrors(t *testing.T) {
	t.Parallel()
	r := newOutageRig(t, agent.Config{})
	r.store.setDown(true)
	for _, kind := range []string{agent.EventCallStarted, agent.EventCallEnded, agent.EventInterrupted} {
		err := r.agent.Record(t.Context(), agent.Event{Kind: kind, ID: "x-" + kind, CallID: "c1", LineID: "line-1"})
		assert.ErrorIs(t, err, errStoreDown, "%s is refused, so the sender retries it (503)", kind)
	}
	assert.Zero(t, r.agent.Pending().Turns, "only turns are kept for the store")
}
