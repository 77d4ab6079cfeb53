package transport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/callbrain/callbrain/agent"
)

// The decoders below turn one platform's verified body into an agent.HookEvent. They have no
// side effects (fuzzable) and are tolerant: unknown fields and event types are accepted, and
// the fields each platform's documentation leaves loose (an id that is a number in one event
// and a string in another, a timestamp in seconds or ISO 8601) are read either way.

// flexString is a JSON string or number, kept as its text.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return &DecodeError{Msg: "want a string or a number"}
	}
	*f = flexString(n.String())
	return nil
}

// when reads a flexString as a time: Unix seconds or milliseconds, or RFC 3339. Values before
// 2001 (a placeholder such as "111111") read as unknown.
func (f flexString) when() time.Time {
	s := strings.TrimSpace(string(f))
	if s == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n > 1e12 {
			n /= 1000
		}
		if n < 1e9 {
			return time.Time{}
		}
		sec := int64(n)
		return time.Unix(sec, int64((n-float64(sec))*1e9)).UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

func decodeErr(msg string, err error) *DecodeError { return &DecodeError{Msg: msg, Err: err} }

// role maps each platform's speaker names onto "caller" and "agent".
func role(r string) string {
	switch strings.ToLower(strings.TrimSpace(r)) {
	case "customer", "user", "caller", "human", "contact":
		return "caller"
	case "ai", "assistant", "agent", "bot":
		return "agent"
	}
	return strings.ToLower(strings.TrimSpace(r))
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

type salpreCall struct {
	ID        flexString `json:"id"`
	From      string     `json:"from"`
	To        string     `json:"to"`
	Source    string     `json:"source"`
	Direction string     `json:"direction"`
}

type salpreEnvelope struct {
	EventType string          `json:"event_type"`
	Timestamp flexString      `json:"timestamp_utc"`
	Payload   json.RawMessage `json:"payload"`
	IsTest    bool            `json:"is_test"`
}

type salprePayload struct {
	CallID flexString  `json:"call_id"`
	Call   *salpreCall `json:"call"`
	salpreCall
	Type       string          `json:"type"`
	Transcript json.RawMessage `json:"transcript"`
	Timestamp  flexString      `json:"timestamp_utc"`
	ErrorMsg   string          `json:"error_message"`
}

// DecodeSalpre decodes a Salpre envelope (PROTOCOL §2.1). Salpre sends no event id: a
// delivery is named by its type, call, time and (for live transcript lines) speaker and words,
// so a retry of the same event is recognised whatever its JSON key order.
func DecodeSalpre(body []byte, now time.Time) (agent.HookEvent, error) {
	var env salpreEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return agent.HookEvent{}, decodeErr("invalid JSON envelope", err)
	}
	if strings.TrimSpace(env.EventType) == "" {
		return agent.HookEvent{}, decodeErr("missing event_type", nil)
	}
	if len(env.Payload) == 0 || bytes.Equal(bytes.TrimSpace(env.Payload), []byte("null")) {
		return agent.HookEvent{}, decodeErr("missing payload", nil)
	}
	var p salprePayload
	if err := json.Unmarshal(env.Payload, &p); err != nil {
		return agent.HookEvent{}, decodeErr("payload is not an object of the documented shape", err)
	}
	ev := agent.HookEvent{
		Platform: agent.PlatformSalpre, Type: env.EventType, Test: env.IsTest,
		At: env.Timestamp.when(),
	}
	if ev.At.IsZero() {
		ev.At = now
	}
	c := p.salpreCall
	c.ID = p.CallID
	if p.Call != nil { // transcript and error events nest the call
		if c.ID == "" {
			c.ID = p.Call.ID
		}
		c.From, c.To = or(c.From, p.Call.From), or(c.To, p.Call.To)
		c.Source, c.Direction = or(c.Source, p.Call.Source), or(c.Direction, p.Call.Direction)
	}
	ev.CallID, ev.From, ev.To, ev.Source, ev.Direction = string(c.ID), c.From, c.To, c.Source, c.Direction
	if ev.CallID == "" {
		return agent.HookEvent{}, decodeErr("missing call id (payload.call_id or payload.call.id)", nil)
	}
	key := []string{env.EventType, ev.CallID, string(env.Timestamp)}
	switch env.EventType {
	case "call_initiated":
		ev.Status, ev.StartedAt = "initiated", ev.At
	case "call_ringing":
		ev.Status = "ringing"
	case "call_answered":
		ev.Status = "answered"
	case "transcript":
		var text string
		if len(p.Transcript) > 0 {
			if err := json.Unmarshal(p.Transcript, &text); err != nil {
				return agent.HookEvent{}, decodeErr("transcript must be a string in a transcript event", err)
			}
		}
		at := p.Timestamp.when()
		if at.IsZero() {
			at = ev.At
		}
		ev.Turns = []agent.HookTurn{{Role: role(p.Type), Text: text, At: at}}
		key = append(key, p.Type, string(p.Timestamp), shortHash(text))
	case "call_ended":
		ev.Status, ev.EndedAt, ev.Closes, ev.FinalTranscript = "ended", ev.At, true, true
		if len(p.Transcript) > 0 && !bytes.Equal(p.Transcript, []byte("null")) {
			var lines []struct {
				Type    string     `json:"type"`
				Message string     `json:"message"`
				At      flexString `json:"utc_timestamp"`
			}
			if err := json.Unmarshal(p.Transcript, &lines); err != nil {
				return agent.HookEvent{}, decodeErr("transcript must be a list of {type, message} in call_ended", err)
			}
			for _, l := range lines {
				ev.Turns = append(ev.Turns, agent.HookTurn{Role: role(l.Type), Text: l.Message, At: l.At.when()})
			}
		}
	case "error":
		ev.Status, ev.Error = "error", p.ErrorMsg
		key = append(key, shortHash(p.ErrorMsg))
	}
	ev.DedupeKey = shortHash(key...)
	return ev, nil
}

type itellicoEnvelope struct {
	EventID   string          `json:"event_id"`
	EventType string          `json:"event_type"`
	Created   flexString      `json:"created"`
	OrgUUID   string          `json:"organization_uuid"`
	Data      json.RawMessage `json:"data"`
}

type itellicoData struct {
	Conversation string          `json:"conversation_uuid"`
	AgentUUID    string          `json:"agent_uuid"`
	AgentName    string          `json:"agent_name"`
	Channel      string          `json:"channel"`
	StartedAt    flexString      `json:"started_at"`
	EndedAt      flexString      `json:"ended_at"`
	From         string          `json:"from_number"`
	To           string          `json:"to_number"`
	Direction    string          `json:"direction"`
	Status       string          `json:"status"`
	Duration     json.Number     `json:"duration_seconds"`
	Messages     json.RawMessage `json:"messages"`
	Test         bool            `json:"is_test"`
}

// textTurn is a transcript turn under any of the names the platforms use.
type textTurn struct {
	Role      string     `json:"role"`
	Speaker   string     `json:"speaker"`
	Content   string     `json:"content"`
	Text      string     `json:"text"`
	Message   string     `json:"message"`
	CreatedAt flexString `json:"created_at"`
	Timestamp flexString `json:"timestamp"`
}

func (t textTurn) turn() agent.HookTurn {
	at := t.CreatedAt.when()
	if at.IsZero() {
		at = t.Timestamp.when()
	}
	return agent.HookTurn{Role: role(or(t.Role, t.Speaker)), Text: or(t.Content, or(t.Text, t.Message)), At: at}
}

func decodeTurns(raw json.RawMessage, field string) ([]agent.HookTurn, error) {
	if len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var ts []textTurn
	if err := json.Unmarshal(raw, &ts); err != nil {
		return nil, decodeErr(field+" must be a list of turns", err)
	}
	out := make([]agent.HookTurn, 0, len(ts))
	for _, t := range ts {
		if tt := t.turn(); tt.Text != "" {
			out = append(out, tt)
		}
	}
	return out, nil
}

// DecodeItellico decodes an itellicoAI envelope (PROTOCOL §2.2); event_id is the dedupe key.
func DecodeItellico(body []byte, now time.Time) (agent.HookEvent, error) {
	var env itellicoEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return agent.HookEvent{}, decodeErr("invalid JSON envelope", err)
	}
	switch {
	case strings.TrimSpace(env.EventID) == "":
		return agent.HookEvent{}, decodeErr("missing event_id", nil)
	case strings.TrimSpace(env.EventType) == "":
		return agent.HookEvent{}, decodeErr("missing event_type", nil)
	case len(env.Data) == 0 || env.Data[0] != '{':
		return agent.HookEvent{}, decodeErr("data must be an object", nil)
	}
	var d itellicoData
	if err := json.Unmarshal(env.Data, &d); err != nil {
		return agent.HookEvent{}, decodeErr("data is not an object of the documented shape", err)
	}
	ev := agent.HookEvent{
		Platform: agent.PlatformItellico, Type: env.EventType, DedupeKey: env.EventID,
		CallID: d.Conversation, Source: or(d.AgentUUID, env.OrgUUID), Agent: d.AgentName,
		From: d.From, To: d.To, Direction: d.Direction, Test: d.Test, At: env.Created.when(),
	}
	if ev.At.IsZero() {
		ev.At = now
	}
	if strings.HasPrefix(env.EventType, "conversation.") && ev.CallID == "" {
		return agent.HookEvent{}, decodeErr("missing data.conversation_uuid", nil)
	}
	switch env.EventType {
	case "conversation.started":
		ev.Status, ev.StartedAt = "started", d.StartedAt.when()
		if ev.StartedAt.IsZero() {
			ev.StartedAt = ev.At
		}
	case "conversation.ended":
		ev.Status, ev.StartedAt, ev.EndedAt, ev.Closes = or(d.Status, "ended"), d.StartedAt.when(), d.EndedAt.when(), true
		if ev.EndedAt.IsZero() {
			ev.EndedAt = ev.At
		}
		ev.Duration, _ = d.Duration.Float64()
		turns, err := decodeTurns(d.Messages, "data.messages")
		if err != nil {
			return agent.HookEvent{}, err
		}
		ev.Turns, ev.FinalTranscript = turns, turns != nil
	case "conversation.analysis.completed":
		ev.Analysis = append(json.RawMessage(nil), env.Data...)
	}
	return ev, nil
}

