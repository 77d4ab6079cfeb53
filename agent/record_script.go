package agent

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The recorder writes the call-script format of package test/callscript (docs/scripts.md),
// which the server may not import (test/deps): the types below mirror it, and a test parses
// what they produce with that package, so the two cannot drift apart unnoticed.

// recScript is one recorded call.
type recScript struct {
	Name      string
	LineID    string
	From, To  string
	Direction string
	At        time.Time // the call's first delivery
	Agent     string
	Version   string // prompt version
	Turns     []recTurn

	callID  string
	ended   bool     // call_ended was received
	dropped int      // captures lost to a full queue: the script may miss some of the call
	notes   []string // what the format could not express, for the file's head comment
}

// recTurn is one turn: Kind is "start", "say", "status", "sms", "send" or "hangup".
type recTurn struct {
	Kind   string
	Think  time.Duration
	Text   string         // say, sms
	Event  string         // status, send
	Fields map[string]any // start, status, send, hangup

	BargeIn   *recBargeIn
	Retry     *recRetry
	Duplicate bool
	Answer    *recAnswer

	at, done int64 // µs: when it was received and when its delivery ended
}

type recBargeIn struct {
	AfterLines int
	After      time.Duration // when no line had arrived before the cut
	Heard      string
	Late       time.Duration
}

type recRetry struct {
	When  string // "after" or "streaming"
	After time.Duration
}

type recAnswer struct {
	Lines     []recLine
	Tools     []toolCap
	EndedCall bool
}

type recLine struct {
	Text string
	At   time.Duration
	Hold bool
}

// sayState follows one message event (its first delivery and any retries) while assembling.
type sayState struct {
	turn       int // index in Turns
	deliveries []capture
	cut        bool // the chosen answer's connection was closed by Saperly
	heard      bool // an interrupted event was attached
}

// assembleScript builds a call's script from its captures, from every replica, in any
// order. It reports false when there is nothing to play (no delivery).
func assembleScript(callID string, caps []capture) (*recScript, bool) {
	var dels []capture
	turns := make(map[string]capture) // delivery id → the agent's side of it
	sc := &recScript{callID: callID, Name: callID}
	for _, c := range caps {
		switch c.Type {
		case capDelivery:
			dels = append(dels, c)
			if c.HasTurn {
				turns[c.DeliveryID] = c
			}
		case capTurn:
			if c.DeliveryID != "" {
				turns[c.DeliveryID] = c
			}
		case capDropped:
			sc.dropped += c.Dropped
		}
	}
	if len(dels) == 0 {
		return nil, false
	}
	// Replicas write their captures as they go: order by arrival, on the replicas' clocks.
	slices.SortStableFunc(dels, func(a, b capture) int { return cmp.Compare(a.At, b.At) })
	sc.At = time.UnixMicro(dels[0].At).UTC()

	nums := numberMask{}
	says := make(map[string]*sayState) // event id → its say turn
	var sayList []*sayState
	seen := make(map[string]bool) // event ids of other turns (a retried call_started…)
	var prevEnd int64
	utterances, smsCount := 0, 0
	add := func(t recTurn, c capture) {
		t.at, t.done = c.At, c.Done
		if len(sc.Turns) > 0 {
			t.Think = micros(max(c.At-prevEnd, 0))
		}
		sc.Turns = append(sc.Turns, t)
		prevEnd = max(prevEnd, c.Done)
	}

	for _, d := range dels {
		if sc.LineID == "" {
			sc.LineID = d.LineID
		}
		if d.Kind == EventCallStarted || d.Kind == EventCallIncoming || d.Kind == EventCallOutgoing || sc.From == "" {
			if sc.From == "" && d.From != "" {
				sc.From = nums.mask(d.From)
			}
			if sc.To == "" && d.To != "" {
				sc.To = nums.mask(d.To)
			}
			if sc.Direction == "" {
				sc.Direction = d.Direction
			}
		}
		if d.HTTP == 409 { // a delivery Saperly sent twice: refused as a duplicate
			if s := says[d.EventID]; s != nil && d.EventID != "" {
				sc.Turns[s.turn].Duplicate = true
			}
			continue
		}
		if d.EventID != "" && seen[d.EventID] {
			continue // a retried non-message event: the first delivery is the turn
		}
		switch {
		case d.Status:
			seen[d.EventID] = d.EventID != ""
			add(recTurn{Kind: "status", Event: d.Kind, Fields: statusFields(d, &nums)}, d)
		case d.Kind == EventMessage:
			if s := says[d.EventID]; s != nil && d.EventID != "" {
				t := &sc.Turns[s.turn]
				first := s.deliveries[0]
				if t.Retry == nil {
					if d.At >= first.Done {
						t.Retry = &recRetry{When: "after", After: micros(d.At - first.Done)}
					} else {
						t.Retry = &recRetry{When: "streaming", After: micros(d.At - first.At)}
					}
				}
				s.deliveries = append(s.deliveries, d)
				t.done = max(t.done, d.Done)
				prevEnd = max(prevEnd, d.Done)
				continue
			}
			utterances++
			s := &sayState{turn: len(sc.Turns), deliveries: []capture{d}}
			if d.EventID != "" {
				says[d.EventID] = s
			}
			sayList = append(sayList, s)
			add(recTurn{Kind: "say", Text: personal(d.Text, fmt.Sprintf("utterance %d", utterances))}, d)
		case d.Kind == EventInterrupted:
			seen[d.EventID] = d.EventID != ""
			s := interruptTarget(sayList, d.At)
			if s == nil {
				add(recTurn{Kind: "send", Event: d.Kind}, d)
				continue
			}
			s.heard = true
			t := &sc.Turns[s.turn]
			b := &recBargeIn{Heard: personal(d.Heard, "heard")}
			if s.turn != len(sc.Turns)-1 {
				// The next turn was already sent: Saperly reported the cut late.
				b.Late = micros(max(d.At-t.done, 0))
			} else {
				prevEnd = max(prevEnd, d.Done)
			}
			t.BargeIn = b
		case d.Kind == EventCallStarted:
			seen[d.EventID] = d.EventID != ""
			add(recTurn{Kind: "start", Fields: map[string]any{}}, d)
		case d.Kind == EventCallEnded:
			seen[d.EventID] = d.EventID != ""
			sc.ended = true
			add(recTurn{Kind: "hangup", Fields: statusFields(d, &nums)}, d)
		case d.Kind == EventSMSReceived:
			seen[d.EventID] = d.EventID != ""
			smsCount++
			add(recTurn{Kind: "sms", Text: personal(d.Text, fmt.Sprintf("sms %d", smsCount))}, d)
		default:
			seen[d.EventID] = d.EventID != ""
			add(recTurn{Kind: "send", Event: d.Kind}, d)
		}
	}

	for n, s := range sayList {
		answer(sc, s, turns, n+1)
	}
	sc.fit()
	return sc, true
}

