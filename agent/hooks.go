package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/callbrain/callbrain/session"
)

// Platforms whose call events the brain receives (PROTOCOL §2), and Saperly itself.
const (
	PlatformSaperly   = "saperly"
	PlatformSalpre    = "salpre"
	PlatformItellico  = "itellico"
	PlatformSpeakNode = "speaknode"
)

// ErrEventInProgress is returned by Receive for an event another delivery is processing at
// this moment: the platform should retry it later.
var ErrEventInProgress = errors.New("event in progress")

// ErrStoreDown is returned by Receive when the store could not take the event: nothing was
// recorded, and the platform should retry.
var ErrStoreDown = errors.New("store unavailable")

// HookTurn is one transcript turn carried by a platform's event.
type HookTurn struct {
	Role string // "caller" or "agent"
	Text string
	At   time.Time
}

// HookEvent is one verified, decoded event of a notify-only platform: the same shape for
// every platform, so one call record serves them all.
type HookEvent struct {
	Platform string
	Type     string // the platform's own event type
	// DedupeKey names the logical event: a retry of it carries the same key.
	DedupeKey string
	CallID    string
	Source    string // the platform's line, agent or organisation
	Agent     string
	From, To  string
	Direction string
	Status    string
	Error     string
	Test      bool
	At        time.Time // when the event happened (the platform's clock), else when received
	StartedAt time.Time
	EndedAt   time.Time
	Duration  float64
	Turns     []HookTurn
	// FinalTranscript marks Turns as the whole transcript (it replaces what live events added).
	FinalTranscript bool
	// Closes marks the event that ends the call.
	Closes   bool
	Analysis json.RawMessage
}

// CallRecords keeps call records and the claims that process each event once.
type CallRecords interface {
	ClaimEvent(ctx context.Context, key string, ttl time.Duration) (bool, error)
	FinishEvent(ctx context.Context, key string, ttl time.Duration) error
	ReleaseEvent(ctx context.Context, key string) error
	ApplyCall(ctx context.Context, u session.CallUpdate) error
	ApplyCallsOnce(ctx context.Context, us []session.OnceUpdate) []session.OnceResult
}

// Receiver records the events of every platform into one call record per call, each event
// once.
type Receiver struct {
	store     CallRecords
	dedupeTTL time.Duration
	jobs      JobQueue // nil: no background jobs
}

// WithJobs makes the receiver queue the background jobs of each call it sees end.
func (r *Receiver) WithJobs(q JobQueue) *Receiver {
	r.jobs = q
	return r
}

// NewReceiver returns a receiver writing to store, remembering processed events for
// dedupeTTL.
func NewReceiver(store CallRecords, dedupeTTL time.Duration) *Receiver {
	return &Receiver{store: store, dedupeTTL: dedupeTTL}
}

// Receive records ev unless it was already processed; duplicate reports that it was. Errors:
// ErrEventInProgress, or ErrStoreDown (the sender should retry: the event was not recorded,
// or its record's reply was lost and the retry is answered as a duplicate).
func (r *Receiver) Receive(ctx context.Context, ev HookEvent) (duplicate bool, err error) {
	if r.recordOnly(ev) {
		res := r.applyOnce(ctx, []HookEvent{ev})[0]
		return res.Err == nil && !res.Applied, res.Err
	}
	key := ev.Platform + ":" + ev.DedupeKey
	fresh, err := r.store.ClaimEvent(ctx, key, r.dedupeTTL)
	switch {
	case errors.Is(err, session.ErrInProgress):
		return false, ErrEventInProgress
	case err != nil:
		return false, fmt.Errorf("%w: %w", ErrStoreDown, err)
	case !fresh:
		return true, nil
	}
	if ev.CallID != "" {
		if err := r.store.ApplyCall(ctx, callUpdate(ev)); err != nil {
			// Give the claim back so the platform's retry records the event.
			if rerr := r.store.ReleaseEvent(context.WithoutCancel(ctx), key); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return false, fmt.Errorf("%w: %w", ErrStoreDown, err)
		}
		if ev.Closes && r.jobs != nil {
			if err := r.jobs.Enqueue(ctx, JobSummary, ev.Platform+":"+ev.CallID, ""); err != nil {
				// Not queued: give the claim back so the platform's retry queues it.
				if rerr := r.store.ReleaseEvent(context.WithoutCancel(ctx), key); rerr != nil {
					err = errors.Join(err, rerr)
				}
				return false, fmt.Errorf("%w: %w", ErrStoreDown, err)
			}
		}
	}
	if err := r.store.FinishEvent(ctx, key, r.dedupeTTL); err != nil {
		// Recorded but not marked done: the event is in the record, so answer success. The
		// claim lapses after its lease; only a retry after that would apply it again.
		return false, nil //nolint:nilerr // see above
	}
	return false, nil
}

// ReceiveAll records evs in order, each unless it was already processed, as Receive does: the
// events that need nothing beside their record, one round trip for each run of them. Each
// run, and each other event, has step to finish. It returns each event's error (nil for one
// recorded, or a duplicate).
func (r *Receiver) ReceiveAll(ctx context.Context, evs []HookEvent, step time.Duration) []error {
	errs := make([]error, len(evs))
	for i := 0; i < len(evs); {
		j := i
		for j < len(evs) && r.recordOnly(evs[j]) {
			j++
		}
		sctx, cancel := context.WithTimeout(ctx, step)
		if j == i { // one with more to do (a claim, a job): on its own
			_, errs[i] = r.Receive(sctx, evs[i])
			j++
		} else {
			for k, res := range r.applyOnce(sctx, evs[i:j]) {
				errs[i+k] = res.Err
			}
		}
		cancel()
		i = j
	}
	return errs
}

// recordOnly tells an event that needs nothing beside its record (no job to queue when it
// closes its call), whose check and update are one step.
func (r *Receiver) recordOnly(ev HookEvent) bool {
	return ev.CallID != "" && !(ev.Closes && r.jobs != nil)
}

// applyOnce checks and applies record-only events in one round trip. A failure is
// ErrStoreDown: the sender should retry.
func (r *Receiver) applyOnce(ctx context.Context, evs []HookEvent) []session.OnceResult {
	us := make([]session.OnceUpdate, len(evs))
	for i, ev := range evs {
		us[i] = session.OnceUpdate{Key: ev.Platform + ":" + ev.DedupeKey, TTL: r.dedupeTTL, Update: callUpdate(ev)}
	}
	res := r.store.ApplyCallsOnce(ctx, us)
	for i := range res {
		if res[i].Err != nil {
			res[i].Err = fmt.Errorf("%w: %w", ErrStoreDown, res[i].Err)
		}
	}
	return res
}

func callUpdate(ev HookEvent) session.CallUpdate {
	u := session.CallUpdate{
		Platform: ev.Platform, CallID: ev.CallID, Source: ev.Source, Agent: ev.Agent,
		From: ev.From, To: ev.To, Direction: ev.Direction, Status: ev.Status, Err: ev.Error,
		Test: ev.Test, StartedAt: ev.StartedAt, EndedAt: ev.EndedAt, Duration: ev.Duration,
		Replace: ev.FinalTranscript, Close: ev.Closes, Analysis: ev.Analysis, At: ev.At,
	}
	for _, t := range ev.Turns {
		u.Turns = append(u.Turns, session.RecordTurn{Role: t.Role, Text: t.Text, At: t.At})
	}
	return u
}

func jsonRecord(rec session.CallRecord) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode call record %s: %w", rec.CallID, err)
	}
	return b, nil
}
