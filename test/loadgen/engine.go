// Package loadgen is callbrain's one load engine: it drives many calls against a brain, in a
// closed model (a fixed number of calls at once) or an open model (calls started per second,
// as real traffic arrives), by count or by duration, with a ramp-up, and measures what the
// callers feel with HDR histograms. `callsim load` (cmd/callsim) and the load run of
// test/bench use it; what a call does is a Player's business (a recorded call script played
// by test/callscript).
//
// A run is always bounded: it stops starting calls after Config.Calls or Config.Duration,
// and Config.MaxDuration cancels whatever is still running. Cancelling the context ends the
// run early; Run still returns what was measured so far.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callbrain/callbrain/test/serve"
)

// Defaults of a Config.
const (
	DefaultMaxDuration = 10 * time.Minute
	DefaultMaxActive   = 5000
	// The budgets a turn can miss (PROTOCOL: Saperly waits at most 15 s for the next line,
	// 5 min for a whole answer, and speaks at most 1800 characters of it).
	DefaultGapBudget  = 15 * time.Second
	DefaultTurnBudget = 5 * time.Minute
	DefaultMaxChars   = 1800
)

// Config shapes a run. Exactly one of Concurrency (closed model) and Rate (open model) is
// set; at least one of Calls and Duration.
type Config struct {
	// Concurrency is the number of calls kept in progress at once (closed model): each
	// finished call is followed at once by the next.
	Concurrency int
	// Rate is the number of calls started per second (open model), whatever the brain's pace;
	// MaxActive bounds the calls in progress at once.
	Rate float64
	// Calls stops the run after this many calls have been started (0: no count).
	Calls int
	// Duration stops starting calls after this long (0: no duration); calls in progress
	// then finish.
	Duration time.Duration
	// Ramp spreads the start: the closed model starts its callers evenly over Ramp, the open
	// model raises its rate linearly from 0 to Rate over Ramp.
	Ramp time.Duration
	// MaxDuration cancels every call still in progress this long after the start
	// (DefaultMaxDuration when 0). It is the run's hard bound.
	MaxDuration time.Duration
	// MaxActive bounds the calls in progress at once in the open model (DefaultMaxActive
	// when 0); a call due while the bound is reached is skipped and counted.
	MaxActive int
	// GapBudget, TurnBudget and MaxChars are the budgets a turn is checked against
	// (DefaultGapBudget, DefaultTurnBudget, DefaultMaxChars when 0).
	GapBudget  time.Duration
	TurnBudget time.Duration
	MaxChars   int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Player plays call number n (0, 1, 2, … in start order) against the target, and reports
// each delivery of the call through report as soon as its answer has ended. Its error ends
// the call as failed (a delivery that failed is reported as a Delivery with Err instead, and
// the call may go on). report is called from one goroutine at a time. It must return soon
// after ctx is cancelled.
type Player func(ctx context.Context, n int, report func(Delivery)) error

// Delivery is one event of a call as the caller side saw it.
type Delivery struct {
	// Event is the event's kind: "message" (an utterance, answered with speech), or
	// call_started, interrupted, call_ended, … Only messages are measured as turns.
	Event string
	// Sent is when the request was sent.
	Sent time.Time
	// Status is the HTTP status (0 when none arrived).
	Status int
	// Lines are the arrival times of the spoken lines, since the request was sent (the
	// script runner measures from the end of the POST: the end of the caller's utterance).
	Lines []time.Duration
	// Chars is the number of characters spoken.
	Chars int
	// Elapsed is when the answer ended (or was cut), since Sent.
	Elapsed time.Duration
	// Holds and Apologies count the holding phrases and apology lines heard.
	Holds, Apologies int
	// Cut reports the caller talked over the answer (the connection was closed on purpose).
	Cut bool
	// Err is what went wrong, nil when the delivery was answered as it should be; Kind
	// classifies it (KindCall when empty).
	Err  error
	Kind ErrorKind
}

// Live is the state of a run in progress, for a progress display.
type Live struct {
	Elapsed     time.Duration
	Started     int
	Done        int // calls that ended, well or not
	Active      int
	Errors      int // deliveries that failed, and calls that failed
	Turns       int
	FirstLine   time.Duration // the median first-line latency of the latest turns (0: none yet)
	Target      int           // calls the run will start (0: bounded by time)
	Until       time.Duration // the run's planned duration (0: bounded by count)
	Interrupted bool
}

// Engine runs one load run. Make it with New; it is used once.
type Engine struct {
	cfg  Config
	play Player
	rec  *recorder

	started, done, active, errors, turns atomic.Int64
	interrupted                          atomic.Bool
	begin                                atomic.Pointer[time.Time]
}

// New checks cfg and returns an engine that plays each call with play.
func New(cfg Config, play Player) (*Engine, error) {
	switch {
	case play == nil:
		return nil, errors.New("no player")
	case cfg.Concurrency > 0 && cfg.Rate > 0:
		return nil, errors.New("concurrency (closed model) and rate (open model) exclude each other")
	case cfg.Concurrency <= 0 && cfg.Rate <= 0:
		return nil, errors.New("need a concurrency (closed model) or a rate (open model)")
	case cfg.Concurrency < 0, cfg.Rate < 0, cfg.Calls < 0, cfg.Duration < 0, cfg.Ramp < 0, cfg.MaxDuration < 0, cfg.MaxActive < 0:
		return nil, errors.New("negative setting")
	case math.IsInf(cfg.Rate, 0) || math.IsNaN(cfg.Rate):
		return nil, fmt.Errorf("rate %v is not a number of calls per second", cfg.Rate)
	case cfg.Calls == 0 && cfg.Duration == 0:
		return nil, errors.New("need a number of calls or a duration")
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.Duration >= cfg.MaxDuration {
		return nil, fmt.Errorf("duration %s must be shorter than the hard bound %s (max duration)", cfg.Duration, cfg.MaxDuration)
	}
	if cfg.Ramp >= cfg.MaxDuration {
		return nil, fmt.Errorf("ramp %s must be shorter than the hard bound %s (max duration)", cfg.Ramp, cfg.MaxDuration)
	}
	if cfg.MaxActive == 0 {
		cfg.MaxActive = DefaultMaxActive
	}
	if cfg.GapBudget == 0 {
		cfg.GapBudget = DefaultGapBudget
	}
	if cfg.TurnBudget == 0 {
		cfg.TurnBudget = DefaultTurnBudget
	}
	if cfg.MaxChars == 0 {
		cfg.MaxChars = DefaultMaxChars
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Engine{cfg: cfg, play: play, rec: newRecorder(cfg)}, nil
}

// Live returns the state of the run now. It is safe to call from any goroutine.
func (e *Engine) Live() Live {
	l := Live{
		Started: int(e.started.Load()) - e.rec.skipped(), Done: int(e.done.Load()), Active: int(e.active.Load()),
		Errors: int(e.errors.Load()), Turns: int(e.turns.Load()), FirstLine: e.rec.recentFirstLine(),
		Target: e.cfg.Calls, Until: e.cfg.Duration, Interrupted: e.interrupted.Load(),
	}
	if b := e.begin.Load(); b != nil {
		l.Elapsed = e.cfg.Now().Sub(*b)
	}
	return l
}

// Run runs the load and returns its report. Cancelling ctx (Ctrl-C) stops the run: calls in
// progress are cancelled, and the report holds what was measured until then, with
// Interrupted set. Run returns only when every call it started has returned.
func (e *Engine) Run(ctx context.Context) *Report {
	start := e.cfg.Now()
	e.begin.Store(&start)
	e.rec.start(start)

	hard, cancelHard := context.WithTimeoutCause(context.WithoutCancel(ctx), e.cfg.MaxDuration, errMaxDuration)
	defer cancelHard()
	// calls is cancelled by the hard bound or by the caller's ctx, whichever comes first.
	calls, cancelCalls := context.WithCancelCause(hard)
	defer cancelCalls(nil)
	stopWatch := context.AfterFunc(ctx, func() {
		e.interrupted.Store(true)
		cancelCalls(context.Cause(ctx))
	})
	defer stopWatch()

	var stop StopReason
	if e.cfg.Concurrency > 0 {
		stop = e.closed(calls, start)
	} else {
		stop = e.open(calls, start)
	}
	end := e.cfg.Now()
	switch {
	case e.interrupted.Load():
		stop = StopInterrupted
	case errors.Is(context.Cause(calls), errMaxDuration):
		stop = StopMaxDuration
	}
	return e.rec.report(start, end, stop, int(e.started.Load())-e.rec.skipped())
}

// StopReason says why a run stopped.
type StopReason string

// The reasons a run stops.
const (
	StopCalls       StopReason = "calls"        // the number of calls was started and they ended
	StopDuration    StopReason = "duration"     // the duration passed and the calls in progress ended
	StopMaxDuration StopReason = "max_duration" // the hard bound cancelled calls still in progress
	StopInterrupted StopReason = "interrupted"  // the run was interrupted (Ctrl-C)
)

var errMaxDuration = errors.New("the run's hard bound (max duration) passed")

// next hands out call numbers until the run's count or duration is reached; ok is false
// once no call may start any more.
func (e *Engine) next(ctx context.Context, start time.Time) (n int, ok bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	if e.cfg.Duration > 0 && e.cfg.Now().Sub(start) >= e.cfg.Duration {
		return 0, false
	}
	n = int(e.started.Add(1)) - 1
	if e.cfg.Calls > 0 && n >= e.cfg.Calls {
		e.started.Add(-1)
		return 0, false
	}
	return n, true
}

// closed keeps Concurrency callers busy, each starting its next call when its last ends.
func (e *Engine) closed(ctx context.Context, start time.Time) StopReason {
	// Past the duration no caller starts another call: a timer cancels the waits of the ramp.
	starting, stopStarting := e.startWindow(ctx)
	defer stopStarting()
	var wg sync.WaitGroup
	for w := range e.cfg.Concurrency {
		wg.Go(func() {
			if serve.Wait(starting, start.Add(e.cfg.Ramp*time.Duration(w)/time.Duration(e.cfg.Concurrency)).Sub(e.cfg.Now())) != nil {
				return
			}
			for {
				n, ok := e.next(starting, start)
				if !ok {
					return
				}
				e.call(ctx, n)
			}
		})
	}
	wg.Wait()
	if e.cfg.Calls > 0 && int(e.started.Load()) >= e.cfg.Calls {
		return StopCalls
	}
	return StopDuration
}

// open starts calls at Rate per second (rising linearly over Ramp), whatever the pace of
// the calls in progress.
func (e *Engine) open(ctx context.Context, start time.Time) StopReason {
	starting, stopStarting := e.startWindow(ctx)
	defer stopStarting()
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := 0; ; k++ {
		if serve.Wait(starting, start.Add(openStart(k, e.cfg.Rate, e.cfg.Ramp)).Sub(e.cfg.Now())) != nil {
			break
		}
		n, ok := e.next(starting, start)
		if !ok {
			break
		}
		if int(e.active.Load()) >= e.cfg.MaxActive {
			e.rec.skip() // its number is used up: a run by count ends after Calls numbers
			continue
		}
		e.active.Add(1) // counted here so MaxActive holds before the goroutine runs
		wg.Go(func() { e.callCounted(ctx, n) })
	}
	if e.cfg.Calls > 0 && int(e.started.Load()) >= e.cfg.Calls {
		return StopCalls
	}
	return StopDuration
}

// startWindow returns a context that ends when no call may start any more: at the end of
// Duration (when set) or with ctx.
func (e *Engine) startWindow(ctx context.Context) (context.Context, context.CancelFunc) {
	if e.cfg.Duration > 0 {
		return context.WithTimeout(ctx, e.cfg.Duration)
	}
	return context.WithCancel(ctx)
}

// openStart is when the open model starts call k (0-based), since the start of the run: the
// rate rises linearly from 0 to rate over ramp, so k calls have started by t when
// rate·t²/(2·ramp) = k during the ramp, and rate·ramp/2 + rate·(t−ramp) = k after it.
func openStart(k int, rate float64, ramp time.Duration) time.Duration {
	r := ramp.Seconds()
	var t float64
	if inRamp := rate * r / 2; float64(k) < inRamp {
		t = math.Sqrt(2 * float64(k) * r / rate)
	} else {
		t = r + (float64(k)-inRamp)/rate
	}
	return time.Duration(t * float64(time.Second))
}

func (e *Engine) call(ctx context.Context, n int) {
	e.active.Add(1)
	e.callCounted(ctx, n)
}

// callCounted plays call n, already counted active.
func (e *Engine) callCounted(ctx context.Context, n int) {
	began := e.cfg.Now()
	e.rec.callStarted(began, int(e.active.Load()))
	var failed atomic.Bool
	err := e.play(ctx, n, func(d Delivery) {
		if d.Kind == "" && d.Err != nil {
			d.Kind = KindCall
		}
		if d.Err != nil && ctx.Err() != nil {
			d.Kind = KindAborted // cut by the end of the run, not by the brain
		}
		if d.Err != nil && d.Kind != KindAborted {
			e.errors.Add(1)
			failed.Store(true)
		}
		if d.Event == EventMessage && d.Kind != KindAborted {
			e.turns.Add(1)
		}
		e.rec.delivery(n, d)
	})
	var kind ErrorKind
	switch {
	case err != nil && ctx.Err() != nil:
		kind = KindAborted
	case err != nil:
		kind = KindCall
		e.errors.Add(1)
	case failed.Load():
		kind = KindFailed
	}
	e.active.Add(-1)
	e.done.Add(1)
	e.rec.callEnded(e.cfg.Now(), n, kind, err)
}

// EventMessage is the event kind measured as a turn.
const EventMessage = "message"
