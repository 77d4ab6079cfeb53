package agent

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/session"
)

// The turn engine's rules, as a reducer (STYLE §6): engine.step applies one input (a model
// token, a stream's end, a timer tick, the tools' results, the caller gone, the lease lost)
// to the turn's state and returns the actions to carry out (speak, start or cancel a model
// request, run tools, hang up, end the turn). It never blocks, sleeps, reads the clock or does
// I/O: the time comes with each input, and the driver (turn.go) owns goroutines, timers,
// clients and teardown. docs/turn-engine.md describes the inputs, actions and rules.

// Budget names the limit that shaped or ended a turn: it is logged and counted per turn
// (TurnStats.Budget), and it is an error, so it can be a context cause.
type Budget string

// The budgets. An empty Budget means none fired.
const (
	BudgetTurn       Budget = "turn"        // Config.TurnBudget: the answer was brought to an end
	BudgetStall      Budget = "stall"       // Config.StallAfter: silence mid-answer
	BudgetChars      Budget = "chars"       // Config.MaxChars: the answer was capped
	BudgetMaxTokens  Budget = "max_tokens"  // the model stopped at Config.MaxTokens
	BudgetToolRounds Budget = "tool_rounds" // the model kept calling tools past maxToolRounds
	BudgetLeaseLost  Budget = "lease_lost"  // another delivery took the turn over
)

func (b Budget) Error() string { return string(b) + " budget" }

// Outcome is how a turn ended: one of the Outcome constants (config.go), which stay untyped so
// TurnStats.Outcome is a plain string for logs and metrics.
type Outcome string

// input is what step reacts to.
type input interface{ isInput() }

type (
	// inStart begins the turn: the primary model is asked.
	inStart struct{}
	// inToken is a piece of the answer from model request src.
	inToken struct {
		src int
		tok string
		at  time.Time // when the pump received it
	}
	// inStreamEnd is the end of model request src: err is io.EOF at a normal end, when calls
	// holds the tool calls the answer ended with.
	inStreamEnd struct {
		src   int
		err   error
		calls []ToolCall
		at    time.Time
	}
	// inTick is the timer: a budget may be due.
	inTick struct{}
	// inToolsDone carries the results of the tool calls of actRunTools.
	inToolsDone struct{ entries []session.Entry }
	// inGone: Saperly closed the connection. sent is how many of the turn's lines reached it
	// when a write failed (the lines after it were not heard); -1 when the request ended
	// between two writes. failed: the driver stopped on a panic (a bug), not the caller.
	inGone struct {
		sent   int
		failed bool
	}
	// inLeaseLost: another delivery took the turn over.
	inLeaseLost struct{}
)

func (inStart) isInput()     {}
func (inToken) isInput()     {}
func (inStreamEnd) isInput() {}
func (inTick) isInput()      {}
func (inToolsDone) isInput() {}
func (inGone) isInput()      {}
func (inLeaseLost) isInput() {}

// action is what step asks the driver to do, in order. A failed actSpeak drops the actions
// after it; the driver reports it as inGone.
type action interface{ isAction() }

type (
	// actSpeak sends one line. trigger, when set, is the time of the token that completed the
	// first model line (for TurnStats.FirstLineLag).
	actSpeak struct {
		line    string
		trigger time.Time
	}
	// actStartModel starts model request src: on the fallback endpoint when fallback is set.
	actStartModel struct {
		src      int
		fallback bool
		req      Request
	}
	// actCancel stops model request src.
	actCancel struct{ src int }
	// actRunTools runs HTTP tool calls in the background; first is the index of calls[0] in
	// the turn's idempotency keys. The results come back as inToolsDone.
	actRunTools struct {
		calls []ToolCall
		first int
	}
	// actLogTools appends finished tool calls to the turn log.
	actLogTools struct{ entries []session.Entry }
	// actWarn writes a warning to the log.
	actWarn struct {
		msg    string
		fields []zap.Field
	}
	// actModelError records why the model failed, for the turn's log line
	// (TurnStats.ModelError): how ("answered nothing", "failed before speech", "stream
	// broke") and the error, if any. The last one of a turn wins.
	actModelError struct {
		how string
		err error
	}
	// actHangUp asks the carrier to end the call: its goodbye has been heard.
	actHangUp struct{}
	// actEnd ends the turn: the one place its outcome and budget are decided.
	actEnd struct {
		outcome Outcome
		budget  Budget
		endCall bool   // the agent said goodbye meaning to end the call (TurnStats.EndCall)
		hangUp  string // TurnStats.HangUp when decided here: "skipped", "too_long"
	}
)

