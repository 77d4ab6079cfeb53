package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrInProgress is returned by ClaimEvent for an event another delivery is processing right
// now: the sender should retry later.
var ErrInProgress = errors.New("event in progress")

// CallRecord is the one record of a call, whatever platform it ran on: the same shape for a
// Salpre, itellicoAI, SpeakNode or Saperly call. Empty fields are unknown.
type CallRecord struct {
	Platform  string       `json:"platform"`
	CallID    string       `json:"call_id"`
	Source    string       `json:"source,omitempty"` // the platform's line, agent or account
	Agent     string       `json:"agent,omitempty"`
	From      string       `json:"from,omitempty"`
	To        string       `json:"to,omitempty"`
	Direction string       `json:"direction,omitempty"`
	Status    string       `json:"status,omitempty"`
	Test      bool         `json:"is_test,omitempty"`
	StartedAt time.Time    `json:"started_at,omitzero"`
	EndedAt   time.Time    `json:"ended_at,omitzero"`
	Duration  float64      `json:"duration_seconds,omitempty"`
	Error     string       `json:"error,omitempty"`
	Closed    bool         `json:"closed,omitempty"`
	Events    int          `json:"events"`
	UpdatedAt time.Time    `json:"updated_at"`
	Turns     []RecordTurn `json:"turns,omitempty"`
	// Analysis is the platform's post-call analysis, as it sent it (JSON).
	Analysis json.RawMessage `json:"analysis,omitempty"`
	// Summary is the post-call summary written by the summary job.
	Summary string `json:"summary,omitempty"`
}

// RecordTurn is one turn of a call record's transcript.
type RecordTurn struct {
	Role string    `json:"role"` // "caller" or "agent"
	Text string    `json:"text"`
	At   time.Time `json:"at,omitzero"`
}

// CallUpdate is one event's change to a call record. Zero fields leave the record as it is.
type CallUpdate struct {
	Platform, CallID                                string
	Source, Agent, From, To, Direction, Status, Err string
	Test                                            bool
	StartedAt, EndedAt                              time.Time
	Duration                                        float64
	// Append adds turns (a live transcript event); Replace, when set, replaces the transcript
	// with Turns (a final transcript), so a repeated final transcript never doubles it.
	Turns   []RecordTurn
	Replace bool
	Close   bool
	// Analysis, when set, is attached as is.
	Analysis json.RawMessage
	At       time.Time // when the event happened; the record's UpdatedAt
}

// RecordKey is how a call record is named: platform and call id.
func RecordKey(platform, callID string) string { return platform + ":" + callID }

// RedisRecords keeps call records and event claims in Redis. Safe for concurrent use, and
// shared by every replica.
type RedisRecords struct {
	rdb       redis.UniversalClient
	prefix    string
	retention time.Duration
	now       func() time.Time // this service's clock: when a call is first seen
}

// NewRedisRecords returns records kept in rdb under prefix ("" for "callbrain:") for
// retention after each call's last event.
func NewRedisRecords(rdb redis.UniversalClient, prefix string, retention time.Duration) *RedisRecords {
	if prefix == "" {
		prefix = "callbrain:"
	}
	return &RedisRecords{rdb: rdb, prefix: prefix, retention: retention, now: time.Now}
}

// Claim values: an event being processed, and one done.
const (
	hookPending = "p"
	hookDone    = "d"
)

// recordIndexSlack is how long past the retention a call stays in the index: longer than any
// call lasts, so an entry never goes before its record.
const recordIndexSlack = 24 * time.Hour

// hookLease bounds how long a claimed event stays claimed when its processor dies before it
// finishes: the platform's retry after that processes it.
const hookLease = 30 * time.Second

// ClaimEvent claims the event named key for processing (SET NX). It returns false for an
// event already processed within ttl, ErrInProgress for one being processed now, and true
// when the caller must process it and then call FinishEvent (or ReleaseEvent on failure).
func (r *RedisRecords) ClaimEvent(ctx context.Context, key string, _ time.Duration) (bool, error) {
	k := r.prefix + "hook:" + key
	ok, err := r.rdb.SetNX(ctx, k, hookPending, hookLease).Result()
	if err != nil {
		return false, fmt.Errorf("claim event %s: %w", key, err)
	}
	if ok {
		return true, nil
	}
	v, err := r.rdb.Get(ctx, k).Result()
	switch {
	case errors.Is(err, redis.Nil): // expired in between: try once more
		return r.ClaimEvent(ctx, key, 0)
	case err != nil:
		return false, fmt.Errorf("claim event %s: %w", key, err)
	case v == hookPending:
		return false, ErrInProgress
	}
	return false, nil
}

