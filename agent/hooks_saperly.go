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
// called on the request's goroutine and only queues; one goroutine of its own writes.
type SaperlyRecords struct {
	recv *Receiver
	log  *zap.Logger
	q    chan DeliveryRecord
	wg   sync.WaitGroup

	mu     sync.RWMutex // Offer holds it to read, Close to write: no send on a closed queue
	closed bool
}

// saperlyQueue bounds the deliveries waiting to be written; past it a delivery's record is
// dropped (and counted in the log), never the delivery itself.
const saperlyQueue = 4096

// NewSaperlyRecords starts the writer; Close stops it after writing what is queued.
func NewSaperlyRecords(recv *Receiver, log *zap.Logger) *SaperlyRecords {
	s := &SaperlyRecords{recv: recv, log: log.Named("records"), q: make(chan DeliveryRecord, saperlyQueue)}
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
	for d := range s.q {
		ev := SaperlyHookEvent(d)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.recv.Receive(ctx, ev)
		cancel()
		if err != nil {
			s.log.Warn("call record not written", zap.String("call_id", ev.CallID),
				zap.String("event_type", ev.Type), zap.Error(err))
		}
	}
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
