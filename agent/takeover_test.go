package agent_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// newLeaseHarness is a harness whose store and agent share one turn lease.
func newLeaseHarness(t *testing.T, llm agent.LLM, lease time.Duration) *harness {
	t.Helper()
	lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
	require.NoError(t, err)
	h := &harness{t: t, store: session.NewMemoryStore(session.Options{TurnLease: lease})}
	cfg := agent.Config{Model: "primary", TurnLease: lease, OnTurn: func(s agent.TurnStats) {
		h.mu.Lock()
		h.stats = append(h.stats, s)
		h.mu.Unlock()
	}}
	h.agent = agent.New(cfg, agent.Deps{Primary: llm, Store: h.store, Prompts: lib})
	return h
}

// deadOwner claims the turn of ev as a replica would, logs what it said and the tool calls
// it finished, and then stops, as a replica killed mid-answer does: it never renews again.
func deadOwner(t *testing.T, s session.Store, ev agent.Event, lines []string, tools ...session.Entry) session.Lease {
	t.Helper()
	b, err := s.BeginTurn(t.Context(), session.Call{ID: ev.CallID, LineID: ev.LineID}, ev.ID, 0)
	require.NoError(t, err)
	require.Equal(t, session.TurnClaimed, b.Status)
	if len(tools) > 0 {
		require.NoError(t, s.AppendTools(t.Context(), b.Lease, tools...))
	}
	require.NoError(t, s.AppendLines(t.Context(), b.Lease, lines...))
	return b.Lease
}

func TestRetryTakesOverATurnWhoseOwnerDied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		cont := "We also have Friday at noon. Which one works for you?"
		llm := newRounds(say(cont, 300*time.Millisecond, 20*time.Millisecond))
		h := newLeaseHarness(t, llm, lease)
		ev := message("c1", "e1", "When can I come in?")
		heardBefore := []string{"Sure, let me look.", "We have Tuesday at three."}
		tool := session.Entry{Kind: session.EntryTool, EventID: "e1", At: ev.Delivery.ReceivedAt.UnixMilli(),
			ToolCall: "call_a", ToolName: "calendar", ToolArgs: `{"week":"next"}`, Text: `{"free":["Tue 3pm","Fri 12pm"]}`}
		dead := deadOwner(t, h.store, ev, heardBefore, tool)

		retry := ev
		retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
		got := h.respond(t.Context(), retry)

		ts := texts(got)
		require.Greater(t, len(ts), 2, "%q", ts)
		assert.Equal(t, heardBefore, ts[:2], "the retry first says what the caller already heard")
		assert.Equal(t, cont, strings.Join(ts[2:], " "), "then the model continues")
		assert.LessOrEqual(t, got[2].at-got[1].at, lease+time.Second,
			"the turn is taken over once the lease lapses (fake clock)")

		reqs := llm.requests()
		require.Len(t, reqs, 1, "one model request: the continuation")
		msgs := reqs[0].Messages
		require.GreaterOrEqual(t, len(msgs), 6)
		assert.Equal(t, agent.Message{Role: "user", Text: "When can I come in?"}, msgs[1])
		assert.Equal(t, []agent.ToolCall{{ID: "call_a", Name: "calendar", Args: `{"week":"next"}`}}, msgs[2].ToolCalls,
			"the tool call the owner finished is in the request, not run again")
		assert.Equal(t, agent.Message{Role: "tool", ToolCallID: "call_a", Text: tool.Text}, msgs[3])
		assert.Equal(t, agent.Message{Role: "assistant", Text: strings.Join(heardBefore, " ")}, msgs[4], "what the caller heard")
		assert.Equal(t, "system", msgs[5].Role, "then the instruction to continue")

		st := h.lastStats()
		assert.True(t, st.TakenOver)
		assert.Equal(t, agent.OutcomeAnswered, st.Outcome)
		want := []session.Entry{
			{Kind: session.EntryUser, Text: ev.Text, At: ev.Delivery.ReceivedAt.UnixMilli(), EventID: "e1"},
			tool,
			{Kind: session.EntryAssistant, Text: strings.Join(append(heardBefore, cont), " "), At: ev.Delivery.ReceivedAt.UnixMilli(), EventID: "e1"},
		}
		assert.Equal(t, want, history(t, h.store, "c1"), "the turn is recorded once, every word the caller heard in it")

		// The dead owner, come back, cannot record it again.
		require.ErrorIs(t, h.store.CommitTurn(t.Context(), dead, nil, want...), session.ErrLeaseLost)
		assert.Equal(t, want, history(t, h.store, "c1"))

		// A later retry of the event replays the whole answer.
		again := ev
		again.Delivery = agent.Delivery{ID: "d-again", ReceivedAt: time.Now()}
		assert.Equal(t, ts, texts(h.respond(t.Context(), again)))
		assert.Len(t, llm.requests(), 1)
	})
}

