package session

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for a call or turn log the store does not hold.
var ErrNotFound = errors.New("not found")

// ErrWrongLine is returned by a write about a call owned by another signing scope; the
// store wrote nothing.
var ErrWrongLine = errors.New("call belongs to another line")

// OwnerGlobal is the Owner of calls whose first event was verified with the global secrets.
const OwnerGlobal = "*"

// Entry kinds in a call's history log.
const (
	EntryUser      = "user"
	EntryAssistant = "assistant"
	// EntryInterrupt records Saperly's interrupted event: Text is what the caller heard of the
	// assistant turn that was being spoken at At. Load applies it to that turn.
	EntryInterrupt = "interrupt"
	// EntryTool records one tool call of a turn and its result: ToolCall is the model's call
	// id, ToolName and ToolArgs what it asked for, Text what the tool answered. A turn's tool
	// entries come between its user and assistant entries.
	EntryTool = "tool"
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
	// EndCall marks an assistant turn that said goodbye meaning to end the call.
	EndCall bool `json:"end,omitempty"`

	// Ref, on an interrupt, is the event id of the message whose answer it cut, when Saperly
	// named it: Fold then applies it to that answer and no other, whatever its At.
	Ref string `json:"r,omitempty"`

	ToolCall string `json:"tc,omitempty"`
	ToolName string `json:"tn,omitempty"`
	ToolArgs string `json:"ta,omitempty"`
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
	// Returning is set when the caller had called this line before (see SeenCaller).
	Returning bool

	// Agent and PromptVersion pin the agent version the call started with. Unlike the other
	// fields they, and LineID, are written only while unset, so a prompt edited mid-call never
	// changes a call in progress, whichever replica answers, and no event moves a call to
	// another line.
	Agent         string
	PromptVersion string

	// Owner is the signing scope of the call: the listed line whose secrets verified the
	// call's first event, or "*" for the global secrets. Written once (like LineID); every
	// later write about the call must name the same Owner, else ErrWrongLine and nothing is
	// written. Empty in a Call passed to a store means "do not check" (internal callers only).
	Owner string
}

// State is what a turn needs to know about its call.
type State struct {
	Call Call
	// History is the folded conversation: user, tool and assistant entries in order, each
	// once, with interrupts applied.
	History []Entry
}

// EndPending reports whether the call's last answer was a goodbye meant to end the call that
// the caller talked over, so the call was not ended and the next turn should confirm.
func (s State) EndPending() bool {
	for i := len(s.History) - 1; i >= 0; i-- {
		if e := s.History[i]; e.Kind == EntryAssistant {
			return e.EndCall && (e.Cut || e.Interrupted)
		}
	}
	return false
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
	// LineID, Agent, PromptVersion and Owner are only written while the record has none. With
	// a non-empty c.Owner it first checks, atomically with the write, that the record has no
	// other owner: else it returns ErrWrongLine and writes nothing.
	UpdateCall(ctx context.Context, c Call) error

	// SeenCaller remembers that number called lineID on call callID and reports whether it
	// had called that line on another call before, within the store's CallerMemory. Asking
	// again for the same call (a retried event) does not make the caller a returning one.
	// The number is kept only as a hash.
	SeenCaller(ctx context.Context, lineID, number, callID string) (bool, error)

	// Load returns the call's record and folded history, or ErrNotFound for an unknown call.
	Load(ctx context.Context, callID string) (State, error)

	// BeginTurn, in one round trip, claims eventID for this turn and loads the call's state.
	// claimed is false when an earlier delivery of the same event holds the claim; the caller
	// then follows that turn's log instead of answering again. An empty eventID is always
	// claimed. Fields of c (c.ID is required) fill only what the record lacks: an unknown
	// call gets a record (ID, StartedAt and c's fields) and an empty history, and c's Agent
	// and PromptVersion pin the call's agent unless an earlier turn pinned one.
	BeginTurn(ctx context.Context, c Call, eventID string) (st State, claimed bool, err error)

	// AppendLines adds spoken lines, in order, to eventID's turn log.
	AppendLines(ctx context.Context, eventID string, lines ...string) error

	// CommitTurn appends entries to the call's history and closes eventID's turn log (when
	// eventID is non-empty), atomically.
	CommitTurn(ctx context.Context, callID, eventID string, entries ...Entry) error

	// FollowTurn calls fn with every line of eventID's turn log, from the first, waiting for
	// more until the log is closed (returns nil) or ctx ends (returns ctx's error). A log that
	// does not exist yet is waited for. An error from fn stops it and is returned.
	FollowTurn(ctx context.Context, eventID string, fn func(text string) error) error

	// AppendEntry appends one entry (an interrupt) to the call's history log. With a non-empty
	// owner it checks, atomically with the write, that the call has no other Owner (else
	// ErrWrongLine, nothing written), and makes owner the call's Owner when it has none.
	AppendEntry(ctx context.Context, callID, owner string, e Entry) error

	// AddSMS records an inbound SMS on a line.
	AddSMS(ctx context.Context, lineID string, s SMS) error

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// MaxInterruptLag is how long after an answer began an interrupt placed by its timestamp may
// still cut it: Saperly ends an answer after 5 minutes, and the interrupted event follows
// within seconds. An interrupt later than that after every answer (a clock far off, a forged
// or replayed timestamp) cuts nothing.
const MaxInterruptLag = 6 * time.Minute

// Fold turns a history log into the conversation as the caller experienced it: user, tool and
// assistant entries in log order, a repeated (kind, event id) pair kept once, and each
// interrupt applied to one answer: the answer to the message its Ref names when it has one,
// else the latest assistant turn that began at or before it, and at most MaxInterruptLag
// before it. Interrupt entries themselves are not returned. Both stores call it on Load, so
// they cannot disagree.
func Fold(log []Entry) []Entry {
	out := make([]Entry, 0, len(log))
	type key struct{ kind, event, tool string }
	seen := make(map[key]bool)
	var interrupts []Entry
	for _, e := range log {
		switch e.Kind {
		case EntryInterrupt:
			interrupts = append(interrupts, e)
			continue
		case EntryUser, EntryAssistant, EntryTool:
		default:
			continue // a kind a newer version wrote: ignore rather than fail the call
		}
		if e.EventID != "" {
			k := key{e.Kind, e.EventID, e.ToolCall}
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		out = append(out, e)
	}
	lag := MaxInterruptLag.Milliseconds()
	for _, in := range interrupts {
		best := -1
		for i, e := range out {
			if e.Kind != EntryAssistant {
				continue
			}
			if in.Ref != "" {
				if e.EventID == in.Ref {
					best = i
				}
				continue
			}
			if e.At <= in.At && in.At-e.At <= lag && (best < 0 || e.At >= out[best].At) {
				best = i
			}
		}
		if best < 0 {
			// Before every answer we hold, too long after all of them, or naming an answer not
			// (yet) in the log: nothing to cut.
			continue
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
