package callscript_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/transport"
)

// got is one delivery the stand-in brain received.
type got struct {
	Path       string
	DeliveryID string
	Attempt    string
	Body       map[string]any
	Cancelled  chan struct{} // closed when the runner hung up on the answer
}

func (g got) str(key string) string { s, _ := g.Body[key].(string); return s }

// brain is a stand-in for the brain's HTTP side, scripted per test: it verifies every
// signature exactly as the brain does, records each delivery, and answers messages with
// answer. The real brain is played in test/e2e and cmd/callsim.
type brain struct {
	t      *testing.T
	secret string
	answer func(w http.ResponseWriter, r *http.Request, g got)

	mu   sync.Mutex
	gots []got
	seen map[string]bool
	// arrived is signalled on every delivery, for handlers that wait for another delivery.
	arrived *sync.Cond
}

func newBrain(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, g got)) (*brain, *httptest.Server) {
	t.Helper()
	b := &brain{t: t, secret: "s3cret", answer: answer, seen: map[string]bool{}}
	b.arrived = sync.NewCond(&b.mu)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return b, srv
}

func (b *brain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	require.NoError(b.t, err)
	if err := transport.Verify(r.Header, raw, []string{b.secret}, time.Now(), 5*time.Minute); err != nil {
		http.Error(w, `{"error":"bad signature"}`, http.StatusUnauthorized)
		return
	}
	g := got{Path: r.URL.Path, DeliveryID: r.Header.Get(transport.HeaderDeliveryID),
		Attempt: r.Header.Get(transport.HeaderAttempt), Cancelled: make(chan struct{})}
	require.NoError(b.t, json.Unmarshal(raw, &g.Body))
	b.mu.Lock()
	dup := b.seen[g.DeliveryID]
	b.seen[g.DeliveryID] = true
	b.gots = append(b.gots, g)
	b.arrived.Broadcast()
	b.mu.Unlock()
	go func() { <-r.Context().Done(); close(g.Cancelled) }()
	switch {
	case dup:
		http.Error(w, `{"error":"duplicate delivery"}`, http.StatusConflict)
	case g.str("event") == "message" && b.answer != nil:
		b.answer(w, r, g)
	default:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}
}

// waitFor blocks until a delivery matching ok has arrived, and returns it.
func (b *brain) waitFor(ctx context.Context, ok func(got) bool) (got, bool) {
	stop := context.AfterFunc(ctx, func() { b.mu.Lock(); b.arrived.Broadcast(); b.mu.Unlock() })
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		for _, g := range b.gots {
			if ok(g) {
				return g, true
			}
		}
		if ctx.Err() != nil {
			return got{}, false
		}
		b.arrived.Wait()
	}
}

func (b *brain) received() []got {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]got(nil), b.gots...)
}

// speak writes NDJSON lines, flushing each.
func speak(w http.ResponseWriter, lines ...string) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
	for _, l := range lines {
		b, _ := json.Marshal(map[string]string{"type": "speak", "text": l})
		_, _ = w.Write(append(b, '\n'))
		w.(http.Flusher).Flush()
	}
}

func parse(t *testing.T, src string) *callscript.Script {
	t.Helper()
	s, err := callscript.Parse(t.Name()+".yaml", []byte(src))
	require.NoError(t, err)
	return s
}

func runner(srv *httptest.Server) *callscript.Runner {
	return &callscript.Runner{URL: srv.URL, Secret: "s3cret", TimeScale: 1}
}

// failed lists the failed checks of a result, as "turn N: name: detail".
func failed(r *callscript.Result) []string {
	var out []string
	for _, t := range r.Turns {
		for _, c := range t.Checks {
			if !c.OK {
				out = append(out, fmt.Sprintf("turn %d: %s: %s", t.Index+1, c.Name, c.Detail))
			}
		}
	}
	return out
}

