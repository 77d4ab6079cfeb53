package loadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callbrain/callbrain/test/callscript"
)

// ErrorKind classifies what went wrong with a delivery or a call. A delivery's kinds are the
// script runner's (callscript.ErrorKind: non-200, timeout, bad-ndjson, connection-reset,
// connection-refused, request), plus the ones below.
type ErrorKind string

// The kinds the engine adds to the runner's.
const (
	// KindDuplicateAccepted is a duplicated delivery (same delivery id) the brain answered
	// 2xx instead of refusing it (PROTOCOL §1.4). A refused duplicate is no error.
	KindDuplicateAccepted ErrorKind = "duplicate-accepted"
	// KindCall is a call its player could not go on with.
	KindCall ErrorKind = "call"
	// KindFailed marks a call some of whose deliveries failed (each counted by its kind).
	KindFailed ErrorKind = "failed"
	// KindAborted marks a delivery or call cut by the end of the run (Ctrl-C or the hard
	// bound): not counted as an error.
	KindAborted ErrorKind = "aborted"
)

// The event kinds a script's second deliveries are reported under: they are not turns.
const (
	EventRetry     = "message-retry"
	EventDuplicate = "-duplicate" // appended to the duplicated event's kind
)

// ScriptPlayer plays call n with script order[n % len(order)], where order spreads the
// scripts by weight (Pick; nil weights play them in turn), with the call-script runner r
// (each Play is a fresh call id). It reports each turn's deliveries as the turn ends: the
// message of a say turn as a turn, its retry and duplicate as deliveries of their own, and
// its interrupted once the call is over (a late one may arrive after the next turn).
func ScriptPlayer(r *callscript.Runner, scripts []*callscript.Script, weights []int) (Player, error) {
	if len(scripts) == 0 {
		return nil, errors.New("no scripts")
	}
	if weights == nil {
		weights = make([]int, len(scripts))
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != len(scripts) {
		return nil, fmt.Errorf("%d weights for %d scripts", len(weights), len(scripts))
	}
	order, err := Pick(weights)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, n int, report func(Delivery)) error {
		start := time.Now()
		// A copy of the runner per call, whose OnTurn reports this call's turns as they end,
		// for the live display and the time series.
		call := *r
		call.OnTurn = func(callID string, tr *callscript.TurnResult) {
			if r.OnTurn != nil {
				r.OnTurn(callID, tr)
			}
			reportTurn(tr, start.Add(tr.At), report)
		}
		res := call.Play(ctx, scripts[order[n%len(order)]])
		// The interrupted events, once back: a late one may still have been on its way when
		// its turn ended.
		for _, tr := range res.Turns {
			if tr.Interrupt != nil {
				report(delivery(tr.Interrupt, "interrupted", start.Add(tr.At)))
			}
		}
		return res.Err
	}, nil
}

// reportTurn reports the deliveries of a turn but its interrupted: the message of a say
// turn as a turn, its retry and duplicate as deliveries of their own.
func reportTurn(tr *callscript.TurnResult, sent time.Time, report func(Delivery)) {
	if tr.Delivery != nil {
		report(delivery(tr.Delivery, tr.Delivery.Event, sent))
	}
	if tr.Retry != nil {
		report(delivery(tr.Retry, EventRetry, sent))
	}
	if tr.Duplicate != nil {
		d := delivery(tr.Duplicate, tr.Duplicate.Event+EventDuplicate, sent)
		switch {
		case tr.Duplicate.Status >= 300:
			d.Err, d.Kind = nil, "" // refused, as it must be
		case tr.Duplicate.Err == nil:
			d.Err, d.Kind = fmt.Errorf("duplicate delivery answered %d, not refused", tr.Duplicate.Status), KindDuplicateAccepted
		}
		report(d)
	}
}

// delivery is what the engine measures of one of the runner's deliveries.
func delivery(d *callscript.Delivery, event string, sent time.Time) Delivery {
	out := Delivery{Event: event, Sent: sent, Status: d.Status, Elapsed: d.Total, Cut: d.Cut, Chars: d.Chars()}
	for _, l := range d.Lines {
		out.Lines = append(out.Lines, l.At)
		if l.Hold {
			out.Holds++
		}
		if l.Apology {
			out.Apologies++
		}
	}
	if d.Err != nil {
		out.Err, out.Kind = d.Err, ErrorKind(d.Err.Kind)
	}
	return out
}
