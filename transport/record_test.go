package transport

import (
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
)

// reports collects what Config.OnDelivery is handed.
type reports struct {
	mu  sync.Mutex
	got []agent.DeliveryRecord
}

func (r *reports) add(d agent.DeliveryRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
}

func (r *reports) all() []agent.DeliveryRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]agent.DeliveryRecord(nil), r.got...)
}

// TestOnDelivery: every verified delivery about a call is reported after its log line, with
// the lines spoken and when each was flushed; a duplicate is reported as the refused delivery
// it is; deliveries that were never verified, or name no call, are not.
func TestOnDelivery(t *testing.T) {
	t.Parallel()
	rep := &reports{}
	resp := &scripted{lines: []string{"Hello there.", "How can I help?"}}
	f := newFixture(t, resp, func(c *Config) { c.OnDelivery = rep.add })

	body := msgBody("Hi")
	id := nextDeliveryID()
	res := f.send(t, deliveryReq{body: body, id: id, attempt: "2"})
	require.Equal(t, http.StatusOK, res.Code)
	require.Len(t, rep.all(), 1, "reported once the delivery is logged")
	require.Len(t, f.eventLines(), 1)
	d := rep.all()[0]
	assert.Equal(t, agent.EventMessage, d.Event.Kind)
	assert.Equal(t, testCall, d.Event.CallID)
	assert.Equal(t, "Hi", d.Event.Text)
	assert.Equal(t, id, d.Event.Delivery.ID)
	assert.Equal(t, 2, d.Event.Delivery.Attempt)
	assert.Equal(t, testNow, d.Event.Delivery.ReceivedAt)
	assert.Equal(t, http.StatusOK, d.Status)
	assert.Equal(t, outcomeAnswered, d.Outcome)
	require.Len(t, d.Lines, 2)
	assert.Equal(t, "Hello there.", d.Lines[0].Text)
	assert.Equal(t, "How can I help?", d.Lines[1].Text)
	assert.False(t, d.Lines[1].At.Before(d.Lines[0].At), "flush times in order")

	// The same delivery again: refused, and reported as such, with its event.
	res = f.send(t, deliveryReq{body: body, id: id})
	require.Equal(t, http.StatusConflict, res.Code)
	require.Len(t, rep.all(), 2)
	dup := rep.all()[1]
	assert.Equal(t, http.StatusConflict, dup.Status)
	assert.Equal(t, id, dup.Event.Delivery.ID)
	assert.Equal(t, agent.EventMessage, dup.Event.Kind)
	assert.Empty(t, dup.Lines)

	// Not verified, or about no call: not reported.
	f.send(t, deliveryReq{body: msgBody("forged"), secret: "wrong"})
	f.send(t, deliveryReq{body: readEvent(t, "test.json")})
	assert.Len(t, rep.all(), 2)

	// A non-message event about a call is reported with its acknowledgement.
	f.send(t, deliveryReq{body: readEvent(t, "call_ended.json")})
	require.Len(t, rep.all(), 3)
	assert.Equal(t, agent.EventCallEnded, rep.all()[2].Event.Kind)
	assert.Equal(t, outcomeRecorded, rep.all()[2].Outcome)
}