func (actSpeak) isAction()      {}
func (actStartModel) isAction() {}
func (actCancel) isAction()     {}
func (actRunTools) isAction()   {}
func (actLogTools) isAction()   {}
func (actWarn) isAction()       {}
func (actModelError) isAction() {}
func (actHangUp) isAction()     {}
func (actEnd) isAction()        {}

// engine is a turn's state. Only step changes it (and setup: newEngine, resume, lateTools).
type engine struct {
	cfg       *Config
	start     time.Time
	req       Request
	hist      []session.Entry // the call so far: which holding phrases it has used
	endCallOK bool            // end_call is offered: the agent may end calls and the brain can hang up
	st        *TurnStats

	sources []*source
	chosen  int // index of the source whose words are spoken, -1 before the first token

	ch             *Chunker
	spoken         []string
	chars          int
	prefixChars    int
	lastLine       time.Time
	modelLines     int
	holdsSinceLine int
	heldFirst      bool // a holding phrase went out before the first model line
	holdLines      []int
	firstTokenAt   time.Time
	lastTokenAt    time.Time
	cutTried       bool // the first-line deadline has been acted on
	gone           bool // Saperly closed the connection
	holdUses       map[string]int
	// prefix is what the caller heard of a turn this delivery took over (resume).
	prefix []string

	// Tools. roundText holds the model lines of the current model round.
	roundText    []string
	toolRounds   int
	toolCalls    int  // calls made so far in this turn: the index in each idempotency key
	toolsRunning bool // an actRunTools has not reported yet
	tools        []session.Entry
	endCall      bool // the model called end_call: hang up after the goodbye
	endCallStat  bool
	hangUpAt     time.Time // set while the goodbye is being said
	// playEnd is about when Saperly will have finished saying every line sent so far.
	playEnd time.Time

	budget Budget
	ended  bool
	out    []action // the actions of the current step
}

// source is one model request.
type source struct {
	model    string
	fallback bool
	started  time.Time
	ended    bool
	round    int // the tool round it answers; 0 before any tool call
}

func newEngine(cfg *Config, start time.Time, req Request, hist []session.Entry, endCallOK bool, st *TurnStats) *engine {
	return &engine{cfg: cfg, start: start, req: req, hist: hist, endCallOK: endCallOK, st: st, chosen: -1, ch: NewChunker(cfg.Chunker)}
}

// step applies one input at time now and returns what to do. The returned slice is valid
// until the next step: carry it out first.
func (e *engine) step(now time.Time, in input) []action {
	clear(e.out)
	e.out = e.out[:0]
	if g, ok := in.(inGone); ok {
		e.onGone(g)
		return e.out
	}
	if e.ended {
		return nil
	}
	if !e.hangUpAt.IsZero() {
		// Saying goodbye: only the clock and the caller matter now.
		if _, ok := in.(inTick); ok && !now.Before(e.hangUpAt) {
			e.out = append(e.out, actHangUp{})
			e.end(OutcomeAnswered, "")
		}
		return e.out
	}
	switch in := in.(type) {
	case inStart:
		e.startSource(now, false, e.cfg.Model)
	case inToken:
		e.onToken(now, in)
	case inStreamEnd:
		e.onStreamEnd(now, in)
	case inTick:
		e.onTick(now)
	case inToolsDone:
		e.onToolsDone(now, in.entries)
	case inLeaseLost:
		// Saperly retried, so it gave up on this answer, and the other delivery finishes it.
		e.budget = BudgetLeaseLost
		e.end(OutcomeCut, "")
	}
	return e.out
}

// end closes the turn with outcome: the one place a turn's outcome is decided.
func (e *engine) end(outcome Outcome, hangUp string) {
	if e.ended {
		return
	}
	e.ended = true
	e.out = append(e.out, actEnd{outcome: outcome, budget: e.budget, endCall: e.endCallStat, hangUp: hangUp})
}

