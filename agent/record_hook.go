package agent

import "time"

// DeliveryRecord is what the transport reports about one delivery once it has been answered
// and logged: the seam recording hangs on (transport.Config.OnDelivery). It is a value handed
// over for good: the receiver may keep it.
type DeliveryRecord struct {
	// Event is the decoded event, with its Delivery (id, attempt, when it arrived). Its Kind
	// is empty for a delivery refused before decoding.
	Event Event
	// Status is the HTTP status answered (499 when the client left before one was written).
	Status int
	// Outcome is the delivery's outcome as logged ("answered", "recorded", "client_gone", …).
	Outcome string
	// Lines are the lines of a streamed answer, in the order they were flushed.
	Lines []LineRecord
	// Done is when the delivery ended: the answer's last byte, or the acknowledgement.
	Done time.Time
}

// LineRecord is one NDJSON line of an answer and when it was flushed to Saperly.
type LineRecord struct {
	Text string
	At   time.Time
}
