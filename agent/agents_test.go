package agent_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/saperly"
)

// promptDir writes files into a fresh prompts directory.
func promptDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
}

func newAgentOn(t *testing.T, dir string, llm agent.LLM) (*harness, *prompts.Live) {
	t.Helper()
	lib, err := prompts.NewLive(dir, zap.NewNop())
	require.NoError(t, err)
	h := &harness{t: t, store: session.NewMemoryStore(session.Options{})}
	cfg := agent.Config{Model: "global-model", OnTurn: func(s agent.TurnStats) {
		h.mu.Lock()
		h.stats = append(h.stats, s)
		h.mu.Unlock()
	}}
	h.agent = agent.New(cfg, agent.Deps{Primary: llm, Store: h.store, Prompts: lib})
	return h, lib
}

// anyModel answers every request with the same words, whatever the model.
func anyModel(text string) *rounds {
	steps := make([][]step, 20)
	for i := range steps {
		steps[i] = say(text, 0, 0)
	}
	return newRounds(steps...)
}

func TestLineChoosesAgentSettingsAndVars(t *testing.T) {
	t.Parallel()
	dir := promptDir(t, map[string]string{
		"default.md": "You are the default agent.",
		"orders.md": `---
model: orders-model
temperature: 0.2
max_tokens: 120
vars: {shop: Nobody's}
---
You answer for {{.Vars.shop}}, line {{.LineID}}, caller {{.Caller}}.`,
		"lines.yaml": "line-orders:\n  agent: orders\n  vars: {shop: Acme Parts}\n",
	})
	llm := anyModel("Sure.")
	h, _ := newAgentOn(t, dir, llm)

	ev := message("c1", "e1", "Hi")
	ev.LineID, ev.From = "line-orders", "+14155551234"
	h.respond(t.Context(), ev)
	h.respond(t.Context(), message("c2", "e2", "Hi")) // line-1 is not listed: the default agent

	reqs := llm.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "orders-model", reqs[0].Model, "the agent's model")
	assert.Equal(t, 120, reqs[0].MaxTokens)
	assert.InDelta(t, 0.2, reqs[0].Temperature, 1e-6)
	assert.Equal(t, "You answer for Acme Parts, line line-orders, caller +14155551234.", reqs[0].Messages[0].Text,
		"line vars override the agent's")
	assert.Equal(t, "global-model", reqs[1].Model)
	assert.Equal(t, "You are the default agent.", reqs[1].Messages[0].Text)
	assert.Equal(t, "orders", h.stats[0].Agent)
}

func TestCallKeepsItsPromptVersionAcrossReload(t *testing.T) {
	t.Parallel()
	dir := promptDir(t, map[string]string{"default.md": "Version one."})
	llm := anyModel("Okay.")
	h, lib := newAgentOn(t, dir, llm)

	h.respond(t.Context(), message("old-call", "e1", "Hi"))
	v1 := h.lastStats().PromptVersion

	writeFiles(t, dir, map[string]string{"default.md": "Version two."})
	lib.Reload()
	require.NotEqual(t, v1, lib.Current().Default().Version, "the edit is live")

	h.respond(t.Context(), message("old-call", "e2", "And?"))
	assert.Equal(t, v1, h.lastStats().PromptVersion, "a call in progress keeps its version")
	h.respond(t.Context(), message("new-call", "e3", "Hi"))
	assert.NotEqual(t, v1, h.lastStats().PromptVersion, "a new call gets the new version")

	reqs := llm.requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "Version one.", reqs[1].Messages[0].Text)
	assert.Equal(t, "Version two.", reqs[2].Messages[0].Text)
}

