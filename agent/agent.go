package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
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
	lookup   CallLookup
	lookups  lookupCache
	http     *http.Client // for HTTP tools
	log      *zap.Logger
	outbox   *outbox // turns the store has not taken yet
	shared   sharedVersions
	smsJobs  JobQueue // nil: texts are stored, not answered (see AnswerSMS)
	tracer   trace.Tracer
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
	// Lookup checks calls the brain has no record of when a message arrives (their
	// call_started never came); nil: such calls are taken on trust.
	Lookup CallLookup
	Log    *zap.Logger // nil: no logs
	// HTTP is the client HTTP tools are called with; nil: a pooled client of the agent's own.
	HTTP *http.Client
	// Tracer starts a span per turn (a child of the delivery's span in ctx), with a child per
	// model call and per tool call; tool requests carry its W3C trace context. Nil: no
	// tracing.
	Tracer trace.Tracer
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
	a := &Agent{
		cfg:      cfg.withDefaults(),
		primary:  d.Primary,
		fallback: fallback,
		store:    d.Store,
		prompts:  d.Prompts,
		control:  d.Control,
		lookup:   d.Lookup,
		http: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}},
		log:    log.Named("agent"),
		tracer: tracerOrNoop(d.Tracer),
	}
	if d.HTTP != nil {
		a.http = d.HTTP
	}
	a.outbox = newOutbox(a.cfg, a.writeTurn, a.log)
	return a
}

// writeTurn commits a turn to the store: its history entries, its last spoken lines and the
// close of its turn log.
// It is the only place a turn's commit calls the store, retries included. A write fenced out
// by another delivery's lease is done with: that delivery took the turn over (this replica
// lost the store for longer than the lease) and records it, or an earlier try of this write
// went through and its reply was lost. Writing it here too would say it twice.
func (a *Agent) writeTurn(ctx context.Context, p *pendingTurn) error {
	err := a.store.CommitTurn(ctx, p.lease, p.lines, p.entries...)
	if errors.Is(err, session.ErrLeaseLost) {
		a.log.Warn("turn not saved here: another delivery holds it",
			zap.String("call_id", p.callID), zap.String("event_id", p.eventID), zap.Error(err))
		return nil
	}
	return err
}

// Close writes the turns the store has not taken yet (see Config.PendingTurns), retrying
// with backoff until they are written or ctx ends; what is left then is logged at Error as
// lost. Call it once the server has stopped answering, within the drain timeout.
func (a *Agent) Close(ctx context.Context) {
	a.outbox.close(ctx)
}

// Pending returns the figures of the turns kept for the store.
func (a *Agent) Pending() PendingStats { return a.outbox.stats() }

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
			Agent: ag.Name, PromptVersion: ag.Version, Owner: ev.Delivery.Owner,
		}
		if caller := callerNumber(ev); caller != "" && ev.LineID != "" && ev.CallID != "" {
			if c.Returning, err = a.store.SeenCaller(ctx, ev.LineID, caller, ev.CallID); err != nil {
				break
			}
		}
		if err = a.updateCall(ctx, ev, c); err == nil {
			a.shareVersion(ctx, ag, a.log)
		}
	case EventCallEnded:
		status := ev.Status
		if status == "" {
			status = "ended"
		}
		err = a.updateCall(ctx, ev, session.Call{
			ID: ev.CallID, LineID: ev.LineID, Status: status, EndedAt: at, Duration: ev.Duration,
			Owner: ev.Delivery.Owner,
		})
	case EventInterrupted:
		if ahead := at.Sub(ev.Delivery.ReceivedAt); ev.Interrupts == "" && !ev.Delivery.ReceivedAt.IsZero() && ahead > InterruptSkew {
			// Placed by its timestamp alone, an interrupt from the future would cut whatever
			// answer is newest when it is read: keep nothing rather than the wrong cut.
			a.log.Warn("interrupt ignored: timestamp ahead of the clock", zap.String("call_id", ev.CallID),
				zap.String("event_id", ev.ID), zap.Int64("ahead_ms", ahead.Milliseconds()))
			return nil
		}
		// What was played of our own answer: never longer than a turn's cap, give or take.
		partial, _ := cutWords(ev.PartialText, 2*a.cfg.MaxChars)
		err = a.store.AppendEntry(ctx, ev.CallID, ev.Delivery.Owner, session.Entry{
			Kind: session.EntryInterrupt, Text: partial, At: at.UnixMilli(), EventID: ev.ID, Ref: ev.Interrupts,
		})
	case EventCallIncoming, EventCallOutgoing:
		if ev.CallID == "" {
			return nil // nothing to attach it to; the delivery log line keeps it
		}
		dir := ev.Direction
		if dir == "" {
			dir = map[string]string{EventCallIncoming: "inbound", EventCallOutgoing: "outbound"}[ev.Kind]
		}
		err = a.updateCall(ctx, ev, session.Call{
			ID: ev.CallID, LineID: ev.LineID, From: ev.From, To: ev.To,
			Direction: dir, Status: ev.Status, Duration: ev.Duration, Owner: ev.Delivery.Owner,
		})
	case EventSMSReceived:
		text, _ := cutWords(ev.Text, a.cfg.MaxUtterance)
		err = a.store.AddSMS(ctx, ev.LineID, session.SMS{
			ID: ev.MessageID, From: ev.From, To: ev.To, Text: text, At: at,
		})
		if err == nil && a.smsJobs != nil {
			err = a.queueSMSAnswer(ctx, ev, text, at) // not queued: 503, and Saperly's retry queues it
		}
	default:
		return nil // test, message on the status URL, and kinds newer than us: acknowledged only
	}
	if errors.Is(err, session.ErrWrongLine) {
		return fmt.Errorf("record %s for call %s signed by %s: %w", ev.Kind, ev.CallID, ev.Delivery.Owner, ErrWrongLine)
	}
	if errors.Is(err, ErrDuplicateDelivery) {
		return fmt.Errorf("record %s for call %s: delivery %s: %w", ev.Kind, ev.CallID, ev.Delivery.ID, ErrDuplicateDelivery)
	}
	if err != nil {
		return fmt.Errorf("record %s for call %s: %w", ev.Kind, ev.CallID, err)
	}
	return nil
}

