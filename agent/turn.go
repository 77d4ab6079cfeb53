package agent

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// A turn answers one claimed message. It runs a single loop that owns the response: model
// tokens arrive on a channel from one goroutine per model request (two while hedging), and
// one timer drives every budget, so a holding phrase, a cut of the first line or a graceful
// end happens on time even while the model is silent. STYLE prefers emit callbacks to
// channels; timers that must fire while a model blocks are the reason for the exception.
type turn struct {
	a     *Agent
	cfg   Config // the agent's settings over the brain's
	ag    *prompts.Agent
	ev    Event
	hist  []session.Entry
	emit  func(Chunk) error
	log   *zap.Logger
	stats *TurnStats
	start time.Time
	req   Request

	ctx     context.Context // parent of every model request; ends with the turn
	pieces  chan piece
	wg      sync.WaitGroup
	sources []*source
	chosen  int // index of the source whose words are spoken, -1 before the first token

	ch             *Chunker
	spoken         []string
	chars          int
	lastLine       time.Time
	modelLines     int
	holdsSinceLine int
	heldFirst      bool // a holding phrase went out before the first model line
	firstTokenAt   time.Time
	lastTokenAt    time.Time
	cutTried       bool // the first-line deadline has been acted on
	done           bool
	gone           bool // Saperly closed the connection
	holdUses       map[string]int
	rec            *lineRecorder
	lease          session.Lease // the turn's claim; an empty token when there is none
	// prefix is what the caller heard of a turn this delivery took over (resume).
	prefix []string

	// Tools. roundText holds the model lines of the current model round; a round that ends
	// in tool calls runs them in one goroutine, which reports on toolDone.
	roundText  []string
	toolRounds int
	toolCalls  int // calls made so far in this turn: the index in each idempotency key
	toolDone   chan []session.Entry
	tools      []session.Entry // finished tool calls, for the history
	endCall    bool            // the model called end_call: hang up after the goodbye
	// playEnd is about when Saperly will have finished saying every line sent so far.
	playEnd time.Time
}

type piece struct {
	src   int
	tok   string
	err   error      // io.EOF at the normal end
	calls []ToolCall // with io.EOF: the tool calls the answer ended with
	at    time.Time
}

type source struct {
	llm     LLM
	model   string
	cancel  context.CancelFunc
	started time.Time
	ended   bool
	round   int // the tool round it answers; 0 before any tool call
}

func newTurn(a *Agent, ev Event, st session.State, ag *prompts.Agent, system string, emit func(Chunk) error, log *zap.Logger, start time.Time, stats *TurnStats) *turn {
	stats.PromptVersion = ag.Version
	stats.Agent = ag.Name
	cfg := a.cfg.forAgent(ag.Settings)
	t := &turn{
		a: a, cfg: cfg, ag: ag, ev: ev, hist: st.History, emit: emit, log: log, stats: stats, start: start,
		pieces: make(chan piece, 16),
		chosen: -1,
		ch:     NewChunker(cfg.Chunker),
	}
	t.req = Request{
		Model:       cfg.Model,
		Messages:    buildMessages(system, st.History, cfg.HistoryLimit, ev.Text),
		MaxTokens:   cfg.MaxTokens,
		Temperature: cfg.Temperature,
		Tools:       a.toolDefs(ag),
	}
	return t
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

// resume makes t the continuation of a turn this delivery took over: the caller has heard
// log's lines, and log's tool calls have run. The model sees them, and is asked to go on; the
// history gets the turn once, heard lines first.
func (t *turn) resume(log session.TurnLog) {
	t.prefix = log.Lines
	for _, l := range log.Lines {
		t.chars += utf8.RuneCountInString(l) + 1
	}
	seen := make(map[string]bool, len(log.Tools))
	msgs := t.req.Messages
	for _, e := range log.Tools {
		if seen[e.ToolCall] {
			continue // written twice by a retried log write
		}
		seen[e.ToolCall] = true
		t.tools = append(t.tools, e)
		msgs = append(msgs,
			Message{Role: "assistant", ToolCalls: []ToolCall{{ID: e.ToolCall, Name: e.ToolName, Args: e.ToolArgs}}},
			Message{Role: "tool", ToolCallID: e.ToolCall, Text: e.Text})
	}
	// Later tool calls take the next idempotency keys, as the owner's would have: a call the
	// owner had started when it stopped, asked for again, gets its key and is not run twice.
	t.toolCalls = len(t.tools)
	if len(t.prefix) > 0 {
		msgs = append(msgs,
			Message{Role: "assistant", Text: strings.Join(t.prefix, " ")},
			Message{Role: "system", Text: continueNote})
	}
	t.req.Messages = msgs
}

// said is how many lines of the model's answer the caller has heard, a taken-over turn's
// included.
func (t *turn) said() int { return t.modelLines + len(t.prefix) }

func (t *turn) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	t.ctx = ctx
	if t.lease.Token != "" {
		t.rec = newLineRecorder(ctx, t.a, t.lease, t.log)
	}
	err := t.loop(ctx)
	switch {
	case t.endCall && t.gone:
		t.stats.HangUp = "skipped"
	case t.endCall:
		t.hangUp(ctx)
	}
	cancel()    // stops every model request at once: barge-in, hang-up, or the turn is over
	t.wg.Wait() // a tool call in flight finishes: its side effect may have happened
	if t.toolDone != nil {
		late := <-t.toolDone // the caller left while it ran: its side effect still counts
		t.tools = append(t.tools, late...)
		t.stats.ToolCalls += len(late)
	}
	if t.rec != nil {
		t.rec.close()
	}
	for _, e := range t.tools {
		t.stats.Tools = append(t.stats.Tools, ToolUse{Name: e.ToolName, Args: e.ToolArgs})
	}
	t.commit(ctx)
	return err
}

