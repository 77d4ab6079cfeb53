package session

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// pruneEvery is how many writes MemoryStore takes between sweeps of expired keys. Reads expire
// keys lazily; the sweep bounds the memory held by keys nobody reads again.
const pruneEvery = 256

var _ Store = (*MemoryStore)(nil)

// MemoryStore is a Store for one process, for development and tests. It keeps data in the
// encoded form RedisStore writes, copying it in and out, so a caller that mutates a returned
// State behaves the same against both stores. It is safe for concurrent use.
type MemoryStore struct {
	opts Options

	mu         sync.Mutex
	deliveries map[string]time.Time // delivery id → expiry
	claims     map[string]memClaim  // turn (memTurnKey) → lease
	callers    map[string]lastCall  // line id and caller hash → last call
	records    map[string]memHash   // call id → record
	hists      map[string]memList   // call id → history, JSON entries
	sms        map[string]memList   // line id → messages, JSON, newest first
	turns      map[string]*memTurn  // turn (memTurnKey) → turn log
	writes     int
	gen        uint64 // last memTurn.gen handed out

	versions sync.Map // prompt version → PromptVersion (SaveVersion)
}

// memClaim is a turn's claim: the owner's token, or "done" once committed.
type memClaim struct {
	token string
	exp   time.Time
}

// memTurnKey is the key of a turn's claim and log.
func memTurnKey(ref TurnRef) string { return ref.Call + "\x00" + turnKey(ref) }

type memHash struct {
	fields map[string]string
	exp    time.Time
}

type memList struct {
	items []string
	exp   time.Time
}

// memTurn is one turn log. A follower waiting for a log that does not exist yet creates a
// placeholder (zero exp) so the first append wakes it.
type memTurn struct {
	gen       uint64 // changes whenever lines restart, so followers never index stale lines
	lines     []string
	tools     []string // finished tool calls, JSON entries
	closed    bool
	exp       time.Time
	wake      chan struct{} // closed and replaced on every change
	followers int           // followers blocked on wake; the log is not pruned while > 0
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts Options) *MemoryStore {
	return &MemoryStore{
		opts:       opts.withDefaults(),
		deliveries: make(map[string]time.Time),
		claims:     make(map[string]memClaim),
		callers:    make(map[string]lastCall),
		records:    make(map[string]memHash),
		hists:      make(map[string]memList),
		sms:        make(map[string]memList),
		turns:      make(map[string]*memTurn),
	}
}

