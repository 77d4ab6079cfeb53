package agent

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

// The turn's rules as table tests over engine.step: inputs in, actions out, on a made-up
// clock, with no goroutines and no sleeps.

var e0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// timed is one input, ms after the message arrived.
type timed struct {
	ms int
	in input
}

func ms(n int) time.Time { return e0.Add(time.Duration(n) * time.Millisecond) }

func tok(ms int, src int, s string) timed   { return timed{ms, inToken{src: src, tok: s}} }
func eos(ms int, src int) timed             { return timed{ms, inStreamEnd{src: src, err: io.EOF}} }
func fail(ms int, src int, err error) timed { return timed{ms, inStreamEnd{src: src, err: err}} }

// wake is a tick exactly when the engine asked for one.
func wake() timed { return timed{-1, inTick{}} }

func tick(ms int) timed { return timed{ms, inTick{}} }
func calls(ms int, src int, cs ...ToolCall) timed {
	return timed{ms, inStreamEnd{src: src, err: io.EOF, calls: cs}}
}
func toolsDone(ms int, es ...session.Entry) timed { return timed{ms, inToolsDone{entries: es}} }
func gone(ms int, sent int) timed                 { return timed{ms, inGone{sent: sent}} }
func toolCall(id, name string) ToolCall           { return ToolCall{ID: id, Name: name, Args: "{}"} }
func toolEntry(id, name, text string) session.Entry {
	return session.Entry{Kind: session.EntryTool, ToolCall: id, ToolName: name, Text: text}
}

// show renders an action for a table.
func show(a action) string {
	switch a := a.(type) {
	case actSpeak:
		return "say " + a.line
	case actStartModel:
		return fmt.Sprintf("model %d %s", a.src, a.req.Model)
	case actCancel:
		return fmt.Sprintf("cancel %d", a.src)
	case actRunTools:
		var names []string
		for _, c := range a.calls {
			names = append(names, c.Name)
		}
		return fmt.Sprintf("tools %s from %d", strings.Join(names, ","), a.first)
	case actLogTools:
		return fmt.Sprintf("log %d tools", len(a.entries))
	case actWarn:
		return "warn " + a.msg
	case actModelError:
		return "model error: " + a.how
	case actHangUp:
		return "hang up"
	case actEnd:
		s := "end " + string(a.outcome)
		if a.budget != "" {
			s += " budget=" + string(a.budget)
		}
		if a.endCall {
			s += " end_call"
		}
		if a.hangUp != "" {
			s += " hang_up=" + a.hangUp
		}
		return s
	}
	return fmt.Sprintf("%T", a)
}

type engineCase struct {
	name     string
	fallback bool // a fallback model is configured
	endCall  bool // end_call is offered
	maxChars int  // Config.MaxChars, when set
	failLine int  // the write of this line (1-based) fails: Saperly is gone
	hist     []session.Entry
	ins      []timed
	want     []string      // every action, in order
	cfg      func(*Config) // settings of the case
	check    func(t *testing.T, e *engine, st *TurnStats)
}

// Two sentences: the chunker sends a sentence once the next one starts (or the answer ends).
const (
	sentA = "I have found your booking for Tuesday at ten. "
	sentB = "The clinic is on Main Street, next to the bank. "
	lineA = "I have found your booking for Tuesday at ten."
	lineB = "The clinic is on Main Street, next to the bank."
)

func newTestEngine(c engineCase) (*engine, *TurnStats) {
	cfg := Config{Model: "primary", MaxChars: c.maxChars}
	if c.fallback {
		cfg.FallbackModel = "fallback"
	}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	cfg = cfg.withDefaults()
	st := &TurnStats{}
	req := Request{Model: cfg.Model, Messages: []Message{{Role: "system", Text: "s"}, {Role: "user", Text: "hi"}}}
	return newEngine(&cfg, e0, req, c.hist, c.endCall, st), st
}

