package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

// The rules of the pending queue, on explicit times: no clock, no goroutine, no store.

var t0 = time.UnixMilli(1_800_000_000_000)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// pt is a pending turn of call with one user entry of size bytes of text, queued at ms.
func pt(call, event string, ms, size int) *pendingTurn {
	text := make([]byte, size)
	for i := range text {
		text[i] = 'x'
	}
	ev := Event{CallID: call, ID: event}
	return newPendingTurn(ev, session.Lease{Ref: session.TurnRef{Line: ev.LineID, Call: ev.CallID, Event: ev.ID}}, nil, []session.Entry{{Kind: session.EntryUser, Text: string(text), At: int64(ms)}}, at(ms))
}

// queued lists the event ids of every queued turn, per call in order.
func queued(q *pendingQueue) map[string][]string {
	out := map[string][]string{}
	for call, turns := range q.calls {
		for _, p := range turns {
			out[call] = append(out[call], p.eventID)
		}
	}
	return out
}

func lostIDs(lost []lostTurn) []string {
	var out []string
	for _, l := range lost {
		out = append(out, l.p.eventID+":"+l.reason)
	}
	return out
}

func TestPendingQueueOrderPerCall(t *testing.T) {
	t.Parallel()
	q := newPendingQueue(100, 1<<20, time.Minute)
	require.Empty(t, q.push(pt("b", "b1", 10, 1), at(10)))
	require.Empty(t, q.push(pt("a", "a1", 20, 1), at(20)))
	require.Empty(t, q.push(pt("b", "b2", 30, 1), at(30)))
	require.Empty(t, q.push(pt("a", "a2", 40, 1), at(40)))
	assert.Equal(t, map[string][]string{"a": {"a1", "a2"}, "b": {"b1", "b2"}}, queued(q))
	assert.Equal(t, []string{"b", "a"}, q.idle(), "the call of the oldest turn first")
	assert.Equal(t, 4, q.turns)

	// One writer per call, and it takes the call's turns head first.
	require.True(t, q.acquire("a"))
	assert.False(t, q.acquire("a"), "a second writer of the same call")
	assert.Equal(t, []string{"b"}, q.idle(), "a call with a writer is not idle")
	p := q.next("a")
	assert.Equal(t, "a1", p.eventID)
	assert.Equal(t, 1, p.tries)
	q.written(p)
	p = q.next("a")
	assert.Equal(t, "a2", p.eventID)
	q.failed(p)
	assert.Equal(t, map[string][]string{"a": {"a2"}, "b": {"b1", "b2"}}, queued(q), "a failed turn stays at its call's head")
	assert.ElementsMatch(t, []string{"a", "b"}, q.idle(), "a failed write releases the call")

	require.True(t, q.acquire("a"))
	p = q.next("a")
	assert.Equal(t, "a2", p.eventID)
	assert.Equal(t, 2, p.tries)
	q.written(p)
	assert.Nil(t, q.next("a"), "nothing left: the writer is released")
	assert.True(t, q.acquire("a"), "released")
	assert.Nil(t, q.next("a"))
	assert.Equal(t, 2, q.turns)
	assert.Equal(t, pt("b", "b1", 10, 1).size+pt("b", "b2", 30, 1).size, q.bytes)
}

func TestPendingQueueBounds(t *testing.T) {
	t.Parallel()
	size := pt("a", "a1", 0, 100).size
	tests := []struct {
		name     string
		maxTurns int
		maxBytes int
		writing  string // the call whose head is being written when the last turn comes
		pushes   []*pendingTurn
		lost     []string // of the last push
		left     map[string][]string
	}{
		{
			name: "turn bound drops the oldest", maxTurns: 3, maxBytes: 1 << 20,
			pushes: []*pendingTurn{pt("a", "a1", 10, 100), pt("b", "b1", 20, 100), pt("a", "a2", 30, 100), pt("b", "b2", 40, 100)},
			lost:   []string{"a1:memory"},
			left:   map[string][]string{"a": {"a2"}, "b": {"b1", "b2"}},
		},
		{
			name: "byte bound drops as many as it takes", maxTurns: 100, maxBytes: 3 * size,
			pushes: []*pendingTurn{pt("a", "a1", 10, 100), pt("b", "b1", 20, 100), pt("a", "a2", 30, 100), pt("c", "c1", 40, 250)},
			lost:   []string{"a1:memory", "b1:memory"},
			left:   map[string][]string{"a": {"a2"}, "c": {"c1"}},
		},
		{
			name: "a turn being written is never dropped", maxTurns: 2, maxBytes: 1 << 20, writing: "a",
			pushes: []*pendingTurn{pt("a", "a1", 10, 100), pt("b", "b1", 20, 100), pt("b", "b2", 30, 100)},
			lost:   []string{"b1:memory"},
			left:   map[string][]string{"a": {"a1"}, "b": {"b2"}},
		},
		{
			name: "a turn larger than the bound is dropped itself", maxTurns: 100, maxBytes: size - 1,
			pushes: []*pendingTurn{pt("a", "a1", 10, 100)},
			lost:   []string{"a1:memory"},
			left:   map[string][]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newPendingQueue(tc.maxTurns, tc.maxBytes, time.Minute)
			last := len(tc.pushes) - 1
			for _, p := range tc.pushes[:last] {
				require.Empty(t, q.push(p, p.since))
			}
			if tc.writing != "" {
				require.True(t, q.acquire(tc.writing))
				require.NotNil(t, q.next(tc.writing))
			}
			p := tc.pushes[last]
			assert.Equal(t, tc.lost, lostIDs(q.push(p, p.since)))
			assert.Equal(t, tc.left, queued(q))
			assert.LessOrEqual(t, q.turns, tc.maxTurns)
			if tc.writing == "" {
				assert.LessOrEqual(t, q.bytes, tc.maxBytes)
			}
		})
	}
}

