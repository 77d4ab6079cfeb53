package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// SaperlyRecords writes the Saperly calls the brain answers into the same call records as the
// other platforms' calls: each verified, acknowledged delivery becomes one HookEvent. Offer is
// called on the request's goroutine and only queues; one goroutine of its own writes, the
// deliveries of a moment together.
type SaperlyRecords struct {
	recv    *Receiver
	log     *zap.Logger
	q       chan DeliveryRecord
	closing chan struct{} // closed by Close: the writer stops gathering
	wg      sync.WaitGroup

	mu     sync.RWMutex // Offer holds it to read, Close to write: no send on a closed queue
	closed bool
}

// saperlyQueue bounds the deliveries waiting to be written; past it a delivery's record is
// dropped (and counted in the log), never the delivery itself.
const saperlyQueue = 4096

// The writer lets deliveries gather for saperlyWindow after the first, then writes up to
// saperlyBatch of them in one round trip. The records are read by people (brain calls), to
// whom a quarter second is nothing; under load it saves a round trip and a wake-up per
// delivery (at a thousand calls, about thirty deliveries go in each trip).
const (
	saperlyWindow = 250 * time.Millisecond
	saperlyBatch  = 256
)

// NewSaperlyRecords starts the writer; Close stops it after writing what is queued.
func NewSaperlyRecords(recv *Receiver, log *zap.Logger) *SaperlyRecords {
	s := &SaperlyRecords{recv: recv, log: log.Named("records"), q: make(chan DeliveryRecord, saperlyQueue), closing: make(chan struct{})}
	s.wg.Go(s.run)
	return s
}

// Offer queues one delivery's record. It never blocks.
func (s *SaperlyRecords) Offer(d DeliveryRecord) {
	if d.Status != 200 || d.Event.CallID == "" {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed { // a delivery that outlived the drain
		return
	}
	select {
	case s.q <- d:
	default:
		s.log.Warn("call record dropped: queue full", zap.String("call_id", d.Event.CallID), zap.Int("queue", saperlyQueue))
	}
}

// Close writes what is queued, within ctx, and stops the writer.
func (s *SaperlyRecords) Close(ctx context.Context) {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.q)
		close(s.closing)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("call records not written before shutdown", zap.Int("queued", len(s.q)))
	}
}

func (s *SaperlyRecords) run() {
	batch := make([]DeliveryRecord, 0, saperlyBatch)
	evs := make([]HookEvent, 0, saperlyBatch)
	gather := time.NewTimer(saperlyWindow)
	gather.Stop()
	for d := range s.q {
		batch = append(batch[:0], d)
		if len(s.q) < saperlyBatch-1 { // else a whole batch is waiting already
			// A timer, not a receive per delivery: a delivery queued meanwhile wakes nobody.
			gather.Reset(saperlyWindow)
			select {
			case <-gather.C:
			case <-s.closing:
				gather.Stop()
			}
		}
		batch = drainQueue(s.q, batch)
		s.write(batch, evs[:0])
	}
}

// write records batch in one go. A panic (a store client's bug) loses the batch's records,
// logged, never the process.
func (s *SaperlyRecords) write(batch []DeliveryRecord, evs []HookEvent) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("call records writer panicked", zap.Int("records", len(batch)), zap.Any("panic", p), zap.Stack("stack"))
		}
	}()
	for _, d := range batch {
		evs = append(evs, SaperlyHookEvent(d))
	}
	// One warning per batch (a Redis outage fails them all), naming the first call that failed.
	failed, first := 0, -1
	var firstErr error
	for i, err := range s.recv.ReceiveAll(context.Background(), evs, 2*time.Second) {
		if err != nil {
			failed++
			if first < 0 {
				first, firstErr = i, err
			}
		}
	}
	if failed > 0 {
		s.log.Warn("call records not written", zap.Int("failed", failed), zap.Int("batch", len(evs)),
			zap.String("call_id", evs[first].CallID), zap.String("event_type", evs[first].Type), zap.Error(firstErr))
	}
}

// drainQueue appends what q holds now to batch, until batch is full.
func drainQueue(q <-chan DeliveryRecord, batch []DeliveryRecord) []DeliveryRecord {
	for len(batch) < cap(batch) {
		select {
		case d, ok := <-q:
			if !ok {
				return batch
			}
			batch = append(batch, d)
		default:
			return batch
		}
	}
	return batch
}

// SaperlyHookEvent turns an answered Saperly delivery into the common call event: a message
// adds the caller's words and the lines spoken back; call_ended closes the call.
func SaperlyHookEvent(d DeliveryRecord) HookEvent {
	e := d.Event
	at := e.Delivery.ReceivedAt
	if e.Timestamp > 0 {
		at = time.UnixMilli(e.Timestamp)
	}
	key := e.ID
	if key == "" {
		key = "d:" + e.Delivery.ID
	}
	ev := HookEvent{
		Platform: PlatformSaperly, Type: e.Kind, DedupeKey: key, CallID: e.CallID, Source: e.LineID,
		From: e.From, To: e.To, Direction: e.Direction, Status: e.Status, Duration: e.Duration, At: at,
	}
	switch e.Kind {
	case EventCallStarted:
		ev.StartedAt, ev.Status = at, or(ev.Status, "started")
	case EventCallEnded:
		ev.EndedAt, ev.Closes, ev.Status = at, true, or(ev.Status, "ended")
	case EventMessage:
		ev.Turns = append(ev.Turns, HookTurn{Role: "caller", Text: e.Text, At: at})
		var spoken []string
		for _, l := range d.Lines {
			spoken = append(spoken, l.Text)
		}
		if len(spoken) > 0 {
			ev.Turns = append(ev.Turns, HookTurn{Role: "agent", Text: strings.Join(spoken, " "), At: d.Lines[0].At})
		}
	}
	return ev
}
