package agent_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
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

// step is one beat of a scripted model: wait, then yield a token, make a tool call (kept for
// the end of the stream, as a real stream assembles it), or end with err.
type step struct {
	wait time.Duration
	tok  string
	call *agent.ToolCall
	err  error
}

// scripted is an agent.LLM that plays a fixed script per model name, on the clock of the
// synctest bubble it runs in, and records every request.
type scripted struct {
	mu      sync.Mutex
	scripts map[string][]step
	reqs    []agent.Request
	open    int // streams not yet closed
}

func newScripted(scripts map[string][]step) *scripted { return &scripted{scripts: scripts} }

func (s *scripted) Stream(ctx context.Context, req agent.Request) (agent.TokenStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	steps, ok := s.scripts[req.Model]
	if !ok {
		return nil, errors.New("no such model: " + req.Model)
	}
	s.open++
	return &scriptStream{ctx: ctx, steps: steps, owner: s}, nil
}

func (s *scripted) requests() []agent.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]agent.Request(nil), s.reqs...)
}

func (s *scripted) openStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

type scriptStream struct {
	ctx   context.Context
	steps []step
	owner *scripted
	calls []agent.ToolCall
}

func (s *scriptStream) ToolCalls() []agent.ToolCall { return s.calls }

func (s *scriptStream) Recv() (string, error) {
	for len(s.steps) > 0 {
		st := s.steps[0]
		s.steps = s.steps[1:]
		if st.wait > 0 {
			t := time.NewTimer(st.wait)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return "", s.ctx.Err()
			case <-t.C:
			}
		}
		switch {
		case st.err != nil:
			return "", st.err
		case st.call != nil:
			s.calls = append(s.calls, *st.call)
		default:
			return st.tok, nil
		}
	}
	return "", io.EOF
}

func (s *scriptStream) Close() error {
	s.owner.mu.Lock()
	s.owner.open--
	s.owner.mu.Unlock()
	return nil
}

// say scripts a model answer: first after ttft, then one token every gap.
func say(text string, ttft, gap time.Duration) []step {
	var out []step
	for i, tok := range agent.DemoTokens(text) {
		w := gap
		if i == 0 {
			w = ttft
		}
		out = append(out, step{wait: w, tok: tok})
	}
	return out
}

type heard struct {
	text string
	at   time.Duration
}

type harness struct {
	t     *testing.T
	store session.Store
	llm   *scripted
	agent *agent.Agent
	stats []agent.TurnStats
	mu    sync.Mutex
}

func newHarness(t *testing.T, cfg agent.Config, llm *scripted, withFallback bool) *harness {
	t.Helper()
	lib, err := prompts.NewLive(t.TempDir(), zap.NewNop())
	require.NoError(t, err)
	h := &harness{t: t, store: session.NewMemoryStore(session.Options{}), llm: llm}
	if cfg.Model == "" {
		cfg.Model = "primary"
	}
	cfg.OnTurn = func(s agent.TurnStats) {
		h.mu.Lock()
		h.stats = append(h.stats, s)
		h.mu.Unlock()
	}
	if withFallback {
		cfg.FallbackModel = "fallback"
	}
	h.agent = agent.New(cfg, agent.Deps{Primary: llm, Store: h.store, Prompts: lib})
	return h
}

func message(callID, eventID, text string) agent.Event {
	return agent.Event{
		Kind: agent.EventMessage, ID: eventID, CallID: callID, LineID: "line-1", Text: text,
		Delivery: agent.Delivery{ID: "d-" + eventID, ReceivedAt: time.Now()},
	}
}

// respond runs one turn and returns what the caller heard, with times since the message arrived.
func (h *harness) respond(ctx context.Context, ev agent.Event) []heard {
	var out []heard
	_ = h.agent.Respond(ctx, ev, func(c agent.Chunk) error {
		require.Equal(h.t, "speak", c.Type)
		out = append(out, heard{c.Text, time.Since(ev.Delivery.ReceivedAt)})
		return nil
	})
	return out
}

func (h *harness) lastStats() agent.TurnStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotEmpty(h.t, h.stats)
	return h.stats[len(h.stats)-1]
}

func texts(hs []heard) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.text
	}
	return out
}

// maxGap is the longest silence the caller sat through, counting from the message.
func maxGap(hs []heard) time.Duration {
	var prev, gap time.Duration
	for _, h := range hs {
		gap = max(gap, h.at-prev)
		prev = h.at
	}
	return gap
}

