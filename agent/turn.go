package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// A turn answers one claimed message. Its rules are the reducer in engine.go; turn is the
// driver around it: it owns the goroutines (one per model request, two while hedging; one
// for a round of tool calls; the line recorder), the clock and timer, the clients, and the
// teardown, which is deferred and runs on every exit, panics included.
//
// Whichever goroutine has an input steps the engine with it and carries out the actions,
// under mu: a model pump with each token, the tool runner with its results, the driver's
// loop with timer ticks, the lease's loss and the caller's leaving. A token thus reaches
// the caller with no hand-off between goroutines (a channel hop per token was a tenth of
// a turn's CPU). The loop sleeps until the engine's next deadline and is woken when a step
// moves that deadline earlier, ends the turn, or panics.
type turn struct {
	a     *Agent
	cfg   Config // the agent's settings over the brain's
	ag    *prompts.Agent
	ev    Event
	emit  func(Chunk) error
	log   *zap.Logger
	stats *TurnStats
	start time.Time

	ctx  context.Context // parent of every model request; ends with the turn
	wg   sync.WaitGroup
	wake chan struct{} // the loop is to look at the engine again (capacity 1)
	rec  *lineRecorder
	// lease is the turn's claim; an empty token when there is none.
	lease session.Lease

	mu sync.Mutex // guards the fields below, the engine and stats
	e  *engine
	// cancels holds one function per model request, by source index.
	cancels []context.CancelFunc
	armed   time.Time // when the loop's timer fires
	sent    int       // lines of this turn Saperly took
	ended   bool      // the engine's actEnd was carried out
	// panicked is what a step panicked with: the turn stops taking inputs, and the
	// teardown ends it as failed.
	panicked any
}

func newTurn(a *Agent, ev Event, st session.State, ag *prompts.Agent, system string, emit func(Chunk) error, log *zap.Logger, start time.Time, stats *TurnStats) *turn {
	stats.PromptVersion = ag.Version
	stats.Agent = ag.Name
	cfg := a.cfg.forAgent(ag.Settings)
	t := &turn{
		a: a, cfg: cfg, ag: ag, ev: ev, emit: emit, log: log, stats: stats, start: start,
		wake: make(chan struct{}, 1),
	}
	req := Request{
		Model:       cfg.Model,
		Messages:    buildMessages(system, st.History, cfg.HistoryLimit, ev.Text),
		MaxTokens:   cfg.MaxTokens,
		Temperature: cfg.Temperature,
		Tools:       a.toolDefs(ag),
	}
	t.e = newEngine(&t.cfg, start, req, st.History, ag.Settings.EndCall && a.control != nil, stats)
	return t
}

// resume makes t the continuation of a turn this delivery took over (engine.resume).
func (t *turn) resume(log session.TurnLog) { t.e.resume(log) }

// errTurnPanic is the error of a turn that panicked: a bug, logged with its stack.
var errTurnPanic = errors.New("turn panicked")

// run drives the turn to its end. Its teardown is deferred: whatever happens, panics
// included, every model request is stopped, every goroutine waited for, and the turn is
// committed.
func (t *turn) run(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	t.ctx = ctx
	if t.lease.Token != "" {
		t.rec = newLineRecorder(ctx, t.a, t.lease, t.log)
	}
	defer func() {
		if p := recover(); p != nil { // the loop's own code: a step recovers in input
			t.log.Error("turn panicked", zap.Any("panic", p), zap.Stack("stack"))
			t.mu.Lock()
			t.panicked = p
			t.mu.Unlock()
		}
		cancel()    // stops every model request at once: barge-in, hang-up, or the turn is over
		t.wg.Wait() // a tool call in flight finishes: its side effect may have happened
		// No other goroutine of the turn is left: the engine is the teardown's alone.
		if t.panicked != nil {
			err = fmt.Errorf("%w: %v", errTurnPanic, t.panicked)
			t.abort()
		}
		if t.rec != nil {
			t.rec.close()
		}
		for _, e := range t.e.tools {
			t.stats.Tools = append(t.stats.Tools, ToolUse{Name: e.ToolName, Args: e.ToolArgs, Failed: toolFailed(e.Text)})
		}
		t.commit(ctx)
	}()
	return t.loop(ctx)
}

