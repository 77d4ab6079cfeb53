package transport

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/callbrain/callbrain/agent"
)

// DecodeError is a body that cannot be turned into an event. Msg says what is wrong in words
// safe to return to the sender (it never echoes the body); Err, when set, is the underlying
// JSON error for the log.
type DecodeError struct {
	Msg string
	Err error
}

func (e *DecodeError) Error() string {
	if e.Err != nil {
		return "decode event: " + e.Msg + ": " + e.Err.Error()
	}
	return "decode event: " + e.Msg
}

func (e *DecodeError) Unwrap() error { return e.Err }

// wireEvent is Saperly's flat body. Every field stays raw so that a field of an unexpected
// type (a history array under "transcript", an id sent as a number) is judged by the decoder,
// never by encoding/json, which would reject the whole body.
type wireEvent struct {
	Event               json.RawMessage `json:"event"`
	EventID             json.RawMessage `json:"event_id"`
	LineID              json.RawMessage `json:"line_id"`
	CallID              json.RawMessage `json:"call_id"`
	Timestamp           json.RawMessage `json:"timestamp"`
	Text                json.RawMessage `json:"text"`
	Transcript          json.RawMessage `json:"transcript"`
	Message             json.RawMessage `json:"message"`
	PartialResponseText json.RawMessage `json:"partial_response_text"`
	FromNumber          json.RawMessage `json:"from_number"`
	ToNumber            json.RawMessage `json:"to_number"`
	Direction           json.RawMessage `json:"direction"`
	Status              json.RawMessage `json:"status"`
	Duration            json.RawMessage `json:"duration"`
	DurationSeconds     json.RawMessage `json:"duration_seconds"`
	MessageSID          json.RawMessage `json:"message_sid"`
	// The message an interrupted event cuts: Saperly does not publish the key, so the
	// spellings a sender would plausibly use are all read, first one set wins.
	InterruptedEventID json.RawMessage `json:"interrupted_event_id"`
	MessageEventID     json.RawMessage `json:"message_event_id"`
	ReplyToEventID     json.RawMessage `json:"reply_to_event_id"`
	InReplyTo          json.RawMessage `json:"in_reply_to"`
	ResponseToEventID  json.RawMessage `json:"response_to_event_id"`
}

// DecodeEvent turns a raw webhook body into an event. It is pure: no I/O, no clock, no
// logging. It is tolerant as PROTOCOL §1.5 asks: unknown fields are ignored, unknown event
// kinds decode with only Kind and the common fields set, optional fields of an unexpected type
// are left empty. It fails, with a *DecodeError, only when the body is not a JSON object, has
// no string "event", or is a call event (call_started, message, interrupted, call_ended)
// without a call_id: an accepted call event always has a CallID. The Delivery field is left
// for the caller to fill.
func DecodeEvent(body []byte) (agent.Event, error) {
	b := trimBody(body)
	if len(b) == 0 || b[0] != '{' {
		if len(b) > 0 && json.Valid(b) {
			return agent.Event{}, &DecodeError{Msg: "body is not a JSON object"}
		}
		return agent.Event{}, &DecodeError{Msg: "body is not valid JSON"}
	}
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return agent.Event{}, &DecodeError{Msg: "body is not valid JSON", Err: err}
	}

	kind, ok := jsonString(w.Event)
	switch {
	case !ok && !isAbsent(w.Event):
		return agent.Event{}, &DecodeError{Msg: "event is not a string"}
	case strings.TrimSpace(kind) == "":
		return agent.Event{}, &DecodeError{Msg: "missing event"}
	}
	ev := agent.Event{Kind: strings.TrimSpace(kind)}

	ev.CallID, ok = idString(w.CallID)
	if isCallEvent(ev.Kind) {
		switch {
		case !ok:
			return agent.Event{}, &DecodeError{Msg: "call_id is not a string"}
		case ev.CallID == "":
			return agent.Event{}, &DecodeError{Msg: "missing call_id, required for " + ev.Kind}
		}
	}
	ev.ID, _ = idString(w.EventID)
	ev.LineID, _ = idString(w.LineID)
	ev.Timestamp = unixMillis(w.Timestamp)

	if ev.Kind == agent.EventSMSReceived {
		ev.Text = firstText(w.Message, w.Text)
	} else {
		// The key of the caller's words is not published (PROTOCOL §1.5, Unknown). A
		// "transcript" that is an array is Saperly's own history: firstText skips it.
		ev.Text = firstText(w.Text, w.Transcript, w.Message)
	}
	ev.PartialText, _ = jsonString(w.PartialResponseText)
	if ev.Kind == agent.EventInterrupted {
		for _, raw := range []json.RawMessage{w.InterruptedEventID, w.MessageEventID, w.ReplyToEventID, w.InReplyTo, w.ResponseToEventID} {
			if id, ok := idString(raw); ok && id != "" {
				ev.Interrupts = id
				break
			}
		}
	}
	ev.From, _ = idString(w.FromNumber)
	ev.To, _ = idString(w.ToNumber)
	ev.Direction, _ = jsonString(w.Direction)
	ev.Status, _ = idString(w.Status)
	ev.MessageID, _ = idString(w.MessageSID)
	if d, ok := seconds(w.Duration); ok {
		ev.Duration = d
	} else if d, ok := seconds(w.DurationSeconds); ok {
		ev.Duration = d
	}
	return ev, nil
}

