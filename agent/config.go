package agent

import (
	"errors"
	"time"

	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// ErrFollowIdle is why a retry following another delivery's turn gave up (Config.FollowIdle).
// The budgets that shape a turn are the Budget values (engine.go).
var ErrFollowIdle = errors.New("replayed turn went idle")

// ErrWrongLine rejects an event about a call that belongs to another line than the one whose
// secret signed it.
var ErrWrongLine = errors.New("call belongs to another line")

// Config tunes the turn engine. Zero fields get the defaults noted; every budget is a setting.
type Config struct {
	Model       string  // primary model name
	MaxTokens   int     // max_tokens on every request; default 450 (about 1800 characters)
	Temperature float32 // default 0 (provider default)
	// FallbackModel is the model name for the fallback LLM, when one is configured.
	FallbackModel string

	// HistoryLimit caps how many past entries are sent to the model; default 40.
	HistoryLimit int

	// HoldAfter: when nothing speakable is ready this long after the message arrived, the
	// caller hears a holding phrase; default 1.2 s.
	HoldAfter time.Duration
	// FirstCut: once the first token is in, the first line goes out at a natural clause
	// boundary, or at the latest this long after that token, cut at a word; default 600 ms.
	FirstCut time.Duration
	// HedgeAfter: with a fallback model, when the primary has produced no token this long
	// after the message arrived, the fallback starts in parallel and whichever speaks first
	// wins; default 2.5 s.
	HedgeAfter time.Duration
	// FallbackWithin: a primary that fails before any speech is retried on the fallback only
	// this soon after the message arrived; default 8 s.
	FallbackWithin time.Duration
	// StallAfter: the longest silence between two lines before the engine speaks (a cut of the
	// pending text, a holding phrase, or finally a graceful end). Saperly's limit is 15 s, so
	// two stall steps must fit inside it; default 6 s.
	StallAfter time.Duration
	// TurnBudget: the answer is brought to a graceful end by then; Saperly's limit is 5 min;
	// default 4 min 30 s.
	TurnBudget time.Duration
	// MaxChars: the hard cap on characters spoken in one turn (Saperly's cap is 1800); default 1800.
	MaxChars int
	// MaxUtterance caps the caller's words, in characters, sent to the model and kept in the
	// history: a longer message is cut at a word boundary (and logged as cut). A real
	// utterance rarely passes a few hundred characters; default 2000.
	MaxUtterance int
	// StoreTimeout bounds each store operation on the turn path, so a Redis outage costs the
	// caller at most this much before the turn goes on without state; default 400 ms.
	StoreTimeout time.Duration
	// FollowIdle: a retried message replaying another delivery's answer gives up when no line
	// arrives for this long; default 6 s.
	FollowIdle time.Duration
	// TurnLease is how long a turn's claim lasts without renewal: set it as the store's
	// session.Options.TurnLease. A turn renews its claim with every turn-log write, and at
	// least every third of the lease; a retry following a turn whose owner stopped renewing
	// (a crashed or cut-off replica) takes it over once the lease lapses; default 2 s.
	TurnLease time.Duration

	// PendingTurns and PendingBytes bound the turns kept in memory because the store did not
	// take their commit, while they are retried: past either, the oldest is given up and
	// logged as lost. Defaults 10000 turns and 64 MiB (a turn is typically under 2 KB).
	PendingTurns int
	PendingBytes int
	// PendingRetention: a turn the store has not taken this long after it ended is given up
	// and logged as lost; default 15 min.
	PendingRetention time.Duration

	HoldingPhrases []string // spoken while waiting; never the same twice in a call while fresh ones remain
	ApologyLine    string   // the model failed before anything was said
	RecoveryLine   string   // the stream broke mid-answer, after the last complete sentence
	StallLine      string   // the model stalled for good mid-answer
	NoInputLine    string   // the message carried no words
	GoodbyeLine    string   // end_call came without a goodbye of the model's own

	// EndCallHold bounds how long the answer stays open after a goodbye, waiting for it to be
	// heard before hanging up; default 12 s (inside Saperly's 15 s line budget). A goodbye
	// that would take longer is not hung up on.
	EndCallHold time.Duration
	// Getenv reads the environment variables named by tools' headers; nil sends none.
	Getenv func(string) string

	Chunker ChunkerConfig

	// LogText logs caller and agent text on the turn line (personal data: off by default).
	LogText bool
	// OnTurn, when set, receives every turn's figures (for metrics).
	OnTurn func(TurnStats)
}

// Defaults for the fixed lines.
const (
	DefaultApologyLine  = "Sorry, I'm having a little trouble on my end. Could you say that again?"
	DefaultRecoveryLine = "Sorry, I lost my train of thought there. Could you repeat the last part?"
	DefaultStallLine    = "I'm sorry, this is taking longer than it should. Could you ask me that again?"
	DefaultNoInputLine  = "Sorry, I didn't catch that. Could you say it again?"
	DefaultGoodbyeLine  = "Thanks for calling. Goodbye!"
)

// DefaultMaxUtterance is the default Config.MaxUtterance, in characters.
const DefaultMaxUtterance = 2000

// DefaultHoldingPhrases are spoken while the model is slow.
var DefaultHoldingPhrases = []string{"One moment.", "Let me check.", "Just a second.", "Bear with me.", "Let me see."}

// Defaults returns the turn engine's defaults: the one place they are written. A zero field of
// a Config takes the value here; cmd/brain's settings table shows and documents them, and the
// README's configuration table is tested against that.
func Defaults() Config {
	return Config{
		MaxTokens:        450,
		HistoryLimit:     40,
		MaxChars:         1800,
		MaxUtterance:     DefaultMaxUtterance,
		HoldAfter:        1200 * time.Millisecond,
		FirstCut:         600 * time.Millisecond,
		HedgeAfter:       2500 * time.Millisecond,
		FallbackWithin:   8 * time.Second,
		StallAfter:       6 * time.Second,
		TurnBudget:       4*time.Minute + 30*time.Second,
		StoreTimeout:     400 * time.Millisecond,
		FollowIdle:       6 * time.Second,
		TurnLease:        session.DefaultTurnLease,
		PendingTurns:     10000,
		PendingBytes:     64 << 20,
		PendingRetention: 15 * time.Minute,
		ApologyLine:      DefaultApologyLine,
		RecoveryLine:     DefaultRecoveryLine,
		StallLine:        DefaultStallLine,
		NoInputLine:      DefaultNoInputLine,
		GoodbyeLine:      DefaultGoodbyeLine,
		EndCallHold:      12 * time.Second,
		HoldingPhrases:   DefaultHoldingPhrases,
	}
}

// withDefaults returns c with every zero field set from Defaults.
func (c Config) withDefaults() Config {
	d := Defaults()
	setDur := func(f *time.Duration, v time.Duration) {
		if *f <= 0 {
			*f = v
		}
	}
	setInt := func(f *int, v int) {
		if *f <= 0 {
			*f = v
		}
	}
	setStr := func(f *string, v string) {
		if *f == "" {
			*f = v
		}
	}
	setInt(&c.MaxTokens, d.MaxTokens)
	setInt(&c.HistoryLimit, d.HistoryLimit)
	setInt(&c.MaxChars, d.MaxChars)
	setInt(&c.MaxUtterance, d.MaxUtterance)
	setDur(&c.HoldAfter, d.HoldAfter)
	setDur(&c.FirstCut, d.FirstCut)
	setDur(&c.HedgeAfter, d.HedgeAfter)
	setDur(&c.FallbackWithin, d.FallbackWithin)
	setDur(&c.StallAfter, d.StallAfter)
	setDur(&c.TurnBudget, d.TurnBudget)
	setDur(&c.StoreTimeout, d.StoreTimeout)
	setDur(&c.FollowIdle, d.FollowIdle)
	setDur(&c.TurnLease, d.TurnLease)
	setInt(&c.PendingTurns, d.PendingTurns)
	setInt(&c.PendingBytes, d.PendingBytes)
	setDur(&c.PendingRetention, d.PendingRetention)
	setStr(&c.ApologyLine, d.ApologyLine)
	setStr(&c.RecoveryLine, d.RecoveryLine)
	setStr(&c.StallLine, d.StallLine)
	setStr(&c.NoInputLine, d.NoInputLine)
	setStr(&c.GoodbyeLine, d.GoodbyeLine)
	setDur(&c.EndCallHold, d.EndCallHold)
	if len(c.HoldingPhrases) == 0 {
		c.HoldingPhrases = d.HoldingPhrases
	}
	return c
}

// forAgent returns c with an agent's own settings over it.
func (c Config) forAgent(s prompts.Settings) Config {
	if s.Model != "" {
		c.Model = s.Model
	}
	if s.Temperature != nil {
		c.Temperature = *s.Temperature
	}
	if s.MaxTokens > 0 {
		c.MaxTokens = s.MaxTokens
	}
	if s.FallbackModel != "" {
		c.FallbackModel = s.FallbackModel
	}
	if len(s.HoldingPhrases) > 0 {
		c.HoldingPhrases = s.HoldingPhrases
	}
	if s.ApologyLine != "" {
		c.ApologyLine = s.ApologyLine
	}
	if s.RecoveryLine != "" {
		c.RecoveryLine = s.RecoveryLine
	}
	if s.StallLine != "" {
		c.StallLine = s.StallLine
	}
	sp := s.Speech
	if len(sp.Languages) > 0 {
		c.Chunker.Languages = sp.Languages
	}
	c.Chunker.NoLists = c.Chunker.NoLists || sp.NoLists
	c.Chunker.NoSymbols = c.Chunker.NoSymbols || sp.NoSymbols
	c.Chunker.Ordinals = c.Chunker.Ordinals || sp.Ordinals
	c.Chunker.SpellLinks = c.Chunker.SpellLinks || sp.SpellLinks
	if sp.Breath > 0 {
		c.Chunker.MaxPhrase = sp.Breath
	}
	return c
}

// TurnStats are one turn's figures: logged on the turn line and handed to Config.OnTurn.
type TurnStats struct {
	CallID, EventID, LineID string
	Turn                    int    // 1 for the call's first message
	Model                   string // the model that answered, "" when none did
	Agent                   string
	PromptVersion           string

	Verify    time.Duration // reading and verifying the delivery (from the transport)
	StateLoad time.Duration // claim and state load
	PreModel  time.Duration // receipt to model request
	TTFT      time.Duration // model request to first token
	FirstLine time.Duration // receipt to first line flushed (holding phrases included)
	// FirstLineLag is the brain's own share of the first model line: from the token that
	// completed it to its flush.
	FirstLineLag time.Duration
	Total        time.Duration

	Lines, Chars, Holds int
	ModelCalls          int
	Fallback            bool   // the fallback model answered
	Hedged              bool   // the fallback was started in parallel
	Replayed            bool   // a retry: the lines came from another delivery's turn log
	TakenOver           bool   // a retry that took over a turn whose owner stopped renewing its lease
	Degraded            bool   // the store failed: answered without history
	Pending             bool   // the store had not taken the turn when it ended: kept and retried
	PinnedMiss          bool   // the call's pinned prompt version was unknown here: the current one answered
	ToolCalls           int    // HTTP tool calls made
	EndCall             bool   // the agent said goodbye meaning to end the call
	HangUp              string // "sent", "failed", "skipped" (the caller talked over the goodbye) or "too_long"
	Budget              string
	Outcome             string
	// ModelError is why the model failed when it did (the last failure of the turn), for
	// the turn line: the failure is logged there once, not on a line of its own.
	ModelError string
	// StoreError is why the turn's state could not be loaded (Degraded: answered without
	// history), for the turn line.
	StoreError string
	// UtteranceCut is the length, in characters, of a message cut to Config.MaxUtterance; 0
	// when it was not cut.
	UtteranceCut int

	// For recording (OnTurn): the delivery answered, which of the turn's lines (0-based) were
	// holding phrases, and the tool calls made, in order. Nil when there were none.
	DeliveryID string
	HoldLines  []int
	Tools      []ToolUse
}

// ToolUse is one tool call of a turn, as the model asked for it.
type ToolUse struct {
	Name   string
	Args   string // JSON, as the model sent it
	Failed bool   // the model was told of an error: the tool failed, timed out or was not run
}

// Turn outcomes.
const (
	OutcomeAnswered  = "answered"
	OutcomeCut       = "cut"       // Saperly closed the connection (barge-in or hang-up)
	OutcomeApology   = "apology"   // the model failed before any speech
	OutcomeRecovered = "recovered" // the stream broke mid-answer
	OutcomeStalled   = "stalled"
	OutcomeCapped    = "capped"
	OutcomeReplayed  = "replayed"
	OutcomeNoInput   = "no_input"
	OutcomeRejected  = "rejected" // the event names a call on another line
	OutcomeFailed    = "failed"   // the turn panicked (a bug); what was said is kept
)