func (e *engine) onGone(g inGone) {
	if e.gone {
		return
	}
	e.gone = true
	if g.sent >= 0 && g.sent < len(e.spoken) {
		// The lines from the failed write on were never heard: the history keeps only those
		// that were.
		e.spoken = e.spoken[:g.sent]
		e.chars = e.prefixChars
		for _, l := range e.spoken {
			e.chars += utf8.RuneCountInString(l) + 1
		}
		e.holdLines = slices.DeleteFunc(e.holdLines, func(i int) bool { return i >= g.sent })
		e.endCallStat = false
	}
	e.ended = false // a write failed: the end decided before it was never carried out
	hangUp := ""
	if e.endCall {
		hangUp = "skipped" // the caller talked over the goodbye: the call stays up
	}
	if g.failed {
		e.end(OutcomeFailed, hangUp)
		return
	}
	e.end(OutcomeCut, hangUp)
}

// resume makes the turn the continuation of a turn this delivery took over: the caller has
// heard log's lines, and log's tool calls have run. The model sees them, and is asked to go on.
func (e *engine) resume(log session.TurnLog) {
	e.prefix = log.Lines
	for _, l := range log.Lines {
		e.chars += utf8.RuneCountInString(l) + 1
	}
	e.prefixChars = e.chars
	seen := make(map[string]bool, len(log.Tools))
	msgs := e.req.Messages
	for _, en := range log.Tools {
		if seen[en.ToolCall] {
			continue // written twice by a retried log write
		}
		seen[en.ToolCall] = true
		e.tools = append(e.tools, en)
		msgs = append(msgs,
			Message{Role: "assistant", ToolCalls: []ToolCall{{ID: en.ToolCall, Name: en.ToolName, Args: en.ToolArgs}}},
			Message{Role: "tool", ToolCallID: en.ToolCall, Text: en.Text})
	}
	// Later tool calls take the next idempotency keys, as the owner's would have: a call the
	// owner had started when it stopped, asked for again, gets its key and is not run twice.
	e.toolCalls = len(e.tools)
	if len(e.prefix) > 0 {
		msgs = append(msgs,
			Message{Role: "assistant", Text: strings.Join(e.prefix, " ")},
			Message{Role: "system", Text: continueNote})
	}
	e.req.Messages = msgs
}

// lateTools adds tool calls that finished after the turn ended: their side effects count.
func (e *engine) lateTools(entries []session.Entry) {
	e.tools = append(e.tools, entries...)
	e.st.ToolCalls += len(entries)
}

// said is how many lines of the model's answer the caller has heard, a taken-over turn's
// included.
func (e *engine) said() int { return e.modelLines + len(e.prefix) }

// nextWake is when the earliest budget that could act is due.
func (e *engine) nextWake() time.Time {
	if !e.hangUpAt.IsZero() {
		return e.hangUpAt
	}
	cfg := e.cfg
	next := e.start.Add(cfg.TurnBudget)
	earlier := func(at time.Time) {
		if at.Before(next) {
			next = at
		}
	}
	if e.modelLines == 0 {
		if !e.firstTokenAt.IsZero() && !e.cutTried {
			earlier(e.firstTokenAt.Add(cfg.FirstCut))
		}
		if len(e.spoken) == 0 {
			earlier(e.start.Add(cfg.HoldAfter))
		}
	}
	if e.canHedge() {
		earlier(e.start.Add(cfg.HedgeAfter))
	}
	if len(e.spoken) > 0 {
		earlier(e.lastLine.Add(cfg.StallAfter))
	}
	return next
}

func (e *engine) onTick(now time.Time) {
	cfg := e.cfg
	if !now.Before(e.start.Add(cfg.TurnBudget)) {
		e.budget = BudgetTurn
		e.finish(now, e.ch.End(false), cfg.StallLine, OutcomeStalled)
		return
	}
	if e.canHedge() && !now.Before(e.start.Add(cfg.HedgeAfter)) {
		e.st.Hedged = true
		e.startSource(now, true, cfg.FallbackModel)
	}
	if e.modelLines == 0 && !e.firstTokenAt.IsZero() && !e.cutTried && !now.Before(e.firstTokenAt.Add(cfg.FirstCut)) {
		e.cutTried = true
		if e.sayCut(now, time.Time{}) {
			return
		}
	}
	if len(e.spoken) == 0 {
		// Nothing said yet: whole words already in beat a holding phrase.
		if !now.Before(e.start.Add(cfg.HoldAfter)) && !e.sayCut(now, time.Time{}) {
			e.hold(now)
		}
		return
	}
	if now.Before(e.lastLine.Add(cfg.StallAfter)) {
		return
	}
	// Silence is approaching Saperly's line budget. Words still flowing without a boundary
	// are cut at a word; a silent model gets a holding phrase, and then a graceful end.
	if !e.lastTokenAt.IsZero() && now.Sub(e.lastTokenAt) < cfg.StallAfter/2 && e.sayCut(now, time.Time{}) {
		return
	}
	if e.toolsRunning {
		e.hold(now) // a tool is running, bounded by its own timeout: keep the caller company
		return
	}
	maxHolds := 1
	if e.modelLines == 0 {
		maxHolds = 2 // the first-token hold, and one more while the model (or its fallback) starts
	}
	e.budget = BudgetStall
	if e.holdsSinceLine < maxHolds {
		e.hold(now)
		return
	}
	if e.modelLines == 0 {
		e.apologize(now)
		return
	}
	e.finish(now, e.ch.End(false), cfg.StallLine, OutcomeStalled)
}

