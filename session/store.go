package session

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a call or turn log the store does not hold.
var ErrNotFound = errors.New("not found")

// Entry kinds in a call's history log.
const (
	EntryUser      = "user"
	EntryAssistant = "assistant"
	// EntryInterrupt records Saperly's interrupted event: Text is what the caller heard of the
	// assistant turn that was being spoken at At. Load applies it to that turn.
	EntryInterrupt = "interrupt"
)

// Entry is one record of a call's history log. The log is append-only, so concurrent writers
// (an interrupted event racing the next message) never lose each other's work; Load folds it.
type Entry struct {
	Kind string `json:"k"`
	Text string `json:"t"`
	// At is Unix milliseconds: when the turn began (user, assistant) or when the caller cut in
	// (interrupt). Saperly's timestamp when the event carried one, so both sides share a clock.
	At      int64  `json:"at"`
	EventID string `json:"e,omitempty"`
	// Cut marks an assistant turn whose connection Saperly closed before the answer ended.
	Cut bool `json:"cut,omitempty"`
	// Interrupted marks an assistant turn whose text was replaced by an interrupt (set by Fold).
	Interrupted bool `json:"int,omitempty"`
}

// Call is the record of one call. Empty fields are unknown.
type Call struct {
	ID        string
	LineID    string
	From      string
	To        string
	Direction string
	Status    string
	StartedAt time.Time
	EndedAt   time.Time
	// Duration in seconds, as reported by a status callback or call_ended.
	Duration float64
}

// State is what a turn needs to know about its call.
type State struct {
	Call Call
	// History is the folded conversation: user and assistant entries in order, each turn once,
	// with interrupts applied.
	History []Entry
}

// SMS is one inbound text message on a line.
type SMS struct {
	ID   string    `json:"id,omitempty"`
	From string    `json:"from,omitempty"`
	To   string    `json:"to,omitempty"`
	Text string    `json:"text"`
	At   time.Time `json:"at"`
}

// Store is the contract both stores implement. Every write refreshes the call's expiry to the
// store's retention, so a call's record and history live for the retention after its last
// event (call_ended being the last).
type Store interface {
	// FirstDelivery records a delivery id and reports whether it is new, that is, not seen in
	// the last ttl. Shared by every replica using the same store.
	FirstDelivery(ctx context.Context, deliveryID string, ttl time.Duration) (bool, error)

	// UpdateCall merges the non-zero fields of c into the record of call c.ID, creating it.
	UpdateCall(ctx context.Context, c Call) error

	// Load returns the call's record and folded history, or ErrNotFound for an unknown call.
	Load(ctx context.Context, callID string) (State, error)

	// BeginTurn, in one round trip, claims eventID for this turn and loads the call's state.
	// claimed is false when an earlier delivery of the same event holds the claim; the caller
	// then follows that turn's log instead of answering again. An empty eventID is always
	// claimed. An unknown call gets a record (ID and StartedAt) and an empty history.
	BeginTurn(ctx context.Context, callID, eventID string) (st State, claimed bool, err error)

	// AppendLine adds one spoken line to eventID's turn log.
	AppendLine(ctx context.Context, eventID, text string) error

	// CommitTurn appends entries to the call's history and closes eventID's turn log (when
	// eventID is non-empty), atomically.
	CommitTurn(ctx context.Context, callID, eventID string, entries ...Entry) error

	// FollowTurn calls fn with every line of eventID's turn log, from the first, waiting for
	// more until the log is closed (returns nil) or ctx ends (returns ctx's error). A log that
	// does not exist yet is waited for. An error from fn stops it and is returned.
	FollowTurn(ctx context.Context, eventID string, fn func(text string) error) error

	// AppendEntry appends one entry (an interrupt) to the call's history log.
	AppendEntry(ctx context.Context, callID string, e Entry) error

	// AddSMS records an inbound SMS on a line.
	AddSMS(ctx context.Context, lineID string, s SMS) error

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// Fold turns a history log into the conversation as the caller experienced it: user and
// assistant entries in log order, a repeated (kind, event id) pair kept once, and each
// interrupt applied to the latest assistant turn that began at or before it. Interrupt
// entries themselves are not returned. Both stores call it on Load, so they cannot disagree.
func Fold(log []Entry) []Entry {
	out := make([]Entry, 0, len(log))
	type key struct{ kind, event string }
	seen := make(map[key]bool)
	var interrupts []Entry
	for _, e := range log {
		switch e.Kind {
		case EntryInterrupt:
			interrupts = append(interrupts, e)
			continue
		case EntryUser, EntryAssistant:
		default:
			continue // a kind a newer version wrote: ignore rather than fail the call
		}
		if e.EventID != "" {
			k := key{e.Kind, e.EventID}
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		out = append(out, e)
	}
	for _, in := range interrupts {
		best := -1
		for i, e := range out {
			if e.Kind == EntryAssistant && e.At <= in.At && (best < 0 || e.At >= out[best].At) {
				best = i
			}
		}
		if best < 0 {
			continue // the interrupt predates every answer we hold: nothing was cut
		}
		// Saperly reports the played prefix; never let a late duplicate lengthen a turn again.
		if out[best].Interrupted && len(out[best].Text) <= len(in.Text) {
			continue
		}
		out[best].Text = in.Text
		out[best].Interrupted = true
	}
	return out
}
