package session

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"
)

// ErrNotFound is returned for a call or turn log the store does not hold.
var ErrNotFound = errors.New("not found")

// ErrWrongLine is returned by a write about a call owned by another signing scope; the
// store wrote nothing.
var ErrWrongLine = errors.New("call belongs to another line")

// OwnerGlobal is the Owner of calls whose first event was verified with the global secrets.
const OwnerGlobal = "*"

// ErrLeaseLost is returned by a write of a turn whose lease another delivery holds now (it
// took the turn over, or finished it): the store wrote nothing, and the turn is that
// delivery's to record.
var ErrLeaseLost = errors.New("turn lease lost")

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
	// once, with interrupts applied. Load returns all of it; BeginTurn only its tail.
	History []Entry
	// Turns counts the message turns the call has begun (BeginTurn claims of a new event).
	Turns int
}

// TurnRef names the turn that answers one message event: the line and call the event is
// about, and its event id. A turn's claim and log are keyed by all three, so a message that
// reuses another call's event id gets its own answer, never that call's replay.
type TurnRef struct {
	Line  string
	Call  string
	Event string
}

// Lease is a delivery's hold on a turn: whoever holds the claim's token answers the event,
// and must renew the claim (every write to the turn log does) within the store's TurnLease,
// or another delivery may take the turn over. An empty Token holds nothing and is checked
// against nothing: a turn without event id, or one answered while the store was down.
type Lease struct {
	Ref   TurnRef
	Token string
}

// TurnStatus is what BeginTurn found about the turn of an event.
type TurnStatus int

const (
	// TurnClaimed: a new turn; this delivery answers it under Begun.Lease.
	TurnClaimed TurnStatus = iota + 1
	// TurnHeld: another delivery holds a live lease on the turn, or finished it; follow its
	// log (FollowTurn), and try TakeOver once the lease has had Begun.Left to lapse.
	TurnHeld
	// TurnTakenOver: the turn's owner stopped renewing its lease before finishing; this
	// delivery now holds it and continues after what Begun.Log says was already spoken.
	TurnTakenOver
	// TurnDuplicate: BeginTurnOnce found the delivery id already seen; nothing was begun.
	TurnDuplicate
)

// TurnLog is what a turn's log holds: the lines spoken so far, in order, and the tool calls
// finished so far, in order.
type TurnLog struct {
	Lines []string
	Tools []Entry
	// Closed is set when the turn was committed: there is nothing left to answer.
	Closed bool
}

// Begun is the outcome of BeginTurn.
type Begun struct {
	State  State
	Status TurnStatus
	// Lease is the turn's reference and, unless Status is TurnHeld, this delivery's token.
	Lease Lease
	// Log is what the previous owner logged, when Status is TurnTakenOver.
	Log TurnLog
	// Left is how long the current owner's lease still runs, when Status is TurnHeld.
	Left time.Duration
}

// Takeover is the outcome of TakeOver.
type Takeover struct {
	// Lease holds a token when the turn was taken over; then Log is what had been logged.
	Lease Lease
	Log   TurnLog
	// Left is how long the owner's lease still runs, when it was not taken over.
	Left time.Duration
}