// updateCall writes c, with the delivery's replay check in the same round trip when the
// transport asked for it (Delivery.ReplayTTL): ErrDuplicateDelivery for a delivery seen.
func (a *Agent) updateCall(ctx context.Context, ev Event, c session.Call) error {
	if ev.Delivery.ReplayTTL <= 0 {
		return a.store.UpdateCall(ctx, c)
	}
	first, err := a.store.UpdateCallOnce(ctx, c, ev.Delivery.ID, ev.Delivery.ReplayTTL)
	if err == nil && !first {
		return ErrDuplicateDelivery
	}
	return err
}

// InterruptSkew is how far ahead of the brain's clock an interrupted event's timestamp may be
// and still place it (when it does not name the message it cuts); Saperly's clock and ours
// agree to well within it. See session.MaxInterruptLag for the other end of the window.
const InterruptSkew = time.Minute

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
	duplicate := false
	ctx, span := a.tracer.Start(ctx, "turn")
	defer func() {
		if duplicate {
			span.SetAttributes(attribute.Bool("callbrain.duplicate", true))
			span.End()
			return // not a turn: the transport logs the refused delivery
		}
		stats.Total = time.Since(start)
		endTurnSpan(span, start, stats)
		span.End()
		a.logTurn(log, ev, stats)
		if a.cfg.OnTurn != nil {
			a.cfg.OnTurn(stats)
		}
	}()

	if strings.TrimSpace(ev.Text) == "" {
		stats.Outcome = OutcomeNoInput
		return a.sayFixed(ev, &stats, emit, a.cfg.NoInputLine)
	}
	if text, cut := cutWords(ev.Text, a.cfg.MaxUtterance); cut {
		// A megabyte "utterance" must not go to the model, nor into every later prompt.
		stats.UtteranceCut = utf8.RuneCountInString(ev.Text)
		ev.Text = text
	}

	// The agent the line has now pins the call, unless an earlier event pinned one.
	lib := a.prompts.Current()
	current, line := lib.ForLine(ev.LineID)
	pin := session.Call{
		ID: ev.CallID, LineID: ev.LineID, From: ev.From, To: ev.To, Direction: ev.Direction,
		Agent: current.Name, PromptVersion: current.Version, Owner: ev.Delivery.Owner,
	}
	loadCtx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	var b session.Begun
	var err error
	if ev.Delivery.ReplayTTL > 0 {
		b, err = a.store.BeginTurnOnce(loadCtx, pin, ev.ID, historyTail(a.cfg.HistoryLimit), ev.Delivery.ID, ev.Delivery.ReplayTTL)
	} else {
		b, err = a.store.BeginTurn(loadCtx, pin, ev.ID, historyTail(a.cfg.HistoryLimit))
	}
	cancel()
	if err == nil && b.Status == session.TurnDuplicate {
		duplicate = true
		return fmt.Errorf("delivery %s: %w", ev.Delivery.ID, ErrDuplicateDelivery)
	}
	stats.StateLoad = time.Since(start) - stats.Verify
	if errors.Is(err, session.ErrWrongLine) {
		stats.Outcome = OutcomeRejected
		return fmt.Errorf("call %s signed by %s: %w", ev.CallID, ev.Delivery.Owner, ErrWrongLine)
	}
	if err != nil {
		if ctx.Err() != nil {
			stats.Outcome = OutcomeCut
			return context.Cause(ctx)
		}
		// Answer without history rather than leave the caller in silence; the retry guard is
		// lost for this turn, which is the lesser harm.
		stats.Degraded, stats.StoreError = true, err.Error() // on the turn line, logged once
		lease := session.Lease{Ref: session.TurnRef{Line: pin.LineID, Call: pin.ID, Event: ev.ID}}
		if b.Lease.Token != "" {
			// The store may have taken the claim before its reply was lost: keep its token, so
			// this turn renews the claim and is fenced as its holder, and a retry follows it
			// rather than answering the event a second time once an unrenewed claim lapses.
			lease = b.Lease
		}
		b = session.Begun{State: session.State{Call: pin}, Status: session.TurnClaimed, Lease: lease}
	}
	st := b.State
	if st.Call.LineID != "" && ev.LineID != "" && st.Call.LineID != ev.LineID {
		// Verified with line ev.LineID's secret, about a call on another line: whoever holds
		// one line's secret must not speak into, or rewrite, another line's calls.
		stats.Outcome = OutcomeRejected
		return fmt.Errorf("call %s is on line %s, not %s: %w", ev.CallID, st.Call.LineID, ev.LineID, ErrWrongLine)
	}
	if a.lookup != nil && !stats.Degraded && !knownCall(st) {
		lookupErr, refuse := a.checkCall(ctx, ev)
		if refuse != nil {
			stats.Outcome = OutcomeRejected
			return refuse
		}
		if lookupErr != nil {
			log.Warn("call lookup failed, answering anyway", zap.Error(lookupErr))
		}
	}
	st.History = a.outbox.withPending(ev.CallID, st.History) // turns this replica still owes the store
	stats.Turn = st.Turns
	if stats.Degraded {
		stats.Turn = countUser(st.History) + 1
	}
	lease := b.Lease
	var taken *session.TurnLog // what the caller has heard of a turn this delivery took over
	switch b.Status {
	case session.TurnHeld:
		stats.Replayed = true
		to, err := a.replay(ctx, ev, b, emit, &stats)
		if to == nil {
			return err
		}
		lease, taken = to.Lease, &to.Log
	case session.TurnTakenOver:
		// The owner stopped renewing before this retry arrived: say what it had said, then
		// continue.
		stats.Replayed = true
		for _, line := range b.Log.Lines {
			if err := a.replayLine(ev, line, emit, &stats); err != nil {
				stats.Outcome = OutcomeCut
				return err
			}
		}
		taken = &b.Log
	}
	ag := a.pinned(ctx, st.Call, current, log)
	if ag == current && !stats.Degraded {
		a.shareVersion(ctx, current, log) // once per version: a store round trip on its first call
	}
	stats.PinnedMiss = st.Call.PromptVersion != "" && ag.Version != st.Call.PromptVersion
	turnStart := start
	if taken != nil {
		// The budgets of the rest of the answer count from now: the caller has just heard
		// the replayed lines.
		stats.TakenOver = true
		turnStart = time.Now()
	}
	t := newTurn(a, ev, st, ag, a.system(ag, lib, line, st, ev, log), emit, log, turnStart, &stats)
	t.lease = lease
	if taken != nil {
		t.resume(*taken)
	}
	return t.run(ctx)
}