// abort ends a turn that panicked: the history keeps the lines Saperly took.
func (t *turn) abort() {
	if t.ended {
		return
	}
	defer func() {
		if p := recover(); p != nil { // the engine itself is broken: end with what the driver knows
			t.log.Error("turn engine panicked again", zap.Any("panic", p))
			t.ended = true
			t.stats.Outcome = OutcomeFailed
		}
	}()
	for _, act := range t.e.step(time.Now(), inGone{sent: t.sent, failed: true}) {
		if end, ok := act.(actEnd); ok {
			t.end(end)
		}
	}
}

// loop starts the turn, then sleeps until the engine's next deadline, the lease's loss,
// the caller's leaving or a wake-up from a step in another goroutine, until the turn ends.
func (t *turn) loop(ctx context.Context) error {
	t.input(inStart{})
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lost <-chan struct{} // stays nil (never ready) without a recorder
	if t.rec != nil {
		lost = t.rec.lostC
	}
	for {
		armed, over := t.arm()
		if over { // a panicked turn is ended by run's teardown
			if ctx.Err() != nil {
				return context.Cause(ctx) // a pump found the caller gone first
			}
			return nil
		}
		timer.Reset(max(time.Until(armed), 0))
		select {
		case <-t.wake:
		case <-timer.C:
			t.input(inTick{})
		case <-lost:
			// Another delivery took the turn over: Saperly retried, so it gave up on this
			// answer, and the other delivery is finishing it.
			t.input(inLeaseLost{})
			if _, over := t.arm(); over {
				return errLeaseLost
			}
			lost = nil // saying goodbye: the engine hangs up as it meant to
		case <-ctx.Done():
			t.input(inGone{sent: -1})
			return context.Cause(ctx)
		}
	}
}

// arm reads when the loop's timer is to fire next, and whether the turn is over (ended, or a
// step panicked).
func (t *turn) arm() (at time.Time, over bool) {
	t.mu.Lock()
	defer t.mu.Unlock() // nextWake is the engine's: a panic in it must not leave mu held
	if t.ended || t.panicked != nil {
		return time.Time{}, true
	}
	t.armed = t.e.nextWake()
	return t.armed, false
}

// input steps the engine with in and carries out its actions, from any of the turn's
// goroutines. An input that arrives after Saperly closed the connection finds the caller
// gone: nothing more may be said. Once the turn has ended (or a step panicked) inputs are
// dropped, but tool results, whose side effects happened, still go into the history.
func (t *turn) input(in input) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			t.log.Error("turn panicked", zap.Any("panic", p), zap.Stack("stack"))
			t.panicked = p
			t.poke()
		}
	}()
	if _, gone := in.(inGone); !gone && !t.ended && t.panicked == nil && t.ctx.Err() != nil {
		t.exec(t.e.step(time.Now(), inGone{sent: -1}))
	}
	if t.ended || t.panicked != nil {
		if done, ok := in.(inToolsDone); ok {
			t.e.lateTools(done.entries)
		}
		return
	}
	t.exec(t.e.step(time.Now(), in))
	if t.ended || t.e.nextWake().Before(t.armed) {
		t.poke()
	}
}

// poke wakes the loop, unless a wake-up is pending already.
func (t *turn) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// errLeaseLost ends a turn another delivery took over.
var errLeaseLost = errors.New("another delivery took the turn over")

// exec carries out the engine's actions in order. A line Saperly does not take ends the
// turn there: the actions after it are dropped, and the engine hears that the caller is gone.
// Lines of the step that ends the turn (the answer's last phrase) are not given to the turn
// log's writer: the commit carries them, saving a store round trip a turn. It follows at
// once, unless a tool call the caller left behind is still running (the teardown waits for
// it): a retry following the turn meanwhile hears the last phrase when the commit lands.
func (t *turn) exec(acts []action) {
	log := !slices.ContainsFunc(acts, endsTurn)
	for _, act := range acts {
		switch act := act.(type) {
		case actSpeak:
			if err := t.emit(Speak(act.line)); err != nil {
				t.exec(t.e.step(time.Now(), inGone{sent: t.sent}))
				return
			}
			t.spoke(act, log)
		case actStartModel:
			t.startModel(act)
		case actCancel:
			t.cancels[act.src]()
		case actRunTools:
			t.startTools(act)
		case actLogTools:
			if t.rec != nil {
				t.rec.add(logItem{tools: act.entries})
			}
		case actWarn:
			t.log.Warn(act.msg, act.fields...)
		case actModelError:
			t.stats.ModelError = act.how + ": " + act.err.Error()
		case actHangUp:
			t.hangUp()
		case actEnd:
			t.end(act)
		}
	}
}

