package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// A bug that panics in any of a turn's goroutines (a model pump, the tool runner, the line
// recorder, or the turn itself) must not take the process down: the turn ends, what the
// caller heard is committed, and the next turn works. Each test below would crash the test
// binary without the recovery it checks.

// panicLLM panics in its stream's first Recv.
type panicLLM struct{}

func (panicLLM) Stream(context.Context, agent.Request) (agent.TokenStream, error) {
	return panicStream{}, nil
}

type panicStream struct{}

func (panicStream) Recv() (string, error)       { panic("model client bug") }
func (panicStream) ToolCalls() []agent.ToolCall { return nil }
func (panicStream) Close() error                { return nil }

func TestPanicInModelPumpEndsTheTurnAndCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
		require.NoError(t, err)
		h := &harness{t: t, store: session.NewMemoryStore(session.Options{})}
		h.agent = agent.New(agent.Config{Model: "primary", OnTurn: h.record}, agent.Deps{Primary: panicLLM{}, Store: h.store, Prompts: lib})

		got := h.respond(t.Context(), message("c1", "e1", "hello"))
		assert.Equal(t, []string{agent.DefaultApologyLine}, texts(got), "a broken model client is a failed model")
		assert.Equal(t, agent.OutcomeApology, h.lastStats().Outcome)
		hist := history(t, h.store, "c1")
		require.Len(t, hist, 2)
		assert.Equal(t, agent.DefaultApologyLine, hist[1].Text)
	})
}

// panicTransport is an HTTP client transport with a bug.
type panicTransport struct{}

func (panicTransport) RoundTrip(*http.Request) (*http.Response, error) { panic("transport bug") }