func TestPlayCall(t *testing.T) {
	t.Parallel()
	b, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) {
		switch g.str("text") {
		case "Hi":
			speak(w, "One moment.", "Hello there, how can I help?")
		default:
			speak(w, "Sorry, I'm having a little trouble on my end.")
		}
	})
	s := parse(t, `
line_id: line-1
from: "+15555550123"
turns:
  - status: {event: call_incoming, status: ringing}
  - start: {extra: 1}
  - say: Hi
    expect: {contains: [HELLO], not_contains: [goodbye], matches: "how can I", first_line_within: 1m, no_apology: true}
  - say: Huh?
    expect: {contains: [hello], no_hold: true, no_apology: true}
  - sms: Running late
  - send: {event: test, foo: bar}
  - hangup: {duration: 74}
`)
	res := runner(srv).Play(t.Context(), s)
	require.NoError(t, res.Err)
	require.Len(t, res.Turns, 7)

	hi := res.Turns[2]
	require.NotNil(t, hi.Delivery)
	assert.Equal(t, http.StatusOK, hi.Delivery.Status)
	assert.Nil(t, hi.Delivery.Err)
	require.Len(t, hi.Delivery.Lines, 2)
	assert.True(t, hi.Delivery.Lines[0].Hold, "One moment. is a holding phrase")
	assert.False(t, hi.Delivery.Lines[1].Hold)
	assert.Equal(t, "One moment. Hello there, how can I help?", hi.Delivery.Text())
	first, ok := hi.Delivery.FirstLine()
	require.True(t, ok)
	assert.LessOrEqual(t, first, hi.Delivery.Total)
	assert.Len(t, hi.Delivery.Gaps(), 1)
	assert.Equal(t, len("One moment.")+len("Hello there, how can I help?"), hi.Delivery.Chars())
	assert.False(t, hi.Failed(), "checks: %v", hi.Checks)

	huh := res.Turns[3]
	assert.True(t, huh.Delivery.Lines[0].Apology)
	assert.True(t, res.Failed())
	assert.Equal(t, []string{
		`turn 4: contains "hello": heard "Sorry, I'm having a little trouble on my end."`,
		`turn 4: no apology: heard "Sorry, I'm having a little trouble on my end." at ` + fmt.Sprint(huh.Delivery.Lines[0].At.Milliseconds()) + `ms`,
	}, failed(res))

	recv := b.received()
	require.Len(t, recv, 7)
	want := []struct{ path, event string }{
		{"/status", "call_incoming"}, {"/webhook", "call_started"}, {"/webhook", "message"}, {"/webhook", "message"},
		{"/webhook", "sms_received"}, {"/webhook", "test"}, {"/webhook", "call_ended"},
	}
	for i, w := range want {
		assert.Equal(t, w.path, recv[i].Path, "delivery %d", i)
		assert.Equal(t, w.event, recv[i].str("event"), "delivery %d", i)
		assert.Equal(t, res.CallID, recv[i].str("call_id"), "delivery %d: one call", i)
		assert.Equal(t, "line-1", recv[i].str("line_id"), "delivery %d", i)
		assert.NotEmpty(t, recv[i].str("event_id"))
	}
	assert.Equal(t, "ringing", recv[0].str("status"))
	assert.Equal(t, "+15555550123", recv[1].str("from_number"))
	assert.Equal(t, callscript.DefaultTo, recv[1].str("to_number"))
	assert.Equal(t, float64(1), recv[1].Body["extra"])
	assert.Equal(t, "Running late", recv[4].str("message"))
	assert.Equal(t, "bar", recv[5].str("foo"))
	assert.Equal(t, float64(74), recv[6].Body["duration"])
	assert.Equal(t, "completed", recv[6].str("status"))
}

func TestPlayWrongSecret(t *testing.T) {
	t.Parallel()
	_, srv := newBrain(t, nil)
	r := runner(srv)
	r.Secret = "wrong"
	res := r.Play(t.Context(), parse(t, "turns: [{start: {}}]"))
	require.Len(t, res.Turns, 1)
	d := res.Turns[0].Delivery
	assert.Equal(t, http.StatusUnauthorized, d.Status)
	require.NotNil(t, d.Err)
	assert.Equal(t, callscript.ErrStatus, d.Err.Kind)
	assert.Equal(t, []string{`turn 1: call_started answered: non-200: status 401: {"error":"bad signature"}`}, failed(res))

	r.SecretFor = func(line string) string { return map[string]string{"L": "s3cret"}[line] }
	res = r.Play(t.Context(), parse(t, "line_id: L\nturns: [{start: {}}]"))
	assert.False(t, res.Failed(), "SecretFor picks the line's secret: %v", failed(res))
}