// FinishEvent marks a claimed event processed, remembered for ttl.
func (r *RedisRecords) FinishEvent(ctx context.Context, key string, ttl time.Duration) error {
	if err := r.rdb.Set(ctx, r.prefix+"hook:"+key, hookDone, ttl).Err(); err != nil {
		return fmt.Errorf("finish event %s: %w", key, err)
	}
	return nil
}

// ReleaseEvent gives a claimed event up, so its retry processes it.
func (r *RedisRecords) ReleaseEvent(ctx context.Context, key string) error {
	if err := r.rdb.Del(ctx, r.prefix+"hook:"+key).Err(); err != nil {
		return fmt.Errorf("release event %s: %w", key, err)
	}
	return nil
}

func (r *RedisRecords) recKey(platform, callID string) string {
	return r.prefix + "rec:{" + RecordKey(platform, callID) + "}"
}

// ApplyCall applies u to its call's record, creating it on the first event: one round trip
// (the record and its transcript share a hash slot and change in one script; the index, in
// another slot, is sent in the same pipeline).
func (r *RedisRecords) ApplyCall(ctx context.Context, u CallUpdate) error {
	return r.apply(ctx, []OnceUpdate{{Update: u}}, false)[0].Err
}

// OnceUpdate is one event's change to its call's record, for ApplyCallsOnce: applied unless
// the event named Key was applied in the last TTL.
type OnceUpdate struct {
	Key    string
	TTL    time.Duration
	Update CallUpdate
}

// OnceResult is what became of one OnceUpdate: applied, or not (a duplicate, or Err).
type OnceResult struct {
	Applied bool
	Err     error
}

// ApplyCallsOnce applies each update to its call's record unless the event named its Key was
// applied in the last TTL, and remembers the key for TTL: the check and the update are one
// step, and the whole batch one round trip, in order. It reports what became of each (a bad
// event fails alone). Its marks are kept beside the record (its hash slot), not with
// ClaimEvent's claims: an event is deduplicated by one of the two, never both (agent.Receiver
// picks by the kind of event).
func (r *RedisRecords) ApplyCallsOnce(ctx context.Context, us []OnceUpdate) []OnceResult {
	return r.apply(ctx, us, true)
}

