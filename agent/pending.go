package agent

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/session"
)

// A store outage must not cost the conversation what was said in it. A turn whose commit the
// store did not take (it failed or timed out, or the turn began without the store) is kept in
// memory and written later: per call in the order the turns were committed, retried with
// backoff and jitter, within a bound on memory (PendingTurns, PendingBytes) and on time
// (PendingRetention). Writing it twice is harmless: every history entry carries an event id
// (a synthetic one when Saperly sent none) and session.Fold keeps a repeated (kind, event id)
// once, so a commit that timed out after Redis applied it may simply be written again. What
// cannot be written within the bounds is counted and logged at Error, once per turn.

// Backoff between retry rounds while the store refuses writes: from pendingBackoffMin,
// doubling per failed round, up to pendingBackoffMax, each wait drawn between half and all of
// it (jitter, so replicas that lost the store together do not retry in step).
const (
	pendingBackoffMin = 100 * time.Millisecond
	pendingBackoffMax = 5 * time.Second
	// pendingEntryOverhead is what an entry costs in memory beyond its strings, for the byte bound.
	pendingEntryOverhead = 64
)

// Reasons a pending turn is given up, logged as "reason".
const (
	lostRetention = "retention" // not written within PendingRetention
	lostMemory    = "memory"    // pushed out by newer turns past PendingTurns or PendingBytes
	lostShutdown  = "shutdown"  // still unwritten when the drain timeout ran out
)

// pendingTurn is one turn the store has not taken yet.
type pendingTurn struct {
	callID string
	// lease is the turn's hold on its claim and log (Ref.Event is Saperly's event_id, "" when
	// it sent none: no turn log to close). A write fenced out by another delivery's lease
	// (session.ErrLeaseLost) ends the turn here: that delivery records it.
	lease   session.Lease
	eventID string // lease.Ref.Event
	histID  string // the event id the history entries carry (eventID, or a synthetic one)
	entries []session.Entry
	lines   []string  // the spoken lines the turn log does not hold yet: the commit carries them
	size    int       // bytes held, for PendingBytes
	since   time.Time // when the turn was committed
	tries   int       // writes attempted
	writing bool      // a write of it is in flight: not evicted or expired meanwhile
	kept    bool      // its turn ended with it unwritten (TurnStats.Pending)
}

// newPendingTurn is the turn of ev, held under lease, with the spoken lines its turn log
// misses and its history entries. Entries without an event id get the turn's history id, so
// writing them again never doubles them.
func newPendingTurn(ev Event, lease session.Lease, lines []string, entries []session.Entry, now time.Time) *pendingTurn {
	p := &pendingTurn{callID: ev.CallID, lease: lease, eventID: ev.ID, histID: historyID(ev), since: now, lines: lines}
	p.entries = slices.Clone(entries)
	p.size = len(p.callID) + len(p.lease.Ref.Line) + len(p.lease.Token) + len(p.eventID) + len(p.histID)
	for _, l := range lines {
		p.size += len(l)
	}
	for i := range p.entries {
		e := &p.entries[i]
		if e.EventID == "" {
			e.EventID = p.histID
		}
		p.size += pendingEntryOverhead + len(e.Kind) + len(e.Text) + len(e.EventID) + len(e.ToolCall) + len(e.ToolName) + len(e.ToolArgs)
	}
	return p
}

// historyID is the event id a turn's history entries carry: Saperly's event_id, or for a
// message without one a synthetic id, prefixed "syn-". With a timestamp it is derived from
// the call, the timestamp and the words, so a retried delivery of the same message (answered
// again, as nothing can tell it is a retry) enters the history once; without one it is random,
// so two equal utterances ("yes", "yes") stay two turns.
func historyID(ev Event) string {
	if ev.ID != "" {
		return ev.ID
	}
	if ev.Timestamp > 0 {
		sum := sha256.Sum256([]byte(ev.CallID + "\x00" + strconv.FormatInt(ev.Timestamp, 10) + "\x00" + ev.Text))
		return "syn-" + hex.EncodeToString(sum[:12])
	}
	return "syn-" + crand.Text()[:20]
}

// lostTurn is a pending turn given up, for the log.
type lostTurn struct {
	p      *pendingTurn
	reason string
	at     time.Time
}

// pendingQueue holds the pending turns: per call, oldest first. It does no I/O, starts no
// goroutine and reads no clock (every method is given the time), so its rules are table
// tests. busy marks a call whose queue a writer is working through: there is at most one, so
// a call's turns are written in order.
type pendingQueue struct {
	maxTurns, maxBytes int
	retention          time.Duration

	calls        map[string][]*pendingTurn
	busy         map[string]bool
	turns, bytes int
}