func TestPlayBargeIn(t *testing.T) {
	t.Parallel()
	b, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) {
		if g.str("text") == "Quick" {
			speak(w, "All done.")
			return
		}
		speak(w, "First part.")
		<-r.Context().Done() // the rest would come, but the caller talks over it
	})
	s := parse(t, `
turns:
  - start: {}
  - say: Tell me everything
    barge_in: {after_lines: 1}
  - say: And now?
    barge_in: {after: 30ms}
  - say: Again
    barge_in: {after_lines: 1, heard: "First"}
  - say: Quick
    barge_in: {after_lines: 3}
`)
	res := runner(srv).Play(t.Context(), s)
	require.NoError(t, res.Err)
	assert.Empty(t, failed(res))

	lines := res.Turns[1]
	assert.True(t, lines.Delivery.Cut)
	assert.Equal(t, "First part.", lines.Heard)
	require.NotNil(t, lines.Interrupt)
	assert.Nil(t, lines.Interrupt.Err)

	after := res.Turns[2]
	assert.True(t, after.Delivery.Cut, "cut after a time, before any further line")
	assert.Nil(t, after.Delivery.Err, "a barge-in is not a failure")
	// What arrived within 30ms depends on the machine; heard is exactly that.
	assert.Equal(t, after.Delivery.Text(), after.Heard)

	assert.Equal(t, "First", res.Turns[3].Heard)
	quick := res.Turns[4]
	assert.False(t, quick.Delivery.Cut, "the answer ended before the caller spoke up")
	assert.Nil(t, quick.Interrupt, "so no interrupted is sent")

	recv := b.received()
	var kinds, partials []string
	for _, g := range recv {
		kinds = append(kinds, g.str("event"))
		if g.str("event") == "interrupted" {
			partials = append(partials, g.str("partial_response_text"))
		}
		if g.str("event") == "message" && g.str("text") != "Quick" {
			select {
			case <-g.Cancelled:
			case <-t.Context().Done():
				t.Fatalf("the brain never saw the caller hang up on %q", g.str("text"))
			}
		}
	}
	assert.Equal(t, []string{"call_started", "message", "interrupted", "message", "interrupted", "message", "interrupted", "message"}, kinds)
	assert.Equal(t, []string{"First part.", after.Heard, "First"}, partials)
}

// TestPlayLateInterrupted: with late, the next message goes out without waiting for the
// interrupted event. The stand-in answers the next message only once interrupted has
// arrived, so a runner that waited would never finish.
func TestPlayLateInterrupted(t *testing.T) {
	t.Parallel()
	var b *brain
	b, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) {
		if g.str("text") == "Next" {
			_, ok := b.waitFor(r.Context(), func(g got) bool { return g.str("event") == "interrupted" })
			require.True(t, ok)
			speak(w, "Go on.")
			return
		}
		speak(w, "Well,")
		<-r.Context().Done()
	})
	s := parse(t, `
turns:
  - say: Talk
    barge_in: {after_lines: 1, late: 20ms}
  - say: Next
`)
	cutAt := time.Now()
	res := runner(srv).Play(t.Context(), s)
	require.NoError(t, res.Err)
	assert.Empty(t, failed(res))
	require.NotNil(t, res.Turns[0].Interrupt)
	assert.Nil(t, res.Turns[0].Interrupt.Err)
	assert.Equal(t, http.StatusOK, res.Turns[0].Interrupt.Status)
	assert.Contains(t, res.Turns[0].Checks, callscript.Check{Name: "interrupted answered", OK: true}, "the late delivery is checked too")

	recv := b.received()
	require.Len(t, recv, 3)
	assert.Equal(t, "Next", recv[1].str("text"), "the next message arrives before the late interrupted")
	assert.Equal(t, "interrupted", recv[2].str("event"))
	// interrupted carries the time of the cut, so the brain can place it (PROTOCOL §1.5).
	stamp, _ := recv[2].Body["timestamp"].(float64)
	assert.GreaterOrEqual(t, int64(stamp), cutAt.UnixMilli())
	next, _ := recv[1].Body["timestamp"].(float64)
	assert.LessOrEqual(t, stamp, next, "stamped at the cut, before the next message")
}

