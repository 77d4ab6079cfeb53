package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// Agent answers and records the events of every call.
type Agent struct {
	cfg      Config
	primary  LLM
	fallback LLM // nil when no fallback model is configured
	store    session.Store
	prompts  *prompts.Library
	log      *zap.Logger
}

// New returns an Agent. fallback may be nil.
func New(cfg Config, primary, fallback LLM, store session.Store, lib *prompts.Library, log *zap.Logger) *Agent {
	return &Agent{
		cfg:      cfg.withDefaults(),
		primary:  primary,
		fallback: fallback,
		store:    store,
		prompts:  lib,
		log:      log.Named("agent"),
	}
}

// Record keeps a non-message event on the call's record. An error means it was not kept, so
// the sender should retry; events that need nothing kept return nil.
func (a *Agent) Record(ctx context.Context, ev Event) error {
	at := eventTime(ev)
	var err error
	switch ev.Kind {
	case EventCallStarted:
		err = a.store.UpdateCall(ctx, session.Call{
			ID: ev.CallID, LineID: ev.LineID, From: ev.From, To: ev.To,
			Direction: ev.Direction, Status: "active", StartedAt: at,
		})
	case EventCallEnded:
		status := ev.Status
		if status == "" {
			status = "ended"
		}
		err = a.store.UpdateCall(ctx, session.Call{
			ID: ev.CallID, LineID: ev.LineID, Status: status, EndedAt: at, Duration: ev.Duration,
		})
	case EventInterrupted:
		err = a.store.AppendEntry(ctx, ev.CallID, session.Entry{
			Kind: session.EntryInterrupt, Text: ev.PartialText, At: at.UnixMilli(), EventID: ev.ID,
		})
	case EventCallIncoming, EventCallOutgoing:
		if ev.CallID == "" {
			return nil // nothing to attach it to; the delivery log line keeps it
		}
		dir := ev.Direction
		if dir == "" {
			dir = map[string]string{EventCallIncoming: "inbound", EventCallOutgoing: "outbound"}[ev.Kind]
		}
		err = a.store.UpdateCall(ctx, session.Call{
			ID: ev.CallID, LineID: ev.LineID, From: ev.From, To: ev.To,
			Direction: dir, Status: ev.Status, Duration: ev.Duration,
		})
	case EventSMSReceived:
		err = a.store.AddSMS(ctx, ev.LineID, session.SMS{
			ID: ev.MessageID, From: ev.From, To: ev.To, Text: ev.Text, At: at,
		})
	default:
		return nil // test, message on the status URL, and kinds newer than us: acknowledged only
	}
	if err != nil {
		return fmt.Errorf("record %s for call %s: %w", ev.Kind, ev.CallID, err)
	}
	return nil
}

// eventTime is when the event happened: Saperly's timestamp when the body carried one, else
// when it reached us.
func eventTime(ev Event) time.Time {
	if ev.Timestamp > 0 {
		return time.UnixMilli(ev.Timestamp)
	}
	if !ev.Delivery.ReceivedAt.IsZero() {
		return ev.Delivery.ReceivedAt
	}
	return time.Now()
}

// Respond answers a message: it calls emit once per line to speak, in order. It always says
// something unless the caller goes away (emit fails or ctx ends): a failed or slow model, a
// store outage or a broken stream become spoken lines, never silence. The returned error is
// for the log only: what the caller hears has already been decided.
func (a *Agent) Respond(ctx context.Context, ev Event, emit func(Chunk) error) error {
	start := ev.Delivery.ReceivedAt
	if start.IsZero() {
		start = time.Now()
	}
	stats := TurnStats{CallID: ev.CallID, EventID: ev.ID, LineID: ev.LineID, Verify: ev.Delivery.Verify}
	log := a.log.With(zap.String("call_id", ev.CallID), zap.String("event_id", ev.ID))
	defer func() {
		stats.Total = time.Since(start)
		a.logTurn(log, ev, stats)
		if a.cfg.OnTurn != nil {
			a.cfg.OnTurn(stats)
		}
	}()

	if strings.TrimSpace(ev.Text) == "" {
		stats.Outcome = OutcomeNoInput
		return a.sayFixed(ev, &stats, emit, a.cfg.NoInputLine)
	}

	loadCtx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	st, claimed, err := a.store.BeginTurn(loadCtx, session.Call{ID: ev.CallID}, ev.ID)
	cancel()
	stats.StateLoad = time.Since(start) - stats.Verify
	if err != nil {
		if ctx.Err() != nil {
			stats.Outcome = OutcomeCut
			return context.Cause(ctx)
		}
		// Answer without history rather than leave the caller in silence; the retry guard is
		// lost for this turn, which is the lesser harm.
		log.Warn("store unavailable, answering without history", zap.Error(err))
		stats.Degraded = true
		st, claimed = session.State{Call: session.Call{ID: ev.CallID}}, true
	}
	stats.Turn = countUser(st.History) + 1
	if !claimed {
		stats.Replayed = true
		return a.replay(ctx, ev, emit, &stats)
	}
	t := newTurn(a, ev, st, emit, log, start, &stats)
	return t.run(ctx)
}