// maxScriptDuration is the longest duration a script may hold (docs/scripts.md).
const maxScriptDuration = time.Hour

// fit makes the script one the format accepts, noting what it had to change: a say turn has
// at most one of barge_in, retry and duplicate; start comes first (after status callbacks)
// and hangup last; no duration is over an hour; a say has words.
func (sc *recScript) fit() {
	for i := range sc.Turns {
		t := &sc.Turns[i]
		if t.Kind != "say" {
			continue
		}
		if t.BargeIn != nil && (t.Retry != nil || t.Duplicate) || t.Retry != nil && t.Duplicate {
			var dropped []string
			if t.BargeIn != nil && t.Retry != nil {
				dropped = append(dropped, "a retry")
				t.Retry = nil
			}
			if t.Duplicate {
				dropped = append(dropped, "a duplicate delivery")
				t.Duplicate = false
			}
			sc.notes = append(sc.notes, fmt.Sprintf("turn %d also had %s, which a turn with a barge-in or retry cannot express.",
				i+1, strings.Join(dropped, " and ")))
		}
		if strings.TrimSpace(t.Text) == "" {
			t.Text = "<no words>"
		}
		clamp := func(d *time.Duration) { *d = min(*d, maxScriptDuration) }
		clamp(&t.Think)
		if b := t.BargeIn; b != nil {
			clamp(&b.After)
			clamp(&b.Late)
		}
		if r := t.Retry; r != nil {
			clamp(&r.After)
		}
		if a := t.Answer; a != nil {
			for j := range a.Lines {
				clamp(&a.Lines[j].At)
			}
		}
	}
	for i := range sc.Turns {
		sc.Turns[i].Think = min(sc.Turns[i].Think, maxScriptDuration)
	}
	// start after the leading status callbacks, hangup last: events that arrived out of that
	// order (a status callback after call_ended) are moved, and the file says so.
	first := 0
	for first < len(sc.Turns) && sc.Turns[first].Kind == "status" {
		first++
	}
	for i := first + 1; i < len(sc.Turns); i++ {
		if sc.Turns[i].Kind == "start" {
			t := sc.Turns[i]
			copy(sc.Turns[first+1:i+1], sc.Turns[first:i])
			sc.Turns[first] = t
			sc.notes = append(sc.notes, "call_started arrived after other events: moved first.")
			break
		}
	}
	for i := 0; i < len(sc.Turns)-1; i++ {
		if sc.Turns[i].Kind == "hangup" {
			t := sc.Turns[i]
			copy(sc.Turns[i:], sc.Turns[i+1:])
			sc.Turns[len(sc.Turns)-1] = t
			sc.notes = append(sc.notes, "events arrived after call_ended: moved before it.")
			break
		}
	}
}

