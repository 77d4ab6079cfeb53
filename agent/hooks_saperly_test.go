package agent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
)

// TestSaperlyRecords: answered Saperly deliveries become one call record; a retried message
// (same event_id) is added once; an Offer after Close is dropped, not a panic.
func TestSaperlyRecords(t *testing.T) {
	t.Parallel()
	recs := session.NewMemoryRecords()
	s := agent.NewSaperlyRecords(agent.NewReceiver(recs, time.Hour), zap.NewNop())
	at := time.UnixMilli(1767225600000)
	ev := func(kind, id, text string) agent.Event {
		return agent.Event{Kind: kind, ID: id, CallID: "c1", LineID: "L1", Text: text, From: "+15551234567",
			Delivery: agent.Delivery{ID: "d-" + id, ReceivedAt: at}}
	}
	msg := agent.DeliveryRecord{Event: ev("message", "e2", "Hello?"), Status: 200,
		Lines: []agent.LineRecord{{Text: "Hi,", At: at}, {Text: "how can I help?", At: at}}}
	s.Offer(agent.DeliveryRecord{Event: ev("call_started", "e1", ""), Status: 200})
	s.Offer(msg)
	s.Offer(msg) // a retry of the same message
	s.Offer(agent.DeliveryRecord{Event: ev("message", "e9", "refused"), Status: 401})
	s.Offer(agent.DeliveryRecord{Event: ev("call_ended", "e3", ""), Status: 200})
	s.Close(t.Context())
	s.Offer(msg)

	got, err := recs.Call(t.Context(), "saperly", "c1")
	require.NoError(t, err)
	assert.True(t, got.Closed)
	assert.Equal(t, "L1", got.Source)
	assert.Equal(t, 3, got.Events)
	require.Len(t, got.Turns, 2)
	assert.Equal(t, session.RecordTurn{Role: "caller", Text: "Hello?", At: at.UTC()}, session.RecordTurn{Role: got.Turns[0].Role, Text: got.Turns[0].Text, At: got.Turns[0].At.UTC()})
	assert.Equal(t, "Hi, how can I help?", got.Turns[1].Text)
}
