package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
)

// TestRecordChecksTheDeliveryWithItsWrite: an event that updates the call's record, handed
// over with Delivery.ReplayTTL, has its replay check done by the record's write (one store
// round trip): the same delivery again is ErrDuplicateDelivery and changes nothing.
func TestRecordChecksTheDeliveryWithItsWrite(t *testing.T) {
	h := newHarness(t, agent.Config{}, newScripted(nil), false)
	ctx := t.Context()
	ended := agent.Event{Kind: agent.EventCallEnded, CallID: "c1", LineID: "l1", ID: "e-end", Status: "completed",
		Delivery: agent.Delivery{ID: "d1", ReceivedAt: time.Now(), ReplayTTL: time.Minute}}
	require.True(t, agent.RecordChecksReplay(ended))
	require.NoError(t, h.agent.Record(ctx, ended))

	again := ended
	again.Status = "failed"
	require.ErrorIs(t, h.agent.Record(ctx, again), agent.ErrDuplicateDelivery)
	st, err := h.store.Load(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, "completed", st.Call.Status, "the replay wrote nothing")

	again.Delivery.ReplayTTL = 0 // checked by the transport already: written
	require.NoError(t, h.agent.Record(ctx, again))
	st, err = h.store.Load(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, "failed", st.Call.Status)

	for _, ev := range []agent.Event{
		{Kind: agent.EventInterrupted, CallID: "c1"},
		{Kind: agent.EventSMSReceived},
		{Kind: agent.EventCallStarted},
	} {
		assert.False(t, agent.RecordChecksReplay(ev), "%s with call id %q", ev.Kind, ev.CallID)
	}
}