func TestPlayRetry(t *testing.T) {
	t.Parallel()
	var b *brain
	b, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) {
		switch {
		case g.str("text") == "Streaming" && g.Attempt == "1":
			speak(w, "One.")
			// Hold the rest until the retry has arrived, so it comes while this streams.
			_, ok := b.waitFor(r.Context(), func(o got) bool { return o.str("event_id") == g.str("event_id") && o.Attempt == "2" })
			require.True(t, ok)
			speak(w, "Two.")
		case g.str("text") == "Differs" && g.Attempt == "2":
			speak(w, "Something else.")
		default:
			speak(w, "One.", "Two.")
		}
	})
	s := parse(t, `
turns:
  - say: Streaming
    retry: {when: streaming, after: 1ms}
  - say: After
    retry: {when: after}
  - say: Differs
    retry: {when: after}
`)
	res := runner(srv).Play(t.Context(), s)
	require.NoError(t, res.Err)
	for _, tr := range res.Turns[:2] {
		require.NotNil(t, tr.Retry)
		assert.Equal(t, "One. Two.", tr.Retry.Text())
		assert.Equal(t, "One. Two.", tr.Delivery.Text())
		assert.NotEqual(t, tr.Delivery.DeliveryID, tr.Retry.DeliveryID, "a retry is a new delivery")
		assert.Equal(t, tr.Delivery.EventID, tr.Retry.EventID, "of the same event")
	}
	assert.Equal(t, []string{`turn 3: retry same words: first answer "One. Two.", retry "Something else."`}, failed(res))
	attempts := map[string][]string{}
	for _, g := range b.received() {
		attempts[g.str("text")] = append(attempts[g.str("text")], g.Attempt)
	}
	assert.ElementsMatch(t, []string{"1", "2"}, attempts["Streaming"])
	assert.Equal(t, []string{"1", "2"}, attempts["After"])
}

func TestPlayDuplicate(t *testing.T) {
	t.Parallel()
	_, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) { speak(w, "Yes.") })
	res := runner(srv).Play(t.Context(), parse(t, "turns: [{say: Again, duplicate: true}]"))
	assert.Empty(t, failed(res))
	d := res.Turns[0].Duplicate
	require.NotNil(t, d)
	assert.Equal(t, http.StatusConflict, d.Status)
	assert.Equal(t, res.Turns[0].Delivery.DeliveryID, d.DeliveryID)

	// A brain that answers a replayed delivery again fails the turn.
	lax := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { speak(w, "Yes.") }))
	t.Cleanup(lax.Close)
	res = runner(lax).Play(t.Context(), parse(t, "turns: [{say: Again, duplicate: true}]"))
	assert.Equal(t, []string{"turn 1: duplicate refused: want a non-2xx status (409), got status 200"}, failed(res))
}

// TestPlayErrorKinds: each way a delivery can fail is named, as a load report counts them.
func TestPlayErrorKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    callscript.ErrorKind
		lines   int
	}{
		{"non-200", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) }, callscript.ErrStatus, 0},
		{"bad ndjson", func(w http.ResponseWriter, r *http.Request) {
			speak(w, "Fine.")
			_, _ = w.Write([]byte("not json\n"))
		}, callscript.ErrNDJSON, 2},
		{"no newline", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-ndjson")
			_, _ = w.Write([]byte(`{"type":"speak","text":"Cut"}`))
		}, callscript.ErrNDJSON, 1},
		{"connection reset", func(w http.ResponseWriter, r *http.Request) {
			speak(w, "Hello,")
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close() // mid-stream: the chunked body never ends
			}
		}, callscript.ErrReset, 1},
		{"line gap", func(w http.ResponseWriter, r *http.Request) {
			speak(w, "Let me think.")
			<-r.Context().Done() // stalls past the line budget; the runner gives up
		}, callscript.ErrTimeout, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			r := runner(srv)
			r.Budgets.LineGap = 50 * time.Millisecond
			res := r.Play(t.Context(), parse(t, "turns: [{say: Hi}]"))
			require.NoError(t, res.Err)
			d := res.Turns[0].Delivery
			require.NotNil(t, d.Err)
			assert.Equal(t, tt.want, d.Err.Kind, "error: %v", d.Err)
			assert.Len(t, d.Lines, tt.lines, "the lines that arrived are kept")
			assert.True(t, res.Failed())
		})
	}
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // nothing listens there any more
		res := (&callscript.Runner{URL: url}).Play(t.Context(), parse(t, "turns: [{start: {}}]"))
		require.NotNil(t, res.Turns[0].Delivery.Err)
		assert.Equal(t, callscript.ErrRefused, res.Turns[0].Delivery.Err.Kind)
	})
	t.Run("silent", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { speak(w) }))
		t.Cleanup(srv.Close)
		res := runner(srv).Play(t.Context(), parse(t, "turns: [{say: Hi}]"))
		assert.Equal(t, []string{"turn 1: not silent: the answer has no spoken line: the caller hears silence"}, failed(res))
	})
}

// observer is what an Observer would see, keyed by the caller's words.
type observer map[string]callscript.Observation

func (o observer) Observe(_ context.Context, q callscript.Query) (callscript.Observation, error) {
	obs, ok := o[q.Text]
	if !ok {
		return obs, fmt.Errorf("nothing seen for %q", q.Text)
	}
	return obs, nil
}