func countUser(h []session.Entry) int {
	n := 0
	for _, e := range h {
		if e.Kind == session.EntryUser {
			n++
		}
	}
	return n
}

func (a *Agent) sayFixed(ev Event, stats *TurnStats, emit func(Chunk) error, line string) error {
	if err := emit(Speak(line)); err != nil {
		return err
	}
	stats.Lines++
	stats.Chars += len(line)
	stats.FirstLine = time.Since(ev.Delivery.ReceivedAt)
	return nil
}

// replay answers a retried message with the lines another delivery of the same event spoke or
// is speaking, from the first, following the live turn until it closes. The model is not asked
// again and the history is not touched.
func (a *Agent) replay(ctx context.Context, ev Event, emit func(Chunk) error, stats *TurnStats) error {
	stats.Outcome = OutcomeReplayed
	fctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	idle := time.AfterFunc(a.cfg.FollowIdle, func() { stop(ErrFollowIdle) })
	defer idle.Stop()
	start := ev.Delivery.ReceivedAt
	err := a.store.FollowTurn(fctx, ev.ID, func(text string) error {
		idle.Reset(a.cfg.FollowIdle)
		if err := emit(Speak(text)); err != nil {
			return err
		}
		if stats.Lines == 0 {
			stats.FirstLine = time.Since(start)
		}
		stats.Lines++
		stats.Chars += len(text)
		return nil
	})
	if err == nil || ctx.Err() != nil {
		if ctx.Err() != nil {
			stats.Outcome = OutcomeCut
		}
		return err
	}
	// The first delivery's turn went quiet (its replica may have died) or the log is gone:
	// close this answer sensibly rather than in silence.
	stats.Budget = "follow_idle"
	line := a.cfg.RecoveryLine
	if stats.Lines == 0 {
		line, stats.Outcome = a.cfg.ApologyLine, OutcomeApology
	}
	if sayErr := emit(Speak(line)); sayErr != nil {
		return sayErr
	}
	stats.Lines++
	return fmt.Errorf("replay event %s: %w", ev.ID, err)
}

func (a *Agent) logTurn(log *zap.Logger, ev Event, s TurnStats) {
	fields := []zap.Field{
		zap.String("line_id", s.LineID),
		zap.Int("turn", s.Turn),
		zap.String("outcome", s.Outcome),
		zap.String("model", s.Model),
		zap.String("prompt_version", s.PromptVersion),
		zap.Duration("verify", s.Verify),
		zap.Duration("state_load", s.StateLoad),
		zap.Duration("pre_model", s.PreModel),
		zap.Duration("ttft", s.TTFT),
		zap.Duration("first_chunk", s.FirstLine),
		zap.Duration("first_line_lag", s.FirstLineLag),
		zap.Duration("elapsed", s.Total),
		zap.Int("chunks", s.Lines),
		zap.Int("chars", s.Chars),
		zap.Int("holds", s.Holds),
		zap.Int("model_calls", s.ModelCalls),
		zap.Bool("fallback", s.Fallback),
		zap.Bool("hedged", s.Hedged),
		zap.Bool("replayed", s.Replayed),
		zap.Bool("degraded", s.Degraded),
	}
	if s.Budget != "" {
		fields = append(fields, zap.String("budget", s.Budget))
	}
	if a.cfg.LogText {
		fields = append(fields, zap.String("caller_text", ev.Text))
	} else {
		fields = append(fields, zap.Int("caller_chars", len(ev.Text)))
	}
	switch {
	case s.Outcome == OutcomeAnswered || s.Outcome == OutcomeReplayed || s.Outcome == OutcomeCut || s.Outcome == OutcomeNoInput:
		if s.Budget != "" || s.Degraded || s.Fallback {
			log.Warn("turn degraded", fields...)
			return
		}
		log.Info("turn done", fields...)
	default:
		log.Warn("turn degraded", fields...)
	}
}