func endsTurn(a action) bool {
	_, ok := a.(actEnd)
	return ok
}

// spoke records a line Saperly took, and gives it to the turn log's writer when log is set.
func (t *turn) spoke(act actSpeak, log bool) {
	now := time.Now()
	if t.stats.Lines == 0 { // a taken-over turn's replayed lines came first
		t.stats.FirstLine = now.Sub(t.start)
	}
	t.stats.Lines++
	t.sent++
	if t.rec != nil && log {
		t.rec.add(logItem{line: act.line})
	}
	if !act.trigger.IsZero() {
		t.stats.FirstLineLag = now.Sub(act.trigger)
	}
}

// end records the turn's end: its outcome and budget are set here, once.
func (t *turn) end(act actEnd) {
	if t.ended {
		t.log.Error("turn ended twice", zap.String("outcome", string(act.outcome)))
		return
	}
	t.ended = true
	t.stats.Outcome = string(act.outcome)
	t.stats.Budget = string(act.budget)
	t.stats.EndCall = act.endCall
	if act.hangUp != "" {
		t.stats.HangUp = act.hangUp
	}
	if len(t.e.spoken) > 0 {
		t.stats.Chars = t.e.chars
	}
	t.stats.Holds += len(t.e.holdLines)
	t.stats.HoldLines = append(t.stats.HoldLines, t.e.holdLines...)
}

func (t *turn) startModel(act actStartModel) {
	ctx, cancel := context.WithCancel(t.ctx)
	t.cancels = append(t.cancels, cancel)
	llm := t.a.primary
	if act.fallback {
		llm = t.a.fallback
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer cancel()
		t.pump(ctx, act.src, llm, act.req)
	}()
}

// errPumpPanic is the stream error of a model pump that panicked.
var errPumpPanic = errors.New("model stream panicked")

// pump feeds one model stream's tokens to the engine until the stream ends or the turn no
// longer wants it (ctx ends). A panic in the model client ends the stream as an error.
func (t *turn) pump(ctx context.Context, src int, llm LLM, req Request) {
	ctx, span := t.a.tracer.Start(ctx, "model", trace.WithSpanKind(trace.SpanKindClient))
	tracing := span.IsRecording() // off: no attribute is built
	if tracing {
		span.SetAttributes(attribute.String("gen_ai.request.model", req.Model), attribute.Int("callbrain.source", src))
	}
	tokens := 0
	defer func() {
		if tracing {
			span.SetAttributes(attribute.Int("callbrain.tokens", tokens))
		}
		span.End()
	}()
	// end reports the stream's end, unless the turn cancelled it.
	end := func(err error, calls []ToolCall) {
		if ctx.Err() == nil {
			t.input(inStreamEnd{src: src, err: err, calls: calls, at: time.Now()})
		}
	}
	defer func() {
		if p := recover(); p != nil {
			t.log.Error("model stream panicked", zap.Any("panic", p), zap.Stack("stack"))
			end(fmt.Errorf("%w: %v", errPumpPanic, p), nil)
		}
	}()
	stream, err := llm.Stream(ctx, req)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "model request failed")
		end(err, nil)
		return
	}
	defer stream.Close()
	for {
		tok, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			calls := stream.ToolCalls()
			if tracing {
				span.SetAttributes(attribute.Int("callbrain.tool_calls", len(calls)))
			}
			end(err, calls)
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "model stream broke")
			}
			end(err, nil)
			return
		}
		if tok == "" {
			continue
		}
		tokens++
		if ctx.Err() != nil {
			return
		}
		t.input(inToken{src: src, tok: tok, at: time.Now()})
	}
}