func TestPlayObserved(t *testing.T) {
	t.Parallel()
	_, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) { speak(w, "Done.") })
	s := parse(t, `
turns:
  - say: Order 12345
    expect: {tool_called: [get_order_status], tool_not_called: [end_call], ends_call: false}
  - say: Bye
    expect: {tool_called: [end_call], ends_call: true}
  - say: Unknown
    expect: {tool_called: [x]}
`)
	r := runner(srv)
	res := r.Play(t.Context(), s)
	assert.Equal(t, []string{
		"turn 1: tool called get_order_status: cannot tell: no observer: the caller cannot hear tool calls or hang-ups",
		"turn 1: tool not called end_call: cannot tell: no observer: the caller cannot hear tool calls or hang-ups",
		"turn 1: does not end call: cannot tell: no observer: the caller cannot hear tool calls or hang-ups",
		"turn 2: tool called end_call: cannot tell: no observer: the caller cannot hear tool calls or hang-ups",
		"turn 2: ends call: cannot tell: no observer: the caller cannot hear tool calls or hang-ups",
		"turn 3: tool called x: cannot tell: no observer: the caller cannot hear tool calls or hang-ups",
	}, failed(res), "what cannot be seen fails, never passes unseen")

	r.Observer = observer{
		"Order 12345": {Tools: []string{"get_order_status"}, ToolsSeen: true, HangSeen: true},
		"Bye":         {Tools: nil, ToolsSeen: true, HungUp: true, HangSeen: true},
	}
	res = r.Play(t.Context(), s)
	assert.Equal(t, []string{
		"turn 2: tool called end_call: tools called: []",
		`turn 3: tool called x: cannot tell: nothing seen for "Unknown"`,
	}, failed(res))
}

// TestPlayConcurrent: one Runner plays many calls at once (as callsim load does); each keeps
// its own call id and answers.
func TestPlayConcurrent(t *testing.T) {
	t.Parallel()
	_, srv := newBrain(t, func(w http.ResponseWriter, r *http.Request, g got) { speak(w, "You said "+g.str("text")+".") })
	r := runner(srv)
	var mu sync.Mutex
	turns := map[string]int{}
	r.OnTurn = func(callID string, tr *callscript.TurnResult) {
		mu.Lock()
		defer mu.Unlock()
		turns[callID]++
	}
	const calls = 16
	results := make([]*callscript.Result, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			results[i] = r.Play(t.Context(), parse(t, fmt.Sprintf("turns: [{start: {}}, {say: 'call %d', expect: {contains: 'call %d'}}, {hangup: {}}]", i, i)))
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i, res := range results {
		assert.False(t, res.Failed(), "call %d: %v", i, failed(res))
		ids[res.CallID] = true
		assert.Equal(t, fmt.Sprintf("You said call %d.", i), res.Turns[1].Delivery.Text())
	}
	assert.Len(t, ids, calls)
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, turns, calls)
	for id, n := range turns {
		assert.Equal(t, 3, n, "OnTurn saw each turn of call %s", id)
	}
}

func TestPlayStopsWithContext(t *testing.T) {
	t.Parallel()
	_, srv := newBrain(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res := runner(srv).Play(ctx, parse(t, "turns: [{start: {}, think: 1h}, {hangup: {}}]"))
	require.ErrorIs(t, res.Err, context.Canceled)
	assert.Empty(t, res.Turns)
	assert.True(t, res.Failed())
}

func TestPlayClock(t *testing.T) {
	t.Parallel()
	_, srv := newBrain(t, nil)
	var mu sync.Mutex
	now := time.Now() // the stand-in checks the deliveries' timestamps against its own clock
	r := runner(srv)
	r.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second) // every reading advances the fake clock
		return now
	}
	r.TimeScale = 0 // no pauses: the think below is not waited
	res := r.Play(t.Context(), parse(t, "turns: [{start: {}}, {hangup: {}, think: 1h}]"))
	require.NoError(t, res.Err)
	assert.Greater(t, res.Turns[1].At, res.Turns[0].At, "offsets come from the injected clock")
	assert.Positive(t, res.Elapsed)
	assert.Empty(t, failed(res))
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"One moment.":        "one moment",
		"  ONE   moment!! ":  "one moment",
		"I'm sorry — really": "im sorry really",
		"¿Hola? שלום":        "hola שלום",
		"":                   "",
	} {
		assert.Equal(t, want, callscript.Normalize(in), "%q", in)
	}
}
