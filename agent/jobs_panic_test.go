package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
)

// TestPanicInJobIsAFailedAttempt: a job whose work panics (here the summary's model client)
// is a failed attempt, buried after the last one, and the worker survives it.
// On the real Redis queue (TEST_REDIS_URL).
func TestPanicInJobIsAFailedAttempt(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := t.Context()
	q := session.NewRedisJobs(rdb, prefix, time.Minute)
	recs := session.NewMemoryRecords()
	at := time.Now()
	require.NoError(t, recs.ApplyCall(ctx, session.CallUpdate{Platform: "saperly", CallID: "c1", At: at,
		Turns: []session.RecordTurn{{Role: "caller", Text: "Hi"}}}))
	w := agent.NewWorker(agent.WorkerConfig{Consumer: "w1", MaxAttempts: 1, LLM: panicLLM{},
		Model: func(session.CallRecord) string { return "m" }}, q, recs, zap.NewNop())

	require.NoError(t, q.Enqueue(ctx, agent.JobSummary, "saperly:c1", ""))
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(wctx)
	}()
	require.Eventually(t, func() bool {
		dead, err := q.Dead(ctx)
		return err == nil && len(dead) == 1
	}, 10*time.Second, 20*time.Millisecond, "the panicking job is buried")
	stop()
	<-done
}
