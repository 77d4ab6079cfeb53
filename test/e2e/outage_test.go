package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/test/serve"
)

// The load of the store outage tests (issue 8 §3, at a CI-friendly scale): calls at a time,
// each call_started, several messages with a pause between them as a caller speaks, and
// call_ended, with Redis taken away for a while once a fifth of the messages are answered.
const (
	outageCalls       = 60
	outageConcurrency = 30
	outageTurns       = 4
	outageThink       = 250 * time.Millisecond // between an answer's end and the next message
	outageFor         = 5 * time.Second
	outageReply       = "Sure, I can help with that. Which day works best for you?"
)

// durableRedis makes a Redis that survives a kill with everything it acknowledged, so a
// restart loses nothing the brain was told was written.
var durableRedis = []string{"--appendonly", "yes", "--appendfsync", "always"}

// TestStoreOutagePause: Redis is paused (SIGSTOP) for 5 s in the middle of 60 calls at 30 at a
// time. Every message is answered, and afterwards every answered turn is in its call's history,
// once, in order: the turns whose commit failed were kept and written once Redis was back.
// call_ended during the pause is answered 503 (Saperly retries it).
func TestStoreOutagePause(t *testing.T) {
	t.Parallel()
	runOutage(t, func(t *testing.T, r *redisServer) func(t *testing.T) {
		require.NoError(t, r.cmd.Process.Signal(syscall.SIGSTOP))
		return func(t *testing.T) { require.NoError(t, r.cmd.Process.Signal(syscall.SIGCONT)) }
	})
}

// TestStoreOutageRestart: the same load, with Redis killed and started again on the same port
// 5 s later (with its append-only file, so it keeps what it acknowledged).
func TestStoreOutageRestart(t *testing.T) {
	t.Parallel()
	runOutage(t, func(t *testing.T, r *redisServer) func(t *testing.T) {
		r.kill()
		return func(t *testing.T) {
			back, err := launchRedis(r.dir, r.port, startWait, durableRedis...)
			require.NoError(t, err)
			t.Cleanup(back.kill)
		}
	})
}

// outageTurn is one message of the load and what became of it.
type outageTurn struct {
	eventID string
	text    string
	heard   string // the answer's lines, joined
	err     error  // the delivery failed or was not answered with speech
	end     time.Time
}