func runEngine(t *testing.T, c engineCase) {
	e, st := newTestEngine(c)
	got := []string{}
	// exec carries out actions as the driver does: a failed write drops the actions after it
	// and tells the engine the caller is gone.
	sent := 0
	var exec func(ms int, acts []action)
	exec = func(ms int, acts []action) {
		for _, a := range acts {
			if _, ok := a.(actSpeak); ok {
				if sent+1 == c.failLine {
					got = append(got, fmt.Sprintf("%d: %s (failed)", ms, show(a)))
					exec(ms, e.step(e0.Add(time.Duration(ms)*time.Millisecond), inGone{sent: sent}))
					return
				}
				sent++
			}
			got = append(got, fmt.Sprintf("%d: %s", ms, show(a)))
		}
	}
	for _, in := range append([]timed{{0, inStart{}}}, c.ins...) {
		now := ms(in.ms)
		if in.ms < 0 {
			now = e.nextWake()
			in.ms = int(now.Sub(e0).Round(time.Millisecond) / time.Millisecond)
		}
		switch v := in.in.(type) {
		case inToken:
			if v.at.IsZero() {
				v.at = now
			}
			in.in = v
		case inStreamEnd:
			if v.at.IsZero() {
				v.at = now
			}
			in.in = v
		case inTick:
			// The driver's timer fires at nextWake; a table names the tick's time itself, and
			// no tick may come later than the engine asked for (a rule would be late).
			require.False(t, !e.ended && now.After(e.nextWake()), "%s: tick at %d ms, but the engine wanted one at %s", c.name, in.ms, e.nextWake().Sub(e0))
		}
		exec(in.ms, e.step(now, in.in))
	}
	assert.Equal(t, c.want, got, c.name)
	ends := 0
	for _, g := range got {
		if strings.Contains(g, ": end ") {
			ends++
		}
	}
	assert.LessOrEqual(t, ends, 1, "an outcome is decided once")
	if c.check != nil {
		c.check(t, e, st)
	}
}

var errBoom = errors.New("502 bad gateway")