func (t *turn) loop(ctx context.Context) error {
	t.startSource(t.a.primary, t.cfg.Model)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lost <-chan struct{} // stays nil (never ready) without a recorder
	if t.rec != nil {
		lost = t.rec.lostC
	}
	for !t.done {
		timer.Reset(t.nextWake(time.Now()))
		select {
		case p := <-t.pieces:
			if ctx.Err() != nil {
				// Saperly closed the connection while this piece was on its way: select picks
				// among ready cases at random, and nothing more may be said (or counted).
				t.gone = true
				t.stats.Outcome = OutcomeCut
				return context.Cause(ctx)
			}
			t.onPiece(p)
		case entries := <-t.toolDone:
			t.onToolsDone(entries)
		case now := <-timer.C:
			t.onTick(now)
		case <-lost:
			// Another delivery took the turn over: Saperly retried, so it gave up on this
			// answer, and the other delivery is finishing it.
			t.stats.Budget = "lease_lost"
			t.stats.Outcome = OutcomeCut
			return errLeaseLost
		case <-ctx.Done():
			t.gone = true
			t.stats.Outcome = OutcomeCut
			return context.Cause(ctx)
		}
	}
	return nil
}

// errLeaseLost ends a turn another delivery took over.
var errLeaseLost = errors.New("another delivery took the turn over")

// nextWake is how long until the earliest budget that could act.
func (t *turn) nextWake(now time.Time) time.Duration {
	cfg := &t.cfg
	next := t.start.Add(cfg.TurnBudget)
	earlier := func(at time.Time) {
		if at.Before(next) {
			next = at
		}
	}
	if t.modelLines == 0 {
		if !t.firstTokenAt.IsZero() && !t.cutTried {
			earlier(t.firstTokenAt.Add(cfg.FirstCut))
		}
		if len(t.spoken) == 0 {
			earlier(t.start.Add(cfg.HoldAfter))
		}
	}
	if t.canHedge() {
		earlier(t.start.Add(cfg.HedgeAfter))
	}
	if len(t.spoken) > 0 {
		earlier(t.lastLine.Add(cfg.StallAfter))
	}
	return max(next.Sub(now), 0)
}

func (t *turn) onTick(now time.Time) {
	cfg := &t.cfg
	if !now.Before(t.start.Add(cfg.TurnBudget)) {
		t.stats.Budget = "turn"
		t.finish(t.ch.End(false), cfg.StallLine, OutcomeStalled)
		return
	}
	if t.canHedge() && !now.Before(t.start.Add(cfg.HedgeAfter)) {
		t.stats.Hedged = true
		t.startSource(t.a.fallback, cfg.FallbackModel)
	}
	if t.modelLines == 0 && !t.firstTokenAt.IsZero() && !t.cutTried && !now.Before(t.firstTokenAt.Add(cfg.FirstCut)) {
		t.cutTried = true
		if t.sayCut(time.Time{}) {
			return
		}
	}
	if len(t.spoken) == 0 {
		// Nothing said yet: whole words already in beat a holding phrase.
		if !now.Before(t.start.Add(cfg.HoldAfter)) && !t.sayCut(time.Time{}) {
			t.hold()
		}
		return
	}
	if now.Before(t.lastLine.Add(cfg.StallAfter)) {
		return
	}
	// Silence is approaching Saperly's line budget. Words still flowing without a boundary
	// are cut at a word; a silent model gets a holding phrase, and then a graceful end.
	if !t.lastTokenAt.IsZero() && now.Sub(t.lastTokenAt) < cfg.StallAfter/2 && t.sayCut(time.Time{}) {
		return
	}
	if t.toolDone != nil {
		t.hold() // a tool is running, bounded by its own timeout: keep the caller company
		return
	}
	maxHolds := 1
	if t.modelLines == 0 {
		maxHolds = 2 // the first-token hold, and one more while the model (or its fallback) starts
	}
	if t.holdsSinceLine < maxHolds {
		t.stats.Budget = "stall"
		t.hold()
		return
	}
	t.stats.Budget = "stall"
	if t.modelLines == 0 {
		t.apologize()
		return
	}
	t.finish(t.ch.End(false), cfg.StallLine, OutcomeStalled)
}

