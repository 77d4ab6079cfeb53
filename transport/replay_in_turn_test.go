package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
)

// TestReplayInTurn: with ReplayInTurn a message with words, and an event that updates the
// call's record, is handed to the responder with ReplayTTL instead of being checked here (one
// store round trip, not two), and the responder's ErrDuplicateDelivery is answered 409
// duplicate_delivery, nothing spoken. A blank message and the other events are still checked
// here.
func TestReplayInTurn(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	// check is the responder's replay check, as the store does it with its first write.
	check := func(ev agent.Event) error {
		if ev.Delivery.ReplayTTL <= 0 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[ev.Delivery.ID] {
			return fmt.Errorf("delivery %s: %w", ev.Delivery.ID, agent.ErrDuplicateDelivery)
		}
		seen[ev.Delivery.ID] = true
		return nil
	}
	resp := &scripted{
		respond: func(_ context.Context, ev agent.Event, emit func(agent.Chunk) error) error {
			if err := check(ev); err != nil {
				return err
			}
			return emit(agent.Speak("Hello."))
		},
		record: func(_ context.Context, ev agent.Event) error { return check(ev) },
	}
	f := newFixture(t, resp, func(c *Config) { c.ReplayInTurn = true })

	msg := deliveryReq{body: msgBody("Hi."), id: nextDeliveryID()}
	require.Equal(t, http.StatusOK, f.send(t, msg).Code)
	assert.Empty(t, f.cache.ttls, "a message with words is not checked here")
	require.Len(t, resp.Responded(), 1)
	assert.Positive(t, resp.Responded()[0].Delivery.ReplayTTL)
	assertJSON(t, f.send(t, msg), http.StatusConflict, `{"error":"duplicate_delivery"}`)

	blank := deliveryReq{body: msgBody("  "), id: nextDeliveryID()}
	require.Equal(t, http.StatusOK, f.send(t, blank).Code)
	assert.Len(t, f.cache.ttls, 1, "a blank message is checked here (it is answered before any turn begins)")
	assertJSON(t, f.send(t, blank), http.StatusConflict, `{"error":"duplicate_delivery"}`)

	ended, err := json.Marshal(map[string]string{"event": "call_ended", "event_id": "e-end", "line_id": testLine, "call_id": testCall, "status": "completed"})
	require.NoError(t, err)
	end := deliveryReq{body: ended, id: nextDeliveryID()}
	checked := len(f.cache.ttls)
	require.Equal(t, http.StatusOK, f.send(t, end).Code)
	assert.Len(t, f.cache.ttls, checked, "call_ended is checked with the record's write, not here")
	require.Len(t, resp.Recorded(), 1)
	assert.Positive(t, resp.Recorded()[0].Delivery.ReplayTTL)
	assertJSON(t, f.send(t, end), http.StatusConflict, `{"error":"duplicate_delivery"}`)

	cut, err := json.Marshal(map[string]string{"event": "interrupted", "event_id": "e-cut", "line_id": testLine, "call_id": testCall, "partial_response_text": "Sure"})
	require.NoError(t, err)
	interrupted := deliveryReq{body: cut, id: nextDeliveryID()}
	require.Equal(t, http.StatusOK, f.send(t, interrupted).Code)
	assert.Len(t, f.cache.ttls, checked+1, "an interrupt is checked here")
	assertJSON(t, f.send(t, interrupted), http.StatusConflict, `{"error":"duplicate_delivery"}`)
	assert.Len(t, resp.Recorded(), 3, "call_ended twice (the responder refused the replay), the interrupt once")
	assert.Zero(t, resp.Recorded()[2].Delivery.ReplayTTL)
}