func TestPanicInToolRunnerBecomesAFailedTool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"), fmt.Appendf(nil, ordersAgent, "http://tools.test", "2s"), 0o644))
		lib, err := prompts.NewLive(dir, zap.NewNop())
		require.NoError(t, err)
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"1"}`)},
			say("Sorry, I can't look that up right now.", 0, 0),
		)
		h := &harness{t: t, store: session.NewMemoryStore(session.Options{})}
		h.agent = agent.New(agent.Config{Model: "primary", OnTurn: h.record},
			agent.Deps{Primary: llm, Store: h.store, Prompts: lib, HTTP: &http.Client{Transport: panicTransport{}}})

		heard := texts(h.respond(t.Context(), message("c1", "e1", "Where is order 1?")))
		assert.Equal(t, []string{"Let me look that up.", "Sorry, I can't look that up right now."}, heard)
		reqs := llm.requests()
		require.Len(t, reqs, 2)
		last := reqs[1].Messages[len(reqs[1].Messages)-1]
		assert.Equal(t, "tool", last.Role)
		assert.Contains(t, last.Text, "the tool failed", "the model hears the tool failed")
		hist := history(t, h.store, "c1")
		require.Len(t, hist, 3, "user, the failed tool call, the answer")
		assert.Equal(t, agent.OutcomeAnswered, h.lastStats().Outcome)
	})
}

// panicOnceStore panics in its first turn-log write: the line recorder's.
type panicOnceStore struct {
	session.Store
	panicked atomic.Bool
}

func (s *panicOnceStore) AppendLines(ctx context.Context, l session.Lease, lines ...string) error {
	if s.panicked.CompareAndSwap(false, true) {
		panic("store client bug")
	}
	return s.Store.AppendLines(ctx, l, lines...)
}

func TestPanicInLineRecorderKeepsTheTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var store *panicOnceStore
		llm := newScripted(map[string][]step{"primary": say(answer, 300*time.Millisecond, 20*time.Millisecond)})
		h, mem := newWrappedStoreHarness(t, llm, func(mem session.Store) session.Store {
			store = &panicOnceStore{Store: mem}
			return store
		})

		got := h.respond(t.Context(), message("c1", "e1", "I'd like to book a cleaning"))
		assert.Equal(t, answer, strings.Join(texts(got), " "), "the caller hears the whole answer")
		require.True(t, store.panicked.Load(), "the recorder's write panicked")
		assert.Equal(t, agent.OutcomeAnswered, h.lastStats().Outcome)
		hist := history(t, mem, "c1")
		require.Len(t, hist, 2, "the turn is committed")
		assert.Equal(t, answer, hist[1].Text)
	})
}

func TestPanicInTurnEndsItAndCommitsWhatWasHeard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say(answer, 300*time.Millisecond, 20*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		var heard []string
		err := h.agent.Respond(t.Context(), message("c1", "e1", "I'd like to book a cleaning"), func(c agent.Chunk) error {
			if len(heard) == 1 {
				panic("emit bug")
			}
			heard = append(heard, c.Text)
			return nil
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "panicked")
		require.Len(t, heard, 1)
		st := h.lastStats()
		assert.Equal(t, agent.OutcomeFailed, st.Outcome)
		assert.Equal(t, 1, st.Lines)
		hist := history(t, h.store, "c1")
		require.Len(t, hist, 2, "the turn is committed")
		assert.Equal(t, heard[0], hist[1].Text, "with exactly the line Saperly took")
		synctest.Wait()
		assert.Zero(t, llm.openStreams(), "the model request was stopped")

		// The call goes on.
		got := h.respond(t.Context(), message("c1", "e2", "Tuesday please"))
		assert.NotEmpty(t, got)
	})
}

// TestPanicInLineRecorderKeepsTheLease: after a turn-log write panicked, the writer still
// renews the turn's lease, so a retry during an answer longer than the lease follows it
// instead of taking it over and asking the model again.
func TestPanicInLineRecorderKeepsTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var store *panicOnceStore
		r := retryDuringLongAnswer(t, func(mem session.Store) session.Store {
			store = &panicOnceStore{Store: mem}
			return store
		}, time.Second) // the first turn-log write (a renewal, a third of the lease in) panicked

		require.True(t, store.panicked.Load())
		assert.Equal(t, texts(r.first), texts(r.second), "the retry replays the owner's answer")
		assert.Len(t, r.llm.requests(), 1, "the model is asked once")
		require.Len(t, history(t, r.mem, "c1"), 2, "recorded once")
	})
}

// panicOnceTakeOver panics in its first TakeOver: the follower's watcher goroutine's.
type panicOnceTakeOver struct {
	session.Store
	panicked atomic.Bool
}

func (s *panicOnceTakeOver) TakeOver(ctx context.Context, ref session.TurnRef) (session.Takeover, error) {
	if s.panicked.CompareAndSwap(false, true) {
		panic("store client bug")
	}
	return s.Store.TakeOver(ctx, ref)
}

// TestPanicInTakeOverIsATryAgain: a retry following a dead replica's turn survives a panic in
// its takeover attempt, tries again, and continues the answer.
func TestPanicInTakeOverIsATryAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
		require.NoError(t, err)
		mem := session.NewMemoryStore(session.Options{TurnLease: lease})
		store := &panicOnceTakeOver{Store: mem}
		llm := newRounds(say("And Friday too.", 0, 0))
		h := &harness{t: t, store: mem}
		h.agent = agent.New(agent.Config{Model: "primary", TurnLease: lease, OnTurn: h.record},
			agent.Deps{Primary: llm, Store: store, Prompts: lib})
		ev := message("c1", "e1", "When can I come in?")
		deadOwner(t, mem, ev, []string{"We have Tuesday."})

		retry := ev
		retry.Delivery = agent.Delivery{ID: "d-retry", ReceivedAt: time.Now()}
		got := texts(h.respond(t.Context(), retry))
		require.True(t, store.panicked.Load())
		assert.Equal(t, []string{"We have Tuesday.", "And Friday too."}, got)
		assert.True(t, h.lastStats().TakenOver)
	})
}

// panicOnceCommit panics in its first CommitTurn.
type panicOnceCommit struct {
	session.Store
	panicked atomic.Bool
}

func (s *panicOnceCommit) CommitTurn(ctx context.Context, l session.Lease, lines []string, entries ...session.Entry) error {
	if s.panicked.CompareAndSwap(false, true) {
		panic("store client bug")
	}
	return s.Store.CommitTurn(ctx, l, lines, entries...)
}

// TestPanicInCommitKeepsTheTurn: a commit that panics is a failed write: the turn is kept and
// the retrier, in its own goroutine, writes it once.
func TestPanicInCommitKeepsTheTurn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
		require.NoError(t, err)
		mem := session.NewMemoryStore(session.Options{})
		store := &panicOnceCommit{Store: mem}
		h := &harness{t: t, store: mem}
		h.agent = agent.New(agent.Config{Model: "primary", OnTurn: h.record},
			agent.Deps{Primary: newRounds(say("We open at nine.", 0, 0)), Store: store, Prompts: lib})

		got := texts(h.respond(t.Context(), message("c1", "e1", "When do you open?")))
		assert.Equal(t, []string{"We open at nine."}, got)
		require.True(t, store.panicked.Load())
		assert.True(t, h.lastStats().Pending, "kept for the retrier")
		time.Sleep(10 * time.Second) // the retrier's backoff (fake clock)
		synctest.Wait()
		hist := history(t, mem, "c1")
		require.Len(t, hist, 2, "written once, by the retrier")
		assert.Equal(t, "We open at nine.", hist[1].Text)
	})
}