func newPendingQueue(maxTurns, maxBytes int, retention time.Duration) *pendingQueue {
	return &pendingQueue{
		maxTurns: maxTurns, maxBytes: maxBytes, retention: retention,
		calls: make(map[string][]*pendingTurn), busy: make(map[string]bool),
	}
}

// push queues p behind its call's earlier turns and returns the turns given up to make room:
// the oldest that no write holds, p itself when nothing else can go.
func (q *pendingQueue) push(p *pendingTurn, now time.Time) []lostTurn {
	q.calls[p.callID] = append(q.calls[p.callID], p)
	q.turns++
	q.bytes += p.size
	var lost []lostTurn
	for q.turns > q.maxTurns || q.bytes > q.maxBytes {
		victim := q.oldest()
		if victim == nil {
			break // everything left is being written; the bound is back once that ends
		}
		q.remove(victim)
		lost = append(lost, lostTurn{p: victim, reason: lostMemory, at: now})
	}
	return lost
}

// oldest returns the turn queued first that no write holds, or nil.
func (q *pendingQueue) oldest() *pendingTurn {
	var best *pendingTurn
	for _, turns := range q.calls {
		for _, p := range turns {
			if p.writing {
				continue
			}
			if best == nil || p.since.Before(best.since) {
				best = p
			}
			break // a call's turns are oldest first
		}
	}
	return best
}

// expire gives up every turn older than the retention that no write holds.
func (q *pendingQueue) expire(now time.Time) []lostTurn {
	var lost []lostTurn
	for _, turns := range q.calls {
		for _, p := range turns {
			if !p.writing && now.Sub(p.since) >= q.retention {
				lost = append(lost, lostTurn{p: p, reason: lostRetention, at: now})
			}
		}
	}
	for _, l := range lost {
		q.remove(l.p)
	}
	return lost
}

// nextExpiry is when the oldest turn reaches the retention; zero when none is queued.
func (q *pendingQueue) nextExpiry() time.Time {
	var next time.Time
	for _, turns := range q.calls {
		if len(turns) > 0 && (next.IsZero() || turns[0].since.Before(next)) {
			next = turns[0].since
		}
	}
	if next.IsZero() {
		return next
	}
	return next.Add(q.retention)
}

// acquire makes the caller the writer of callID, reporting false when another writer is.
func (q *pendingQueue) acquire(callID string) bool {
	if q.busy[callID] {
		return false
	}
	q.busy[callID] = true
	return true
}

// next returns the writer's next turn of callID and marks it in flight, or releases the call
// and returns nil when none is left.
func (q *pendingQueue) next(callID string) *pendingTurn {
	turns := q.calls[callID]
	if len(turns) == 0 {
		delete(q.busy, callID)
		return nil
	}
	turns[0].writing = true
	turns[0].tries++
	return turns[0]
}

// written removes p, whose write succeeded.
func (q *pendingQueue) written(p *pendingTurn) {
	p.writing = false
	q.remove(p)
}

// failed keeps p, whose write failed, at the head of its call and releases the call.
func (q *pendingQueue) failed(p *pendingTurn) {
	p.writing = false
	delete(q.busy, p.callID)
}

// remove takes p out of its call's queue, wherever it is.
func (q *pendingQueue) remove(p *pendingTurn) {
	turns := q.calls[p.callID]
	i := slices.Index(turns, p)
	if i < 0 {
		return
	}
	turns = slices.Delete(turns, i, i+1)
	if len(turns) == 0 {
		delete(q.calls, p.callID)
	} else {
		q.calls[p.callID] = turns
	}
	q.turns--
	q.bytes -= p.size
}

// idle returns the calls with queued turns and no writer, the call of the oldest turn first.
func (q *pendingQueue) idle() []string {
	ids := make([]string, 0, len(q.calls))
	for id, turns := range q.calls {
		if len(turns) > 0 && !q.busy[id] {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return q.calls[a][0].since.Compare(q.calls[b][0].since) })
	return ids
}

// entries returns copies of the entries of callID's queued turns, in order.
func (q *pendingQueue) entries(callID string) []session.Entry {
	var out []session.Entry
	for _, p := range q.calls[callID] {
		out = append(out, p.entries...)
	}
	return out
}

// backoff is the wait after the given number of failed rounds in a row (1 or more): doubling
// from pendingBackoffMin up to pendingBackoffMax, then drawn in [half, all] by randN, which
// returns a number in [0, n).
func backoff(failures int, randN func(n int64) int64) time.Duration {
	d := pendingBackoffMin
	for i := 1; i < failures && d < pendingBackoffMax; i++ {
		d *= 2
	}
	d = min(d, pendingBackoffMax)
	half := d / 2
	return half + time.Duration(randN(int64(d-half)+1))
}