func TestEngineRules(t *testing.T) {
	cases := []engineCase{
		{
			name: "an answer streams as phrases and ends answered",
			ins:  []timed{tok(300, 0, sentA), tok(320, 0, sentB), eos(340, 0)},
			want: []string{"0: model 0 primary", "320: say " + lineA, "340: say " + lineB, "340: end answered"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Equal(t, 300*time.Millisecond, st.TTFT)
				assert.Equal(t, "primary", st.Model)
			},
		},
		{
			name: "nothing before HoldAfter: no tick is due before it, and the hold comes then",
			ins:  []timed{tick(1200), tok(1500, 0, sentA), eos(1600, 0)},
			want: []string{"0: model 0 primary", "1200: say One moment.", "1600: say " + lineA, "1600: end answered"},
		},
		{
			name: "the hold is the phrase this call has used least",
			hist: []session.Entry{{Kind: session.EntryAssistant, Text: "One moment. Let me check. Sure."}},
			ins:  []timed{tick(1200)},
			want: []string{"0: model 0 primary", "1200: say Just a second."},
		},
		{
			name: "a model opening with a holding phrase after ours is not heard twice",
			ins:  []timed{tick(1200), tok(1300, 0, "One moment. "), tok(1310, 0, "Here it is. "), eos(1320, 0)},
			want: []string{"0: model 0 primary", "1200: say One moment.", "1320: say Here it is.", "1320: end answered"},
		},
		{
			name: "the first line is cut at a word FirstCut after the first token",
			ins:  []timed{tok(300, 0, "Well we have several openings on Tuesday and also"), tick(900)},
			want: []string{"0: model 0 primary", "900: say Well we have several openings on Tuesday"},
		},
		{
			name: "a first line still inside a word at FirstCut goes out as soon as a word completes",
			ins:  []timed{tok(100, 0, "Absolutely"), tick(700), tok(800, 0, " we can do"), tok(820, 0, " that for you")},
			want: []string{"0: model 0 primary", "800: say Absolutely we"}, // never a lone word (docs/speech.md)
		},
		{
			name: "whole words already in beat a holding phrase",
			ins:  []timed{tok(1000, 0, "Let me see what we have for next week and"), tick(1200)},
			want: []string{"0: model 0 primary", "1200: say Let me see what we have for next"},
		},
		{
			name:     "a silent primary is hedged on the fallback at HedgeAfter; the first to speak wins",
			fallback: true,
			ins: []timed{tick(1200), tick(2500), tok(2800, 1, "Fallback here. "), tok(2900, 0, "Primary. "),
				fail(2910, 0, errBoom), eos(2950, 1)},
			want: []string{"0: model 0 primary", "1200: say One moment.", "2500: model 1 fallback", "2800: cancel 0",
				"2950: say Fallback here.", "2950: end answered"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.True(t, st.Hedged)
				assert.True(t, st.Fallback)
				assert.Equal(t, "fallback", st.Model)
				assert.Equal(t, 2, st.ModelCalls)
			},
		},
		{
			name:     "a primary failing before speech is retried on the fallback within FallbackWithin",
			fallback: true,
			ins:      []timed{fail(200, 0, errBoom), tok(500, 1, "Yes. "), eos(510, 1)},
			want: []string{"0: model 0 primary", "200: model error: failed before speech", "200: model 1 fallback",
				"510: say Yes.", "510: end answered"},
		},
		{
			name:     "a failure after FallbackWithin apologises (with two holds before it)",
			fallback: true,
			cfg:      func(c *Config) { c.HedgeAfter = 20 * time.Second },
			ins:      []timed{tick(1200), tick(7200), fail(8100, 0, errBoom)},
			want: []string{"0: model 0 primary", "1200: say One moment.", "7200: say Let me check.",
				"8100: model error: failed before speech", "8100: say " + DefaultApologyLine, "8100: end apology budget=stall"},
		},
		{
			name: "no fallback: a failure before speech apologises",
			ins:  []timed{fail(100, 0, errBoom)},
			want: []string{"0: model 0 primary", "100: model error: failed before speech", "100: say " + DefaultApologyLine, "100: end apology"},
		},
		{
			name: "a model answering nothing apologises",
			ins:  []timed{eos(100, 0)},
			want: []string{"0: model 0 primary", "100: model error: answered nothing", "100: say " + DefaultApologyLine, "100: end apology"},
		},
		{
			name: "a stall mid-answer holds once, then ends gracefully",
			ins:  []timed{tok(200, 0, sentA), tok(210, 0, "Tue"), tick(6210), tick(12210)},
			want: []string{"0: model 0 primary", "210: say " + lineA, "6210: say One moment.",
				"12210: say " + DefaultStallLine, "12210: end stalled budget=stall"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Equal(t, []int{1}, e.holdLines, "the second line was a hold")
			},
		},
		{
			name: "words still flowing without a boundary are cut at StallAfter",
			ins:  []timed{tok(200, 0, sentA), tok(300, 0, "So "), tok(4000, 0, "the options we have are many "), tick(6300)},
			want: []string{"0: model 0 primary", "300: say " + lineA, "6300: say So the options we have"},
		},
		{
			name: "a model that never speaks: two holds, then an apology",
			ins:  []timed{tick(1200), tick(7200), tick(13200)},
			want: []string{"0: model 0 primary", "1200: say One moment.", "7200: say Let me check.",
				"13200: say " + DefaultApologyLine, "13200: end apology budget=stall"},
		},
		{
			name: "the turn budget ends a long answer with the stall line",
			cfg:  func(c *Config) { c.TurnBudget = 10 * time.Second },
			ins:  []timed{tok(100, 0, sentA), tok(150, 0, sentB), tok(5000, 0, sentA), tick(10000)},
			want: []string{"0: model 0 primary", "150: say " + lineA, "5000: say " + lineB, "10000: say " + lineA,
				"10000: say " + DefaultStallLine, "10000: end stalled budget=turn"},
		},
		{
			name:     "the character cap stops on a boundary",
			maxChars: 100,
			ins:      []timed{tok(100, 0, "This is a first sentence. "), tok(110, 0, "And this one would pass the cap. ")},
			want:     []string{"0: model 0 primary", "110: end capped budget=chars"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Empty(t, e.spoken)
			},
		},
		{
			name: "a stream breaking mid-answer ends on the last sentence and the recovery line",
			ins:  []timed{tok(100, 0, "First part. "), tok(110, 0, "Second half"), fail(120, 0, errBoom)},
			want: []string{"0: model 0 primary", "110: say First part.", "120: model error: stream broke",
				"120: say " + DefaultRecoveryLine, "120: end recovered"},
		},
		{
			name: "a stream broken before any word is retried like a failure",
			ins:  []timed{tok(100, 0, "Hmm"), fail(120, 0, errBoom)},
			want: []string{"0: model 0 primary", "120: model error: failed before speech", "120: say " + DefaultApologyLine, "120: end apology"},
		},
		{
			name: "max_tokens ends the answer as it stands",
			ins:  []timed{tok(100, 0, "All done here. "), tok(110, 0, "And then"), fail(120, 0, fmt.Errorf("x: %w", ErrTruncated))},
			want: []string{"0: model 0 primary", "110: say All done here.", "120: end answered budget=max_tokens"},
		},
		{
			name: "tool calls: a hold, the tools, then the same model again with their results",
			ins: []timed{calls(300, 0, toolCall("c1", "lookup")), tick(900),
				toolsDone(1500, toolEntry("c1", "lookup", `{"ok":true}`)), tok(1800, 1, sentA), eos(1810, 1)},
			want: []string{"0: model 0 primary", "300: say One moment.", "300: tools lookup from 0",
				"1500: log 1 tools", "1500: model 1 primary", "1810: say " + lineA, "1810: end answered"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Equal(t, 1, st.ToolCalls)
				msgs := e.req.Messages
				assert.Equal(t, "tool", msgs[len(msgs)-1].Role)
				assert.Equal(t, "c1", msgs[len(msgs)-1].ToolCallID)
			},
		},
		{
			name: "what the model said before calling a tool is spoken, and no hold is added",
			ins:  []timed{tok(100, 0, "Let me look that up for you. "), calls(200, 0, toolCall("", "lookup"))},
			want: []string{"0: model 0 primary", "200: say Let me look that up for you.", "200: tools lookup from 0"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Equal(t, "call_0", e.req.Messages[len(e.req.Messages)-1].ToolCalls[0].ID, "a missing id is made up")
			},
		},
		{
			name: "a long tool keeps the caller company at every StallAfter, without a stall budget",
			ins:  []timed{tok(100, 0, "Checking. "), calls(200, 0, toolCall("c1", "lookup")), tick(6200), tick(12200)},
			want: []string{"0: model 0 primary", "200: say Checking.", "200: tools lookup from 0",
				"6200: say One moment.", "12200: say Let me check."},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Empty(t, e.budget)
			},
		},
		{
			name: "tokens of an earlier round are ignored",
			ins: []timed{calls(100, 0, toolCall("c1", "lookup")), toolsDone(300, toolEntry("c1", "lookup", "{}")),
				tok(310, 0, "stale "), tok(400, 1, "Fresh. "), eos(410, 1)},
			want: []string{"0: model 0 primary", "100: say One moment.", "100: tools lookup from 0",
				"300: log 1 tools", "300: model 1 primary", "410: say Fresh.", "410: end answered"},
		},
		{
			name: "past maxToolRounds the answer ends; with nothing said, in the apology",
			ins: []timed{
				calls(100, 0, toolCall("a", "t")), toolsDone(200, toolEntry("a", "t", "{}")),
				calls(300, 1, toolCall("b", "t")), toolsDone(400, toolEntry("b", "t", "{}")),
				calls(500, 2, toolCall("c", "t")), toolsDone(600, toolEntry("c", "t", "{}")),
				calls(700, 3, toolCall("d", "t"))},
			want: []string{"0: model 0 primary",
				"100: say One moment.", "100: tools t from 0", "200: log 1 tools", "200: model 1 primary",
				"300: say Let me check.", "300: tools t from 1", "400: log 1 tools", "400: model 2 primary",
				"500: say Just a second.", "500: tools t from 2", "600: log 1 tools", "600: model 3 primary",
				"700: warn tool rounds exhausted", "700: say " + DefaultApologyLine, "700: end apology budget=tool_rounds"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Nil(t, e.req.Tools)
			},
		},
		{
			name:    "end_call after a goodbye: the call is hung up once the goodbye has been said",
			endCall: true,
			ins: []timed{tok(100, 0, "Thanks for calling, goodbye! "), calls(110, 0, toolCall("e", EndCallTool)),
				wake()},
			// 19 then 8 characters at 15 a second from 100 ms, plus the 500 ms margin.
			want: []string{"0: model 0 primary", "100: say Thanks for calling,", "110: say goodbye!", "2400: hang up",
				"2400: end answered end_call"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Equal(t, ms(100).Add(speechTime("Thanks for calling,")+speechTime("goodbye!")+hangUpMargin), e.hangUpAt)
			},
		},
		{
			name:     "a failed goodbye: the call stays up, and the intention is kept",
			endCall:  true,
			failLine: 1,
			ins:      []timed{calls(100, 0, toolCall("e", EndCallTool))},
			want:     []string{"0: model 0 primary", "100: say " + DefaultGoodbyeLine + " (failed)", "100: end cut hang_up=skipped"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.True(t, e.endCall)
				assert.Empty(t, e.spoken)
			},
		},
		{
			name:    "while the goodbye is said, only the clock and the caller count",
			endCall: true,
			ins: []timed{tok(100, 0, "Goodbye! "), calls(110, 0, toolCall("e", EndCallTool)), {300, inLeaseLost{}},
				tok(400, 0, "late"), wake()},
			want: []string{"0: model 0 primary", "110: say Goodbye!", "1143: hang up", "1143: end answered end_call"},
		},
		{
			name:    "end_call without a goodbye says one",
			endCall: true,
			ins:     []timed{calls(100, 0, toolCall("e", EndCallTool))},
			want:    []string{"0: model 0 primary", "100: say " + DefaultGoodbyeLine},
		},
		{
			name:    "a goodbye longer than EndCallHold is not hung up on",
			endCall: true,
			ins: []timed{tok(100, 0, strings.Repeat("Thank you so much for calling us today, it was a real pleasure. ", 4)),
				calls(110, 0, toolCall("e", EndCallTool))},
			want: []string{"0: model 0 primary",
				"100: say Thank you so much for calling us today,",
				"100: say it was a real pleasure.",
				"100: say Thank you so much for calling us today, it was a real pleasure.",
				"100: say Thank you so much for calling us today, it was a real pleasure.",
				"110: say Thank you so much for calling us today, it was a real pleasure.",
				"110: warn goodbye too long to wait for, not hanging up", "110: end answered end_call hang_up=too_long"},
		},
		{
			name:    "the caller talking over the goodbye keeps the call up",
			endCall: true,
			ins:     []timed{tok(100, 0, "Goodbye! "), calls(110, 0, toolCall("e", EndCallTool)), gone(500, -1)},
			want:    []string{"0: model 0 primary", "110: say Goodbye!", "500: end cut end_call hang_up=skipped"},
		},
		{
			name:    "end_call next to another tool runs that tool first",
			endCall: true,
			ins:     []timed{calls(100, 0, toolCall("a", "lookup"), toolCall("e", EndCallTool))},
			want:    []string{"0: model 0 primary", "100: say One moment.", "100: tools lookup,end_call from 0"},
		},
		{
			name: "end_call not offered is just another (unknown) tool",
			ins:  []timed{calls(100, 0, toolCall("e", EndCallTool))},
			want: []string{"0: model 0 primary", "100: say One moment.", "100: tools end_call from 0"},
		},
		{
			name:     "a write that fails keeps only the lines Saperly took",
			failLine: 2,
			ins:      []timed{tok(100, 0, sentA), tok(110, 0, sentB), eos(120, 0)},
			want:     []string{"0: model 0 primary", "110: say " + lineA, "120: say " + lineB + " (failed)", "120: end cut"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Equal(t, []string{lineA}, e.spoken)
				assert.Equal(t, len(lineA)+1, e.chars)
			},
		},
		{
			name:     "a failed apology ends the turn cut, not apologised",
			failLine: 1,
			ins:      []timed{fail(100, 0, errBoom)},
			want: []string{"0: model 0 primary", "100: model error: failed before speech", "100: say " + DefaultApologyLine + " (failed)",
				"100: end cut"},
		},
		{
			name: "a driver that panicked ends the turn failed, keeping the lines Saperly took",
			ins:  []timed{tok(100, 0, sentA), tok(110, 0, sentB), {120, inGone{sent: 0, failed: true}}},
			want: []string{"0: model 0 primary", "110: say " + lineA, "120: end failed"},
			check: func(t *testing.T, e *engine, st *TurnStats) {
				assert.Empty(t, e.spoken)
			},
		},
		{
			name: "the lease lost ends the turn",
			ins:  []timed{tok(100, 0, sentA), tok(110, 0, sentB), {150, inLeaseLost{}}, tok(200, 0, sentA), tick(6200)},
			want: []string{"0: model 0 primary", "110: say " + lineA, "150: end cut budget=lease_lost"},
		},
		{
			name: "after the end every input is ignored",
			ins:  []timed{eos(100, 0), tok(200, 0, "Late. "), tick(1200), toolsDone(1300)},
			want: []string{"0: model 0 primary", "100: model error: answered nothing", "100: say " + DefaultApologyLine, "100: end apology"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runEngine(t, c) })
	}
}

// BenchmarkEngineTurn is the rules' own cost for one answer of the bench's size: every token
// through step, with its chunking, and no goroutine, channel, clock or I/O.
func BenchmarkEngineTurn(b *testing.B) {
	toks := DemoTokens("Sure, I can help you book that. We have Tuesday at 3:30 p.m. or Wednesday at 10 a.m. Which works better?")
	b.ReportAllocs()
	for b.Loop() {
		e, _ := newTestEngine(engineCase{})
		e.step(e0, inStart{})
		for i, tk := range toks {
			now := ms(300 + 20*i)
			e.step(now, inToken{src: 0, tok: tk, at: now})
		}
		e.step(ms(300+20*len(toks)), inStreamEnd{src: 0, err: io.EOF})
	}
}