// interruptTarget is the answer an interrupted event is about: the latest cut answer not yet
// reported, else the latest answer that began before it.
func interruptTarget(says []*sayState, at int64) *sayState {
	for i := len(says) - 1; i >= 0; i-- {
		if s := says[i]; !s.heard && s.deliveries[0].Outcome == "client_gone" && s.deliveries[0].At <= at {
			return s
		}
	}
	for i := len(says) - 1; i >= 0; i-- {
		if s := says[i]; !s.heard && s.deliveries[0].At <= at {
			return s
		}
	}
	return nil
}

// answer fills a say turn's recorded answer from the delivery the model answered (not a
// retry replaying it), with the agent's side of it.
func answer(sc *recScript, s *sayState, turns map[string]capture, n int) {
	t := &sc.Turns[s.turn]
	chosen := s.deliveries[0]
	for _, d := range s.deliveries {
		if tc, ok := turns[d.DeliveryID]; ok && !tc.Replayed {
			chosen = d
			break
		}
	}
	tc, hasTurn := turns[chosen.DeliveryID]
	a := &recAnswer{}
	for i, l := range chosen.Lines {
		held := hasTurn && slices.Contains(tc.Holds, i)
		a.Lines = append(a.Lines, recLine{
			Text: personal(l.Text, fmt.Sprintf("answer %d line %d", n, i+1)),
			At:   micros(l.At),
			Hold: held,
		})
	}
	if hasTurn {
		a.Tools = tc.Tools
		a.EndedCall = tc.HangUp == "sent"
		if sc.Version == "" && tc.PromptVersion != "" {
			sc.Agent, sc.Version = tc.Agent, tc.PromptVersion
		}
	}
	t.Answer = a
	if t.BargeIn != nil {
		if len(chosen.Lines) > 0 || chosen.Outcome != "client_gone" {
			t.BargeIn.AfterLines = len(chosen.Lines)
		} else {
			t.BargeIn.After = micros(max(chosen.Done-chosen.At, 0))
		}
	}
}

// personal returns a piece of personal text as recorded: its words, or a placeholder with
// its length when they were not kept ("<utterance 1, 34 chars>").
// Captures are redacted when they are stored (BRAIN_RECORD_TEXT off), so whatever words a
// capture holds were meant to be kept.
func personal(t text, what string) string {
	if t.S != "" {
		return t.S
	}
	if t.N == 0 {
		return ""
	}
	return fmt.Sprintf("<%s, %d chars>", what, t.N)
}

// statusFields are a status or call_ended event's own body fields worth replaying.
func statusFields(d capture, nums *numberMask) map[string]any {
	f := map[string]any{}
	if d.CallStatus != "" {
		f["status"] = d.CallStatus
	}
	if d.Duration != 0 {
		f["duration"] = d.Duration
	}
	if d.Status { // a status callback carries the numbers
		if d.From != "" {
			f["from_number"] = nums.mask(d.From)
		}
		if d.To != "" {
			f["to_number"] = nums.mask(d.To)
		}
	}
	return f
}

// numberMask replaces phone numbers by placeholders, the same number by the same one within
// a call: +15550000001 for the first number seen, +15550000002 for the second…
type numberMask map[string]string

func (m *numberMask) mask(number string) string {
	if *m == nil {
		*m = numberMask{}
	}
	key := strings.TrimSpace(number)
	if p, ok := (*m)[key]; ok {
		return p
	}
	p := fmt.Sprintf("+1555%07d", len(*m)+1)
	(*m)[key] = p
	return p
}

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// fileName is the script's file: its start time and call id, safe as a file name.
func (sc *recScript) fileName() string {
	id := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, sc.callID)
	if len(id) > 64 {
		id = id[:64]
	}
	return sc.At.UTC().Format("20060102-150405") + "-" + id + ".yaml"
}