// outbox drives the pending queue: committing turns write through it, and one retrier
// goroutine, started when a write fails and ending when the queue is empty (or at close),
// retries the rest in rounds with backoff. The retrier is owned by the outbox: close stops it
// and waits for it.
type outbox struct {
	write   func(ctx context.Context, p *pendingTurn) error
	timeout time.Duration // bound on one write
	log     *zap.Logger

	mu       sync.Mutex
	q        *pendingQueue
	failures int       // failed rounds in a row
	retryAt  time.Time // no round before this
	running  bool      // the retrier is running
	closed   bool      // close has begun: no retrier starts any more
	done     chan struct{}
	wake     chan struct{} // a round may be due sooner: retryAt moved, or close began
	written  int64
	lost     int64
}

func newOutbox(cfg Config, write func(context.Context, *pendingTurn) error, log *zap.Logger) *outbox {
	// A write that panics (a store client's bug) is a failed write: kept and retried, and the
	// retrier's goroutine survives it.
	safe := func(ctx context.Context, p *pendingTurn) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("turn write panicked", zap.String("call_id", p.callID), zap.Any("panic", r), zap.Stack("stack"))
				err = fmt.Errorf("%w: %v", errWritePanic, r)
			}
		}()
		return write(ctx, p)
	}
	return &outbox{
		write: safe, timeout: 2 * cfg.StoreTimeout, log: log,
		q:    newPendingQueue(cfg.PendingTurns, cfg.PendingBytes, cfg.PendingRetention),
		wake: make(chan struct{}, 1),
	}
}

// errWritePanic is the error of a turn write that panicked.
var errWritePanic = errors.New("turn write panicked")