// startTools runs a round of tool calls in one goroutine, which gives the engine their
// results when they are done.
func (t *turn) startTools(act actRunTools) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		var entries []session.Entry
		defer func() {
			if p := recover(); p != nil { // runTool recovers each call; this is the runner's own bug
				t.log.Error("tool runner panicked", zap.Any("panic", p), zap.Stack("stack"))
			}
			t.input(inToolsDone{entries: entries})
		}()
		entries = t.runTools(act.calls, act.first)
	}()
}

// runTools calls each tool in turn. It is detached from the caller's connection: a caller
// who talks over the holding phrase must not cut a booking in half, and the result goes into
// the history so the next turn knows it happened. Each call is bounded by its tool's timeout.
// A call that panics (a bug) is reported to the model as a failed tool.
func (t *turn) runTools(calls []ToolCall, first int) []session.Entry {
	ctx := context.WithoutCancel(t.ctx)
	at := eventTime(t.ev).UnixMilli()
	turnKey := t.ev.ID
	if turnKey == "" {
		turnKey = t.ev.Delivery.ID
	}
	out := make([]session.Entry, len(calls))
	for i, c := range calls {
		out[i] = session.Entry{
			Kind: session.EntryTool, EventID: t.ev.ID, At: at,
			ToolCall: c.ID, ToolName: c.Name, ToolArgs: c.Args, Text: t.runTool(ctx, c, i, first+i, turnKey),
		}
	}
	return out
}

func (t *turn) runTool(ctx context.Context, c ToolCall, i, index int, turnKey string) (result string) {
	defer func() {
		if p := recover(); p != nil {
			t.log.Error("tool call panicked", zap.String("tool", c.Name), zap.Any("panic", p), zap.Stack("stack"))
			result = toolError("the tool failed")
		}
	}()
	if c.Name == EndCallTool {
		return toolError("end_call must be called alone: say goodbye and call it again once the other tools have answered")
	}
	tool, ok := findTool(t.ag, c.Name)
	if !ok {
		return toolError("there is no tool called " + c.Name)
	}
	if i > 0 && t.ctx.Err() != nil {
		// The turn ended (the caller left, or a budget) while an earlier call ran: start
		// nothing new, so the answer's end never waits on more than one call. The first
		// call the model asked for runs even so: the caller heard us start on it.
		return toolError("not run: the turn ended first")
	}
	return t.a.callTool(ctx, tool, c, fmt.Sprintf("%s:%s:%d", t.ev.CallID, turnKey, index))
}

// hangUp asks the carrier to end the call; the engine waited for the goodbye to be heard.
func (t *turn) hangUp() {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	defer cancel()
	if err := t.a.control.HangUp(hctx, t.ev.CallID); err != nil {
		t.log.Error("hang-up failed", zap.Error(err))
		t.stats.HangUp = "failed"
		return
	}
	t.stats.HangUp = "sent"
}

// buildMessages is the model's view of the call: the system prompt, the latest history
// entries that say something, and the new utterance. Each recorded tool call becomes the
// assistant message that made it followed by the tool's answer, as the model produced them.
func buildMessages(system string, hist []session.Entry, limit int, utterance string) []Message {
	if len(hist) > limit {
		hist = hist[len(hist)-limit:]
	}
	msgs := make([]Message, 0, len(hist)+2)
	msgs = append(msgs, Message{Role: "system", Text: system})
	for _, e := range hist {
		switch {
		case e.Kind == session.EntryTool:
			msgs = append(msgs,
				Message{Role: "assistant", ToolCalls: []ToolCall{{ID: e.ToolCall, Name: e.ToolName, Args: e.ToolArgs}}},
				Message{Role: "tool", ToolCallID: e.ToolCall, Text: e.Text})
		case strings.TrimSpace(e.Text) == "":
			// an answer cut before a word was heard
		default:
			msgs = append(msgs, Message{Role: e.Kind, Text: e.Text})
		}
	}
	return append(msgs, Message{Role: "user", Text: utterance})
}

