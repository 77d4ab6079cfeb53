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

// TestReplayInTurn: with ReplayInTurn a message with words is handed to the responder with
// ReplayTTL instead of being checked here (one store round trip before the model, not two),
// and the responder's ErrDuplicateDelivery is answered 409 duplicate_delivery, nothing spoken.
// A blank message and every other event are still checked here.
func TestReplayInTurn(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	resp := &scripted{respond: func(_ context.Context, ev agent.Event, emit func(agent.Chunk) error) error {
		if ev.Delivery.ReplayTTL > 0 {
			mu.Lock()
			dup := seen[ev.Delivery.ID]
			seen[ev.Delivery.ID] = true
			mu.Unlock()
			if dup {
				return fmt.Errorf("delivery %s: %w", ev.Delivery.ID, agent.ErrDuplicateDelivery)
			}
		}
		return emit(agent.Speak("Hello."))
	}}
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
	require.Equal(t, http.StatusOK, f.send(t, end).Code)
	assertJSON(t, f.send(t, end), http.StatusConflict, `{"error":"duplicate_delivery"}`)
	assert.Len(t, resp.recorded, 1, "the replayed call_ended is refused before it is recorded")
}
