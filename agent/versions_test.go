package agent_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// Two replicas on one store: A pins a call to the agent version A loaded; B, which never
// loaded that version (its file says something else), answers the call's next turn with A's
// version, fetched from the store, not with its own (issue 12 §2: pinned prompt versions
// are shared).
func TestPinnedVersionFromAnotherReplica(t *testing.T) {
	t.Parallel()
	store := session.NewMemoryStore(session.Options{})
	replica := func(prompt string) (*agent.Agent, *rounds, *prompts.Live, *observer.ObservedLogs) {
		lib, err := prompts.NewLive(promptDir(t, map[string]string{"default.md": prompt}), zap.NewNop())
		require.NoError(t, err)
		llm := anyModel("Okay.")
		core, logs := observer.New(zap.InfoLevel)
		return agent.New(agent.Config{Model: "m"}, agent.Deps{Primary: llm, Store: store, Prompts: lib, Log: zap.New(core)}), llm, lib, logs
	}
	a, llmA, libA, _ := replica("You are version one, loaded by A.")
	b, llmB, libB, logsB := replica("You are version two, only on B.")
	v1 := libA.Current().Default().Version
	_, known := libB.Version(v1)
	require.False(t, known, "B never loaded A's version")

	ctx := t.Context()
	say := func(r *agent.Agent, callID, eventID string) {
		t.Helper()
		require.NoError(t, r.Respond(ctx, message(callID, eventID, "Hello?"), func(agent.Chunk) error { return nil }))
	}
	say(a, "c1", "e1")
	say(b, "c1", "e2")
	require.Len(t, llmA.requests(), 1)
	require.Len(t, llmB.requests(), 1)
	assert.Equal(t, "You are version one, loaded by A.", llmB.requests()[0].Messages[0].Text,
		"B answers the call with the version it is pinned to")
	assert.Empty(t, logsB.FilterMessage("pinned prompt version unknown here, using the current one").All())
	assert.Len(t, logsB.FilterMessage("pinned prompt version loaded from the store").All(), 1)

	// B keeps it: the next turn needs no store read, and B's own calls get B's version.
	_, known = libB.Version(v1)
	assert.True(t, known)
	say(b, "c1", "e3")
	assert.Len(t, logsB.FilterMessage("pinned prompt version loaded from the store").All(), 1)
	say(b, "c2", "e1")
	assert.Equal(t, "You are version two, only on B.", llmB.requests()[2].Messages[0].Text)

	// A call pinned through call_started on B is answered with B's version on A.
	require.NoError(t, b.Record(ctx, agent.Event{Kind: agent.EventCallStarted, CallID: "c3", LineID: "line-1"}))
	say(a, "c3", "e1")
	assert.Equal(t, "You are version two, only on B.", llmA.requests()[1].Messages[0].Text)
}

// A pinned version no replica stored (it was pinned before sharing existed, or its copy
// expired) is answered with the current version and a warning: the caller is never left
// in silence.
func TestPinnedVersionNowhere(t *testing.T) {
	t.Parallel()
	store := session.NewMemoryStore(session.Options{})
	require.NoError(t, store.UpdateCall(t.Context(), session.Call{ID: "c1", LineID: "line-1", Agent: "default", PromptVersion: "0123456789ab"}))
	lib, err := prompts.NewLive(promptDir(t, map[string]string{"default.md": "You are the current version."}), zap.NewNop())
	require.NoError(t, err)
	llm := anyModel("Okay.")
	core, logs := observer.New(zap.InfoLevel)
	a := agent.New(agent.Config{Model: "m"}, agent.Deps{Primary: llm, Store: store, Prompts: lib, Log: zap.New(core)})
	require.NoError(t, a.Respond(t.Context(), message("c1", "e1", "Hello?"), func(agent.Chunk) error { return nil }))
	assert.Equal(t, "You are the current version.", llm.requests()[0].Messages[0].Text)
	assert.Len(t, logs.FilterMessage("pinned prompt version unknown here, using the current one").All(), 1)
}