func (t *turn) onPiece(p piece) {
	src := t.sources[p.src]
	if src.round != t.toolRounds || (src.ended && p.err == nil) {
		return // a cancelled stream of an earlier round, or the hedge loser's last words
	}
	if p.err != nil {
		src.ended = true
		if t.chosen >= 0 && t.chosen != p.src {
			return // the hedge loser, already cancelled
		}
		if t.chosen < 0 && len(p.calls) > 0 && errors.Is(p.err, io.EOF) {
			t.choose(p.src, p.at) // an answer that is only tool calls
		}
		if t.chosen < 0 {
			t.failBeforeSpeech(p.err)
			return
		}
		t.modelEnd(p.err, p.calls)
		return
	}
	if t.chosen < 0 {
		t.choose(p.src, p.at)
	}
	if p.src != t.chosen {
		return
	}
	t.lastTokenAt = p.at
	for _, line := range t.ch.Push(p.tok) {
		if !t.sayModel(line, p.at) {
			return
		}
	}
	// The first-line deadline passed while only part of a word was in: cut as soon as a
	// word completes.
	if t.modelLines == 0 && t.cutTried {
		t.sayCut(p.at)
	}
}

// choose makes src the answering model: the first to produce a token.
func (t *turn) choose(src int, at time.Time) {
	t.chosen = src
	t.firstTokenAt = at
	t.cutTried = false
	s := t.sources[src]
	if s.round == 0 {
		t.stats.TTFT = at.Sub(s.started)
		t.stats.Model = s.model
		t.stats.Fallback = src > 0
	}
	for i, o := range t.sources {
		if i != src {
			o.cancel()
			o.ended = true // its last words, if any arrive, are ignored
		}
	}
}

// failBeforeSpeech handles a model that ended before producing any word.
func (t *turn) failBeforeSpeech(err error) {
	for _, s := range t.sources {
		if !s.ended {
			return // the hedge partner may still answer
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, ErrTruncated) {
		t.stats.ModelError = "answered nothing: " + t.sources[len(t.sources)-1].model
	} else {
		t.stats.ModelError = err.Error()
	}
	if t.cfg.FallbackModel != "" && len(t.sources) == 1 && time.Since(t.start) < t.cfg.FallbackWithin {
		t.startSource(t.a.fallback, t.cfg.FallbackModel)
		return
	}
	if t.said() > 0 {
		// A model round after a tool call failed, or the model continuing a turn taken over:
		// the caller has heard part of the answer.
		t.finish(nil, t.cfg.RecoveryLine, OutcomeRecovered)
		return
	}
	t.apologize()
}

// modelEnd handles the end of the answering model's stream.
func (t *turn) modelEnd(err error, calls []ToolCall) {
	switch {
	case errors.Is(err, io.EOF) && len(calls) > 0:
		t.onToolCalls(calls)
	case errors.Is(err, io.EOF):
		t.finish(t.ch.End(true), "", OutcomeAnswered)
	case errors.Is(err, ErrTruncated):
		t.stats.Budget = "max_tokens"
		t.finish(t.ch.End(false), "", OutcomeAnswered)
	case t.modelLines == 0:
		// Broke before a word of it was spoken: the caller loses nothing if another model
		// answers from the start.
		t.chosen = -1
		t.ch = NewChunker(t.cfg.Chunker)
		t.failBeforeSpeech(err)
	default:
		t.stats.ModelError = err.Error()
		t.finish(t.ch.End(false), t.cfg.RecoveryLine, OutcomeRecovered)
	}
}

// finish speaks the last model lines and, when given, a closing line, and ends the turn. An
// answer of which nothing could be spoken becomes an apology.
func (t *turn) finish(lines []string, closing, outcome string) {
	for _, l := range lines {
		if !t.sayModel(l, time.Time{}) {
			return
		}
	}
	if t.said() == 0 {
		t.apologize()
		return
	}
	if closing != "" && !t.say(closing) {
		return
	}
	t.stats.Outcome = outcome
	t.done = true
}

func (t *turn) apologize() {
	t.say(t.cfg.ApologyLine)
	if !t.gone {
		t.stats.Outcome = OutcomeApology
	}
	t.done = true
}

func (t *turn) canHedge() bool {
	return t.cfg.FallbackModel != "" && t.chosen < 0 && len(t.sources) == 1 && !t.sources[0].ended
}

func (t *turn) startSource(llm LLM, model string) {
	ctx, cancel := context.WithCancel(t.ctx)
	idx := len(t.sources)
	s := &source{llm: llm, model: model, cancel: cancel, started: time.Now(), round: t.toolRounds}
	t.sources = append(t.sources, s)
	t.stats.ModelCalls++
	if idx == 0 {
		t.stats.PreModel = s.started.Sub(t.start)
	}
	req := t.req
	req.Model = model
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer cancel()
		t.pump(ctx, idx, llm, req)
	}()
}