func history(t *testing.T, s session.Store, callID string) []session.Entry {
	t.Helper()
	st, err := s.Load(t.Context(), callID)
	require.NoError(t, err)
	return st.History
}

const answer = "Sure, I can help you book that. We have Tuesday at 3:30 p.m. or Wednesday at 10 a.m. Which works better?"

func TestTurnStreamsPhrasesAndKeepsHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say(answer, 300*time.Millisecond, 20*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "I'd like to book a cleaning"))
		require.NotEmpty(t, got)
		assert.Equal(t, answer, strings.Join(texts(got), " "))
		assert.Greater(t, len(got), 1, "streamed as several phrases")

		hist := history(t, h.store, "c1")
		require.Len(t, hist, 2)
		assert.Equal(t, session.EntryUser, hist[0].Kind)
		assert.Equal(t, "I'd like to book a cleaning", hist[0].Text)
		assert.Equal(t, answer, hist[1].Text)

		// The next turn sends that history to the model.
		h.respond(t.Context(), message("c1", "e2", "Tuesday please"))
		reqs := llm.requests()
		require.Len(t, reqs, 2)
		msgs := reqs[1].Messages
		require.Len(t, msgs, 4)
		assert.Equal(t, "system", msgs[0].Role)
		assert.Equal(t, agent.Message{Role: "assistant", Text: answer}, msgs[2])
		assert.Equal(t, agent.Message{Role: "user", Text: "Tuesday please"}, msgs[3])
		assert.Equal(t, 450, reqs[1].MaxTokens, "max_tokens is on every request")
		st := h.lastStats()
		assert.Equal(t, agent.OutcomeAnswered, st.Outcome)
		assert.Equal(t, 2, st.Turn)
	})
}

func TestSlowFirstTokenGetsOneHoldingPhrase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The model itself opens with a holding phrase: the caller must not hear two.
		llm := newScripted(map[string][]step{"primary": say("One moment. Tuesday at ten works.", 4*time.Second, 10*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "Is Tuesday free?"))
		require.Len(t, got, 2)
		assert.Equal(t, "One moment.", got[0].text)
		assert.Equal(t, 1200*time.Millisecond, got[0].at, "holding phrase at HoldAfter")
		assert.Equal(t, "Tuesday at ten works.", got[1].text)
		assert.Equal(t, 1, h.lastStats().Holds)
	})
}

func TestHoldingPhraseDoesNotRepeatWithinCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say("Done.", 3*time.Second, 0)})
		h := newHarness(t, agent.Config{}, llm, false)
		seen := map[string]bool{}
		for i, ev := range []string{"e1", "e2", "e3"} {
			got := h.respond(t.Context(), message("c1", ev, "hello"))
			require.NotEmpty(t, got)
			assert.False(t, seen[got[0].text], "turn %d repeated holding phrase %q", i+1, got[0].text)
			seen[got[0].text] = true
		}
	})
}

func TestModelErrorBeforeSpeechApologises(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": {{wait: 100 * time.Millisecond, err: errors.New("502 bad gateway")}}})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "hello"))
		assert.Equal(t, []string{agent.DefaultApologyLine}, texts(got))
		assert.Equal(t, agent.OutcomeApology, h.lastStats().Outcome)
	})
}

func TestUnknownModelFailsAtStartAndApologises(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, agent.Config{Model: "nope"}, newScripted(nil), false)
		got := h.respond(t.Context(), message("c1", "e1", "hello"))
		assert.Equal(t, []string{agent.DefaultApologyLine}, texts(got))
	})
}

func TestModelErrorRetriesOnFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{
			"primary":  {{wait: 200 * time.Millisecond, err: errors.New("500")}},
			"fallback": say("Yes, we are open today.", 300*time.Millisecond, 10*time.Millisecond),
		})
		h := newHarness(t, agent.Config{}, llm, true)
		got := h.respond(t.Context(), message("c1", "e1", "Are you open?"))
		assert.Equal(t, []string{"Yes, we are open today."}, texts(got))
		st := h.lastStats()
		assert.True(t, st.Fallback)
		assert.Equal(t, 2, st.ModelCalls)
		assert.Equal(t, "fallback", st.Model)
	})
}

func TestLateFirstTokenHedgesOnFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{
			"primary":  say("Primary answer, far too late.", 20*time.Second, 0),
			"fallback": say("Fallback answer here.", 500*time.Millisecond, 10*time.Millisecond),
		})
		h := newHarness(t, agent.Config{}, llm, true)
		got := h.respond(t.Context(), message("c1", "e1", "Hello?"))
		// Hold at 1.2 s, hedge at 2.5 s, fallback speaks at about 3 s.
		assert.Equal(t, []string{"One moment.", "Fallback answer here."}, texts(got))
		st := h.lastStats()
		assert.True(t, st.Hedged)
		assert.True(t, st.Fallback)
		assert.Less(t, got[1].at, 4*time.Second)
		synctest.Wait()
		assert.Zero(t, llm.openStreams(), "the losing request was cancelled and closed")
	})
}

func TestStallMidAnswerHoldsThenEndsGracefully(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		steps := say("Let me look at the calendar. ", 200*time.Millisecond, 10*time.Millisecond)
		steps = append(steps, step{wait: 25 * time.Second, tok: "Tuesday"})
		steps = append(steps, say(" is free.", 0, 10*time.Millisecond)...)
		llm := newScripted(map[string][]step{"primary": steps})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "Any time Tuesday?"))
		require.Len(t, got, 3)
		assert.Equal(t, "Let me look at the calendar.", got[0].text)
		assert.Equal(t, "One moment.", got[1].text)
		assert.Equal(t, agent.DefaultStallLine, got[2].text)
		assert.Less(t, maxGap(got), 15*time.Second, "never a 15 s gap between lines")
		assert.Equal(t, "stall", h.lastStats().Budget)
		assert.Equal(t, agent.OutcomeStalled, h.lastStats().Outcome)
	})
}

func TestHungModelNeverLeavesSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": {{wait: time.Hour, tok: "never"}}})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "Hello?"))
		require.Len(t, got, 3)
		assert.Equal(t, []string{"One moment.", "Let me check.", agent.DefaultApologyLine}, texts(got))
		assert.Less(t, maxGap(got), 15*time.Second)
	})
}

func TestStreamBreakEndsOnSentenceAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		steps := say("We open at nine. On Saturdays we", 200*time.Millisecond, 10*time.Millisecond)
		steps = append(steps, step{wait: 10 * time.Millisecond, err: errors.New("unexpected EOF")})
		llm := newScripted(map[string][]step{"primary": steps})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "When do you open?"))
		assert.Equal(t, []string{"We open at nine.", agent.DefaultRecoveryLine}, texts(got))
		assert.Equal(t, agent.OutcomeRecovered, h.lastStats().Outcome)
	})
}

func TestAnswerCappedOnSentenceBoundary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		long := strings.Repeat("This sentence is here to make the answer long. ", 20)
		llm := newScripted(map[string][]step{"primary": say(long, 100*time.Millisecond, time.Millisecond)})
		h := newHarness(t, agent.Config{MaxChars: 300}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "Tell me everything"))
		spoken := strings.Join(texts(got), " ")
		assert.LessOrEqual(t, len(spoken), 300)
		assert.True(t, strings.HasSuffix(spoken, "."), "ends on a sentence boundary: %q", spoken)
		assert.Equal(t, "chars", h.lastStats().Budget)
	})
}

func TestBargeInStopsModelAndHistoryHoldsWhatWasSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say(answer, 200*time.Millisecond, 100*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		ctx, hangUp := context.WithCancel(t.Context())
		ev := message("c1", "e1", "book")
		var got []string
		err := h.agent.Respond(ctx, ev, func(c agent.Chunk) error {
			got = append(got, c.Text)
			hangUp() // Saperly closes the connection after the first line
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		synctest.Wait()
		assert.Zero(t, llm.openStreams(), "model request cancelled at once")
		require.Len(t, got, 1)
		hist := history(t, h.store, "c1")
		require.Len(t, hist, 2)
		assert.Equal(t, got[0], hist[1].Text)
		assert.True(t, hist[1].Cut)
		assert.Equal(t, agent.OutcomeCut, h.lastStats().Outcome)
	})
}

func TestInterruptedReplacesAnswerInHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say(answer, 100*time.Millisecond, 10*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		ev1 := message("c1", "e1", "book")
		h.respond(t.Context(), ev1)
		time.Sleep(5 * time.Second)
		// The next message is answered before the interrupted event for the first arrives.
		ev2 := message("c1", "e2", "Wait, actually")
		h.respond(t.Context(), ev2)
		require.NoError(t, h.agent.Record(t.Context(), agent.Event{
			Kind: agent.EventInterrupted, CallID: "c1", PartialText: "Sure, I can help",
			Timestamp: ev1.Delivery.ReceivedAt.Add(2 * time.Second).UnixMilli(),
		}))
		hist := history(t, h.store, "c1")
		require.Len(t, hist, 4)
		assert.Equal(t, "Sure, I can help", hist[1].Text, "first answer holds only what was heard")
		assert.True(t, hist[1].Interrupted)
		assert.Equal(t, answer, hist[3].Text, "second answer untouched")
	})
}

func TestRetryReplaysWithoutSecondModelCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say(answer, 200*time.Millisecond, 50*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		first := h.respond(t.Context(), message("c1", "e1", "book"))
		again := h.respond(t.Context(), message("c1", "e1", "book"))
		assert.Equal(t, texts(first), texts(again))
		assert.Len(t, llm.requests(), 1, "the model is called once per event")
		assert.Len(t, history(t, h.store, "c1"), 2, "the turn enters the history once")
		assert.True(t, h.lastStats().Replayed)
	})
}

func TestRetryWhileStreamingFollowsLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say(answer, 200*time.Millisecond, 200*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		var first, second []heard
		var wg sync.WaitGroup
		wg.Go(func() { first = h.respond(t.Context(), message("c1", "e1", "book")) })
		time.Sleep(2 * time.Second) // the first answer is mid-stream
		second = h.respond(t.Context(), message("c1", "e1", "book"))
		wg.Wait()
		assert.Equal(t, texts(first), texts(second))
		assert.Len(t, llm.requests(), 1)
		assert.Len(t, history(t, h.store, "c1"), 2)
	})
}

func TestEmptyUtteranceAsksAgainWithoutModel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		llm := newScripted(map[string][]step{"primary": say("x", 0, 0)})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "  "))
		assert.Equal(t, []string{agent.DefaultNoInputLine}, texts(got))
		assert.Empty(t, llm.requests())
	})
}

func TestFirstLineCutWhileModelPauses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The first words come in without a boundary, then the model pauses: the first line
		// goes out at FirstCut after the first token, ahead of any other budget.
		steps := say("Let me just think about whether we", 100*time.Millisecond, 10*time.Millisecond)
		steps = append(steps, say(" can fit you in on Tuesday.", 3*time.Second, 10*time.Millisecond)...)
		llm := newScripted(map[string][]step{"primary": steps})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "Can I come Tuesday?"))
		require.NotEmpty(t, got)
		assert.Equal(t, 700*time.Millisecond, got[0].at, "first line at FirstCut after the first token")
		assert.Equal(t, "Let me just think about whether we can fit you in on Tuesday.", strings.Join(texts(got), " "))
		assert.Zero(t, h.lastStats().Holds)
		assert.Equal(t, agent.OutcomeAnswered, h.lastStats().Outcome)
	})
}

// A model streaming at 400 ms per token used to have its first line cut by the first-line
// deadline (FirstCut) after its first word: the caller heard "Of", and "course." 200 ms later
// (issue 10). A first line is never a lone word: the deadline waits for a second word, and a
// finished sentence goes out as soon as it is finished.
func TestFirstCutNeverSpeaksALoneWord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const text = "Of course. I can book you in for Tuesday. Thanks!"
		llm := newScripted(map[string][]step{"primary": say(text, 300*time.Millisecond, 400*time.Millisecond)})
		h := newHarness(t, agent.Config{}, llm, false)
		got := h.respond(t.Context(), message("c1", "e1", "Can you book me in?"))
		require.NotEmpty(t, got)
		assert.Equal(t, []string{"Of course.", "I can book you in for Tuesday. Thanks!"}, texts(got))
		// " course." arrives at 300 + 400 ms; the deadline, 600 ms after the first token,
		// says the finished sentence.
		assert.Equal(t, 900*time.Millisecond, got[0].at)
		for _, l := range got {
			assert.Greater(t, len(strings.Fields(l.text)), 1, "lone word %q", l.text)
		}
	})
}

// record is an OnTurn that keeps the turn's figures.
func (h *harness) record(s agent.TurnStats) {
	h.mu.Lock()
	h.stats = append(h.stats, s)
	h.mu.Unlock()
}