// knownCall reports whether the call's record shows it is real: its call_started (or a status
// callback) was recorded, or an earlier turn was answered, so no lookup is needed.
func knownCall(st session.State) bool {
	return st.Call.Status != "" || len(st.History) > 0
}

// historyTail is how many history log entries a turn loads for a model view of limit
// entries: twice as many, for the interrupts and repeated entries folding removes, and a few
// more.
func historyTail(limit int) int { return 2*limit + 8 }

// pinned returns the agent version the call is pinned to, or current when the call has no
// pin. A version this replica never loaded (another replica did, or this one before a
// restart) comes from the store, where the replica that pinned it shared it; only when it is
// not there either does the call go on with current, with a warning.
func (a *Agent) pinned(ctx context.Context, c session.Call, current *prompts.Agent, log *zap.Logger) *prompts.Agent {
	if c.PromptVersion == "" || c.PromptVersion == current.Version {
		return current
	}
	if ag, ok := a.prompts.Version(c.PromptVersion); ok {
		return ag
	}
	ag, err := a.fetchVersion(ctx, c.PromptVersion)
	if err == nil {
		log.Info("pinned prompt version loaded from the store", zap.String("pinned_version", c.PromptVersion))
		return ag
	}
	log.Warn("pinned prompt version unknown here, using the current one",
		zap.String("pinned_version", c.PromptVersion), zap.String("prompt_version", current.Version), zap.Error(err))
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

// cutWords returns s cut to at most max characters, at the last word boundary before the
// cut when there is one in its last fifth (else mid-word), and whether it was cut.
func cutWords(s string, max int) (string, bool) {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s, false
	}
	end, n := 0, 0
	for i := range s {
		if n == max {
			end = i
			break
		}
		n++
	}
	cut := s[:end]
	if i := strings.LastIndexFunc(cut, unicode.IsSpace); i > 0 && utf8.RuneCountInString(cut[:i]) >= max*4/5 {
		cut = cut[:i]
	}
	return strings.TrimRightFunc(cut, unicode.IsSpace), true
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
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

// errTakenOver ends a replay whose turn this delivery took over.
var errTakenOver = errors.New("turn taken over")

// takeOver is store.TakeOver for the follower's watcher goroutine, with a panic (a store
// client's bug) turned into a failed attempt: the watcher tries again, the process survives.
func (a *Agent) takeOver(ctx context.Context, ref session.TurnRef) (to session.Takeover, err error) {
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("turn takeover panicked", zap.String("call_id", ref.Call), zap.Any("panic", p), zap.Stack("stack"))
			err = fmt.Errorf("take over turn %s: panicked: %v", ref.Event, p)
		}
	}()
	return a.store.TakeOver(ctx, ref)
}