// FirstDelivery implements Store. ttl must be positive.
func (m *MemoryStore) FirstDelivery(_ context.Context, deliveryID string, ttl time.Duration) (bool, error) {
	if deliveryID == "" {
		return false, fmt.Errorf("record delivery: %w", errEmptyID)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("record delivery %s: ttl %v is not positive", deliveryID, ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	if exp, ok := m.deliveries[deliveryID]; ok && now.Before(exp) {
		return false, nil
	}
	m.deliveries[deliveryID] = now.Add(ttl)
	return true, nil
}

// UpdateCall implements Store.
func (m *MemoryStore) UpdateCall(_ context.Context, c Call) error {
	if c.ID == "" {
		return fmt.Errorf("update call: %w", errEmptyID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	rec := m.record(c.ID, now)
	if err := checkOwner(c.ID, rec.fields, c.Owner); err != nil {
		return err
	}
	maps.Copy(rec.fields, callFields(c))
	fillBlanks(rec.fields, pinFields(c))
	rec.exp = now.Add(m.opts.Retention)
	m.records[c.ID] = rec
	m.retainCall(c.ID, now)
	return nil
}

// UpdateCallOnce implements Store.
func (m *MemoryStore) UpdateCallOnce(ctx context.Context, c Call, deliveryID string, ttl time.Duration) (bool, error) {
	if deliveryID == "" {
		return false, fmt.Errorf("update call: record delivery: %w", errEmptyID)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("update call: record delivery %s: ttl %v is not positive", deliveryID, ttl)
	}
	// Checked per call, as RedisStore does in the call's slot (BeginTurnOnce's ids too).
	first, err := m.FirstDelivery(ctx, "{"+c.ID+"}"+deliveryID, ttl)
	if err != nil || !first {
		return false, err
	}
	return true, m.UpdateCall(ctx, c)
}

// Load implements Store.
func (m *MemoryStore) Load(_ context.Context, callID string) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.state(callID, time.Now(), 0)
	if err != nil {
		return State{}, fmt.Errorf("load call %s: %w", callID, err)
	}
	return st, nil
}

// BeginTurnOnce implements Store.
func (m *MemoryStore) BeginTurnOnce(ctx context.Context, c Call, eventID string, tail int, deliveryID string, ttl time.Duration) (Begun, error) {
	if deliveryID == "" {
		return Begun{}, fmt.Errorf("begin turn: record delivery: %w", errEmptyID)
	}
	// Checked per call, as RedisStore does in the call's slot: apart from FirstDelivery's ids.
	first, err := m.FirstDelivery(ctx, "{"+c.ID+"}"+deliveryID, ttl)
	if err != nil {
		return Begun{}, fmt.Errorf("begin turn: %w", err)
	}
	if !first {
		return Begun{Status: TurnDuplicate}, nil
	}
	return m.BeginTurn(ctx, c, eventID, tail)
}

// BeginTurn implements Store.
func (m *MemoryStore) BeginTurn(_ context.Context, c Call, eventID string, tail int) (Begun, error) {
	callID := c.ID
	if callID == "" {
		return Begun{}, fmt.Errorf("begin turn: %w", errEmptyID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	rec := m.record(callID, now)
	if cur, ok := rec.fields[fieldOwner]; ok && c.Owner != "" && cur != c.Owner {
		return Begun{}, fmt.Errorf("begin turn for call %s: %w", callID, ErrWrongLine)
	}
	ref := TurnRef{Line: c.LineID, Call: callID, Event: eventID}
	b := Begun{Status: TurnClaimed, Lease: Lease{Ref: ref}}
	if eventID != "" {
		key := memTurnKey(ref)
		if cl, ok := m.claims[key]; ok && now.Before(cl.exp) {
			b.Status, b.Left = TurnHeld, cl.exp.Sub(now)
		} else {
			b.Lease.Token = newToken()
			m.claims[key] = memClaim{token: b.Lease.Token, exp: now.Add(m.opts.TurnLease)}
			if t := m.liveTurn(key, now); t != nil {
				log, err := t.log(callID)
				if err != nil {
					return Begun{}, fmt.Errorf("begin turn for call %s: %w", callID, err)
				}
				b.Status, b.Log = TurnTakenOver, log
				if log.Closed {
					b.Status, b.Log, b.Lease.Token = TurnHeld, TurnLog{}, ""
				}
			}
		}
	}
	if b.Status == TurnClaimed {
		n, _ := strconv.Atoi(rec.fields[fieldTurns])
		rec.fields[fieldTurns] = strconv.Itoa(n + 1)
	}
	fillBlanks(rec.fields, blankFields(c, now))
	rec.exp = now.Add(m.opts.Retention)
	m.records[callID] = rec
	m.retainCall(callID, now)
	st, err := m.state(callID, now, tail)
	if err != nil {
		return Begun{}, fmt.Errorf("begin turn for call %s: %w", callID, err)
	}
	b.State = st
	return b, nil
}

// TakeOver implements Store.
func (m *MemoryStore) TakeOver(_ context.Context, ref TurnRef) (Takeover, error) {
	if ref.Call == "" || ref.Event == "" {
		return Takeover{}, fmt.Errorf("take over turn: %w", errEmptyID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	key := memTurnKey(ref)
	if cl, ok := m.claims[key]; ok && now.Before(cl.exp) {
		return Takeover{Left: cl.exp.Sub(now)}, nil
	}
	var log TurnLog
	if t := m.liveTurn(key, now); t != nil {
		var err error
		if log, err = t.log(ref.Call); err != nil {
			return Takeover{}, fmt.Errorf("take over turn %s of call %s: %w", ref.Event, ref.Call, err)
		}
	}
	l := Lease{Ref: ref, Token: newToken()}
	m.claims[key] = memClaim{token: l.Token, exp: now.Add(m.opts.TurnLease)}
	return Takeover{Lease: l, Log: log}, nil
}

// SeenCaller implements Store.
func (m *MemoryStore) SeenCaller(_ context.Context, lineID, number, callID string) (bool, error) {
	if lineID == "" || number == "" || callID == "" {
		return false, fmt.Errorf("seen caller: %w", errEmptyID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	key := lineID + "\x00" + callerKey(lineID, number)
	prev, seen := m.callers[key]
	m.callers[key] = lastCall{id: callID, exp: now.Add(m.opts.CallerMemory)}
	return seen && now.Before(prev.exp) && prev.id != callID, nil
}

// lastCall is the last call SeenCaller saw from a number.
type lastCall struct {
	id  string
	exp time.Time
}

// fillBlanks copies the fields of src that dst lacks.
func fillBlanks(dst, src map[string]string) {
	for k, v := range src {
		if _, ok := dst[k]; !ok {
			dst[k] = v
		}
	}
}

// AppendLines implements Store. An empty event id has no log: the lines are dropped. Lines
// appended after the log closed are never followed, as with RedisStore.
func (m *MemoryStore) AppendLines(_ context.Context, l Lease, lines ...string) error {
	if err := m.appendLog(l, lines, nil); err != nil {
		return fmt.Errorf("append %d lines to turn %s of call %s: %w", len(lines), l.Ref.Event, l.Ref.Call, err)
	}
	return nil
}

// AppendTools implements Store.
func (m *MemoryStore) AppendTools(_ context.Context, l Lease, tools ...Entry) error {
	enc, err := encodeEntries(l.Ref.Call, tools)
	if err == nil {
		err = m.appendLog(l, nil, enc)
	}
	if err != nil {
		return fmt.Errorf("append %d tool calls to turn %s of call %s: %w", len(tools), l.Ref.Event, l.Ref.Call, err)
	}
	return nil
}

// appendLog adds lines and encoded tool calls to l's turn log and renews l.
func (m *MemoryStore) appendLog(l Lease, lines, tools []string) error {
	if l.Ref.Event == "" || (len(lines)+len(tools) == 0 && l.Token == "") {
		return nil
	}
	if l.Ref.Call == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	key := memTurnKey(l.Ref)
	if l.Token != "" {
		if !m.holds(key, l.Token, now) {
			return ErrLeaseLost
		}
		m.claims[key] = memClaim{token: l.Token, exp: now.Add(m.opts.TurnLease)}
	}
	if len(lines)+len(tools) == 0 {
		return nil
	}
	t := m.turn(key, now)
	if t.closed {
		return nil
	}
	t.lines = append(t.lines, lines...)
	t.tools = append(t.tools, tools...)
	t.exp = now.Add(m.opts.TurnTTL)
	t.changed()
	return nil
}

// holds reports whether token may write the turn at key: it holds the claim, or nobody does.
func (m *MemoryStore) holds(key, token string, now time.Time) bool {
	cl, ok := m.claims[key]
	return !ok || !now.Before(cl.exp) || cl.token == token
}

// CommitTurn implements Store.
func (m *MemoryStore) CommitTurn(_ context.Context, l Lease, lines []string, entries ...Entry) error {
	callID, eventID := l.Ref.Call, l.Ref.Event
	if callID == "" {
		return fmt.Errorf("commit turn: %w", errEmptyID)
	}
	enc, err := encodeEntries(callID, entries)
	if err != nil {
		return fmt.Errorf("commit turn for call %s: %w", callID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	key := memTurnKey(l.Ref)
	if l.Token != "" && eventID != "" && !m.holds(key, l.Token, now) {
		return fmt.Errorf("commit turn %s for call %s: %w", eventID, callID, ErrLeaseLost)
	}
	m.appendHistory(callID, enc, now)
	// As RedisStore: the log is the claim holder's, or nobody's.
	cl, claimed := m.claims[key]
	if eventID != "" && (l.Token != "" || !claimed || !now.Before(cl.exp)) {
		t := m.turn(key, now)
		t.lines = append(t.lines, lines...)
		t.closed = true
		t.exp = now.Add(m.opts.TurnTTL)
		t.changed()
		m.claims[key] = memClaim{token: claimDone, exp: now.Add(m.opts.TurnTTL)}
	}
	return nil
}

// FollowTurn implements Store. An empty eventID has no log: it returns ErrNotFound. It
// starts no goroutine: it waits in the caller's.
func (m *MemoryStore) FollowTurn(ctx context.Context, ref TurnRef, fn func(text string) error) error {
	if ref.Event == "" {
		return fmt.Errorf("follow turn: %w: %w", errEmptyID, ErrNotFound)
	}
	var gen uint64
	n := 0 // lines of generation gen already passed to fn
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.mu.Lock()
		t := m.turn(memTurnKey(ref), time.Now())
		if t.gen != gen {
			gen, n = t.gen, 0
		}
		lines := slices.Clone(t.lines[n:])
		closed, wake := t.closed, t.wake
		waiting := len(lines) == 0 && !closed
		if waiting {
			t.followers++
		}
		m.mu.Unlock()

		for _, line := range lines {
			if err := fn(line); err != nil {
				return err
			}
		}
		n += len(lines)
		if closed {
			return nil
		}
		if !waiting {
			continue // more may have arrived while fn ran
		}
		select {
		case <-wake:
		case <-ctx.Done():
		}
		m.mu.Lock()
		t.followers--
		m.mu.Unlock()
	}
}

// AppendEntry implements Store.
func (m *MemoryStore) AppendEntry(_ context.Context, callID, owner string, e Entry) error {
	if callID == "" {
		return fmt.Errorf("append entry: %w", errEmptyID)
	}
	enc, err := encodeEntries(callID, []Entry{e})
	if err != nil {
		return fmt.Errorf("append entry for call %s: %w", callID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	if owner != "" {
		rec := m.record(callID, now)
		if err := checkOwner(callID, rec.fields, owner); err != nil {
			return err
		}
		fillBlanks(rec.fields, map[string]string{fieldOwner: owner})
		rec.exp = now.Add(m.opts.Retention)
		m.records[callID] = rec
	}
	m.appendHistory(callID, enc, now)
	return nil
}

// checkOwner returns ErrWrongLine when the record fields name an owner other than owner; an
// empty owner checks nothing.
func checkOwner(callID string, fields map[string]string, owner string) error {
	if cur, ok := fields[fieldOwner]; ok && owner != "" && cur != owner {
		return fmt.Errorf("write call %s as %s: %w", callID, owner, ErrWrongLine)
	}
	return nil
}

// AddSMS implements Store. It keeps the newest 1000 messages of each line.
func (m *MemoryStore) AddSMS(_ context.Context, lineID string, s SMS) error {
	if lineID == "" {
		return fmt.Errorf("add sms: %w", errEmptyID)
	}
	enc, err := encodeSMS(lineID, s)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.write()
	l := m.list(m.sms, lineID, now)
	l.items = slices.Insert(l.items, 0, enc)
	l.items = l.items[:min(len(l.items), smsKeep)]
	l.exp = now.Add(m.opts.Retention)
	m.sms[lineID] = l
	return nil
}

// Ping implements Store: a MemoryStore is always reachable.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// write counts a write, sweeps expired keys every pruneEvery writes, and returns the time
// the write happens at. The caller holds mu.
func (m *MemoryStore) write() time.Time {
	now := time.Now()
	m.writes++
	if m.writes%pruneEvery == 0 {
		m.prune(now)
	}
	return now
}

// prune deletes every expired key, and every placeholder log nobody waits on.
func (m *MemoryStore) prune(now time.Time) {
	maps.DeleteFunc(m.deliveries, func(_ string, exp time.Time) bool { return !now.Before(exp) })
	maps.DeleteFunc(m.claims, func(_ string, c memClaim) bool { return !now.Before(c.exp) })
	maps.DeleteFunc(m.callers, func(_ string, c lastCall) bool { return !now.Before(c.exp) })
	maps.DeleteFunc(m.records, func(_ string, h memHash) bool { return !now.Before(h.exp) })
	for _, lists := range []map[string]memList{m.hists, m.sms} {
		maps.DeleteFunc(lists, func(_ string, l memList) bool { return !now.Before(l.exp) })
	}
	maps.DeleteFunc(m.turns, func(_ string, t *memTurn) bool {
		return t.followers == 0 && (t.exp.IsZero() || !now.Before(t.exp))
	})
}

// record returns the live record of callID, or a new empty one. The caller sets its expiry
// and stores it back.
func (m *MemoryStore) record(callID string, now time.Time) memHash {
	h, ok := m.records[callID]
	if !ok || !now.Before(h.exp) {
		return memHash{fields: make(map[string]string)}
	}
	return h
}

// list returns the live list at key in lists, or an empty one. The caller stores it back.
func (m *MemoryStore) list(lists map[string]memList, key string, now time.Time) memList {
	l, ok := lists[key]
	if !ok || !now.Before(l.exp) {
		return memList{}
	}
	return l
}

// retainCall sets the expiry of callID's record and history, where they exist, to the
// retention from now.
func (m *MemoryStore) retainCall(callID string, now time.Time) {
	exp := now.Add(m.opts.Retention)
	if h, ok := m.records[callID]; ok && now.Before(h.exp) {
		h.exp = exp
		m.records[callID] = h
	}
	if l, ok := m.hists[callID]; ok && now.Before(l.exp) {
		l.exp = exp
		m.hists[callID] = l
	}
}

// appendHistory appends encoded entries to callID's history and retains the call.
func (m *MemoryStore) appendHistory(callID string, enc []string, now time.Time) {
	if len(enc) > 0 {
		l := m.list(m.hists, callID, now)
		l.items = append(l.items, enc...)
		l.exp = now.Add(m.opts.Retention)
		m.hists[callID] = l
	}
	m.retainCall(callID, now)
}

// state decodes callID's live record and the last tail entries of its history (all of it
// for tail <= 0), or returns ErrNotFound.
func (m *MemoryStore) state(callID string, now time.Time, tail int) (State, error) {
	rec := m.record(callID, now)
	items := m.list(m.hists, callID, now).items
	if tail > 0 && len(items) > tail {
		items = items[len(items)-tail:]
	}
	return decodeState(callID, rec.fields, items)
}

// liveTurn returns the turn log at key when it holds something and has not expired.
func (m *MemoryStore) liveTurn(key string, now time.Time) *memTurn {
	t, ok := m.turns[key]
	if !ok || t.exp.IsZero() || !now.Before(t.exp) {
		return nil
	}
	return t
}

// turn returns the log at key, creating a placeholder, or restarting an expired log in place
// so its followers see the lines of the log that replaces it.
func (m *MemoryStore) turn(key string, now time.Time) *memTurn {
	t, ok := m.turns[key]
	if !ok {
		m.gen++
		t = &memTurn{gen: m.gen, wake: make(chan struct{})}
		m.turns[key] = t
		return t
	}
	if !t.exp.IsZero() && !now.Before(t.exp) {
		m.gen++
		t.gen, t.lines, t.tools, t.closed, t.exp = m.gen, nil, nil, false, time.Time{}
	}
	return t
}

// log returns a copy of what t holds.
func (t *memTurn) log(callID string) (TurnLog, error) {
	tools, err := decodeEntries(callID, t.tools)
	if err != nil {
		return TurnLog{}, err
	}
	if len(tools) == 0 {
		tools = nil
	}
	return TurnLog{Lines: slices.Clone(t.lines), Tools: tools, Closed: t.closed}, nil
}

// changed wakes t's followers.
func (t *memTurn) changed() {
	close(t.wake)
	t.wake = make(chan struct{})
}