func TestRetryAfterTheLeaseLapsedContinuesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		llm := newRounds(say("And Friday too.", 0, 0))
		h := newLeaseHarness(t, llm, lease)
		ev := message("c1", "e1", "When can I come in?")
		deadOwner(t, h.store, ev, []string{"We have Tuesday."})
		time.Sleep(lease + time.Millisecond) // the fake clock: the owner has been gone a while

		retry := ev
		retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
		got := h.respond(t.Context(), retry)
		assert.Equal(t, []string{"We have Tuesday.", "And Friday too."}, texts(got))
		assert.Zero(t, got[1].at, "nothing to wait for (fake clock)")
		assert.Equal(t, "We have Tuesday. And Friday too.", history(t, h.store, "c1")[1].Text)
	})
}

func TestLiveOwnerIsNeverTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		// The model pauses for far longer than the lease in the middle of its answer: the
		// owner renews its lease with nothing to write.
		steps := say("Sure, let me check.", 0, 10*time.Millisecond)
		steps = append(steps, say(" It is free.", 5*time.Second, 10*time.Millisecond)...)
		llm := newRounds(steps)
		h := newLeaseHarness(t, llm, lease)
		ev := message("c1", "e1", "Is Tuesday free?")

		var first []heard
		var wg sync.WaitGroup
		wg.Go(func() { first = h.respond(t.Context(), ev) })
		time.Sleep(500 * time.Millisecond) // the first line is out
		retry := ev
		retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
		second := h.respond(t.Context(), retry)
		wg.Wait()

		assert.Equal(t, texts(first), texts(second), "the retry replays the live owner's answer")
		assert.Len(t, llm.requests(), 1, "the model is asked once")
		for _, st := range h.stats {
			assert.False(t, st.TakenOver)
		}
		require.Len(t, history(t, h.store, "c1"), 2, "recorded once")
	})
}

func TestEventIDReusedOnAnotherCallGetsItsOwnAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(say("Your table is booked.", 0, 0), say("We close at five.", 0, 0))
		h := newLeaseHarness(t, llm, 2*time.Second)
		first := texts(h.respond(t.Context(), message("c1", "e1", "Book a table.")))
		// Another call (a client bug, or someone probing) sends the same event id.
		other := texts(h.respond(t.Context(), message("c2", "e1", "When do you close?")))

		assert.Equal(t, []string{"Your table is booked."}, first)
		assert.Equal(t, []string{"We close at five."}, other, "its own answer, not call c1's replay")
		assert.Len(t, llm.requests(), 2)
		require.Len(t, history(t, h.store, "c2"), 2)
		assert.Equal(t, "We close at five.", history(t, h.store, "c2")[1].Text)
	})
}

func TestTakeOverKeepsToolIndicesAndRunsNothingTwice(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const lease = 200 * time.Millisecond
		tool := newToolServer(t)
		dir := promptDir(t, map[string]string{"default.md": fmt.Sprintf(ordersAgent, tool.URL, "2s")})
		lib, err := prompts.NewLive(dir, zap.NewNop())
		require.NoError(t, err)
		store := session.NewMemoryStore(session.Options{TurnLease: lease})
		// The continuation: the model asks about a second order (the first one's lookup is in the
		// request already), then answers.
		llm := newRounds(
			[]step{call("call_b", "get_order_status", `{"order_id":"777"}`)},
			say("And order 777 arrives Friday.", 0, 0),
		)
		a := agent.New(agent.Config{Model: "primary", TurnLease: lease}, agent.Deps{Primary: llm, Store: store, Prompts: lib, HTTP: tool.client})

		ev := message("c1", "e1", "Where are orders 12345 and 777?")
		done := session.Entry{Kind: session.EntryTool, EventID: "e1", At: ev.Delivery.ReceivedAt.UnixMilli(),
			ToolCall: "call_a", ToolName: "get_order_status", ToolArgs: `{"order_id":"12345"}`, Text: `{"status":"shipped"}`}
		deadOwner(t, store, ev, []string{"Let me look that up.", "Order 12345 has shipped."}, done)

		retry := ev
		retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
		var heard []string
		require.NoError(t, a.Respond(t.Context(), retry, func(c agent.Chunk) error {
			heard = append(heard, c.Text)
			return nil
		}))
		assert.Equal(t, []string{"Let me look that up.", "Order 12345 has shipped."}, heard[:2])
		assert.Contains(t, strings.Join(heard[2:], " "), "And order 777 arrives Friday.")

		calls := tool.requests()
		require.Len(t, calls, 1, "the dead owner's finished call is not run again")
		assert.Equal(t, "c1:e1:1", calls[0].key, "the next call takes the next index, as the owner's would have")
		st, err := store.Load(t.Context(), "c1")
		require.NoError(t, err)
		var ids []string
		for _, e := range st.History {
			if e.Kind == session.EntryTool {
				ids = append(ids, e.ToolCall)
			}
		}
		assert.Equal(t, []string{"call_a", "call_b"}, ids, "both calls in the history, once each")
	})
}

