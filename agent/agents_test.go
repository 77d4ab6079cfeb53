package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
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
	_, claimed, err := h.store.BeginTurn(t.Context(), session.Call{ID: "c1"}, "e1")
	require.NoError(t, err)
	require.True(t, claimed)
	require.NoError(t, h.store.CommitTurn(t.Context(), "c1", "e1"))

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

func (h *hiccup) AppendLines(ctx context.Context, eventID string, lines ...string) error {
	h.mu.Lock()
	first := !h.failed
	h.failed = true
	h.mu.Unlock()
	if first {
		return errors.New("connection reset")
	}
	return h.Store.AppendLines(ctx, eventID, lines...)
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
	require.NoError(t, store.FollowTurn(t.Context(), "e1", func(text string) error {
		replayed = append(replayed, text)
		return nil
	}))
	assert.Equal(t, first, replayed, "a retry would replay the whole answer")
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
