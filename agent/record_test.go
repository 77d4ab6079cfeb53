package agent

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

// callRig builds the deliveries and turns of one recorded call, as the transport and the
// agent report them, on a clock that starts at t0.
type callRig struct {
	callID, lineID string
	t0             time.Time
}

func newCallRig() callRig {
	return callRig{callID: "call-1", lineID: "line-1", t0: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

func (c callRig) at(ms int) time.Time { return c.t0.Add(time.Duration(ms) * time.Millisecond) }

// delivery is a delivery of kind received at ms and done at doneMs, with lines flushed at
// the given offsets (ms after receipt).
func (c callRig) delivery(kind, eventID, deliveryID string, ms, doneMs int, lines ...lineAt) DeliveryRecord {
	d := DeliveryRecord{
		Event: Event{
			Kind: kind, ID: eventID, LineID: c.lineID, CallID: c.callID,
			Delivery: Delivery{ID: deliveryID, Attempt: 1, ReceivedAt: c.at(ms)},
		},
		Status: 200, Outcome: "recorded", Done: c.at(doneMs),
	}
	if kind == EventMessage {
		d.Outcome = "answered"
	}
	for _, l := range lines {
		d.Lines = append(d.Lines, LineRecord{Text: l.text, At: c.at(ms + l.ms)})
	}
	return d
}

type lineAt struct {
	text string
	ms   int
}

// fullCall is one call seen by two replicas: every kind of turn the recorder knows, with a
// barge-in reported in time, one reported late, a retry after the answer (replayed on the
// other replica), a retry while streaming, a duplicate delivery, a status callback and a
// retried call_ended. It returns each replica's reports, in the order each replica saw them.
func fullCall(c callRig) (a, b []any) {
	start := c.delivery(EventCallStarted, "e-start", "d-start", 0, 1)
	start.Event.From, start.Event.To, start.Event.Direction = "+14155550123", "+18005550199", "inbound"

	say1 := c.delivery(EventMessage, "e1", "d1", 1000, 2600,
		lineAt{"One moment.", 1200}, lineAt{"I found your order 12345.", 2000}, lineAt{"It ships Thursday.", 2500})
	say1.Event.Text = "Where is my order 12345?"
	turn1 := TurnStats{CallID: c.callID, EventID: "e1", DeliveryID: "d1", Turn: 1, Agent: "orders",
		PromptVersion: "v1", HoldLines: []int{0}, Tools: []ToolUse{{Name: "order_status", Args: `{"order":"12345"}`}},
		Outcome: OutcomeAnswered}

	say2 := c.delivery(EventMessage, "e2", "d2", 4000, 4700, lineAt{"We have Tuesday at three", 500})
	say2.Event.Text = "Can I change the delivery day?"
	say2.Outcome = "client_gone"
	turn2 := TurnStats{CallID: c.callID, EventID: "e2", DeliveryID: "d2", Turn: 2, Agent: "orders", PromptVersion: "v1", Outcome: OutcomeCut}
	in2 := c.delivery(EventInterrupted, "e-in2", "d-in2", 4800, 4801)
	in2.Event.PartialText = "We have Tuesday"

	say3 := c.delivery(EventMessage, "e3", "d3", 6000, 6900, lineAt{"Done.", 400}, lineAt{"Anything else?", 800})
	say3.Event.Text = "Friday please."
	turn3 := TurnStats{CallID: c.callID, EventID: "e3", DeliveryID: "d3", Turn: 3, Agent: "orders", PromptVersion: "v1", Outcome: OutcomeAnswered}
	retry3 := c.delivery(EventMessage, "e3", "d3b", 7100, 7150, lineAt{"Done.", 10}, lineAt{"Anything else?", 20})
	retry3.Event.Text, retry3.Event.Delivery.Attempt = "Friday please.", 2
	turn3b := TurnStats{CallID: c.callID, EventID: "e3", DeliveryID: "d3b", Replayed: true, Outcome: OutcomeReplayed}

	say4 := c.delivery(EventMessage, "e4", "d4", 9000, 9600, lineAt{"Your order number is", 500})
	say4.Event.Text = "What was my order number again?"
	say4.Outcome = "client_gone"
	turn4 := TurnStats{CallID: c.callID, EventID: "e4", DeliveryID: "d4", Turn: 4, Outcome: OutcomeCut}

	say5 := c.delivery(EventMessage, "e5", "d5", 10000, 11000, lineAt{"Goodbye!", 300})
	say5.Event.Text = "Never mind, bye."
	turn5 := TurnStats{CallID: c.callID, EventID: "e5", DeliveryID: "d5", Turn: 5, EndCall: true, HangUp: "sent", Outcome: OutcomeAnswered}
	retry5 := c.delivery(EventMessage, "e5", "d5b", 10200, 11000, lineAt{"Goodbye!", 100})
	retry5.Event.Text, retry5.Event.Delivery.Attempt = "Never mind, bye.", 2
	turn5b := TurnStats{CallID: c.callID, EventID: "e5", DeliveryID: "d5b", Replayed: true, Outcome: OutcomeReplayed}
	dup1 := c.delivery(EventMessage, "e1", "d1", 11100, 11101) // Saperly sent say1's delivery twice
	dup1.Status, dup1.Outcome = 409, "rejected"
	in4 := c.delivery(EventInterrupted, "e-in4", "d-in4", 10500, 10501) // about say4, after say5 was sent
	in4.Event.PartialText = "Your order"

	status := c.delivery(EventCallIncoming, "e-st", "d-st", 11500, 11501)
	status.Event.Delivery.Callback, status.Event.Status = true, "in-progress"
	status.Event.From = "+14155550123"
	end := c.delivery(EventCallEnded, "e-end", "d-end", 12000, 12001)
	end.Event.Status, end.Event.Duration = "completed", 12
	endRetry := c.delivery(EventCallEnded, "e-end", "d-end2", 12100, 12101)

	a = []any{start, turn1, say1, turn3, say3, turn4, say4, turn5, say5, status, end}
	b = []any{turn2, say2, in2, turn3b, retry3, in4, turn5b, retry5, dup1, endRetry}
	return a, b
}

// feed hands reports to a recorder, in order.
func feed(r *Recorder, reports []any) {
	for _, x := range reports {
		switch v := x.(type) {
		case DeliveryRecord:
			r.OnDelivery(v)
		case TurnStats:
			r.OnTurn(v)
		}
	}
}

// stored returns the captures a recorder would store for reports, redacted as configured,
// each through JSON as the store keeps it.
func stored(t testing.TB, keepText bool, reports []any) []capture {
	t.Helper()
	r := NewRecorder(RecordConfig{Text: keepText, Queue: len(reports)}, nil, nil)
	feed(r, reports)
	store := session.NewMemoryRecordings(session.Options{})
	r.store = store
	w := newRecordWorker(r)
	var batch []capture
	for len(r.queue) > 0 {
		batch = append(batch, <-r.queue)
	}
	w.write(t.Context(), batch, true)
	var out []capture
	for _, id := range []string{"call-1"} {
		items, _, err := store.TakeCaptures(t.Context(), id)
		require.NoError(t, err)
		for _, raw := range items {
			var back capture
			require.NoError(t, json.Unmarshal(raw, &back))
			out = append(out, back)
		}
	}
	return out
}

func TestAssembleScript(t *testing.T) {
	t.Parallel()
	c := newCallRig()
	a, b := fullCall(c)
	caps := append(stored(t, true, a), stored(t, true, b)...)
	// Replicas write in any order: the script must not depend on it.
	rand.Shuffle(len(caps), func(i, j int) { caps[i], caps[j] = caps[j], caps[i] })

	sc, ok := assembleScript(c.callID, caps)
	require.True(t, ok)
	assert.Equal(t, c.lineID, sc.LineID)
	assert.Equal(t, "+15550000001", sc.From, "the caller's number becomes a placeholder")
	assert.Equal(t, "+15550000002", sc.To)
	assert.Equal(t, "inbound", sc.Direction)
	assert.Equal(t, c.t0, sc.At)
	assert.Equal(t, "orders", sc.Agent)
	assert.Equal(t, "v1", sc.Version)
	assert.True(t, sc.ended)

	var kinds []string
	for _, tr := range sc.Turns {
		kinds = append(kinds, tr.Kind)
	}
	require.Equal(t, []string{"start", "say", "say", "say", "say", "say", "status", "hangup"}, kinds,
		"one turn per event, in order; retries, duplicates, interrupted and the retried call_ended belong to their turns")

	say1 := sc.Turns[1]
	assert.Equal(t, "Where is my order 12345?", say1.Text)
	assert.Equal(t, 999*time.Millisecond, say1.Think, "from the end of call_started to the message")
	require.NotNil(t, say1.Answer)
	assert.Equal(t, []recLine{
		{Text: "One moment.", At: 1200 * time.Millisecond, Hold: true},
		{Text: "I found your order 12345.", At: 2000 * time.Millisecond},
		{Text: "It ships Thursday.", At: 2500 * time.Millisecond},
	}, say1.Answer.Lines)
	assert.Equal(t, []toolCap{{Name: "order_status", Args: `{"order":"12345"}`}}, say1.Answer.Tools)
	assert.Nil(t, say1.BargeIn)
	assert.Nil(t, say1.Retry)
	assert.True(t, say1.Duplicate, "the refused duplicate delivery, whenever it came")

	say2 := sc.Turns[2]
	require.NotNil(t, say2.BargeIn, "cut, then interrupted: a barge-in")
	assert.Equal(t, recBargeIn{AfterLines: 1, Heard: "We have Tuesday"}, *say2.BargeIn)
	assert.Equal(t, 1400*time.Millisecond, say2.Think)

	say3 := sc.Turns[3]
	assert.Equal(t, 1199*time.Millisecond, sc.Turns[3].Think, "counted from the interrupted event, part of the turn before")
	require.NotNil(t, say3.Retry)
	assert.Equal(t, recRetry{When: "after", After: 200 * time.Millisecond}, *say3.Retry)
	assert.Equal(t, "Done.", say3.Answer.Lines[0].Text)
	assert.Equal(t, 400*time.Millisecond, say3.Answer.Lines[0].At, "the answer the model gave, not the replay")

	say4 := sc.Turns[4]
	require.NotNil(t, say4.BargeIn)
	assert.Equal(t, recBargeIn{AfterLines: 1, Heard: "Your order", Late: 900 * time.Millisecond}, *say4.BargeIn,
		"reported after the next message: late, counted from the cut")

	say5 := sc.Turns[5]
	assert.Equal(t, recRetry{When: "streaming", After: 200 * time.Millisecond}, *say5.Retry)
	assert.False(t, say5.Duplicate)
	assert.Empty(t, sc.notes, "everything was expressible")
	assert.True(t, say5.Answer.EndedCall)
	assert.Equal(t, 400*time.Millisecond, say5.Think, "from say4's end, not from the late interrupted event")

	assert.Equal(t, "call_incoming", sc.Turns[6].Event)
	assert.Equal(t, map[string]any{"status": "in-progress", "from_number": "+15550000001"}, sc.Turns[6].Fields,
		"the same number, the same placeholder")
	assert.Equal(t, map[string]any{"status": "completed", "duration": float64(12)}, sc.Turns[7].Fields)
}

func TestAssembleScriptWithoutText(t *testing.T) {
	t.Parallel()
	c := newCallRig()
	a, b := fullCall(c)
	sc, ok := assembleScript(c.callID, append(stored(t, false, a), stored(t, false, b)...))
	require.True(t, ok)
	data, err := sc.encode()
	require.NoError(t, err)
	out := string(data)
	for _, personal := range []string{"12345", "Where is my order", "Tuesday", "Friday", "Goodbye", "+1415", "+1800", "order_status\n        args"} {
		assert.NotContains(t, out, personal)
	}
	assert.Contains(t, out, "say: <utterance 1, 24 chars>")
	assert.Contains(t, out, "heard: <heard, 15 chars>")
	assert.Contains(t, out, "text: One moment.", "a holding phrase is the operator's, kept")
	assert.Contains(t, out, "'<answer 1 line 2, 25 chars>'")
	assert.Contains(t, out, "name: order_status", "the tool's name stays, its arguments go")
}

func TestAssembleScriptEdges(t *testing.T) {
	t.Parallel()
	c := newCallRig()
	tests := []struct {
		name    string
		reports []any
		check   func(t *testing.T, sc *recScript)
	}{
		{
			name: "a delivery refused as another line's call is not this call's",
			reports: func() []any {
				d := c.delivery(EventMessage, "e1", "d1", 0, 1)
				d.Status = 403
				return []any{TurnStats{CallID: c.callID, DeliveryID: "d1", Outcome: OutcomeRejected}, d}
			}(),
		},
		{
			name:    "turn stats alone make no script",
			reports: []any{TurnStats{CallID: c.callID, DeliveryID: "d1"}},
		},
		{
			name: "cut before any line, then interrupted: barge-in after a delay",
			reports: func() []any {
				d := c.delivery(EventMessage, "e1", "d1", 0, 700)
				d.Outcome = "client_gone"
				d.Event.Text = "hello"
				return []any{d, c.delivery(EventInterrupted, "e2", "d2", 800, 801)}
			}(),
			check: func(t *testing.T, sc *recScript) {
				require.Len(t, sc.Turns, 1)
				assert.Equal(t, &recBargeIn{After: 700 * time.Millisecond}, sc.Turns[0].BargeIn)
				assert.False(t, sc.ended)
			},
		},
		{
			name: "what the format cannot express is moved or left out, and noted",
			reports: func() []any {
				say := c.delivery(EventMessage, "e1", "d1", 100, 300)
				say.Event.Text = "hi"
				retry := c.delivery(EventMessage, "e1", "d1b", 400, 500)
				dup := c.delivery(EventMessage, "e1", "d1", 600, 601)
				dup.Status = 409
				end := c.delivery(EventCallEnded, "e2", "d2", 700, 701)
				status := c.delivery(EventCallIncoming, "e3", "d3", 800, 801)
				status.Event.Delivery.Callback = true
				late := c.delivery(EventCallStarted, "e4", "d4", 900, 901) // call_started last of all
				return []any{say, retry, dup, end, status, late}
			}(),
			check: func(t *testing.T, sc *recScript) {
				var kinds []string
				for _, tr := range sc.Turns {
					kinds = append(kinds, tr.Kind)
				}
				assert.Equal(t, []string{"start", "say", "status", "hangup"}, kinds)
				assert.NotNil(t, sc.Turns[1].Retry)
				assert.False(t, sc.Turns[1].Duplicate, "at most one of barge_in, retry and duplicate")
				assert.Len(t, sc.notes, 3)
			},
		},
		{
			name: "a message without words still makes a say turn",
			reports: func() []any {
				return []any{c.delivery(EventMessage, "e1", "d1", 0, 100)}
			}(),
			check: func(t *testing.T, sc *recScript) {
				assert.Equal(t, "<no words>", sc.Turns[0].Text)
			},
		},
		{
			name:    "interrupted with no answer before it is sent as is",
			reports: []any{c.delivery(EventInterrupted, "e1", "d1", 0, 1)},
			check: func(t *testing.T, sc *recScript) {
				require.Len(t, sc.Turns, 1)
				assert.Equal(t, "send", sc.Turns[0].Kind)
				assert.Equal(t, "interrupted", sc.Turns[0].Event)
			},
		},
		{
			name: "sms and unknown kinds",
			reports: func() []any {
				s := c.delivery(EventSMSReceived, "e1", "d1", 0, 1)
				s.Event.Text = "running late"
				return []any{s, c.delivery("call_transferred", "e2", "d2", 100, 101)}
			}(),
			check: func(t *testing.T, sc *recScript) {
				require.Len(t, sc.Turns, 2)
				assert.Equal(t, recTurn{Kind: "sms", Text: "<sms 1, 12 chars>"}, withoutTimes(sc.Turns[0]))
				assert.Equal(t, "send", sc.Turns[1].Kind)
				assert.Equal(t, "call_transferred", sc.Turns[1].Event)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc, ok := assembleScript(c.callID, stored(t, false, tc.reports))
			if tc.check == nil {
				assert.False(t, ok)
				return
			}
			require.True(t, ok)
			tc.check(t, sc)
		})
	}
}

func withoutTimes(t recTurn) recTurn {
	t.at, t.done, t.Think = 0, 0, 0
	return t
}

func TestScriptFileName(t *testing.T) {
	t.Parallel()
	sc := &recScript{callID: "../../etc/passwd", At: time.Date(2026, 11, 30, 12, 1, 2, 0, time.UTC)}
	assert.Equal(t, "20261130-120102-______etc_passwd.yaml", sc.fileName(), "a call id never leaves the directory")
}

// recordRig runs recorders (replicas) on one shared store in a synctest bubble.
type recordRig struct {
	store *session.MemoryRecordings
	dir   string
	stop  []func()
}

func newRecordRig(t *testing.T) *recordRig {
	return &recordRig{store: session.NewMemoryRecordings(session.Options{}), dir: t.TempDir()}
}

func (g *recordRig) replica(t *testing.T, cfg RecordConfig) *Recorder {
	cfg.Dir = g.dir
	cfg.Stream = true
	r := NewRecorder(cfg, g.store, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	g.stop = append(g.stop, func() { cancel(); wg.Wait() })
	return r
}

func (g *recordRig) close() {
	for _, s := range g.stop {
		s()
	}
}

func (g *recordRig) files(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(g.dir)
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(g.dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = string(data)
	}
	return out
}

func TestRecorderAcrossReplicas(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRecordRig(t)
		ra, rb := g.replica(t, RecordConfig{Text: true}), g.replica(t, RecordConfig{Text: true})
		c := newCallRig()
		c.t0 = time.Now()
		a, b := fullCall(c)
		feed(ra, a)
		feed(rb, b) // b also sees call_ended (a retry): only one script is written
		synctest.Wait()
		assert.Empty(t, g.files(t), "nothing before the call has settled")

		time.Sleep(3 * time.Second)
		synctest.Wait()
		files := g.files(t)
		require.Len(t, files, 1, "one script, whichever replica writes it")
		for name, script := range files {
			assert.True(t, strings.HasSuffix(name, "-call-1.yaml"), name)
			assert.Contains(t, script, "say: Where is my order 12345?")
			assert.Contains(t, script, "heard: We have Tuesday")
			assert.Less(t, strings.Index(script, "Where is my order"), strings.Index(script, "Never mind, bye."))
		}
		assert.Equal(t, int64(1), ra.Written()+rb.Written())
		recs, err := g.store.Recordings(t.Context(), "", 10)
		require.NoError(t, err)
		require.Len(t, recs, 1, "and one entry in the collection stream")
		assert.Equal(t, "call-1", recs[0].CallID)
		g.close()
	})
}

func TestRecorderQueueFullDrops(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRecordRig(t)
		c := newCallRig()
		c.t0 = time.Now()
		a, _ := fullCall(c)
		// The worker is not running yet: a queue of 3 takes the first three reports, and every
		// later one is dropped at once instead of holding up the turn.
		r := NewRecorder(RecordConfig{Queue: 3, Dir: g.dir}, g.store, nil)
		feed(r, a[:len(a)-1])
		assert.Equal(t, int64(len(a)-1-3), r.Dropped())

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()
		synctest.Wait()
		r.OnDelivery(a[len(a)-1].(DeliveryRecord)) // call_ended, once there is room again
		time.Sleep(3 * time.Second)
		synctest.Wait()
		files := g.files(t)
		require.Len(t, files, 1)
		for _, script := range files {
			assert.Contains(t, script, "# Incomplete: 7 captures were dropped (the recording queue was full).")
		}
		cancel()
		<-done
	})
}