// partition is a real store that the replica cannot reach for turn-log writes while down.
type partition struct {
	session.Store
	down atomic.Bool
}

var errPartition = errors.New("i/o timeout")

func (p *partition) AppendLines(ctx context.Context, l session.Lease, lines ...string) error {
	if p.down.Load() {
		return errPartition
	}
	return p.Store.AppendLines(ctx, l, lines...)
}

func (p *partition) CommitTurn(ctx context.Context, l session.Lease, lines []string, entries ...session.Entry) error {
	if p.down.Load() {
		return errPartition
	}
	return p.Store.CommitTurn(ctx, l, lines, entries...)
}

func TestOwnerCutOffLongerThanTheLeaseStopsAndRecordsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		mem := session.NewMemoryStore(session.Options{TurnLease: lease})
		store := &partition{Store: mem}
		lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
		require.NoError(t, err)
		steps := say("Sure, let me check that for you.", 0, 10*time.Millisecond)
		steps = append(steps, say(" We have Tuesday, Wednesday, Thursday and Friday next week, all morning.", 300*time.Millisecond, 300*time.Millisecond)...)
		var stats []agent.TurnStats
		a := agent.New(agent.Config{Model: "primary", TurnLease: lease, OnTurn: func(s agent.TurnStats) { stats = append(stats, s) }},
			agent.Deps{Primary: newRounds(steps), Store: store, Prompts: lib})
		ev := message("c1", "e1", "When are you free?")

		var heard []string
		done := make(chan error, 1)
		go func() {
			done <- a.Respond(t.Context(), ev, func(c agent.Chunk) error {
				heard = append(heard, c.Text)
				return nil
			})
		}()
		time.Sleep(100 * time.Millisecond) // the first line is out and logged
		synctest.Wait()
		store.down.Store(true) // the replica loses Redis; its lease lapses
		time.Sleep(lease + 100*time.Millisecond)
		to, err := mem.TakeOver(t.Context(), session.TurnRef{Line: ev.LineID, Call: "c1", Event: "e1"})
		require.NoError(t, err)
		require.True(t, to.Taken(), "a retry on another replica takes the turn over")
		store.down.Store(false) // Redis is back for the cut-off replica

		require.ErrorContains(t, <-done, "took the turn over")
		require.Len(t, stats, 1)
		assert.Equal(t, agent.OutcomeCut, stats[0].Outcome)
		assert.Equal(t, "lease_lost", stats[0].Budget)
		assert.NotContains(t, strings.Join(heard, " "), "all morning", "it stopped at its next write, not at the end of the answer")
		assert.Empty(t, history(t, mem, "c1"), "it recorded nothing: the turn is the other delivery's to record")
	})
}

// logTally is a store that counts the turn-log writes a turn makes, and the lines each
// carries (issue 10 §2: the last lines ride on the commit).
type logTally struct {
	session.Store
	mu          sync.Mutex
	appends     [][]string // the lines of each AppendLines, renewals (no lines) included
	commitLines []string
}

func (s *logTally) AppendLines(ctx context.Context, l session.Lease, lines ...string) error {
	s.mu.Lock()
	s.appends = append(s.appends, lines)
	s.mu.Unlock()
	return s.Store.AppendLines(ctx, l, lines...)
}

func (s *logTally) CommitTurn(ctx context.Context, l session.Lease, lines []string, entries ...session.Entry) error {
	s.mu.Lock()
	s.commitLines = append(s.commitLines, lines...)
	s.mu.Unlock()
	return s.Store.CommitTurn(ctx, l, lines, entries...)
}