// pump forwards one model stream's tokens to the turn loop until the stream ends or the
// turn no longer wants it.
func (t *turn) pump(ctx context.Context, idx int, llm LLM, req Request) {
	send := func(p piece) bool {
		p.src, p.at = idx, time.Now()
		select {
		case t.pieces <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	stream, err := llm.Stream(ctx, req)
	if err != nil {
		send(piece{err: err})
		return
	}
	defer stream.Close()
	for {
		tok, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			send(piece{err: err, calls: stream.ToolCalls()})
			return
		}
		if err != nil {
			send(piece{err: err})
			return
		}
		if tok != "" && !send(piece{tok: tok}) {
			return
		}
	}
}

// sayCut speaks the pending text up to its last whole word, reporting whether it did.
func (t *turn) sayCut(trigger time.Time) bool {
	line := t.ch.Cut()
	return line != "" && t.sayModel(line, trigger)
}

// sayModel speaks one line of the model's answer, within the character cap.
func (t *turn) sayModel(line string, trigger time.Time) bool {
	if t.modelLines == 0 && t.heldFirst && t.isHoldingPhrase(line) {
		return true // the model opened with a holding phrase of its own: one is enough
	}
	reserve := max(utf8.RuneCountInString(t.cfg.RecoveryLine), utf8.RuneCountInString(t.cfg.StallLine)) + 1
	if t.chars+utf8.RuneCountInString(line)+1 > t.cfg.MaxChars-reserve {
		t.stats.Budget = "chars"
		t.stats.Outcome = OutcomeCapped
		t.done = true // every line so far ended on a boundary; stop here
		return false
	}
	if !t.say(line) {
		return false
	}
	if t.modelLines == 0 && !trigger.IsZero() {
		t.stats.FirstLineLag = time.Since(trigger)
	}
	t.modelLines++
	t.roundText = append(t.roundText, line)
	t.holdsSinceLine = 0
	return true
}

// say emits one line. It reports false, and ends the turn, when Saperly is gone.
func (t *turn) say(line string) bool {
	if t.gone {
		return false
	}
	if err := t.emit(Speak(line)); err != nil {
		t.gone, t.done = true, true
		t.stats.Outcome = OutcomeCut
		return false
	}
	now := time.Now()
	if t.stats.Lines == 0 { // a taken-over turn's replayed lines came first
		t.stats.FirstLine = now.Sub(t.start)
	}
	if t.playEnd.Before(now) {
		t.playEnd = now // Saperly was silent: this line starts as it arrives
	}
	t.playEnd = t.playEnd.Add(speechTime(line))
	t.spoken = append(t.spoken, line)
	t.chars += utf8.RuneCountInString(line) + 1
	t.lastLine = now
	t.stats.Lines++
	t.stats.Chars = t.chars
	if t.rec != nil {
		t.rec.add(logItem{line: line})
	}
	return true
}

// hold speaks the holding phrase this call has used least, earliest in the configured order.
func (t *turn) hold() {
	if t.holdUses == nil {
		t.holdUses = make(map[string]int, len(t.cfg.HoldingPhrases))
		for _, e := range t.hist {
			if e.Kind != session.EntryAssistant {
				continue
			}
			for _, p := range t.cfg.HoldingPhrases {
				t.holdUses[p] += strings.Count(e.Text, p)
			}
		}
	}
	best := ""
	for _, p := range t.cfg.HoldingPhrases {
		if best == "" || t.holdUses[p] < t.holdUses[best] {
			best = p
		}
	}
	if !t.say(best) {
		return
	}
	t.holdUses[best]++
	t.stats.Holds++
	t.stats.HoldLines = append(t.stats.HoldLines, len(t.spoken)-1)
	t.holdsSinceLine++
	if t.modelLines == 0 {
		t.heldFirst = true
	}
}

func (t *turn) isHoldingPhrase(line string) bool {
	norm := func(s string) string { return strings.ToLower(strings.Trim(s, " .!…")) }
	l := norm(line)
	for _, p := range t.cfg.HoldingPhrases {
		if norm(p) == l {
			return true
		}
	}
	return false
}

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
	if t.rec != nil && t.rec.written < len(t.spoken) {
		// The turn log missed lines (a store hiccup mid-turn): complete it before closing, so
		// a retry replays the whole answer, not a truncated one. If this fails too, the close
		// below most likely does as well, and a follower takes the turn over.
		if err := t.a.store.AppendLines(ctx, t.lease, t.spoken[t.rec.written:]...); err != nil {
			t.log.Warn("turn log not completed", zap.Error(err))
		}
	}
	at := eventTime(t.ev).UnixMilli()
	entries := make([]session.Entry, 0, len(t.tools)+2)
	entries = append(entries, session.Entry{Kind: session.EntryUser, Text: t.ev.Text, At: at, EventID: t.ev.ID})
	entries = append(entries, t.tools...)
	entries = append(entries, session.Entry{
		Kind: session.EntryAssistant, Text: strings.Join(append(slices.Clip(t.prefix), t.spoken...), " "), At: at, EventID: t.ev.ID,
		Cut: t.gone, EndCall: t.endCall,
	})
	t.stats.Pending = t.a.outbox.commit(ctx, newPendingTurn(t.ev, t.lease, entries, time.Now()))
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
type lineRecorder struct {
	mu     sync.Mutex
	queue  []logItem
	closed bool
	wake   chan struct{}
	done   chan struct{}
	// written counts the lines in the log, in order, and lost is set when another delivery
	// took the turn over; the writer goroutine owns both until done is closed.
	written int
	lost    bool
	lostC   chan struct{} // closed when lost is set
}

func newLineRecorder(ctx context.Context, a *Agent, lease session.Lease, log *zap.Logger) *lineRecorder {
	r := &lineRecorder{wake: make(chan struct{}, 1), done: make(chan struct{}), lostC: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	every := a.cfg.TurnLease / 3
	go func() {
		defer close(r.done)
		renew := time.NewTimer(every)
		defer renew.Stop()
		due := false
		for {
			r.mu.Lock()
			batch, closed := r.queue, r.closed
			r.queue = nil
			r.mu.Unlock()
			if !r.lost && (len(batch) > 0 || due) {
				// Items that queued up while the last write was out go in one round trip.
				octx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
				rest, err := r.write(octx, a.store, lease, batch)
				cancel()
				switch {
				case errors.Is(err, session.ErrLeaseLost):
					r.lost = true
					close(r.lostC)
					log.Warn("turn lease lost: another delivery took the turn over", zap.Error(err))
				case err != nil:
					// The turn goes on; the next write tries again, and commit writes what
					// is still missing.
					log.Warn("turn log write failed", zap.Error(err))
					r.mu.Lock()
					r.queue = append(rest, r.queue...)
					r.mu.Unlock()
				}
				due = false
				renew.Reset(every)
			}
			if closed {
				return
			}
			select {
			case <-r.wake:
			case <-renew.C:
				due = true
			}
		}
	}()
	return r
}

// write writes batch, tool calls first (order matters only among lines and among tool
// calls), and renews the lease; with an empty batch it only renews. On an error it returns
// the items not written.
func (r *lineRecorder) write(ctx context.Context, store session.Store, lease session.Lease, batch []logItem) ([]logItem, error) {
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
		if err := store.AppendTools(ctx, lease, tools...); err != nil {
			return batch, err
		}
		if len(lines) == 0 {
			return nil, nil
		}
	}
	if err := store.AppendLines(ctx, lease, lines...); err != nil {
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
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// close waits until every item added has been written (or given up on).
func (r *lineRecorder) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	<-r.done
}