// runOutage runs the load against one brain on a private Redis, takes Redis away with down
// (which returns how to bring it back) once a fifth of the messages are answered, and checks
// every call's history afterwards.
func runOutage(t *testing.T, down func(*testing.T, *redisServer) func(*testing.T)) {
	port := freePort(t)
	r, err := launchRedis(t.TempDir(), port, startWait, durableRedis...)
	require.NoError(t, err)
	t.Cleanup(r.kill)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	m := startMock(t, "-reply", outageReply, "-token-delay", "5ms")
	b := startBrain(t, brainConfig{Redis: url, Model: m.URL + "/v1", Env: map[string]string{"BRAIN_PENDING_RETENTION": "5m"}})

	begin := time.Now()
	calls := make([][]outageTurn, outageCalls)
	ids := make([]string, outageCalls)
	for i := range ids {
		ids[i] = saperly.NewUUID()
	}
	ctx := t.Context()
	var (
		mu       sync.Mutex
		answered int
		failed   []string // non-message events that never got a 200
	)
	fifth := make(chan struct{})
	work := make(chan int)
	var wg sync.WaitGroup
	for range outageConcurrency {
		wg.Go(func() {
			for i := range work {
				if err := ackRetrying(ctx, b, "call_started", ids[i]); err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
				for n := range outageTurns {
					turn := sayOnce(ctx, b, ids[i], fmt.Sprintf("Call %d, message %d: can I book a cleaning?", i+1, n+1))
					calls[i] = append(calls[i], turn)
					mu.Lock()
					answered++
					if answered == outageCalls*outageTurns/5 {
						close(fifth)
					}
					mu.Unlock()
					_ = serve.Wait(ctx, outageThink) // the scenario ends with ctx
				}
				if err := ackRetrying(ctx, b, "call_ended", ids[i]); err != nil {
					mu.Lock()
					failed = append(failed, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	go func() {
		defer close(work)
		for i := range outageCalls {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	select {
	case <-fifth:
	case <-time.After(2 * time.Minute):
		t.Fatal("the load did not get a fifth of the way")
	}
	downAt := time.Now()
	t.Logf("store away after %s", downAt.Sub(begin).Round(time.Millisecond))
	up := down(t, r)
	// What cannot be recorded while the store is away is refused, so Saperly retries it.
	probe := newCall(b)
	res, err := probe.send(t, probe.event("call_ended"))
	checkError(t, res, err, http.StatusServiceUnavailable, "store_unavailable")
	_ = serve.Wait(ctx, time.Until(downAt.Add(outageFor)))
	up(t)
	upAt := time.Now()
	wg.Wait()
	t.Logf("store back after %s, load done after %s", upAt.Sub(begin).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	assert.Empty(t, failed, "every call_started and call_ended is recorded once the store is back")

	during := 0
	for _, turns := range calls {
		for _, turn := range turns {
			require.NoError(t, turn.err, "every message is answered with speech")
			if turn.end.After(downAt) && turn.end.Before(upAt) {
				during++
			}
		}
	}
	t.Logf("%d messages answered, %d of them while the store was away", outageCalls*outageTurns, during)
	require.GreaterOrEqual(t, during, 20, "precondition: the outage hit the load mid-run")

	// The brain writes what it kept as soon as the store takes writes again, without waiting
	// for a later turn of the call or for its shutdown.
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { _ = rdb.Close() })
	store := session.NewRedisStore(rdb, session.Options{})
	deadline := time.Now().Add(30 * time.Second)
	for missing := countMissing(ctx, store, ids, calls); missing > 0; missing = countMissing(ctx, store, ids, calls) {
		if time.Now().After(deadline) {
			t.Errorf("%d turns still missing from the history 30 s after the store came back", missing)
			break
		}
		_ = serve.Wait(ctx, 100*time.Millisecond)
	}

	t.Logf("histories complete after %s", time.Since(begin).Round(time.Millisecond))
	clean, err := b.process.stop(stopWait)
	require.True(t, clean, "brain exits after SIGTERM")
	require.NoError(t, err)
	lost, written := 0, 0
	for _, e := range b.entries() {
		switch e.str("msg") {
		case "turn lost":
			lost++
		case "pending turn written":
			written++
		}
	}
	t.Logf("turns kept while the store was away and written later: %d", written)
	assert.Zero(t, lost, "no turn is given up")
	assert.Positive(t, written, "precondition: some commits failed and were retried")

	for i, turns := range calls {
		st, err := store.Load(ctx, ids[i])
		require.NoError(t, err, "call %d", i+1)
		var want, got []string
		for _, turn := range turns {
			want = append(want, "user "+turn.eventID+" "+turn.text, "assistant "+turn.eventID+" "+norm(turn.heard))
		}
		for _, e := range st.History {
			got = append(got, e.Kind+" "+e.EventID+" "+norm(e.Text))
		}
		assert.Equal(t, want, got, "call %d: every answered turn in its history, once, in order", i+1)
	}

	// A turn answered with the store up saw every earlier turn of its call, from the store or
	// from what the brain still owed it.
	reqs := m.requests(t)
	degraded := map[string]bool{}
	for _, e := range b.entries() {
		if msg := e.str("msg"); (msg == "turn done" || msg == "turn degraded") && e["degraded"] == true {
			degraded[e.str("event_id")] = true
		}
	}
	for _, turns := range calls {
		for n, turn := range turns {
			if degraded[turn.eventID] {
				continue
			}
			want := make([]mockllm.Message, 0, 2*n+1)
			for _, prev := range turns[:n] {
				want = append(want, user(prev.text), assistant(prev.heard))
			}
			checkConversation(t, requestFor(t, reqs, turn.text), append(want, user(turn.text)))
		}
	}
}

// countMissing counts the answered turns not yet in their call's history.
func countMissing(ctx context.Context, store *session.RedisStore, ids []string, calls [][]outageTurn) int {
	missing := 0
	for i, turns := range calls {
		st, err := store.Load(ctx, ids[i])
		have := map[string]bool{}
		if err == nil {
			for _, e := range st.History {
				have[e.Kind+e.EventID] = true
			}
		}
		for _, turn := range turns {
			if !have["user"+turn.eventID] || !have["assistant"+turn.eventID] {
				missing++
			}
		}
	}
	return missing
}

// requestFor is the model request that answered the utterance said.
func requestFor(t *testing.T, reqs []mockllm.Request, said string) mockllm.Request {
	t.Helper()
	for _, r := range reqs {
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Role == "user" && r.Messages[n-1].Content == said {
			return r
		}
	}
	t.Fatalf("no model request answered %q", said)
	return mockllm.Request{}
}

// sayOnce sends one message, as a worker of the load does (no require: it runs off the test's
// goroutine), and checks it was answered with speech.
func sayOnce(ctx context.Context, b *brain, callID, text string) outageTurn {
	ev := b.client.NewEvent("message", callID, b.Line)
	ev["text"] = text
	turn := outageTurn{eventID: ev["event_id"].(string), text: text}
	sctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	res, err := b.client.Send(sctx, saperly.WebhookPath, ev)
	turn.end = time.Now()
	switch {
	case err != nil:
		turn.err = err
	case res.Status != http.StatusOK || len(res.Lines) == 0:
		turn.err = fmt.Errorf("message %q answered %d with %d lines: %s", text, res.Status, len(res.Lines), res.Body)
	default:
		turn.heard = res.Text()
	}
	return turn
}

// ackRetrying sends a non-message event until it is answered 200, retrying a 503 as Saperly
// does (a bounded number of times, with a pause between).
func ackRetrying(ctx context.Context, b *brain, kind, callID string) error {
	ev := b.client.NewEvent(kind, callID, b.Line)
	if kind == "call_ended" {
		ev["status"] = "completed"
	}
	var last string
	for range 40 {
		sctx, cancel := context.WithTimeout(ctx, sendTimeout)
		res, err := b.client.Send(sctx, saperly.WebhookPath, ev)
		cancel()
		switch {
		case err != nil:
			last = err.Error()
		case res.Status == http.StatusOK:
			return nil
		case res.Status == http.StatusServiceUnavailable:
			last = strings.TrimSpace(string(res.Body))
		default:
			return fmt.Errorf("%s for call %s answered %d: %s", kind, callID, res.Status, res.Body)
		}
		_ = serve.Wait(ctx, 500*time.Millisecond)
	}
	return fmt.Errorf("%s for call %s never recorded: %s", kind, callID, last)
}

// TestStoreOutageDrainOnExit: SIGTERM while Redis is paused and turns are kept for it. The
// brain keeps retrying within its drain timeout; Redis resumes a second later, the kept turns
// are written, and the brain exits cleanly with the call's whole conversation in Redis.
func TestStoreOutageDrainOnExit(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	r, err := launchRedis(t.TempDir(), port, startWait)
	require.NoError(t, err)
	t.Cleanup(r.kill)
	m := startMock(t, "-reply", outageReply, "-token-delay", "5ms")
	b := startBrain(t, brainConfig{
		Redis: fmt.Sprintf("redis://127.0.0.1:%d/0", port), Model: m.URL + "/v1",
		Env: map[string]string{"BRAIN_PENDING_RETENTION": "5m"},
	})
	c := newCall(b)
	var turns []outageTurn
	say := func(text string) {
		turn := sayOnce(t.Context(), b, c.ID, text)
		require.NoError(t, turn.err)
		turns = append(turns, turn)
	}
	say("Hi, I'd like to book a cleaning.")
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGSTOP))
	say("Tuesday, please.")
	say("In the morning.")
	line := b.turnLine(t, turns[2].eventID)
	require.Equal(t, true, line["pending"], "precondition: the turn was kept for the store")

	require.NoError(t, b.cmd.Process.Signal(syscall.SIGTERM))
	b.waitLog(t, "the drain of the kept turns", func(e logEntry) bool { return e.str("msg") == "writing pending turns before exit" })
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGCONT))
	select {
	case <-b.done:
	case <-time.After(stopWait):
		t.Fatalf("the brain did not exit within %s of Redis coming back", stopWait)
	}
	require.NoError(t, b.waitErr, "a clean exit")
	b.waitLog(t, "the kept turns written", func(e logEntry) bool { return e.str("msg") == "pending turns written before exit" })

	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := session.NewRedisStore(rdb, session.Options{}).Load(t.Context(), c.ID)
	require.NoError(t, err)
	var want, got []string
	for _, turn := range turns {
		want = append(want, "user "+turn.text, "assistant "+norm(turn.heard))
	}
	for _, e := range st.History {
		got = append(got, e.Kind+" "+norm(e.Text))
	}
	assert.Equal(t, want, got, "the whole conversation, once, in order")
}