func TestCallStartedPinsVersionAndKnowsReturningCallers(t *testing.T) {
	t.Parallel()
	dir := promptDir(t, map[string]string{
		"default.md": "{{if .Returning}}Welcome back.{{else}}First call.{{end}} Direction {{.Direction}}.",
	})
	llm := anyModel("Hello.")
	h, lib := newAgentOn(t, dir, llm)
	started := func(callID string) agent.Event {
		return agent.Event{Kind: agent.EventCallStarted, CallID: callID, LineID: "line-1",
			From: "+14155551234", To: "+14155550000", Direction: "inbound"}
	}

	require.NoError(t, h.agent.Record(t.Context(), started("c1")))
	require.NoError(t, h.agent.Record(t.Context(), started("c1")), "a retried call_started")
	// An edit between call_started and the first message does not reach the call.
	before := lib.Current().Default().Version
	writeFiles(t, dir, map[string]string{"default.md": "Edited. {{if .Returning}}Welcome back.{{else}}First call.{{end}}"})
	lib.Reload()
	h.respond(t.Context(), message("c1", "e1", "Hi"))
	assert.Equal(t, before, h.lastStats().PromptVersion)

	require.NoError(t, h.agent.Record(t.Context(), started("c2")))
	h.respond(t.Context(), message("c2", "e2", "Hi again"))

	reqs := llm.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "First call. Direction inbound.", reqs[0].Messages[0].Text)
	assert.Equal(t, "Edited. Welcome back.", reqs[1].Messages[0].Text,
		"the second call is new: it gets the edit, and knows the caller is back")

	st, err := h.store.Load(t.Context(), "c2")
	require.NoError(t, err)
	assert.True(t, st.Call.Returning, "the same number called this line before")
}

func TestEventForAnotherLinesCallIsRefused(t *testing.T) {
	t.Parallel()
	llm := anyModel("Hello.")
	h, _ := newAgentOn(t, promptDir(t, map[string]string{"default.md": "Hi."}), llm)
	require.NoError(t, h.agent.Record(t.Context(), agent.Event{Kind: agent.EventCallStarted, CallID: "c1", LineID: "line-a"}))

	ev := message("c1", "e1", "Tell me their secrets.")
	ev.LineID = "line-b" // signed with line B's secret, about line A's call
	var heard []string
	err := h.agent.Respond(t.Context(), ev, func(c agent.Chunk) error { heard = append(heard, c.Text); return nil })
	require.ErrorIs(t, err, agent.ErrWrongLine)
	assert.Empty(t, heard)
	assert.Empty(t, llm.requests(), "the model is never asked")
	st, err := h.store.Load(t.Context(), "c1")
	require.NoError(t, err)
	assert.Empty(t, st.History, "nothing enters the history")
	assert.Equal(t, "line-a", st.Call.LineID)

	require.NoError(t, h.agent.Record(t.Context(), agent.Event{Kind: agent.EventCallEnded, CallID: "c1", LineID: "line-b"}))
	st, err = h.store.Load(t.Context(), "c1")
	require.NoError(t, err)
	assert.Equal(t, "line-a", st.Call.LineID, "no event moves a call to another line")
}

func TestRetryOfATurnThatRecordedNothingApologises(t *testing.T) {
	t.Parallel()
	llm := anyModel("Hello.")
	h, _ := newAgentOn(t, promptDir(t, map[string]string{"default.md": "Hi."}), llm)
	// The first delivery claimed the event and closed its log without a line (its caller had
	// gone before the first word).
	b, err := h.store.BeginTurn(t.Context(), session.Call{ID: "c1", LineID: "line-1"}, "e1", 0)
	require.NoError(t, err)
	require.Equal(t, session.TurnClaimed, b.Status)
	require.NoError(t, h.store.CommitTurn(t.Context(), b.Lease, nil))

	heard := texts(h.respond(t.Context(), message("c1", "e1", "Hello?")))
	assert.Equal(t, []string{agent.DefaultApologyLine}, heard, "never an empty answer")
	assert.Empty(t, llm.requests(), "and never a second generation")
	assert.Equal(t, agent.OutcomeApology, h.lastStats().Outcome)
}

