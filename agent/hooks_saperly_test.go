package agent_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/redistest"
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

// TestSaperlyRecordsGatherDeliveries: the deliveries of a moment are written together, in
// one round trip to Redis, not one each (issue 10: about 5 round trips a call went to its
// record). On the real Redis store, counting the pipelines it is sent.
func TestSaperlyRecordsGatherDeliveries(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	recs := session.NewRedisRecords(rdb, prefix, time.Hour) // the test reads through this one
	writer := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = writer.Close() })
	trips := &redistest.Counter{}
	writer.AddHook(trips)
	s := agent.NewSaperlyRecords(agent.NewReceiver(session.NewRedisRecords(writer, prefix, time.Hour), time.Hour), zap.NewNop())
	at := time.Now()
	const calls = 10
	for i := range calls {
		call := fmt.Sprintf("c%d", i)
		s.Offer(agent.DeliveryRecord{Status: 200, Event: agent.Event{Kind: agent.EventCallStarted, ID: call + "-e1", CallID: call, LineID: "L1",
			Delivery: agent.Delivery{ID: call + "-d1", ReceivedAt: at}}})
		s.Offer(agent.DeliveryRecord{Status: 200, Event: agent.Event{Kind: agent.EventMessage, ID: call + "-e2", CallID: call, LineID: "L1", Text: "Hello?",
			Delivery: agent.Delivery{ID: call + "-d2", ReceivedAt: at}}, Lines: []agent.LineRecord{{Text: "Hi.", At: at}}})
	}
	// Without Close: the writer's own window ends the gathering.
	require.Eventually(t, func() bool {
		rec, err := recs.Call(t.Context(), "saperly", fmt.Sprintf("c%d", calls-1))
		return err == nil && rec.Events == 2
	}, 10*time.Second, 10*time.Millisecond)
	s.Close(t.Context())

	for i := range calls {
		rec, err := recs.Call(t.Context(), "saperly", fmt.Sprintf("c%d", i))
		require.NoError(t, err)
		assert.Equal(t, 2, rec.Events, i)
		require.Len(t, rec.Turns, 2, i)
		assert.Equal(t, "Hi.", rec.Turns[1].Text)
	}
	// Each pipeline is one round trip. A stalled test goroutine may split the batch, and a
	// Redis without the script (a fresh one, or another test's SCRIPT FLUSH) has a batch sent
	// again after one SCRIPT LOAD; never one trip per delivery.
	assert.LessOrEqual(t, trips.Pipelines(), int64(4), "%d deliveries", 2*calls)
	assert.LessOrEqual(t, trips.Alone(), int64(3), "no command on its own but a SCRIPT LOAD for a re-sent batch")
}

// TestReceiveAllKeepsOrder: the events that need nothing beside their record go together,
// the others (a closing event with a job to queue) on their own, all in the order given.
func TestReceiveAllKeepsOrder(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	recs := session.NewRedisRecords(rdb, prefix, time.Hour)
	jobs := session.NewRedisJobs(rdb, prefix, time.Minute)
	r := agent.NewReceiver(recs, time.Hour).WithJobs(jobs)
	at := time.Now()
	ev := func(key, status string, closes bool) agent.HookEvent {
		return agent.HookEvent{Platform: "salpre", Type: "x", DedupeKey: key, CallID: "c1", Status: status, Closes: closes, At: at,
			Turns: []agent.HookTurn{{Role: "caller", Text: key}}}
	}
	errs := r.ReceiveAll(t.Context(), []agent.HookEvent{
		ev("a", "ringing", false), ev("b", "answered", false),
		ev("end", "ended", true), // claimed, applied and its job queued on its own
		ev("late", "analysed", false),
		ev("a", "ringing", false), // a duplicate changes nothing
	}, 5*time.Second)
	assert.Equal(t, []error{nil, nil, nil, nil, nil}, errs)
	rec, err := recs.Call(t.Context(), "salpre", "c1")
	require.NoError(t, err)
	assert.Equal(t, "analysed", rec.Status, "the event after the closing one was applied after it")
	assert.True(t, rec.Closed)
	assert.Equal(t, 4, rec.Events)
	var texts []string
	for _, tr := range rec.Turns {
		texts = append(texts, tr.Text)
	}
	assert.Equal(t, []string{"a", "b", "end", "late"}, texts)
	job, err := jobs.Fetch(t.Context(), "w1", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "salpre:c1", job.Key)
}

// TestReceiveAllWithRedisDown: every event of the batch reports ErrStoreDown (the sender
// retries), none is lost silently.
func TestReceiveAllWithRedisDown(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	r := agent.NewReceiver(session.NewRedisRecords(rdb, "down:", time.Hour), time.Hour)
	errs := r.ReceiveAll(t.Context(), []agent.HookEvent{
		{Platform: "salpre", DedupeKey: "a", CallID: "c1"},
		{Platform: "salpre", DedupeKey: "b", CallID: "c2"},
	}, 5*time.Second)
	require.Len(t, errs, 2)
	for _, err := range errs {
		assert.ErrorIs(t, err, agent.ErrStoreDown)
	}
}

// TestSaperlyRecordsWriterSurvivesAPanic: a store client that panics loses that batch's
// records (logged), not the process, and the next batch is written.
func TestSaperlyRecordsWriterSurvivesAPanic(t *testing.T) {
	t.Parallel()
	recs := &panicOnceRecords{MemoryRecords: session.NewMemoryRecords()}
	core, logs := observer.New(zap.InfoLevel)
	s := agent.NewSaperlyRecords(agent.NewReceiver(recs, time.Hour), zap.New(core))
	started := func(call string) agent.DeliveryRecord {
		return agent.DeliveryRecord{Status: 200, Event: agent.Event{Kind: agent.EventCallStarted, ID: call, CallID: call,
			Delivery: agent.Delivery{ID: "d-" + call, ReceivedAt: time.Now()}}}
	}
	s.Offer(started("c1"))
	require.Eventually(t, func() bool { return logs.FilterMessage("call records writer panicked").Len() == 1 }, 10*time.Second, 5*time.Millisecond)
	s.Offer(started("c2"))
	s.Close(t.Context())
	_, err := recs.Call(t.Context(), "saperly", "c2")
	assert.NoError(t, err, "the writer goes on after the panic")
}

// panicOnceRecords is the in-memory store, whose first batch write panics.
type panicOnceRecords struct {
	*session.MemoryRecords
	panicked atomic.Bool
}

func (p *panicOnceRecords) ApplyCallsOnce(ctx context.Context, us []session.OnceUpdate) []session.OnceResult {
	if p.panicked.CompareAndSwap(false, true) {
		panic("store client bug")
	}
	return p.MemoryRecords.ApplyCallsOnce(ctx, us)
}
