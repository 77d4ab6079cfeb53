package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callbrain/callbrain/session"
)

// benchTurn is one answered message as the hooks see it: three lines, one a holding phrase.
func benchTurn(c callRig, i int) (TurnStats, DeliveryRecord) {
	ev, del := fmt.Sprintf("e%d", i), fmt.Sprintf("d%d", i)
	d := c.delivery(EventMessage, ev, del, i*1000, i*1000+900,
		lineAt{"One moment.", 1200}, lineAt{"I found your order, it ships on Thursday.", 2000}, lineAt{"Anything else?", 2500})
	d.Event.Text = "Where is my order 12345, please?"
	return TurnStats{CallID: c.callID, EventID: ev, DeliveryID: del, Turn: i, Agent: "a", PromptVersion: "v",
		HoldLines: []int{0}, Outcome: OutcomeAnswered}, d
}

// BenchmarkRecordHooks is what recording adds to a turn's own path: OnTurn and OnDelivery for
// one answered message, copying the record into the queue. The queue is emptied between
// rounds outside the timer, so every op takes the path of a queue with room.
func BenchmarkRecordHooks(b *testing.B) {
	const round = 1024
	r := NewRecorder(RecordConfig{Queue: 2 * round}, session.NewMemoryRecordings(session.Options{}), nil)
	c := newCallRig()
	c.t0 = time.Now()
	stats, del := benchTurn(c, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += round {
		for range min(round, b.N-done) {
			r.OnTurn(stats)
			r.OnDelivery(del)
		}
		b.StopTimer()
		for len(r.queue) > 0 {
			<-r.queue
		}
		b.StartTimer()
	}
	if r.Dropped() > 0 {
		b.Fatalf("%d dropped", r.Dropped())
	}
}

// BenchmarkRecordHooksQueueFull is the same with the queue full: the drop path, counted.
func BenchmarkRecordHooksQueueFull(b *testing.B) {
	r := NewRecorder(RecordConfig{Queue: 1}, session.NewMemoryRecordings(session.Options{}), nil)
	c := newCallRig()
	c.t0 = time.Now()
	stats, del := benchTurn(c, 1)
	r.OnTurn(stats)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.OnTurn(stats)
		r.OnDelivery(del)
	}
}

// BenchmarkRecordWorker is the worker's cost per answered message, off the turn's path:
// redacting and encoding the turn's two captures and appending them to the store.
func BenchmarkRecordWorker(b *testing.B) {
	r := NewRecorder(RecordConfig{}, session.NewMemoryRecordings(session.Options{}), nil)
	w := newRecordWorker(r)
	c := newCallRig()
	c.t0 = time.Now()
	stats, del := benchTurn(c, 1)
	r.OnTurn(stats)
	r.OnDelivery(del)
	ts, dc := <-r.queue, <-r.queue
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Ten turns a call, as the store holds them.
		ts.CallID = fmt.Sprint("call-", i/10)
		dc.CallID = ts.CallID
		w.write(ctx, []capture{ts, dc}, false)
	}
}

// BenchmarkRecordAssemble is the cost of writing one ten-turn call's script once it has
// ended: decoding its captures, assembling and encoding the YAML (the file write excluded).
func BenchmarkRecordAssemble(b *testing.B) {
	c := newCallRig()
	var reports []any
	start := c.delivery(EventCallStarted, "s", "ds", 0, 1)
	start.Event.From, start.Event.To = "+14155550123", "+18005550199"
	reports = append(reports, start)
	for i := 1; i <= 10; i++ {
		s, d := benchTurn(c, i)
		reports = append(reports, s, d)
	}
	reports = append(reports, c.delivery(EventCallEnded, "x", "dx", 20000, 20001))
	caps := stored(b, false, reports)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sc, _ := assembleScript(c.callID, caps)
		if _, err := sc.encode(); err != nil {
			b.Fatal(err)
		}
	}
}