// peekLineID reads line_id from a body that has not been verified yet, to pick the line's
// secrets. It never fails: a body that is not a JSON object simply has no line id. It reads
// the key exactly as DecodeEvent does, so the line whose secret verified a body is the line
// the decoded event names.
func peekLineID(body []byte) string {
	b := trimBody(body)
	if len(b) == 0 || b[0] != '{' {
		return ""
	}
	var p struct {
		LineID json.RawMessage `json:"line_id"`
	}
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	id, _ := idString(p.LineID)
	return id
}

func isCallEvent(kind string) bool {
	switch kind {
	case agent.EventCallStarted, agent.EventMessage, agent.EventInterrupted, agent.EventCallEnded:
		return true
	}
	return false
}

// trimBody drops leading white space and a UTF-8 byte order mark, which encoding/json rejects.
func trimBody(b []byte) []byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	return bytes.TrimLeft(b, " \t\r\n")
}

func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// jsonString returns raw as a string when it is a JSON string; ok is false for any other type
// except absent or null, which give "" and true.
func jsonString(raw json.RawMessage) (string, bool) {
	if isAbsent(raw) {
		return "", true
	}
	if raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// idString is jsonString that also accepts a number, as its decimal string: some senders
// write ids, numbers and status codes as JSON numbers.
func idString(raw json.RawMessage) (string, bool) {
	if len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		lit := string(raw)
		if _, err := strconv.ParseInt(lit, 10, 64); err == nil || isDigits(lit) {
			return lit, true
		}
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", false
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return strconv.FormatInt(int64(f), 10), true
		}
		return strconv.FormatFloat(f, 'f', -1, 64), true
	}
	s, ok := jsonString(raw)
	return strings.TrimSpace(s), ok
}

// firstText returns the first of raws that is a non-blank JSON string.
func firstText(raws ...json.RawMessage) string {
	for _, raw := range raws {
		if s, ok := jsonString(raw); ok && strings.TrimSpace(s) != "" {
			return s
		}
	}
	return ""
}

// number reads a JSON number or a string holding one.
func number(raw json.RawMessage) (float64, bool) {
	if isAbsent(raw) {
		return 0, false
	}
	lit := string(raw)
	if raw[0] == '"' {
		s, ok := jsonString(raw)
		if !ok {
			return 0, false
		}
		lit = strings.TrimSpace(s)
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// unixMillis reads the body's timestamp as Unix milliseconds, 0 when absent or unreadable.
// Saperly documents milliseconds; a value small enough to be seconds (before 1973 as
// milliseconds) is taken as seconds, and an RFC 3339 string is accepted, so a sender that
// changes its format does not reorder a call's events.
func unixMillis(raw json.RawMessage) int64 {
	if isAbsent(raw) {
		return 0
	}
	if raw[0] == '"' {
		if s, ok := jsonString(raw); ok {
			if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s)); err == nil {
				if ms := t.UnixMilli(); ms > 0 {
					return ms
				}
				return 0
			}
		}
	}
	f, ok := number(raw)
	if !ok || f <= 0 || f >= 1<<62 {
		return 0
	}
	if f < 1e11 {
		f *= 1000
	}
	return int64(f)
}

// seconds reads a duration in seconds; negative values are unreadable.
func seconds(raw json.RawMessage) (float64, bool) {
	f, ok := number(raw)
	if !ok || f < 0 {
		return 0, false
	}
	return f, true
}