func (e *engine) onToken(now time.Time, p inToken) {
	src := e.sources[p.src]
	if src.round != e.toolRounds || src.ended {
		return // a cancelled stream of an earlier round, or the hedge loser's last words
	}
	if e.chosen < 0 {
		e.choose(p.src, p.at)
	}
	if p.src != e.chosen {
		return
	}
	e.lastTokenAt = p.at
	for _, line := range e.ch.Push(p.tok) {
		if !e.sayModel(now, line, p.at) {
			return
		}
	}
	// The first-line deadline passed while only part of a word was in: cut as soon as a
	// word completes.
	if e.modelLines == 0 && e.cutTried {
		e.sayCut(now, p.at)
	}
}

func (e *engine) onStreamEnd(now time.Time, p inStreamEnd) {
	src := e.sources[p.src]
	if src.round != e.toolRounds {
		return // a cancelled stream of an earlier round
	}
	src.ended = true
	if e.chosen >= 0 && e.chosen != p.src {
		return // the hedge loser, already cancelled
	}
	if e.chosen < 0 && len(p.calls) > 0 && errors.Is(p.err, io.EOF) {
		e.choose(p.src, p.at) // an answer that is only tool calls
	}
	if e.chosen < 0 {
		e.failBeforeSpeech(now, p.err)
		return
	}
	e.modelEnd(now, p.err, p.calls)
}

// choose makes src the answering model: the first to produce a token.
func (e *engine) choose(src int, at time.Time) {
	e.chosen = src
	e.firstTokenAt = at
	e.cutTried = false
	s := e.sources[src]
	if s.round == 0 {
		e.st.TTFT = at.Sub(s.started)
		e.st.Model = s.model
		e.st.Fallback = src > 0
	}
	for i, o := range e.sources {
		if i != src && !o.ended {
			e.out = append(e.out, actCancel{src: i})
			o.ended = true // its last words, if any arrive, are ignored
		}
	}
}