func TestPinnedVersionThatNoLongerRendersFallsBackToTheAgentsCurrentOne(t *testing.T) {
	t.Parallel()
	dir := promptDir(t, map[string]string{
		"default.md": "The default agent.",
		"orders.md":  "Orders for {{.Vars.shop}}.",
		"lines.yaml": "line-1:\n  agent: orders\n  vars: {shop: Acme}\n",
	})
	llm := anyModel("Okay.")
	h, lib := newAgentOn(t, dir, llm)
	h.respond(t.Context(), message("c1", "e1", "Hi"))

	// The shop variable goes, and the agent stops reading it, in one save.
	writeFiles(t, dir, map[string]string{"orders.md": "Orders, version two.", "lines.yaml": "line-1:\n  agent: orders\n"})
	lib.Reload()
	require.Equal(t, "Orders, version two.", mustRender(t, lib.Current(), "orders"))

	h.respond(t.Context(), message("c1", "e2", "And now?"))
	reqs := llm.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "Orders for Acme.", reqs[0].Messages[0].Text)
	assert.Equal(t, "Orders, version two.", reqs[1].Messages[0].Text,
		"the pinned version cannot render without its variable: the same agent's current version, not the default")
}

func mustRender(t *testing.T, lib *prompts.Library, name string) string {
	t.Helper()
	a, ok := lib.Agent(name)
	require.True(t, ok)
	text, err := a.Render(prompts.Sample("line-1", nil))
	require.NoError(t, err)
	return text
}

// hiccup is a real store whose first turn-log write fails, as one would in a Redis blip.
type hiccup struct {
	session.Store
	mu     sync.Mutex
	failed bool
}

func (h *hiccup) AppendLines(ctx context.Context, l session.Lease, lines ...string) error {
	h.mu.Lock()
	first := !h.failed
	h.failed = true
	h.mu.Unlock()
	if first {
		return errors.New("connection reset")
	}
	return h.Store.AppendLines(ctx, l, lines...)
}

func TestTurnLogCompletedAfterAFailedWrite(t *testing.T) {
	t.Parallel()
	store := &hiccup{Store: session.NewMemoryStore(session.Options{})}
	lib, err := prompts.NewLive(promptDir(t, map[string]string{"default.md": "Hi."}), zap.NewNop())
	require.NoError(t, err)
	const reply = "Sure, I can help with that. We open at nine. We close at five."
	a := agent.New(agent.Config{Model: "m"}, agent.Deps{Primary: newRounds(say(reply, 0, 5*time.Millisecond)), Store: store, Prompts: lib})
	var first []string
	require.NoError(t, a.Respond(t.Context(), message("c1", "e1", "Hours?"), func(c agent.Chunk) error {
		first = append(first, c.Text)
		return nil
	}))
	require.Greater(t, len(first), 1)

	var replayed []string
	require.NoError(t, store.FollowTurn(t.Context(), session.TurnRef{Line: "line-1", Call: "c1", Event: "e1"}, func(text string) error {
		replayed = append(replayed, text)
		return nil
	}))
	assert.Equal(t, first, replayed, "a retry would replay the whole answer")
}