// apply is ApplyCallsOnce, and ApplyCall (once unset: no event marks).
func (r *RedisRecords) apply(ctx context.Context, us []OnceUpdate, once bool) []OnceResult {
	out := make([]OnceResult, len(us))
	scripts := make([]*scriptCall, len(us)) // nil: not sent
	sent := 0
	for i, u := range us {
		if once && u.Key == "" {
			out[i].Err = fmt.Errorf("apply call %q/%q once: %w", u.Update.Platform, u.Update.CallID, errEmptyID)
			continue
		}
		c, err := r.applyScript(u)
		if err != nil {
			out[i].Err = err
			continue
		}
		scripts[i] = &c
		sent++
	}
	if sent == 0 {
		return out
	}
	// The index is its own key (another slot), scored by when this service first saw the call
	// (ZADD NX keeps the first). Not by the platform's timestamp: a test event stamped a year
	// ago, or a platform clock that is off, would be trimmed at once while its record lives.
	// Sent in the same pipeline, before the scripts: a pipeline is not atomic, and an index
	// entry whose record write failed is harmless (Calls skips it, and the sender's retry
	// writes the record); an event whose index write failed is reported failed, so its retry
	// lists it.
	// The entries first seen more than the retention and a day ago are trimmed in the same
	// trip, before the new ones are added: a record lives for the retention after its call's
	// last event, and a call does not last a day, so their records have expired, and the
	// index must not grow forever.
	idx := r.prefix + "rec:index"
	now := r.now()
	cutoff := now.Add(-r.retention - recordIndexSlack).UnixMilli()
	pipe := r.rdb.Pipeline()
	pipe.ZRemRangeByScore(ctx, idx, "-inf", "("+strconv.FormatInt(cutoff, 10)) // first: never an entry just added
	listed := make([]*redis.IntCmd, len(us))
	for i, u := range us {
		if scripts[i] != nil {
			listed[i] = pipe.ZAddNX(ctx, idx, redis.Z{Score: float64(now.UnixMilli()), Member: RecordKey(u.Update.Platform, u.Update.CallID)})
		}
	}
	res := make([]*redis.Cmd, len(us))
	for i, c := range scripts {
		if c != nil {
			res[i] = applyCallScript.EvalSha(ctx, pipe, c.keys, c.args...)
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its error (a broken connection: all of them)
	r.rerunUnknownScript(ctx, scripts, res)
	for i, u := range us {
		if scripts[i] == nil {
			continue
		}
		name := RecordKey(u.Update.Platform, u.Update.CallID)
		n, err := res[i].Int()
		if err == nil {
			// An event applied but not listed is reported failed: the sender's retry, a
			// duplicate then, lists it.
			err = listed[i].Err()
		}
		if err != nil {
			out[i].Err = fmt.Errorf("apply call %s: %w", name, err)
			continue
		}
		out[i].Applied = n == 1
	}
	return out
}

// rerunUnknownScript sends again, in one more round trip, the script calls a server refused
// because it does not know the script (a new or restarted Redis, a failover), once the script
// is loaded.
func (r *RedisRecords) rerunUnknownScript(ctx context.Context, scripts []*scriptCall, res []*redis.Cmd) {
	var again []int
	for i, c := range res {
		if c != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return
	}
	if err := applyCallScript.Load(ctx, r.rdb).Err(); err != nil {
		return // each keeps its NOSCRIPT error: the sender retries
	}
	pipe := r.rdb.Pipeline()
	for _, i := range again {
		res[i] = applyCallScript.EvalSha(ctx, pipe, scripts[i].keys, scripts[i].args...)
	}
	_, _ = pipe.Exec(ctx)
}

// scriptCall is one applyCallScript call: its keys and arguments.
type scriptCall struct {
	keys []string
	args []any
}

// applyScript encodes u as an applyCallScript call, checked against its event's mark when it
// has a Key.
func (r *RedisRecords) applyScript(o OnceUpdate) (scriptCall, error) {
	u := o.Update
	if u.Platform == "" || u.CallID == "" {
		return scriptCall{}, fmt.Errorf("apply call %q/%q: %w", u.Platform, u.CallID, errEmptyID)
	}
	key := r.recKey(u.Platform, u.CallID)
	fields := []any{"platform", u.Platform, "call_id", u.CallID, "updated_at", u.At.UnixMilli()}
	set := func(field, v string) {
		if v != "" {
			fields = append(fields, field, v)
		}
	}
	set("source", u.Source)
	set("agent", u.Agent)
	set("from", u.From)
	set("to", u.To)
	set("direction", u.Direction)
	set("status", u.Status)
	set("error", u.Err)
	if u.Test {
		fields = append(fields, "test", "1")
	}
	if !u.EndedAt.IsZero() {
		fields = append(fields, "ended_at", u.EndedAt.UnixMilli())
	}
	if u.Duration > 0 {
		fields = append(fields, "duration", strconv.FormatFloat(u.Duration, 'f', -1, 64))
	}
	if u.Close {
		fields = append(fields, "closed", "1")
	}
	if len(u.Analysis) > 0 {
		fields = append(fields, "analysis", string(u.Analysis))
	}
	started := ""
	if !u.StartedAt.IsZero() {
		started = strconv.FormatInt(u.StartedAt.UnixMilli(), 10)
	}
	keys := []string{key, key + ":t", key}
	checkMark := "0"
	if o.Key != "" {
		keys[2], checkMark = key+":ev:"+o.Key, "1"
	}
	args := make([]any, 0, 6+len(fields)+len(u.Turns))
	args = append(args, checkMark, o.TTL.Milliseconds(), r.retention.Milliseconds(), started, boolArg(u.Replace), len(fields)/2)
	args = append(args, fields...)
	for _, t := range u.Turns {
		raw, err := json.Marshal(t)
		if err != nil {
			return scriptCall{}, fmt.Errorf("encode turn of %s: %w", u.CallID, err)
		}
		args = append(args, raw)
	}
	return scriptCall{keys: keys, args: args}, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// applyCallScript is apply. KEYS: record, transcript, the event's mark (the record when there
// is none). ARGV: "1" to check and set the mark, its TTL in ms, the retention in ms, started_at
// ("" for none), "1" to replace the transcript, the number n of field/value pairs, the 2n
// fields and values, then the encoded turns (pushed a thousand at a time: Lua's unpack has a
// limit of a few thousand values). It returns 0, changing nothing, when the mark was set
// already.
var applyCallScript = redis.NewScript(`
if ARGV[1] == '1' and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then return 0 end
local i = 7 + 2 * tonumber(ARGV[6])
if i > 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 7, i - 1)) end
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[1], 'started_at', ARGV[4]) end
redis.call('HINCRBY', KEYS[1], 'events', 1)
if ARGV[5] == '1' then redis.call('DEL', KEYS[2]) end
for j = i, #ARGV, 1000 do redis.call('RPUSH', KEYS[2], unpack(ARGV, j, math.min(j + 999, #ARGV))) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`)

// SetSummary stores a call's summary unless it has one: a summary job run twice keeps the
// first. It reports whether this one was stored.
func (r *RedisRecords) SetSummary(ctx context.Context, platform, callID, text string) (bool, error) {
	ok, err := r.rdb.HSetNX(ctx, r.recKey(platform, callID), "summary", text).Result()
	if err != nil {
		return false, fmt.Errorf("store summary of %s: %w", RecordKey(platform, callID), err)
	}
	return ok, nil
}

// Call returns a call's record, or ErrNotFound.
func (r *RedisRecords) Call(ctx context.Context, platform, callID string) (CallRecord, error) {
	key := r.recKey(platform, callID)
	h, err := r.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return CallRecord{}, fmt.Errorf("load call %s: %w", RecordKey(platform, callID), err)
	}
	if len(h) == 0 {
		return CallRecord{}, ErrNotFound
	}
	raw, err := r.rdb.LRange(ctx, key+":t", 0, -1).Result()
	if err != nil {
		return CallRecord{}, fmt.Errorf("load transcript %s: %w", RecordKey(platform, callID), err)
	}
	rec := recordFromHash(h)
	for _, s := range raw {
		var t RecordTurn
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			return CallRecord{}, fmt.Errorf("decode transcript %s: %w", RecordKey(platform, callID), err)
		}
		rec.Turns = append(rec.Turns, t)
	}
	return rec, nil
}

// Calls returns the records this service first saw at or after since, on platform ("" for all), oldest
// first, at most limit of them (the newest).
func (r *RedisRecords) Calls(ctx context.Context, since time.Time, platform string, limit int) ([]CallRecord, error) {
	members, err := r.rdb.ZRangeByScore(ctx, r.prefix+"rec:index", &redis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list calls: %w", err)
	}
	var out []CallRecord
	for _, m := range members {
		p, id, _ := strings.Cut(m, ":")
		if platform != "" && p != platform {
			continue
		}
		rec, err := r.Call(ctx, p, id)
		if errors.Is(err, ErrNotFound) {
			continue // expired; its index entry goes with a later write's trim
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func recordFromHash(h map[string]string) CallRecord {
	ms := func(k string) time.Time {
		n, err := strconv.ParseInt(h[k], 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n).UTC()
	}
	rec := CallRecord{
		Platform: h["platform"], CallID: h["call_id"], Source: h["source"], Agent: h["agent"],
		From: h["from"], To: h["to"], Direction: h["direction"], Status: h["status"],
		Test: h["test"] == "1", Closed: h["closed"] == "1", Error: h["error"],
		StartedAt: ms("started_at"), EndedAt: ms("ended_at"), UpdatedAt: ms("updated_at"),
	}
	rec.Summary = h["summary"]
	rec.Duration, _ = strconv.ParseFloat(h["duration"], 64)
	rec.Events, _ = strconv.Atoi(h["events"])
	if a := h["analysis"]; a != "" {
		rec.Analysis = json.RawMessage(a)
	}
	return rec
}

// MemoryRecords keeps call records and claims in this process: for a brain without Redis.
// It holds at most memRecordsMax records (the oldest go first) and sweeps expired claims as
// it grows, so a long-running brain does not grow without bound.
type MemoryRecords struct {
	mu     sync.Mutex
	claims map[string]hookClaim
	recs   map[string]CallRecord
	order  []string // record keys, oldest first
	now    func() time.Time
}

// Bounds of MemoryRecords.
const (
	memRecordsMax = 10000
	memClaimsMax  = 100000
)

type hookClaim struct {
	done    bool
	expires time.Time
}

// NewMemoryRecords returns empty in-process records.
func NewMemoryRecords() *MemoryRecords {
	return &MemoryRecords{claims: map[string]hookClaim{}, recs: map[string]CallRecord{}, now: time.Now}
}

// ClaimEvent is RedisRecords.ClaimEvent in memory.
func (m *MemoryRecords) ClaimEvent(_ context.Context, key string, _ time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if c, ok := m.claims[key]; ok && now.Before(c.expires) {
		if c.done {
			return false, nil
		}
		return false, ErrInProgress
	}
	m.sweepClaims(now)
	m.claims[key] = hookClaim{expires: now.Add(hookLease)}
	return true, nil
}

// sweepClaims drops the expired claims once there are memClaimsMax of them.
func (m *MemoryRecords) sweepClaims(now time.Time) {
	if len(m.claims) < memClaimsMax {
		return
	}
	for k, c := range m.claims {
		if !now.Before(c.expires) {
			delete(m.claims, k)
		}
	}
}

// FinishEvent is RedisRecords.FinishEvent in memory.
func (m *MemoryRecords) FinishEvent(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims[key] = hookClaim{done: true, expires: m.now().Add(ttl)}
	return nil
}

// ReleaseEvent is RedisRecords.ReleaseEvent in memory.
func (m *MemoryRecords) ReleaseEvent(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claims, key)
	return nil
}

// applyOnce is one event of ApplyCallsOnce.
func (m *MemoryRecords) applyOnce(key string, ttl time.Duration, u CallUpdate) (bool, error) {
	if key == "" || u.Platform == "" || u.CallID == "" {
		return false, fmt.Errorf("apply call %q/%q once: %w", u.Platform, u.CallID, errEmptyID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	key = "once:" + key // marks apart from ClaimEvent's claims, as RedisRecords keeps them
	if c, ok := m.claims[key]; ok && now.Before(c.expires) {
		return false, nil
	}
	m.sweepClaims(now)
	m.claims[key] = hookClaim{done: true, expires: now.Add(ttl)}
	m.applyLocked(u)
	return true, nil
}

// ApplyCallsOnce is RedisRecords.ApplyCallsOnce in memory.
func (m *MemoryRecords) ApplyCallsOnce(_ context.Context, us []OnceUpdate) []OnceResult {
	out := make([]OnceResult, len(us))
	for i, u := range us {
		out[i].Applied, out[i].Err = m.applyOnce(u.Key, u.TTL, u.Update)
	}
	return out
}

// ApplyCall is RedisRecords.ApplyCall in memory (records are not expired).
func (m *MemoryRecords) ApplyCall(_ context.Context, u CallUpdate) error {
	if u.Platform == "" || u.CallID == "" {
		return fmt.Errorf("apply call %q/%q: %w", u.Platform, u.CallID, errEmptyID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applyLocked(u)
	return nil
}

func (m *MemoryRecords) applyLocked(u CallUpdate) {
	k := RecordKey(u.Platform, u.CallID)
	rec, known := m.recs[k]
	if !known {
		m.order = append(m.order, k)
		for len(m.order) > memRecordsMax {
			delete(m.recs, m.order[0])
			m.order = m.order[1:]
		}
	}
	rec.Platform, rec.CallID, rec.UpdatedAt = u.Platform, u.CallID, u.At.UTC()
	for _, f := range []struct {
		dst *string
		v   string
	}{{&rec.Source, u.Source}, {&rec.Agent, u.Agent}, {&rec.From, u.From}, {&rec.To, u.To},
		{&rec.Direction, u.Direction}, {&rec.Status, u.Status}, {&rec.Error, u.Err}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	rec.Test = rec.Test || u.Test
	rec.Closed = rec.Closed || u.Close
	if rec.StartedAt.IsZero() && !u.StartedAt.IsZero() {
		rec.StartedAt = u.StartedAt.Truncate(time.Millisecond).UTC()
	}
	if !u.EndedAt.IsZero() {
		rec.EndedAt = u.EndedAt.Truncate(time.Millisecond).UTC()
	}
	if u.Duration > 0 {
		rec.Duration = u.Duration
	}
	if len(u.Analysis) > 0 {
		rec.Analysis = slices.Clone(u.Analysis)
	}
	if u.Replace {
		rec.Turns = nil
	}
	rec.Turns = append(slices.Clone(rec.Turns), u.Turns...)
	rec.Events++
	m.recs[k] = rec
}

// SetSummary is RedisRecords.SetSummary in memory.
func (m *MemoryRecords) SetSummary(_ context.Context, platform, callID, text string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := RecordKey(platform, callID)
	rec, ok := m.recs[k]
	if !ok {
		return false, ErrNotFound
	}
	if rec.Summary != "" {
		return false, nil
	}
	rec.Summary = text
	m.recs[k] = rec
	return true, nil
}

// Call is RedisRecords.Call in memory.
func (m *MemoryRecords) Call(_ context.Context, platform, callID string) (CallRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[RecordKey(platform, callID)]
	if !ok {
		return CallRecord{}, ErrNotFound
	}
	rec.Turns, rec.Analysis = slices.Clone(rec.Turns), slices.Clone(rec.Analysis)
	return rec, nil
}