// failBeforeSpeech handles a model that ended before producing any word.
func (e *engine) failBeforeSpeech(now time.Time, err error) {
	for _, s := range e.sources {
		if !s.ended {
			return // the hedge partner may still answer
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, ErrTruncated) {
		e.out = append(e.out, actModelError{how: "answered nothing", err: fmt.Errorf("model %s", e.sources[len(e.sources)-1].model)})
	} else {
		e.out = append(e.out, actModelError{how: "failed before speech", err: err})
	}
	if e.cfg.FallbackModel != "" && len(e.sources) == 1 && now.Sub(e.start) < e.cfg.FallbackWithin {
		e.startSource(now, true, e.cfg.FallbackModel)
		return
	}
	if e.said() > 0 {
		// A model round after a tool call failed, or the model continuing a turn taken over:
		// the caller has heard part of the answer.
		e.finish(now, nil, e.cfg.RecoveryLine, OutcomeRecovered)
		return
	}
	e.apologize(now)
}

// modelEnd handles the end of the answering model's stream.
func (e *engine) modelEnd(now time.Time, err error, calls []ToolCall) {
	switch {
	case errors.Is(err, io.EOF) && len(calls) > 0:
		e.onToolCalls(now, calls)
	case errors.Is(err, io.EOF):
		e.finish(now, e.ch.End(true), "", OutcomeAnswered)
	case errors.Is(err, ErrTruncated):
		e.budget = BudgetMaxTokens
		e.finish(now, e.ch.End(false), "", OutcomeAnswered)
	case e.modelLines == 0:
		// Broke before a word of it was spoken: the caller loses nothing if another model
		// answers from the start.
		e.chosen = -1
		e.ch = NewChunker(e.cfg.Chunker)
		e.failBeforeSpeech(now, err)
	default:
		e.out = append(e.out, actModelError{how: "stream broke", err: err})
		e.finish(now, e.ch.End(false), e.cfg.RecoveryLine, OutcomeRecovered)
	}
}

// finish speaks the last model lines and, when given, a closing line, and ends the turn. An
// answer of which nothing could be spoken becomes an apology.
func (e *engine) finish(now time.Time, lines []string, closing string, outcome Outcome) {
	for _, l := range lines {
		if !e.sayModel(now, l, time.Time{}) {
			return
		}
	}
	if e.said() == 0 {
		e.apologize(now)
		return
	}
	if closing != "" && !e.say(now, closing) {
		return
	}
	e.end(outcome, "")
}

func (e *engine) apologize(now time.Time) {
	e.say(now, e.cfg.ApologyLine)
	e.end(OutcomeApology, "")
}

func (e *engine) canHedge() bool {
	return e.cfg.FallbackModel != "" && e.chosen < 0 && len(e.sources) == 1 && !e.sources[0].ended
}

func (e *engine) startSource(now time.Time, fallback bool, model string) {
	idx := len(e.sources)
	e.sources = append(e.sources, &source{model: model, fallback: fallback, started: now, round: e.toolRounds})
	e.st.ModelCalls++
	if idx == 0 {
		e.st.PreModel = now.Sub(e.start)
	}
	req := e.req
	req.Model = model
	req.Messages = slices.Clip(req.Messages) // later rounds append to e.req, never to this one
	e.out = append(e.out, actStartModel{src: idx, fallback: fallback, req: req})
}

// sayCut speaks the pending text up to its last whole word, reporting whether it did.
func (e *engine) sayCut(now, trigger time.Time) bool {
	line := e.ch.Cut()
	return line != "" && e.sayModel(now, line, trigger)
}

// sayModel speaks one line of the model's answer, within the character cap.
func (e *engine) sayModel(now time.Time, line string, trigger time.Time) bool {
	if e.ended {
		return false
	}
	if e.modelLines == 0 && e.heldFirst && e.isHoldingPhrase(line) {
		return true // the model opened with a holding phrase of its own: one is enough
	}
	reserve := max(utf8.RuneCountInString(e.cfg.RecoveryLine), utf8.RuneCountInString(e.cfg.StallLine)) + 1
	if e.chars+utf8.RuneCountInString(line)+1 > e.cfg.MaxChars-reserve {
		e.budget = BudgetChars
		e.end(OutcomeCapped, "") // every line so far ended on a boundary; stop here
		return false
	}
	if e.modelLines > 0 {
		trigger = time.Time{} // only the first model line's lag is measured
	}
	if !e.speak(now, line, trigger) {
		return false
	}
	e.modelLines++
	e.roundText = append(e.roundText, line)
	e.holdsSinceLine = 0
	return true
}

// say speaks a line of the brain's own.
func (e *engine) say(now time.Time, line string) bool { return e.speak(now, line, time.Time{}) }

func (e *engine) speak(now time.Time, line string, trigger time.Time) bool {
	if e.ended {
		return false
	}
	e.out = append(e.out, actSpeak{line: line, trigger: trigger})
	if e.playEnd.Before(now) {
		e.playEnd = now // Saperly was silent: this line starts as it arrives
	}
	e.playEnd = e.playEnd.Add(speechTime(line))
	e.spoken = append(e.spoken, line)
	e.chars += utf8.RuneCountInString(line) + 1
	e.lastLine = now
	return true
}

// hold speaks the holding phrase this call has used least, earliest in the configured order.
func (e *engine) hold(now time.Time) {
	if e.holdUses == nil {
		e.holdUses = make(map[string]int, len(e.cfg.HoldingPhrases))
		for _, en := range e.hist {
			if en.Kind != session.EntryAssistant {
				continue
			}
			for _, p := range e.cfg.HoldingPhrases {
				e.holdUses[p] += strings.Count(en.Text, p)
			}
		}
	}
	best := ""
	for _, p := range e.cfg.HoldingPhrases {
		if best == "" || e.holdUses[p] < e.holdUses[best] {
			best = p
		}
	}
	if !e.say(now, best) {
		return
	}
	e.holdUses[best]++
	e.holdLines = append(e.holdLines, len(e.spoken)-1)
	e.holdsSinceLine++
	if e.modelLines == 0 {
		e.heldFirst = true
	}
}

func (e *engine) isHoldingPhrase(line string) bool {
	norm := func(s string) string { return strings.ToLower(strings.Trim(s, " .!…")) }
	l := norm(line)
	for _, p := range e.cfg.HoldingPhrases {
		if norm(p) == l {
			return true
		}
	}
	return false
}

func (e *engine) warn(msg string, fields ...zap.Field) {
	e.out = append(e.out, actWarn{msg: msg, fields: fields})
}

// onToolCalls handles a model round that ended in tool calls: what the model said first is
// spoken, end_call ends the turn on a goodbye, and HTTP tools run in the background while
// the caller hears a holding phrase, after which the model is asked again with the results.
func (e *engine) onToolCalls(now time.Time, calls []ToolCall) {
	for _, l := range e.ch.End(true) {
		if !e.sayModel(now, l, time.Time{}) {
			return
		}
	}
	for i := range calls {
		if calls[i].ID == "" {
			calls[i].ID = fmt.Sprintf("call_%d", e.toolCalls+i) // some servers leave it out
		}
	}
	// end_call ends the turn only when it comes alone: next to another tool ("I've cancelled
	// your order, goodbye") that tool must run first, and the model hears back before it ends.
	if len(calls) == 1 && calls[0].Name == EndCallTool && e.endCallOK {
		e.endCall = true
		if len(e.roundText) == 0 {
			// The model ended the call without a word of goodbye: never hang up on silence.
			if !e.say(now, e.cfg.GoodbyeLine) {
				return
			}
		}
		e.endCallStat = true
		e.sayGoodbye(now)
		return
	}
	if e.toolRounds >= maxToolRounds {
		e.warn("tool rounds exhausted", zap.Int("rounds", e.toolRounds))
		e.budget = BudgetToolRounds
		e.finish(now, nil, "", OutcomeAnswered)
		return
	}
	e.req.Messages = append(e.req.Messages, Message{Role: "assistant", Text: strings.Join(e.roundText, " "), ToolCalls: calls})
	if len(e.roundText) == 0 {
		e.hold(now) // the model said nothing before calling: the caller hears that we are on it
	}
	e.toolRounds++
	first := e.toolCalls
	e.toolCalls += len(calls)
	e.toolsRunning = true
	e.out = append(e.out, actRunTools{calls: calls, first: first})
}

// sayGoodbye keeps the answer open for about as long as the goodbye takes to say, so a caller
// who talks over it closes the connection (barge-in) and the call stays up, with the intention
// kept on the history for the next turn; then the call is hung up.
func (e *engine) sayGoodbye(now time.Time) {
	wait := e.playEnd.Sub(now) + hangUpMargin
	if wait > e.cfg.EndCallHold {
		// A goodbye longer than the hold: cutting it off would be worse than leaving the line
		// to the caller, who hangs up after it.
		e.warn("goodbye too long to wait for, not hanging up", Millis("speech_left_ms", wait))
		e.end(OutcomeAnswered, "too_long")
		return
	}
	e.hangUpAt = now.Add(max(wait, 0))
}

// onToolsDone feeds the tools' results to the model that called them and starts its next
// round.
func (e *engine) onToolsDone(now time.Time, entries []session.Entry) {
	e.toolsRunning = false
	e.tools = append(e.tools, entries...)
	e.out = append(e.out, actLogTools{entries: entries}) // a delivery taking the turn over must not run them again
	for _, en := range entries {
		e.req.Messages = append(e.req.Messages, Message{Role: "tool", ToolCallID: en.ToolCall, Text: en.Text})
	}
	e.st.ToolCalls += len(entries)
	if e.toolRounds >= maxToolRounds {
		e.req.Tools = nil // answer with what you have
	}
	caller := e.sources[e.chosen]
	e.chosen = -1
	e.ch = NewChunker(e.cfg.Chunker)
	e.roundText = nil
	e.holdsSinceLine = 0 // the wait for the tool is over; the stall budget starts again
	e.startSource(now, caller.fallback, caller.model)
}
