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
// (each Play is a fresh call id). It reports every delivery of a call once the call is over:
// the message of each say turn as a turn, its retry, duplicate and interrupted as deliveries
// of their own.
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
		res := r.Play(ctx, scripts[order[n%len(order)]])
		for _, tr := range res.Turns {
			sent := start.Add(tr.At)
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
			if tr.Interrupt != nil {
				report(delivery(tr.Interrupt, "interrupted", sent))
			}
		}
		return res.Err
	}, nil
}

// delivery is what the engine measures of one of the runner's deliveries.
func delivery(d *callscript.Delivery, event string, sent time.Time) Delivery {
	out := Delivery{Event: event, Sent: sent, Status: d.Status, Elapsed: d.Total, Cut: d.Cut}
	for _, l := range d.Lines {
		out.Lines = append(out.Lines, l.At)
		out.Chars += len([]rune(l.Text))
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