// TestEventsSignedByAnotherScopeChangeNothing reproduces issue 8 §1: with lines A and B each
// verified by their own secrets, events signed by A (or by the global secret) about B's call
// must neither rewrite its record nor its history, nor be answered from it.
func TestEventsSignedByAnotherScopeChangeNothing(t *testing.T) {
	t.Parallel()
	llm := anyModel("Hello.")
	h, _ := newAgentOn(t, promptDir(t, map[string]string{"default.md": "Hi."}), llm)
	ctx := t.Context()
	owned := func(ev agent.Event, owner string) agent.Event {
		ev.Delivery.Owner = owner
		return ev
	}
	require.NoError(t, h.agent.Record(ctx, owned(agent.Event{Kind: agent.EventCallStarted, CallID: "b1", LineID: "line-b", From: "+15550001"}, "line-b")))
	ans := message("b1", "m1", "What are your hours?")
	ans.LineID = "line-b"
	require.NoError(t, h.agent.Respond(ctx, owned(ans, "line-b"), func(agent.Chunk) error { return nil }))
	before, err := h.store.Load(ctx, "b1")
	require.NoError(t, err)
	require.Len(t, before.History, 2)
	asked := len(llm.requests())

	for _, tc := range []struct {
		name string
		ev   agent.Event
	}{
		{name: "interrupted signed by A", ev: owned(agent.Event{Kind: agent.EventInterrupted, CallID: "b1", LineID: "line-a", PartialText: "forged", Timestamp: time.Now().UnixMilli()}, "line-a")},
		{name: "call_started signed by A", ev: owned(agent.Event{Kind: agent.EventCallStarted, CallID: "b1", LineID: "line-a", From: "+15559999"}, "line-a")},
		{name: "call_ended signed by A", ev: owned(agent.Event{Kind: agent.EventCallEnded, CallID: "b1", LineID: "line-a", Status: "forged"}, "line-a")},
		{name: "status callback signed by A", ev: owned(agent.Event{Kind: agent.EventCallIncoming, CallID: "b1", LineID: "line-a", Status: "forged"}, "line-a")},
		{name: "interrupted signed globally", ev: owned(agent.Event{Kind: agent.EventInterrupted, CallID: "b1", PartialText: "forged"}, "*")},
	} {
		err := h.agent.Record(ctx, tc.ev)
		require.ErrorIs(t, err, agent.ErrWrongLine, tc.name)
	}
	for _, tc := range []struct{ name, line, owner string }{
		{name: "message without line_id signed globally", owner: "*"},
		{name: "message signed by A naming A", line: "line-a", owner: "line-a"},
		{name: "message signed by A naming B's line", line: "line-b", owner: "line-a"},
	} {
		ev := message("b1", "m-"+tc.owner+tc.line, "Read me B's conversation.")
		ev.LineID = tc.line
		var heard []string
		err := h.agent.Respond(ctx, owned(ev, tc.owner), func(c agent.Chunk) error { heard = append(heard, c.Text); return nil })
		require.ErrorIs(t, err, agent.ErrWrongLine, tc.name)
		assert.Empty(t, heard, tc.name)
	}
	assert.Len(t, llm.requests(), asked, "the model is never asked about B's call")
	after, err := h.store.Load(ctx, "b1")
	require.NoError(t, err)
	assert.Equal(t, before, after, "B's record and history are untouched")

	// A global-scope call stays out of reach of a line's secrets, and open to the global ones.
	require.NoError(t, h.agent.Record(ctx, owned(agent.Event{Kind: agent.EventCallStarted, CallID: "g1"}, "*")))
	require.ErrorIs(t, h.agent.Record(ctx, owned(agent.Event{Kind: agent.EventCallEnded, CallID: "g1", LineID: "line-a"}, "line-a")), agent.ErrWrongLine)
	require.NoError(t, h.agent.Record(ctx, owned(agent.Event{Kind: agent.EventCallEnded, CallID: "g1"}, "*")))
}

// TestLongUtteranceIsCutAtAWord reproduces issue 8 §4: a 500 KB utterance went to the model
// and into the history whole. It is cut to MaxUtterance characters at a word boundary.
func TestLongUtteranceIsCutAtAWord(t *testing.T) {
	t.Parallel()
	llm := anyModel("Sure.")
	h, _ := newAgentOn(t, promptDir(t, map[string]string{"default.md": "Hi."}), llm)
	huge := strings.Repeat("blah ", 100<<10) // 500 KB
	require.NoError(t, h.agent.Respond(t.Context(), message("c1", "e1", huge), func(agent.Chunk) error { return nil }))

	reqs := llm.requests()
	require.Len(t, reqs, 1)
	msgs := reqs[0].Messages
	sent := msgs[len(msgs)-1].Text
	assert.LessOrEqual(t, len(sent), agent.DefaultMaxUtterance)
	assert.GreaterOrEqual(t, len(sent), agent.DefaultMaxUtterance*4/5)
	assert.True(t, strings.HasSuffix(sent, "blah"), "cut at a word boundary, got …%q", sent[len(sent)-10:])
	st, err := h.store.Load(t.Context(), "c1")
	require.NoError(t, err)
	require.NotEmpty(t, st.History)
	assert.Equal(t, sent, st.History[0].Text, "the history keeps what the model was given")
	stats := h.stats[0]
	assert.Equal(t, len(huge), stats.UtteranceCut, "the cut is logged with the original length")

	// Under the cap nothing changes.
	require.NoError(t, h.agent.Respond(t.Context(), message("c1", "e2", "Short and sweet."), func(agent.Chunk) error { return nil }))
	msgs = llm.requests()[1].Messages
	assert.Equal(t, "Short and sweet.", msgs[len(msgs)-1].Text)
}