// TestCommitCarriesTheAnswersLastLine: every line but the last goes to the turn log as it is
// spoken (a replica killed after it must not lose it); the last one, spoken in the step that
// ends the turn, goes in with the commit, which closes the log in the same round trip. A
// retry afterwards replays all of them.
func TestCommitCarriesTheAnswersLastLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		llm := newRounds(say("Sure, I can look at that for you. We have openings on Tuesday. Which one would you prefer?", 0, 20*time.Millisecond))
		mem := session.NewMemoryStore(session.Options{TurnLease: lease})
		tally := &logTally{Store: mem}
		lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
		require.NoError(t, err)
		a := agent.New(agent.Config{Model: "primary", TurnLease: lease}, agent.Deps{Primary: llm, Store: tally, Prompts: lib})
		h := &harness{t: t, store: mem, agent: a}
		ev := message("c1", "e1", "When can I come in?")
		answer := texts(h.respond(t.Context(), ev))
		require.Len(t, answer, 3)

		var logged []string
		for _, lines := range tally.appends {
			logged = append(logged, lines...)
		}
		assert.Equal(t, answer[:2], logged, "the lines before the last, as they were spoken")
		assert.Len(t, tally.appends, 2, "one write per line while streaming, no renewal needed")
		assert.Equal(t, answer[2:], tally.commitLines, "the last line rides on the commit")

		retry := ev
		retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
		assert.Equal(t, answer, texts(h.respond(t.Context(), retry)), "a retry replays the whole answer")
		assert.Len(t, llm.requests(), 1)
	})
}

// lostReply is a store whose first BeginTurnOnce/BeginTurn is applied but whose reply is lost:
// the claim is taken, and the caller gets a timeout (with the lease it was attempted with).
type lostReply struct {
	session.Store
	lost atomic.Bool
}

var errReplyLost = errors.New("i/o timeout")

func (s *lostReply) BeginTurn(ctx context.Context, c session.Call, eventID string, tail int) (session.Begun, error) {
	b, err := s.Store.BeginTurn(ctx, c, eventID, tail)
	if err == nil && s.lost.CompareAndSwap(false, true) {
		return session.Begun{Lease: b.Lease}, errReplyLost
	}
	return b, err
}

// TestClaimWhoseReplyWasLostIsStillHeld: a turn whose claim the store took but whose reply
// was lost answers without the store's state, yet holds the claim: it renews it, so a retry
// during a long answer follows it instead of answering the event a second time.
func TestClaimWhoseReplyWasLostIsStillHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var store *lostReply
		r := retryDuringLongAnswer(t, func(mem session.Store) session.Store {
			store = &lostReply{Store: mem}
			return store
		}, 3*time.Second) // past the lease: only renewals keep the claim

		require.True(t, store.lost.Load())
		assert.Equal(t, texts(r.first), texts(r.second), "the retry replays the owner's answer")
		assert.Len(t, r.llm.requests(), 1, "the model is asked once")
		require.Len(t, history(t, r.mem, "c1"), 2, "recorded once")
	})
}

// newWrappedStoreHarness is a harness whose agent uses the store wrap builds around a memory
// store (returned, for the test to read), with a 2 s turn lease.
func newWrappedStoreHarness(t *testing.T, llm agent.LLM, wrap func(session.Store) session.Store) (*harness, *session.MemoryStore) {
	t.Helper()
	const lease = 2 * time.Second
	lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
	require.NoError(t, err)
	mem := session.NewMemoryStore(session.Options{TurnLease: lease})
	h := &harness{t: t, store: mem}
	h.agent = agent.New(agent.Config{Model: "primary", TurnLease: lease, OnTurn: h.record},
		agent.Deps{Primary: llm, Store: wrap(mem), Prompts: lib})
	return h, mem
}

// longAnswer is what retryDuringLongAnswer saw: the owner's lines and the retry's, the model,
// and the store under the wrapper.
type longAnswer struct {
	first, second []heard
	llm           *rounds
	mem           *session.MemoryStore
}

// retryDuringLongAnswer answers a message whose answer outlasts the turn lease (2 s) on a
// store wrap builds around a memory store, and sends the message's retry after wait, while
// the owner is still speaking. In a synctest bubble.
func retryDuringLongAnswer(t *testing.T, wrap func(session.Store) session.Store, wait time.Duration) longAnswer {
	t.Helper()
	var r longAnswer
	steps := say("Sure, let me check.", 0, 10*time.Millisecond)
	steps = append(steps, say(" It is free.", 5*time.Second, 10*time.Millisecond)...)
	r.llm = newRounds(steps)
	h, mem := newWrappedStoreHarness(t, r.llm, wrap)
	r.mem = mem
	ev := message("c1", "e1", "Is Tuesday free?")

	done := make(chan struct{})
	go func() {
		defer close(done)
		r.first = h.respond(t.Context(), ev)
	}()
	time.Sleep(wait)
	retry := ev
	retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
	r.second = h.respond(t.Context(), retry)
	<-done
	return r
}