func TestRecorderIdleSweep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRecordRig(t)
		r := g.replica(t, RecordConfig{Idle: 10 * time.Minute})
		c := newCallRig()
		c.t0 = time.Now()
		a, _ := fullCall(c)
		feed(r, a[:len(a)-1]) // Saperly never sends call_ended
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		assert.Empty(t, g.files(t), "not idle yet")

		time.Sleep(5 * time.Minute)
		synctest.Wait()
		files := g.files(t)
		require.Len(t, files, 1, "written by the idle sweep")
		for _, script := range files {
			assert.Contains(t, script, "# No call_ended was received")
			assert.NotContains(t, script, "hangup")
		}
		g.close()
	})
}

func TestRecorderWritesOpenCallsOnStop(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRecordRig(t)
		r := g.replica(t, RecordConfig{WriteOpenOnStop: true})
		c := newCallRig()
		c.t0 = time.Now()
		a, _ := fullCall(c)
		feed(r, a[:len(a)-1]) // still going: no call_ended
		synctest.Wait()
		g.close() // an in-process store dies with the process: written on the way out
		files := g.files(t)
		require.Len(t, files, 1)
		for _, script := range files {
			assert.Contains(t, script, "# No call_ended was received")
		}
	})
}

func TestRecorderDrainsOnStop(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := newRecordRig(t)
		r := g.replica(t, RecordConfig{})
		c := newCallRig()
		c.t0 = time.Now()
		a, _ := fullCall(c)
		feed(r, a)
		g.close() // shutting down before the call settled: written on the way out
		assert.Len(t, g.files(t), 1)
	})
}