// replay answers a retried message with the lines another delivery of the same event spoke or
// is speaking, from the first, following the live turn until it closes. The model is not asked
// again and the history is not touched. When the turn's owner stops renewing its lease (its
// replica died or lost the store), replay takes the turn over: it returns the new lease and
// the turn's log, every line of which the caller has now heard, for the caller to continue.
func (a *Agent) replay(ctx context.Context, ev Event, b session.Begun, emit func(Chunk) error, stats *TurnStats) (*session.Takeover, error) {
	stats.Outcome = OutcomeReplayed
	fctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	idle := time.AfterFunc(a.cfg.FollowIdle, func() { stop(ErrFollowIdle) })
	defer idle.Stop()

	// The watcher tries to take the turn over each time the owner's lease should have lapsed.
	var taken *session.Takeover // set before stop(errTakenOver); read after watched closes
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		wait := b.Left
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for {
			// A lease is renewed at least every third of it: a little past its end, it lapsed.
			timer.Reset(max(wait, 0) + a.cfg.TurnLease/50)
			select {
			case <-fctx.Done():
				return
			case <-timer.C:
			}
			tctx, cancel := context.WithTimeout(fctx, a.cfg.StoreTimeout)
			to, err := a.takeOver(tctx, b.Lease.Ref)
			cancel()
			switch {
			case err != nil:
				wait = a.cfg.TurnLease / 4 // the store blinked: try again soon
			case to.Taken() && !to.Log.Closed:
				taken = &to
				stop(errTakenOver)
				return
			case to.Taken():
				wait = a.cfg.TurnLease // finished meanwhile: the follower is about to see it close
			default:
				wait = to.Left
			}
		}
	}()

	heard := 0
	err := a.store.FollowTurn(fctx, b.Lease.Ref, func(text string) error {
		idle.Reset(a.cfg.FollowIdle)
		heard++
		return a.replayLine(ev, text, emit, stats)
	})
	idle.Stop()
	if ctx.Err() == nil {
		stop(nil) // the log closed, or a line could not be sent: the watcher is done too
	}
	<-watched
	if ctx.Err() != nil {
		stats.Outcome = OutcomeCut
		return nil, err
	}
	if taken != nil {
		// This delivery holds the turn now (even if the follow ended on its own meanwhile):
		// it answers. The follower may not have passed on the last lines the owner wrote.
		for _, line := range taken.Log.Lines[min(heard, len(taken.Log.Lines)):] {
			if err := a.replayLine(ev, line, emit, stats); err != nil {
				stats.Outcome = OutcomeCut
				return nil, err
			}
		}
		return taken, nil
	}
	if err == nil && stats.Lines > 0 {
		return nil, nil
	}
	if err == nil {
		// The first delivery's log closed without a line: its caller was gone before the
		// first word, or it answered while the store was down. Never an empty answer.
		err = errEmptyReplay
	}
	// The first delivery's turn went quiet or the log is gone: close this answer sensibly
	// rather than in silence.
	stats.Budget = "follow_idle"
	line := a.cfg.RecoveryLine
	if stats.Lines == 0 {
		line, stats.Outcome = a.cfg.ApologyLine, OutcomeApology
	}
	if sayErr := emit(Speak(line)); sayErr != nil {
		return nil, sayErr
	}
	stats.Lines++
	return nil, fmt.Errorf("replay event %s: %w", ev.ID, err)
}