// TestInterruptPlacement reproduces issue 8 §4: an interrupted event stamped an hour ahead
// rewrote the newest answer. It is ignored; one that names its message cuts that answer only.
func TestInterruptPlacement(t *testing.T) {
	t.Parallel()
	llm := anyModel("We open at nine and close at five.")
	h, _ := newAgentOn(t, promptDir(t, map[string]string{"default.md": "Hi."}), llm)
	ctx := t.Context()
	for _, id := range []string{"m1", "m2"} {
		require.NoError(t, h.agent.Respond(ctx, message("c1", id, "Hours?"), func(agent.Chunk) error { return nil }))
	}
	before, err := h.store.Load(ctx, "c1")
	require.NoError(t, err)
	interrupt := func(id string, at time.Time, ref string) agent.Event {
		return agent.Event{
			Kind: agent.EventInterrupted, ID: id, CallID: "c1", LineID: "line-1", Timestamp: at.UnixMilli(),
			PartialText: "We open", Interrupts: ref, Delivery: agent.Delivery{ReceivedAt: time.Now()},
		}
	}

	require.NoError(t, h.agent.Record(ctx, interrupt("i1", time.Now().Add(time.Hour), "")), "acknowledged, so Saperly does not retry it")
	after, err := h.store.Load(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, before.History, after.History, "an interrupt from the future cuts nothing")

	require.NoError(t, h.agent.Record(ctx, interrupt("i2", time.Now().Add(time.Hour), "m1")))
	after, err = h.store.Load(ctx, "c1")
	require.NoError(t, err)
	require.Len(t, after.History, 4)
	assert.Equal(t, "We open", after.History[1].Text, "the answer to the message it names is cut")
	assert.True(t, after.History[1].Interrupted)
	assert.Equal(t, before.History[3], after.History[3], "the newest answer is untouched")
}

// TestCallsTheBrainHasNoRecordOfAreLookedUp: with the Saperly API configured, a message about
// a call whose call_started never arrived is checked once against GET /calls/{id} (issue 8
// §1): unknown calls and calls on another line are refused, known ones answered, the answers
// cached, and a call the store knows costs no lookup. An API outage answers anyway.
func TestCallsTheBrainHasNoRecordOfAreLookedUp(t *testing.T) {
	t.Parallel()
	api := saperly.NewAPI("api-key")
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	api.AddCall("known", "line-1")
	api.AddCall("elsewhere", "line-9")

	lib, err := prompts.NewLive(promptDir(t, map[string]string{"default.md": "Hi."}), zap.NewNop())
	require.NoError(t, err)
	store := session.NewMemoryStore(session.Options{})
	llm := anyModel("Hello.")
	a := agent.New(agent.Config{Model: "m"}, agent.Deps{
		Primary: llm, Store: store, Prompts: lib, Lookup: agent.NewSaperlyAPI(srv.URL+saperly.APIBasePath, "api-key"),
	})
	ctx := t.Context()
	say := func(callID, eventID string) ([]string, error) {
		var heard []string
		err := a.Respond(ctx, message(callID, eventID, "Hello?"), func(c agent.Chunk) error { heard = append(heard, c.Text); return nil })
		return heard, err
	}

	heard, err := say("ghost", "g1")
	require.ErrorIs(t, err, agent.ErrUnknownCall)
	assert.Empty(t, heard)
	_, err = say("ghost", "g2")
	require.ErrorIs(t, err, agent.ErrUnknownCall, "the negative answer is cached")
	_, err = say("elsewhere", "x1")
	require.ErrorIs(t, err, agent.ErrWrongLine, "a call Saperly puts on another line")
	assert.Empty(t, llm.requests(), "refused calls never reach the model")
	assert.Equal(t, []string{"ghost", "elsewhere"}, api.Lookups())

	heard, err = say("known", "k1")
	require.NoError(t, err)
	assert.Equal(t, []string{"Hello."}, heard)
	_, err = say("known", "k2")
	require.NoError(t, err)
	require.NoError(t, a.Record(ctx, agent.Event{Kind: agent.EventCallStarted, CallID: "started", LineID: "line-1"}))
	_, err = say("started", "s1")
	require.NoError(t, err)
	assert.Equal(t, []string{"ghost", "elsewhere", "known"}, api.Lookups(), "known calls are not looked up again")

	api.SetFault(saperly.Fault{Status: http.StatusServiceUnavailable})
	heard, err = say("new-during-outage", "o1")
	require.NoError(t, err, "fail open: an API outage never silences a caller")
	assert.Equal(t, []string{"Hello."}, heard)
}