func TestPendingQueueRetention(t *testing.T) {
	t.Parallel()
	q := newPendingQueue(100, 1<<20, time.Minute)
	assert.True(t, q.nextExpiry().IsZero(), "nothing queued")
	for _, p := range []*pendingTurn{pt("a", "a1", 0, 1), pt("b", "b1", 10_000, 1), pt("a", "a2", 20_000, 1), pt("c", "c1", 30_000, 1)} {
		require.Empty(t, q.push(p, p.since))
	}
	assert.Equal(t, at(60_000), q.nextExpiry())
	assert.Empty(t, q.expire(at(59_999)))

	require.True(t, q.acquire("b"))
	require.NotNil(t, q.next("b")) // b1 is being written
	assert.Equal(t, []string{"a1:retention", "a2:retention"}, lostIDs(q.expire(at(80_000))))
	assert.Equal(t, map[string][]string{"b": {"b1"}, "c": {"c1"}}, queued(q), "a turn being written is not given up under its writer")
	assert.Equal(t, at(70_000), q.nextExpiry())
	assert.Equal(t, 2, q.turns)
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	least := func(int64) int64 { return 0 }
	most := func(n int64) int64 { return n - 1 }
	tests := []struct {
		failures  int
		low, high time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{6, 1600 * time.Millisecond, 3200 * time.Millisecond},
		{7, 2500 * time.Millisecond, 5 * time.Second},
		{1000, 2500 * time.Millisecond, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d failures", tc.failures), func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tc.low, backoff(tc.failures, least), "jitter at its least")
			assert.Equal(t, tc.high, backoff(tc.failures, most), "jitter at its most")
		})
	}
}

func TestHistoryID(t *testing.T) {
	t.Parallel()
	msg := func(id string, ts int64, text string) Event {
		return Event{Kind: EventMessage, ID: id, CallID: "c1", Timestamp: ts, Text: text}
	}
	assert.Equal(t, "e1", historyID(msg("e1", 5, "yes")), "Saperly's event id when it sent one")
	a := historyID(msg("", 1000, "yes"))
	assert.Regexp(t, `^syn-[0-9a-f]{24}$`, a)
	assert.Equal(t, a, historyID(msg("", 1000, "yes")), "a retried delivery of the same message gets the same id")
	assert.NotEqual(t, a, historyID(msg("", 2000, "yes")), "the same words said again later")
	assert.NotEqual(t, a, historyID(msg("", 1000, "no")))
	other := msg("", 1000, "yes")
	other.CallID = "c2"
	assert.NotEqual(t, a, historyID(other), "another call")
	r1, r2 := historyID(msg("", 0, "yes")), historyID(msg("", 0, "yes"))
	assert.NotEqual(t, r1, r2, "without a timestamp two equal utterances stay two turns")
	assert.Regexp(t, `^syn-`, r1)
}

func TestNewPendingTurnNamesEveryEntry(t *testing.T) {
	t.Parallel()
	ev := Event{Kind: EventMessage, CallID: "c1", LineID: "l1", Timestamp: 1000, Text: "Where is my order?"}
	entries := []session.Entry{
		{Kind: session.EntryUser, Text: ev.Text, At: 1000},
		{Kind: session.EntryTool, ToolCall: "call_1", ToolName: "status", ToolArgs: "{}", Text: "shipped", At: 1000},
		{Kind: session.EntryAssistant, Text: "It shipped.", At: 1000},
	}
	p := newPendingTurn(ev, session.Lease{Ref: session.TurnRef{Line: ev.LineID, Call: ev.CallID, Event: ev.ID}}, nil, entries, at(0))
	id := historyID(ev)
	for i, e := range p.entries {
		assert.Equal(t, id, e.EventID, "entry %d", i)
	}
	assert.Empty(t, entries[0].EventID, "the caller's entries are left alone")
	assert.Empty(t, p.eventID, "no turn log to close")
	assert.Greater(t, p.size, len(ev.Text)+len("It shipped.")+len("shipped"))
}
