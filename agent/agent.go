package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	fallback LLM
	store    session.Store
	prompts  *prompts.Live
	control  CallControl
	http     *http.Client // for HTTP tools
	log      *zap.Logger
}

// Deps are the Agent's collaborators.
type Deps struct {
	// Primary answers with the configured model. Required.
	Primary LLM
	// Fallback serves fallback models (Config.FallbackModel, or an agent's fallback_model);
	// nil means the primary's endpoint serves them too.
	Fallback LLM
	Store    session.Store // required
	Prompts  *prompts.Live // required
	Control  CallControl   // nil: the brain never ends calls, and end_call is not offered
	Log      *zap.Logger   // nil: no logs
}

// New returns an Agent.
func New(cfg Config, d Deps) *Agent {
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	fallback := d.Fallback
	if fallback == nil {
		fallback = d.Primary
	}
	return &Agent{
		cfg:      cfg.withDefaults(),
		primary:  d.Primary,
		fallback: fallback,
		store:    d.Store,
		prompts:  d.Prompts,
		control:  d.Control,
		http: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}},
		log: log.Named("agent"),
	}
}

// Record keeps a non-message event on the call's record. An error means it was not kept, so
// the sender should retry; events that need nothing kept return nil.
func (a *Agent) Record(ctx context.Context, ev Event) error {
	at := eventTime(ev)
	var err error
	switch ev.Kind {
	case EventCallStarted:
		// Pin the agent version the call starts with, and find whether the caller is back.
		ag, _ := a.prompts.Current().ForLine(ev.LineID)
		c := session.Call{
			ID: ev.CallID, LineID: ev.LineID, From: ev.From, To: ev.To,
			Direction: ev.Direction, Status: "active", StartedAt: at,
			Agent: ag.Name, PromptVersion: ag.Version,
		}
		if caller := callerNumber(ev); caller != "" && ev.LineID != "" && ev.CallID != "" {
			if c.Returning, err = a.store.SeenCaller(ctx, ev.LineID, caller, ev.CallID); err != nil {
				break
			}
		}
		err = a.store.UpdateCall(ctx, c)
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

// callerNumber is the other party's number: the caller on an inbound call, the called
// number on an outbound one.
func callerNumber(ev Event) string {
	if ev.Direction == "outbound" {
		return ev.To
	}
	return ev.From
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
	stats := TurnStats{CallID: ev.CallID, EventID: ev.ID, LineID: ev.LineID, Verify: ev.Delivery.Verify,
		DeliveryID: ev.Delivery.ID}
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

	// The agent the line has now pins the call, unless an earlier event pinned one.
	lib := a.prompts.Current()
	current, line := lib.ForLine(ev.LineID)
	pin := session.Call{
		ID: ev.CallID, LineID: ev.LineID, From: ev.From, To: ev.To, Direction: ev.Direction,
		Agent: current.Name, PromptVersion: current.Version,
	}
	loadCtx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	st, claimed, err := a.store.BeginTurn(loadCtx, pin, ev.ID)
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
		st, claimed = session.State{Call: pin}, true
	}
	if st.Call.LineID != "" && ev.LineID != "" && st.Call.LineID != ev.LineID {
		// Verified with line ev.LineID's secret, about a call on another line: whoever holds
		// one line's secret must not speak into, or rewrite, another line's calls.
		stats.Outcome = OutcomeRejected
		return fmt.Errorf("call %s is on line %s, not %s: %w", ev.CallID, st.Call.LineID, ev.LineID, ErrWrongLine)
	}
	stats.Turn = countUser(st.History) + 1
	if !claimed {
		stats.Replayed = true
		return a.replay(ctx, ev, emit, &stats)
	}
	ag := a.pinned(st.Call, current, log)
	t := newTurn(a, ev, st, ag, a.system(ag, lib, line, st, ev, log), emit, log, start, &stats)
	return t.run(ctx)
}

// pinned returns the agent version the call is pinned to, or current when the call has no
// pin or this replica does not know the pinned version (it was loaded by another replica or
// before a restart).
func (a *Agent) pinned(c session.Call, current *prompts.Agent, log *zap.Logger) *prompts.Agent {
	if c.PromptVersion == "" || c.PromptVersion == current.Version {
		return current
	}
	if ag, ok := a.prompts.Version(c.PromptVersion); ok {
		return ag
	}
	log.Warn("pinned prompt version unknown here, using the current one",
		zap.String("pinned_version", c.PromptVersion), zap.String("prompt_version", current.Version))
	return current
}

// minimalSystem is the system prompt of last resort: a prompt that cannot render must not
// leave the caller in silence.
const minimalSystem = "You are a helpful, friendly phone assistant. Answer in one to three short spoken sentences."

// system renders ag's system prompt for this turn, with a note when the caller talked over a
// goodbye that was meant to end the call.
func (a *Agent) system(ag *prompts.Agent, lib *prompts.Library, line prompts.Line, st session.State, ev Event, log *zap.Logger) string {
	c := st.Call
	data := prompts.CallData{
		CallID: ev.CallID, LineID: ev.LineID,
		Caller: or(c.From, ev.From), Called: or(c.To, ev.To), Direction: or(c.Direction, ev.Direction),
		Returning: c.Returning, Vars: line.Vars, Now: time.Now(),
	}
	text, err := ag.Render(data)
	if err != nil {
		// A pinned version can stop rendering when lines.yaml drops a variable it reads: fall
		// back to the agent's current version, then to the default agent, then to a minimal
		// prompt, but never to silence.
		log.Error("prompt render failed, falling back", zap.String("agent", ag.Name),
			zap.String("prompt_version", ag.Version), zap.Error(err))
		text = minimalSystem
		fallbacks := []*prompts.Agent{lib.Default()}
		if cur, ok := lib.Agent(ag.Name); ok && cur.Version != ag.Version {
			fallbacks = append([]*prompts.Agent{cur}, fallbacks...)
		}
		for _, fb := range fallbacks {
			if t, ferr := fb.Render(data); ferr == nil {
				text = t
				break
			}
		}
	}
	if st.EndPending() {
		text += "\n\nNote: in your last answer you said goodbye and meant to end the call, but the caller " +
			"spoke over you. If they have nothing more to ask, confirm briefly and end the call."
	}
	return text
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
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

// errEmptyReplay is why a replay spoke the apology: the turn it followed recorded no line.
var errEmptyReplay = errors.New("the first delivery recorded no line")

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
	if ctx.Err() != nil {
		stats.Outcome = OutcomeCut
		return err
	}
	if err == nil && stats.Lines > 0 {
		return nil
	}
	if err == nil {
		// The first delivery's log closed without a line: its caller was gone before the
		// first word, or it answered while the store was down. Never an empty answer.
		err = errEmptyReplay
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
		zap.String("agent", s.Agent),
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
		zap.Int("tool_calls", s.ToolCalls),
	}
	if s.EndCall {
		fields = append(fields, zap.Bool("end_call", true), zap.String("hang_up", s.HangUp))
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