// replayLine speaks one line another delivery of the event spoke.
func (a *Agent) replayLine(ev Event, text string, emit func(Chunk) error, stats *TurnStats) error {
	if err := emit(Speak(text)); err != nil {
		return err
	}
	if stats.Lines == 0 {
		stats.FirstLine = time.Since(ev.Delivery.ReceivedAt)
	}
	stats.Lines++
	stats.Chars += len(text)
	return nil
}

// Millis is a duration log field in milliseconds with microsecond precision, its key ending in
// _ms: every duration the brain logs is one, whatever the logger's duration encoding.
func Millis(key string, d time.Duration) zap.Field {
	return zap.Float64(key, float64(d.Microseconds())/1000)
}

// logTurn writes the turn's one log line: its figures, and why it went wrong when it did.
func (a *Agent) logTurn(log *zap.Logger, ev Event, s TurnStats) {
	fields := []zap.Field{
		zap.String("line_id", s.LineID),
		zap.Int("turn", s.Turn),
		zap.String("outcome", s.Outcome),
		zap.String("model", s.Model),
		zap.String("agent", s.Agent),
		zap.String("prompt_version", s.PromptVersion),
		Millis("verify_ms", s.Verify),
		Millis("state_load_ms", s.StateLoad),
		Millis("pre_model_ms", s.PreModel),
		Millis("ttft_ms", s.TTFT),
		Millis("first_line_ms", s.FirstLine),
		Millis("first_line_lag_ms", s.FirstLineLag),
		Millis("elapsed_ms", s.Total),
		zap.Int("lines", s.Lines),
		zap.Int("chars", s.Chars),
		zap.Int("holds", s.Holds),
		zap.Int("model_calls", s.ModelCalls),
		zap.Bool("fallback", s.Fallback),
		zap.Bool("hedged", s.Hedged),
		zap.Bool("replayed", s.Replayed),
		zap.Bool("taken_over", s.TakenOver),
		zap.Bool("degraded", s.Degraded),
		zap.Bool("pending", s.Pending),
		zap.Int("tool_calls", s.ToolCalls),
	}
	if s.EndCall {
		fields = append(fields, zap.Bool("end_call", true), zap.String("hang_up", s.HangUp))
	}
	if s.Budget != "" {
		fields = append(fields, zap.String("budget", s.Budget))
	}
	if s.UtteranceCut > 0 {
		fields = append(fields, zap.Int("utterance_cut_from", s.UtteranceCut))
	}
	if s.ModelError != "" {
		fields = append(fields, zap.String("model_error", s.ModelError))
	}
	if s.StoreError != "" {
		fields = append(fields, zap.String("store_error", s.StoreError))
	}
	if a.cfg.LogText {
		fields = append(fields, zap.String("caller_text", ev.Text))
	} else {
		fields = append(fields, zap.Int("caller_chars", len(ev.Text)))
	}
	switch {
	case s.Outcome == OutcomeAnswered || s.Outcome == OutcomeReplayed || s.Outcome == OutcomeCut || s.Outcome == OutcomeNoInput:
		if s.Budget != "" || s.Degraded || s.Pending || s.Fallback {
			log.Warn("turn degraded", fields...)
			return
		}
		log.Info("turn done", fields...)
	default:
		log.Warn("turn degraded", fields...)
	}
}

// countUser counts the caller's turns in h: the turn number of a turn that could not read the
// store's counter.
func countUser(h []session.Entry) int {
	n := 0
	for _, e := range h {
		if e.Kind == session.EntryUser {
			n++
		}
	}
	return n
}
