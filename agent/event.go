package agent

import (
	"errors"
	"time"
)

// Event kinds on Saperly's webhook_url and status_callback_url (PROTOCOL §1.5, §1.6).
const (
	EventCallStarted  = "call_started"
	EventMessage      = "message"
	EventInterrupted  = "interrupted"
	EventCallEnded    = "call_ended"
	EventSMSReceived  = "sms_received"
	EventTest         = "test"
	EventCallIncoming = "call_incoming"
	EventCallOutgoing = "call_outgoing"
)

// Event is one decoded, verified delivery. The transport fills it from the wire body and the
// delivery headers; everything else in the brain works on this type only.
type Event struct {
	Kind   string // the body's "event"
	ID     string // event_id: stable across retries, may be empty
	LineID string
	CallID string
	// Timestamp is the body's "timestamp" in Unix milliseconds (Saperly's clock), 0 when absent.
	Timestamp int64

	Text        string // message: the caller's words; sms_received: the SMS body
	PartialText string // interrupted: what the caller actually heard
	// Interrupts is, on interrupted, the event_id of the message whose answer was cut, when
	// the body names it (the key is not published; see transport.DecodeEvent).
	Interrupts string

	From      string
	To        string
	Direction string
	Status    string // status callbacks and call_ended, when present
	Duration  float64
	MessageID string // sms_received: message_sid

	Delivery Delivery
}

// Delivery is what the transport knows about the HTTP delivery that carried an event.
type Delivery struct {
	ID         string        // x-saperly-delivery-id
	Attempt    int           // x-saperly-delivery-attempt, 0 when absent
	ReceivedAt time.Time     // when the request reached the handler
	Verify     time.Duration // time spent reading and verifying the body
	Callback   bool          // arrived on the status callback endpoint
	// Owner is the signing scope whose secrets verified the delivery: the listed line id, or
	// "*" for the global secrets. Every write about a call must come from the scope that
	// owns it (see session.Call.Owner); "" checks nothing (tests and internal callers).
	Owner string
	// ReplayTTL, when set, asks Respond to do the transport's replay check in the turn's first
	// store round trip (session.Store.BeginTurnOnce), and Record in its write of the call's
	// record (session.Store.UpdateCallOnce; only for an event RecordChecksReplay accepts): a
	// delivery id seen within ReplayTTL gets ErrDuplicateDelivery, with nothing spoken or
	// written.
	ReplayTTL time.Duration
}

// ErrDuplicateDelivery: Respond or Record found the delivery id already seen
// (Delivery.ReplayTTL).
var ErrDuplicateDelivery = errors.New("duplicate delivery")

// RecordChecksReplay reports whether Record can do the replay check of ev's delivery in its
// own store round trip (Delivery.ReplayTTL): the events that update the call's record.
func RecordChecksReplay(ev Event) bool {
	switch ev.Kind {
	case EventCallStarted, EventCallEnded, EventCallIncoming, EventCallOutgoing:
		return ev.CallID != ""
	}
	return false
}

// Chunk is one NDJSON line of a streamed answer. Saperly knows only the "speak" type.
type Chunk struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Speak returns the chunk that makes Saperly say text.
func Speak(text string) Chunk { return Chunk{Type: "speak", Text: text} }