// commit writes p now unless its call has turns queued that another writer is working
// through, and keeps it for the retrier when the store does not take it. It reports whether
// p is still pending. ctx bounds the attempt, not the retries.
func (o *outbox) commit(ctx context.Context, p *pendingTurn) bool {
	o.mu.Lock()
	lost := o.q.push(p, p.since)
	mine := o.q.acquire(p.callID)
	o.mu.Unlock()
	o.report(lost)
	if mine {
		if o.drain(ctx, p.callID) {
			o.storeBack() // the store took this call's turns: any others are due now
		} else {
			o.fail()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	pending := slices.Contains(o.q.calls[p.callID], p)
	if pending {
		p.kept = true
		o.startRetrier()
	}
	return pending
}

// drain writes callID's queued turns in order, as their writer, until none is left (true) or
// one fails (false). The caller has acquired the call; drain releases it.
func (o *outbox) drain(ctx context.Context, callID string) bool {
	for {
		o.mu.Lock()
		p := o.q.next(callID)
		o.mu.Unlock()
		if p == nil {
			return true
		}
		wctx, cancel := context.WithTimeout(ctx, o.timeout)
		err := o.write(wctx, p)
		cancel()
		o.mu.Lock()
		tries, kept := p.tries, p.kept // once the call is released, another writer may take p
		if err != nil {
			o.q.failed(p)
			o.mu.Unlock()
			o.log.Debug("pending turn not written", zap.String("call_id", p.callID),
				zap.String("event_id", p.histID), zap.Int("tries", tries), zap.Error(err))
			return false
		}
		o.q.written(p)
		if kept {
			o.written++
		}
		o.mu.Unlock()
		if kept {
			o.log.Info("pending turn written", zap.String("call_id", p.callID), zap.String("event_id", p.histID),
				zap.Int("tries", tries), zap.Int64("pending_ms", time.Since(p.since).Milliseconds()))
		}
	}
}

// round writes every idle call's queued turns, stopping at the first failure. It reports
// whether the store took everything it was given, and how many calls it worked on (none when
// every call with turns had a writer already).
func (o *outbox) round(ctx context.Context) (ok bool, calls int) {
	o.mu.Lock()
	ids := o.q.idle()
	o.mu.Unlock()
	for _, id := range ids {
		o.mu.Lock()
		mine := o.q.acquire(id)
		o.mu.Unlock()
		if !mine {
			continue // a committing turn of that call is writing it
		}
		calls++
		if !o.drain(ctx, id) || ctx.Err() != nil {
			return false, calls
		}
	}
	return true, calls
}

// fail records a failed round and schedules the next one.
func (o *outbox) fail() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures++
	o.retryAt = time.Now().Add(backoff(o.failures, rand.Int64N))
}

// storeBack records a write the store took: the retrier's next round is due at once (or it
// ends, when nothing is left).
func (o *outbox) storeBack() {
	o.mu.Lock()
	o.failures = 0
	o.retryAt = time.Time{}
	o.mu.Unlock()
	o.poke()
}

func (o *outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// startRetrier starts the retrier unless it runs or the outbox is closing. Called with mu held.
func (o *outbox) startRetrier() {
	if o.running || o.closed {
		return
	}
	o.running = true
	o.done = make(chan struct{})
	go o.retry(o.done)
}

// retry runs rounds until the queue is empty or close begins, waiting out the backoff and
// giving up turns past the retention as it goes.
func (o *outbox) retry(done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		o.mu.Lock()
		lost := o.q.expire(now)
		if o.q.turns == 0 || o.closed {
			o.running = false
			o.mu.Unlock()
			o.report(lost)
			return
		}
		wait := o.retryAt.Sub(now)
		if exp := o.q.nextExpiry(); !exp.IsZero() {
			wait = min(wait, exp.Sub(now))
		}
		o.mu.Unlock()
		o.report(lost)
		if wait <= 0 {
			ok, calls := o.round(context.Background()) // each write is bounded by o.timeout
			switch {
			case !ok:
				o.fail()
				continue
			case calls > 0:
				o.storeBack()
				continue
			}
			// Every call left has a committing turn writing it: wait for it to end.
			wait = pendingBackoffMin
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-o.wake:
			timer.Stop()
		}
	}
}

// close stops the retrier and writes what is still pending, retrying with backoff until the
// queue is empty or ctx ends; every turn left then is logged as lost. Call it once no turn
// runs any more (after the server's shutdown).
func (o *outbox) close(ctx context.Context) {
	o.mu.Lock()
	o.closed = true
	running, done := o.running, o.done
	o.mu.Unlock()
	o.poke()
	if running {
		<-done
	}
	o.mu.Lock()
	left := o.q.turns
	o.mu.Unlock()
	if left > 0 {
		o.log.Info("writing pending turns before exit", zap.Int("turns", left))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		o.mu.Lock()
		lost := o.q.expire(time.Now())
		empty := o.q.turns == 0
		o.mu.Unlock()
		o.report(lost)
		if empty {
			if left > 0 {
				o.log.Info("pending turns written before exit", zap.Int("turns", left))
			}
			return
		}
		wait := pendingBackoffMin // a writer still holds a call
		if ok, calls := o.round(ctx); !ok {
			o.fail()
			o.mu.Lock()
			wait = time.Until(o.retryAt)
			o.mu.Unlock()
		} else if calls > 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
			continue
		case <-ctx.Done():
		}
		o.mu.Lock()
		var unwritten []lostTurn
		for _, turns := range o.q.calls {
			for _, p := range turns {
				unwritten = append(unwritten, lostTurn{p: p, reason: lostShutdown, at: time.Now()})
			}
		}
		for _, l := range unwritten {
			o.q.remove(l.p)
		}
		o.mu.Unlock()
		o.report(unwritten)
		o.log.Error("pending turns left unwritten at exit", zap.Int("turns", len(unwritten)))
		return
	}
}

// report counts and logs turns given up, each once. They are out of the queue: nothing else
// touches them any more.
func (o *outbox) report(lost []lostTurn) {
	for _, l := range lost {
		o.mu.Lock()
		o.lost++
		total := o.lost
		tries := l.p.tries
		o.mu.Unlock()
		o.log.Error("turn lost", zap.String("call_id", l.p.callID), zap.String("event_id", l.p.histID),
			zap.String("reason", l.reason), zap.Int("tries", tries),
			zap.Int64("pending_ms", l.at.Sub(l.p.since).Milliseconds()), zap.Int64("lost_total", total))
	}
}

// withPending returns hist with callID's pending turns merged in, as the store will hold them
// once they are written.
func (o *outbox) withPending(callID string, hist []session.Entry) []session.Entry {
	o.mu.Lock()
	extra := o.q.entries(callID)
	o.mu.Unlock()
	if len(extra) == 0 {
		return hist
	}
	return session.Fold(append(slices.Clone(hist), extra...))
}

// PendingStats are the figures of the turns kept for the store.
type PendingStats struct {
	Turns, Bytes int   // pending now
	Written      int64 // turns written after their turn ended without them being written
	Lost         int64 // given up: past the retention, the memory bound, or the drain timeout
}

func (o *outbox) stats() PendingStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return PendingStats{Turns: o.q.turns, Bytes: o.q.bytes, Written: o.written, Lost: o.lost}
}