// Taken reports whether the turn was taken over.
func (t Takeover) Taken() bool { return t.Lease.Token != "" }

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

	// UpdateCallOnce is UpdateCall for one delivery of an event, with the replay check in the
	// same round trip (as BeginTurnOnce): it first records deliveryID for ttl and, when the id
	// was already seen within ttl, writes nothing and returns false.
	UpdateCallOnce(ctx context.Context, c Call, deliveryID string, ttl time.Duration) (bool, error)

	// SeenCaller remembers that number called lineID on call callID and reports whether it
	// had called that line on another call before, within the store's CallerMemory. Asking
	// again for the same call (a retried event) does not make the caller a returning one.
	// The number is kept only as a hash.
	SeenCaller(ctx context.Context, lineID, number, callID string) (bool, error)

	// Load returns the call's record and folded history, or ErrNotFound for an unknown call.
	Load(ctx context.Context, callID string) (State, error)

	// BeginTurn, atomically and in one round trip, checks the call's Owner, claims the turn
	// of eventID on line c.LineID and call c.ID (TurnRef) and loads what the turn needs: the
	// call's record, its turn count and the last tail entries of its history log, folded
	// (tail <= 0: all of it). The cost does not grow with the call's length.
	//
	// Status says what to do: answer (TurnClaimed, and the call's turn count goes up by
	// one), follow the log of the delivery that holds or finished the turn (TurnHeld), or
	// continue a turn whose owner stopped renewing its lease (TurnTakenOver). An empty
	// eventID is always claimed, with no lease. Fields of c (c.ID is required) fill only what
	// the record lacks: an unknown call gets a record (ID, StartedAt and c's fields) and an
	// empty history, and c's Agent and PromptVersion pin the call's agent unless an earlier
	// turn pinned one. A c.Owner other than the record's returns ErrWrongLine, and nothing is
	// claimed or written.
	//
	// Any other error may come after the store applied the claim (a reply lost to a timeout):
	// Begun's Lease then still holds the token the claim was made with, so a turn answered
	// without the store can keep it and write as the claim's holder (or fail to, when another
	// delivery holds the turn), instead of leaving a claim nobody renews.
	BeginTurn(ctx context.Context, c Call, eventID string, tail int) (Begun, error)

	// BeginTurnOnce is BeginTurn for one delivery of the event, with a replay check in the
	// same round trip: it first records deliveryID for ttl and, when the id was already seen
	// within ttl, begins, claims and writes nothing and returns TurnDuplicate. The ids it
	// records are the call's (kept in its Redis Cluster slot), apart from FirstDelivery's: a
	// delivery's signature binds its id to its body, so a replay always names the same call.
	BeginTurnOnce(ctx context.Context, c Call, eventID string, tail int, deliveryID string, ttl time.Duration) (Begun, error)

	// TakeOver claims a turn whose owner's lease has lapsed, for a delivery following it
	// (TurnHeld). It fails (Taken false, with the lease's time Left) while the owner renews.
	TakeOver(ctx context.Context, ref TurnRef) (Takeover, error)

	// AppendLines adds spoken lines, in order, to the turn's log and renews l; with no lines
	// it only renews. It returns ErrLeaseLost, writing nothing, when another delivery holds
	// the turn now; a lease that lapsed with nobody taking it is taken back.
	AppendLines(ctx context.Context, l Lease, lines ...string) error

	// AppendTools adds finished tool calls (EntryTool), in order, to the turn's log and
	// renews l, as AppendLines does, so a delivery that takes the turn over knows them.
	AppendTools(ctx context.Context, l Lease, tools ...Entry) error

	// CommitTurn appends entries to the call's history and closes the turn's log (when
	// l.Ref.Event is non-empty), atomically, ending l. lines are spoken lines the log does not
	// hold yet (the answer's last ones): they go into the log before it closes, in the same
	// step, so a turn's last lines cost no write of their own. It returns ErrLeaseLost, writing
	// nothing, when another delivery holds the turn now, or l's turn was committed already.
	// Committing the same entries again (a retry of a commit that failed, or timed out after
	// the store applied it) leaves the folded history as it was, since Fold keeps a (kind,
	// event id) once and orders turns by At.
	CommitTurn(ctx context.Context, l Lease, lines []string, entries ...Entry) error

	// FollowTurn calls fn with every line of the turn's log, from the first, waiting for
	// more until the log is closed (returns nil) or ctx ends (returns ctx's error). A log that
	// does not exist yet is waited for. An error from fn stops it and is returned.
	FollowTurn(ctx context.Context, ref TurnRef, fn func(text string) error) error

	// AppendEntry appends one entry (an interrupt) to the call's history log. With a non-empty
	// owner it checks, atomically with the write, that the call has no other Owner (else
	// ErrWrongLine, nothing written), and makes owner the call's Owner when it has none.
	AppendEntry(ctx context.Context, callID, owner string, e Entry) error

	// AddSMS records an inbound SMS on a line.
	AddSMS(ctx context.Context, lineID string, s SMS) error

	// SaveVersion stores a prompt version's file under its content hash, for the store's
	// retention, so any replica can serve a call pinned to a version it never loaded.
	SaveVersion(ctx context.Context, v PromptVersion) error

	// LoadVersion returns a version SaveVersion stored, or ErrNotFound.
	LoadVersion(ctx context.Context, version string) (PromptVersion, error)

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// MaxInterruptLag is how long after an answer began an interrupt placed by its timestamp may
// still cut it: Saperly ends an answer after 5 minutes, and the interrupted event follows
// within seconds. An interrupt later than that after every answer (a clock far off, a forged
// or replayed timestamp) cuts nothing.
const MaxInterruptLag = 6 * time.Minute

// Fold turns a history log into the conversation as the caller experienced it: user, tool and
// assistant entries in the order their turns began (At), a repeated (kind, event id) pair kept
// once (its first occurrence in the log), and each interrupt applied to one answer: the
// answer to the message its Ref names when it has one, else the latest assistant turn that
// began at or before it, and at most MaxInterruptLag before it. Interrupt entries themselves
// are not returned. Both stores call it on Load, so they cannot disagree.
//
// Why At and not log order: a turn whose commit failed is written later, by the replica that
// answered it, possibly after the call's next turn was written by another replica. At is
// Saperly's timestamp of the turn's message (shared by both sides, and by every retry of the
// event), and every entry of one turn carries the same At, so ordering by it puts turns back
// in the order the caller spoke them, and the stable sort keeps a turn's own entries (user,
// tools, assistant) and turns of equal At in log order.
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
	slices.SortStableFunc(out, func(a, b Entry) int { return cmp.Compare(a.At, b.At) })
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