// continueNote asks the model to go on with an answer another replica was giving when it
// stopped: the answer so far is the last assistant message, and this system message follows
// it (the chat API has no portable "continue this message"; an instruction after the prefix
// works with every OpenAI-compatible provider).
const continueNote = "Your answer above was cut off by a technical problem; the caller heard all of it. " +
	"Continue it from exactly where it stopped, without repeating, summarising or apologising for anything " +
	"already said. If it was complete, answer with nothing."

// commit writes the turn to the history once: the caller's words and exactly the lines that
// were sent (of a turn taken over, the lines heard before it too). It runs after Saperly may
// have gone, so it is detached from the request's cancellation but still bounded; a turn the
// store does not take in time is kept and retried (pending.go).
func (t *turn) commit(ctx context.Context) {
	if t.rec != nil && t.rec.lost {
		return // another delivery took the turn over and records it
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*t.cfg.StoreTimeout)
	defer cancel()
	// The lines the turn log misses (the last phrase, whatever a store hiccup kept from it,
	// or all of them when the turn had no lease to write under) go into it with the commit,
	// so a retry replays the whole answer. A commit kept for later (pending.go) through an
	// outage longer than the lease leaves them out of the log meanwhile: a retry taking the
	// turn over then continues from the lines before them.
	tail := t.e.spoken
	if t.rec != nil {
		tail = tail[t.rec.written:]
	}
	at := eventTime(t.ev).UnixMilli()
	entries := make([]session.Entry, 0, len(t.e.tools)+2)
	entries = append(entries, session.Entry{Kind: session.EntryUser, Text: t.ev.Text, At: at, EventID: t.ev.ID})
	entries = append(entries, t.e.tools...)
	entries = append(entries, session.Entry{
		Kind: session.EntryAssistant, Text: strings.Join(append(slices.Clip(t.e.prefix), t.e.spoken...), " "), At: at, EventID: t.ev.ID,
		Cut: t.e.gone, EndCall: t.e.endCall,
	})
	t.stats.Pending = t.a.outbox.commit(ctx, newPendingTurn(t.ev, t.lease, slices.Clone(tail), entries, time.Now()))
}

// logItem is one record for the turn log: a spoken line, or a round's finished tool calls.
type logItem struct {
	line  string
	tools []session.Entry
}

// lineRecorder appends spoken lines and finished tool calls to the turn log in the
// background, in order, so a retry can replay them, without putting a store round trip
// between two lines the caller hears. Every write renews the turn's lease; when there is
// nothing to write for a third of the lease, it renews the lease alone.
//
// No goroutine waits for work: one is started when an item arrives and none is writing, and
// ends when the queue is empty; the renewal is a timer's function. A turn whose answer is a
// single line (the commit carries it) costs no goroutine at all.
type lineRecorder struct {
	store   session.Store
	lease   session.Lease
	ctx     context.Context // the turn's, without its cancellation: a write in flight finishes
	timeout time.Duration
	every   time.Duration
	log     *zap.Logger
	renew   *time.Timer

	mu      sync.Mutex
	queue   []logItem
	due     bool          // the lease is to be renewed
	writing bool          // a writer goroutine runs
	closed  bool          // close was called: nothing more is written
	stopped chan struct{} // set by close while a writer runs, closed when it ends
	// written counts the lines in the log, in order, and lost is set when another delivery
	// took the turn over; only the writer changes them, and close waits for it.
	written int
	lost    bool
	lostC   chan struct{} // closed when lost is set
}

func newLineRecorder(ctx context.Context, a *Agent, lease session.Lease, log *zap.Logger) *lineRecorder {
	r := &lineRecorder{
		store: a.store, lease: lease, ctx: context.WithoutCancel(ctx), timeout: a.cfg.StoreTimeout,
		every: a.cfg.TurnLease / 3, log: log, lostC: make(chan struct{}),
	}
	r.mu.Lock() // drain resets renew under mu: it must see it set
	defer r.mu.Unlock()
	r.renew = time.AfterFunc(r.every, func() {
		r.mu.Lock()
		r.due = true
		start := r.startLocked()
		r.mu.Unlock()
		if start {
			r.drain() // on the timer's own goroutine
		}
	})
	return r
}

