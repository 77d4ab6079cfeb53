package callscript

import (
	"time"
)

// Script is one call: the turns the caller plays, in order. Build one in code, or read one
// with Parse or ParseFile.
type Script struct {
	// Name names the script in reports; Parse defaults it to the file's base name.
	Name string
	// LineID is the line called (and so the agent that answers); "" lets the player choose.
	LineID string
	// From and To are the caller's and the line's numbers; "" lets the player choose.
	From, To string
	// Direction is "inbound" (the default when empty) or "outbound".
	Direction string
	// Recorded says where the script came from, when it was recorded from a real call.
	Recorded *Recorded
	// Turns are played in order.
	Turns []Turn
	// File is the file the script was read from ("" when built in code). It is not written
	// by Marshal.
	File string
}

// Recorded describes the call a script was recorded from.
type Recorded struct {
	At            time.Time // when the call started
	Agent         string    // the agent that answered
	PromptVersion string    // the agent's prompt version (content hash)
}

// Kind is what a turn sends.
type Kind string

// The kinds of turn. Each is one YAML key, the turn's own.
const (
	// KindStart sends call_started to the webhook.
	KindStart Kind = "start"
	// KindSay sends a message event with the caller's words and reads the answer.
	KindSay Kind = "say"
	// KindStatus sends a status callback (call_incoming, call_outgoing, …) to the status URL.
	KindStatus Kind = "status"
	// KindSMS sends sms_received with the message text.
	KindSMS Kind = "sms"
	// KindSend sends any other webhook body (e.g. a test event) as written.
	KindSend Kind = "send"
	// KindHangup sends call_ended.
	KindHangup Kind = "hangup"
)

// Kinds lists every kind of turn, in the order the documentation gives them.
var Kinds = []Kind{KindStart, KindSay, KindStatus, KindSMS, KindSend, KindHangup}

// Turn is one step of the call. Which fields apply depends on Kind; Parse rejects the others.
type Turn struct {
	Kind Kind
	// Line is the turn's line in its file (0 when built in code), for reports.
	Line int
	// Think is the pause before the turn is sent (for say, before the caller speaks),
	// counted from the end of the previous turn.
	Think time.Duration
	// Text is the caller's words (say) or the SMS body (sms).
	Text string
	// Event is the event kind of a status or send turn ("call_incoming", "test", …).
	Event string
	// Fields are extra body keys for start, status, send and hangup (from_number, status,
	// duration, …); they override what the player would set.
	Fields map[string]any

	// The rest applies to say only. At most one of BargeIn, Retry and Duplicate is set.

	// BargeIn makes the caller talk over the answer.
	BargeIn *BargeIn
	// Retry delivers the same message again, as Saperly does after a failed delivery.
	Retry *Retry
	// Duplicate sends the same delivery again (same delivery id) once the answer is over;
	// the brain must refuse it (PROTOCOL §1.4: any non-2xx, 409 is expected).
	Duplicate bool
	// Expect is checked against the answer; nil checks nothing but the status.
	Expect *Expect
	// Answer is the answer recorded for this turn, kept for reference: the player shows how
	// today's answer differs, and mockllm -scripts replays it.
	Answer *Answer
}

// BargeIn is the caller talking over the answer: the player closes the connection (as
// Saperly does), then sends interrupted with what the caller heard.
type BargeIn struct {
	// AfterLines cuts the answer once this many lines have arrived (0: as soon as it
	// starts). It applies when After is 0.
	AfterLines int
	// After cuts the answer this long after the message was sent, when not 0.
	After time.Duration
	// Heard is the partial_response_text sent; nil ("auto" in a file) sends the text of the
	// lines that arrived before the cut.
	Heard *string
	// Late delays the interrupted event this long after the cut without holding up the
	// next turn, so it can arrive after the next message (PROTOCOL §1.5).
	Late time.Duration
}

// RetryWhen says when a retry is sent.
type RetryWhen string

// When a retry is sent.
const (
	// RetryAfterAnswer resends the message After the first answer has ended.
	RetryAfterAnswer RetryWhen = "after"
	// RetryWhileStreaming resends the message After the first was sent, while its answer
	// may still be streaming.
	RetryWhileStreaming RetryWhen = "streaming"
)

// Retry is a second delivery of the same message: same event_id, a new delivery id,
// x-saperly-delivery-attempt 2. The brain must answer it with the same words.
type Retry struct {
	When  RetryWhen
	After time.Duration
}

// Expect is what a say turn's answer must satisfy. Text checks are made on the answer's
// lines joined with spaces (what the caller heard), case-insensitively for Contains and
// NotContains.
type Expect struct {
	Contains    []string
	NotContains []string
	// Matches is a regular expression (Go syntax) the answer must match.
	Matches string
	// FirstLineWithin bounds the time from the end of the POST to the first spoken line.
	FirstLineWithin time.Duration
	// NoHold: no line of the answer is a holding phrase.
	NoHold bool
	// NoApology: no line of the answer is an apology.
	NoApology bool
	// ToolCalled and ToolNotCalled name tools the turn must (not) call. The caller cannot
	// hear tool calls: the player needs an Observer to check them.
	ToolCalled    []string
	ToolNotCalled []string
	// EndsCall, when set, says whether the brain must hang up after this answer. The player
	// needs an Observer (a stand-in for Saperly's API) to check it.
	EndsCall *bool
}

// Answer is an answer as it was recorded.
type Answer struct {
	Lines []AnswerLine
	// Tools are the tool calls the turn made, in order.
	Tools []ToolCall
	// EndedCall reports that the brain hung up after this answer.
	EndedCall bool
}

// AnswerLine is one spoken line of a recorded answer.
type AnswerLine struct {
	Text string
	// At is when the line arrived, since the message was sent.
	At time.Duration
	// Hold marks a holding phrase ("One moment.").
	Hold bool
}

// ToolCall is one recorded tool call.
type ToolCall struct {
	Name string
	// Args are the call's JSON arguments, as the model sent them ("" for none).
	Args string
}

// Text returns the answer's lines joined with spaces: what the caller heard.
func (a *Answer) Text() string {
	if a == nil {
		return ""
	}
	s := ""
	for i, l := range a.Lines {
		if i > 0 {
			s += " "
		}
		s += l.Text
	}
	return s
}