// An agent's speech settings shape its answers, and only its own.
func TestAgentSpeechSettings(t *testing.T) {
	t.Parallel()
	const answer = "Dos opciones: 1. Limpieza básica - $89.99 2. Limpieza profunda - $149.50. Escriba a citas@ejemplo.com, por favor."
	dir := promptDir(t, map[string]string{
		"default.md": "You are the default agent.",
		"es.md":      "---\nspeech:\n  languages: [es]\n  ordinals: true\n  spell_links: true\n---\nHablas español.",
		"raw.md":     "---\nspeech:\n  lists: false\n  symbols: false\n---\nYou speak as written.",
		"lines.yaml": "line-es:\n  agent: es\nline-raw:\n  agent: raw\n",
	})
	h, _ := newAgentOn(t, dir, anyModel(answer))
	ev := message("c1", "e1", "Hola")
	ev.LineID = "line-es"
	assert.Equal(t, []string{
		"Dos opciones:",
		"Primero, Limpieza básica, $89.99.",
		"Segundo, Limpieza profunda, $149.50.",
		"Escriba a citas arroba ejemplo punto com, por favor.",
	}, texts(h.respond(t.Context(), ev)))

	ev = message("c2", "e2", "Hi")
	ev.LineID = "line-raw"
	assert.Equal(t, []string{
		"Dos opciones: 1.", "Limpieza básica - $89.99 2.", "Limpieza profunda - $149.50.", "Escriba a citas@ejemplo.com, por favor.",
	}, texts(h.respond(t.Context(), ev)), "lists and symbols switched off: the old cuts")

	ev = message("c3", "e3", "Hi")
	assert.Equal(t, []string{
		"Dos opciones:", "Limpieza básica, $89.99.", "Limpieza profunda, $149.50.", "Escriba a citas@ejemplo.com, por favor.",
	}, texts(h.respond(t.Context(), ev)), "the default agent: lists and symbols shaped")
}

// TestPinnedVersionMissCounted: a replica that finds the version a call is pinned to neither
// in its own library nor in the store answers with its current one and says so in
// TurnStats.PinnedMiss (the metric's source); one that finds it in the store (another replica
// shared it) is no miss.
func TestPinnedVersionMissCounted(t *testing.T) {
	t.Parallel()
	llm := anyModel("Okay.")
	a, _ := newAgentOn(t, promptDir(t, map[string]string{"default.md": "Replica A."}), llm)
	a.respond(t.Context(), message("c1", "e1", "Hi"))
	assert.False(t, a.lastStats().PinnedMiss)

	// Replica B shares the store but loaded other prompts.
	libB, err := prompts.NewLive(promptDir(t, map[string]string{"default.md": "Replica B."}), zap.NewNop())
	require.NoError(t, err)
	b := &harness{t: t, store: a.store}
	b.agent = agent.New(agent.Config{Model: "global-model", OnTurn: func(s agent.TurnStats) {
		b.mu.Lock()
		b.stats = append(b.stats, s)
		b.mu.Unlock()
	}}, agent.Deps{Primary: llm, Store: a.store, Prompts: libB})
	b.respond(t.Context(), message("c1", "e2", "And?"))
	assert.False(t, b.lastStats().PinnedMiss, "A shared its version through the store")

	// A call pinned to a version no replica shared.
	require.NoError(t, a.store.UpdateCall(t.Context(), session.Call{ID: "c2", Agent: "default", PromptVersion: "0123456789ab"}))
	b.respond(t.Context(), message("c2", "e3", "Hello?"))
	assert.True(t, b.lastStats().PinnedMiss, "c2 is pinned to a version found nowhere")
}