type speakNodeEnvelope struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

type speakNodeData struct {
	SessionID flexString      `json:"session_id"`
	AgentID   flexString      `json:"agent_id"`
	AgentName string          `json:"agent_name"`
	StartTime flexString      `json:"start_time"`
	Duration  json.Number     `json:"duration_seconds"`
	From      string          `json:"from_number"`
	To        string          `json:"to_number"`
	Direction string          `json:"direction"`
	History   json.RawMessage `json:"history"`
}

// DecodeSpeakNode decodes a SpeakNode envelope (PROTOCOL §2.3). SpeakNode sends no event id
// and no timestamp: session_id and the event name are the dedupe key.
func DecodeSpeakNode(body []byte, now time.Time) (agent.HookEvent, error) {
	var env speakNodeEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return agent.HookEvent{}, decodeErr("invalid JSON envelope", err)
	}
	switch {
	case strings.TrimSpace(env.Event) == "":
		return agent.HookEvent{}, decodeErr("missing event", nil)
	case len(env.Data) == 0 || env.Data[0] != '{':
		return agent.HookEvent{}, decodeErr("data must be an object", nil)
	}
	var d speakNodeData
	if err := json.Unmarshal(env.Data, &d); err != nil {
		return agent.HookEvent{}, decodeErr("data is not an object of the documented shape", err)
	}
	if d.SessionID == "" {
		return agent.HookEvent{}, decodeErr("missing data.session_id", nil)
	}
	ev := agent.HookEvent{
		Platform: agent.PlatformSpeakNode, Type: env.Event, DedupeKey: string(d.SessionID) + ":" + env.Event,
		CallID: string(d.SessionID), Source: string(d.AgentID), Agent: d.AgentName,
		From: d.From, To: d.To, Direction: d.Direction, At: now, StartedAt: d.StartTime.when(),
	}
	switch env.Event {
	case "SessionStarted":
		ev.Status = "started"
		if ev.StartedAt.IsZero() {
			ev.StartedAt = now
		}
	case "ConversationComplete":
		ev.Status, ev.Closes = "completed", true
		ev.Duration, _ = d.Duration.Float64()
		if !ev.StartedAt.IsZero() && ev.Duration > 0 {
			ev.EndedAt = ev.StartedAt.Add(time.Duration(ev.Duration * float64(time.Second)))
		} else {
			ev.EndedAt = now
		}
		turns, err := decodeTurns(d.History, "data.history")
		if err != nil {
			return agent.HookEvent{}, err
		}
		ev.Turns, ev.FinalTranscript = turns, turns != nil
	}
	return ev, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