// startLocked reports whether the caller is to run the writer: there is something to write
// and none runs. r.mu is held.
func (r *lineRecorder) startLocked() bool {
	if r.writing || r.closed || r.lost || (len(r.queue) == 0 && !r.due) {
		return false
	}
	r.writing = true
	return true
}

// drain writes what is queued, items that queued up while a write was out going together
// in one round trip, until the queue is empty, the recorder is closed or the lease is lost.
func (r *lineRecorder) drain() {
	for {
		r.mu.Lock()
		if r.closed || r.lost || (len(r.queue) == 0 && !r.due) {
			r.stopLocked()
			r.mu.Unlock()
			return // on close, the commit carries what is left
		}
		batch := r.queue
		r.queue, r.due = nil, false
		r.mu.Unlock()

		octx, cancel := context.WithTimeout(r.ctx, r.timeout)
		rest, err := r.writeSafe(octx, batch)
		cancel()
		r.mu.Lock()
		if !r.closed {
			r.renew.Reset(r.every) // the write renewed the lease, or failed: try again then
		}
		switch {
		case errors.Is(err, session.ErrLeaseLost):
			r.lost = true
			close(r.lostC)
			r.log.Warn("turn lease lost: another delivery took the turn over", zap.Error(err))
		case err != nil:
			// The turn goes on; the next line or the renewal (a third of the lease on) starts
			// the writer again, with these items first, and the commit writes what is still
			// missing. No retry at once: the store just failed.
			if !errors.Is(err, errLogWritePanic) { // logged with its stack already
				r.log.Warn("turn log write failed", zap.Error(err))
			}
			r.queue = append(rest, r.queue...)
			r.stopLocked()
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// stopLocked marks the writer ended, for close. r.mu is held.
func (r *lineRecorder) stopLocked() {
	r.writing = false
	if r.stopped != nil {
		close(r.stopped)
		r.stopped = nil
	}
}

// errLogWritePanic is the error of a turn-log write that panicked.
var errLogWritePanic = errors.New("turn log write panicked")

// writeSafe is write, with a panic (a store client's bug) turned into a failed write: the
// writer goes on, so the lease is still renewed (a turn whose lease lapsed while it speaks
// would be taken over and answered twice), and the next write or the commit writes the items.
func (r *lineRecorder) writeSafe(ctx context.Context, batch []logItem) (rest []logItem, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("turn log writer panicked", zap.Any("panic", p), zap.Stack("stack"))
			rest, err = batch, fmt.Errorf("%w: %v", errLogWritePanic, p)
		}
	}()
	return r.write(ctx, batch)
}

// write writes batch, tool calls first (order matters only among lines and among tool
// calls), and renews the lease; with an empty batch it only renews. On an error it returns
// the items not written.
func (r *lineRecorder) write(ctx context.Context, batch []logItem) ([]logItem, error) {
	var lines []string
	var tools []session.Entry
	for _, it := range batch {
		if it.tools != nil {
			tools = append(tools, it.tools...)
		} else {
			lines = append(lines, it.line)
		}
	}
	if len(tools) > 0 {
		if err := r.store.AppendTools(ctx, r.lease, tools...); err != nil {
			return batch, err
		}
		if len(lines) == 0 {
			return nil, nil
		}
	}
	if err := r.store.AppendLines(ctx, r.lease, lines...); err != nil {
		var rest []logItem
		for _, it := range batch {
			if it.tools == nil {
				rest = append(rest, it)
			}
		}
		return rest, err
	}
	r.written += len(lines)
	return nil, nil
}

func (r *lineRecorder) add(it logItem) {
	r.mu.Lock()
	r.queue = append(r.queue, it)
	start := r.startLocked()
	r.mu.Unlock()
	if start {
		go r.drain()
	}
}

// close stops the writer once the write in flight, if any, is done, and drops the items not
// written: the commit writes the lines the log misses (written tells how many it holds), and
// the history holds the tool calls. It is called once, by the turn's teardown.
func (r *lineRecorder) close() {
	r.mu.Lock()
	r.closed = true
	r.renew.Stop()
	var stopped chan struct{}
	if r.writing {
		stopped = make(chan struct{})
		r.stopped = stopped
	}
	r.mu.Unlock()
	if stopped != nil {
		<-stopped
	}
}
