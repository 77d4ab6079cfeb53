package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// followBlock bounds one XREAD BLOCK in FollowTurn. A cancelled context without a deadline
// cannot interrupt a blocked read, so this is how late FollowTurn may notice it; a deadline is
// honoured exactly, since the block is clamped to it. It is short because a retry that takes
// over a dead replica's turn cancels its follow and can speak only once the read returns: with
// a 1 s block the caller heard up to a second more of silence after the lease lapsed. Five
// reads a second, only while a retried delivery follows a live turn, are cheap.
const followBlock = 200 * time.Millisecond

// Fields of turn log stream entries: a spoken line, a finished tool call (a JSON Entry), or
// the closing entry.
const (
	streamText = "t"
	streamTool = "tool"
	streamEnd  = "end"
)

var _ Store = (*RedisStore)(nil)

// RedisStore is a Store on Redis, shared by every replica. A call's keys, its turns' claims
// and logs included, share a Redis Cluster hash tag ({call id}), so every script that
// writes a call stays in one slot.
//
// Keys, under Options.Prefix (<turn> is <len(line id)>:<line id>:<event id>):
//
//	call:{<call id>}       hash: the call's record, times in Unix ms, and its turn count
//	hist:{<call id>}       list: the call's history, one JSON Entry per element
//	dlv:<delivery id>      string: a delivery id seen in the last ttl (FirstDelivery)
//	dlv:{<call id>}<delivery id> string: the same for a delivery about a call, checked by
//	                       BeginTurnOnce's or UpdateCallOnce's script in the call's slot (a
//	                       delivery's signature binds it to its body, so a replay always
//	                       names the same call)
//	claim:{<call id>}<turn> string: the owner token of a turn's lease, "done" once committed
//	turn:{<call id>}<turn>  stream: the turn's spoken lines and tool calls, then a closing entry
//	sms:{<line id>}        list: the line's last 1000 SMS, JSON, newest first
//	caller:{<line id>}<h>  string: the last call from a number (h: its hash) on the line
//
// Create the client with ContextTimeoutEnabled: true, so that contexts' deadlines bound every
// command, not only FollowTurn's waits. The scripts are sent by SHA (EVALSHA); the first use
// of each after Redis started costs one more round trip to load it.
type RedisStore struct {
	rdb  redis.UniversalClient
	opts Options
}

// NewRedisStore returns a RedisStore on rdb. It does not contact Redis; call Ping to check.
func NewRedisStore(rdb redis.UniversalClient, opts Options) *RedisStore {
	return &RedisStore{rdb: rdb, opts: opts.withDefaults()}
}

// FirstDelivery implements Store with SET NX and the ttl as expiry: 1 round trip. ttl must be
// positive.
func (s *RedisStore) FirstDelivery(ctx context.Context, deliveryID string, ttl time.Duration) (bool, error) {
	if deliveryID == "" {
		return false, fmt.Errorf("record delivery: %w", errEmptyID)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("record delivery %s: ttl %v is not positive", deliveryID, ttl)
	}
	ok, err := s.rdb.SetNX(ctx, s.opts.Prefix+"dlv:"+deliveryID, "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("record delivery %s: %w", deliveryID, err)
	}
	return ok, nil
}

// updateCallScript is UpdateCall and UpdateCallOnce: KEYS are the record, the history and
// the delivery's key (the record when there is none); ARGV the delivery's ttl in ms ("" for
// no replay check), the owner to check ("" for none), the retention in ms, the number n of
// fields to set, n field-value pairs to HSET, then the pins to HSETNX. It returns 2, having
// written nothing, for a delivery seen within its ttl, and 0, having written nothing else,
// when the record belongs to another owner.
var updateCallScript = redis.NewScript(`
if ARGV[1] ~= '' and not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) then return 2 end
local owner = ARGV[2]
if owner ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'owner')
  if cur and cur ~= owner then return 0 end
end
local n = tonumber(ARGV[4])
local i = 5
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, i, i + 2*n - 1))
  i = i + 2*n
end
while i < #ARGV do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i+1])
  i = i + 2
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`)

// UpdateCall implements Store with one script: the owner check, HSET of the fields, HSETNX of
// each pin, PEXPIRE of the record and the history, atomically: 1 round trip.
func (s *RedisStore) UpdateCall(ctx context.Context, c Call) error {
	_, err := s.updateCall(ctx, c, "", 0)
	return err
}

// UpdateCallOnce implements Store with UpdateCall's script, which SETs NX the delivery's key
// (in the call's slot, as BeginTurnOnce's) first: 1 round trip. ttl must be positive.
func (s *RedisStore) UpdateCallOnce(ctx context.Context, c Call, deliveryID string, ttl time.Duration) (bool, error) {
	if deliveryID == "" {
		return false, fmt.Errorf("update call: record delivery: %w", errEmptyID)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("update call: record delivery %s: ttl %v is not positive", deliveryID, ttl)
	}
	return s.updateCall(ctx, c, deliveryID, ttl)
}

func (s *RedisStore) updateCall(ctx context.Context, c Call, deliveryID string, ttl time.Duration) (bool, error) {
	if c.ID == "" {
		return false, fmt.Errorf("update call: %w", errEmptyID)
	}
	rec, hist := s.callKeys(c.ID)
	keys := []string{rec, hist, rec}
	check := ""
	if deliveryID != "" {
		keys[2], check = s.key("dlv:", c.ID)+deliveryID, strconv.FormatInt(ttl.Milliseconds(), 10)
	}
	fields, pins := callFields(c), pinFields(c)
	args := make([]any, 0, 4+2*(len(fields)+len(pins)))
	args = append(args, check, c.Owner, s.opts.Retention.Milliseconds(), len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	for k, v := range pins {
		args = append(args, k, v)
	}
	res, err := updateCallScript.Run(ctx, s.rdb, keys, args...).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("update call %s: %w", c.ID, err)
	case res == 0:
		return false, fmt.Errorf("update call %s as %s: %w", c.ID, c.Owner, ErrWrongLine)
	}
	return res == 1, nil
}

// Load implements Store with a pipeline of HGETALL and LRANGE: 1 round trip. It returns
// ErrNotFound when the call has neither record nor history.
func (s *RedisStore) Load(ctx context.Context, callID string) (State, error) {
	rec, hist := s.callKeys(callID)
	p := s.rdb.Pipeline()
	fields := p.HGetAll(ctx, rec)
	log := p.LRange(ctx, hist, 0, -1)
	if _, err := p.Exec(ctx); err != nil {
		return State{}, fmt.Errorf("load call %s: %w", callID, err)
	}
	st, err := decodeState(callID, fields.Val(), log.Val())
	if err != nil {
		return State{}, fmt.Errorf("load call %s: %w", callID, err)
	}
	return st, nil
}

// BeginTurn implements Store with one script (EVALSHA): HGETALL of the record and its owner
// check, SET NX PX of the claim (or PTTL of the holder's), XRANGE of the turn log when taking
// a lapsed turn over, HINCRBY of the turn count, one HSET of the fields the record lacks (none
// once they are set: a call's first event sets them), PEXPIRE of the record and the history,
// LRANGE of the history's tail: 1 round trip, 1 command. The call's
// keys share one hash slot, so it runs on Redis Cluster too.
func (s *RedisStore) BeginTurn(ctx context.Context, c Call, eventID string, tail int) (Begun, error) {
	return s.begin(ctx, c, eventID, tail, "", 0)
}

// BeginTurnOnce implements Store: BeginTurn's script does the replay check first (SET NX PX
// of the delivery key FirstDelivery uses), so a message turn costs one round trip before the
// model, replay check included.
func (s *RedisStore) BeginTurnOnce(ctx context.Context, c Call, eventID string, tail int, deliveryID string, ttl time.Duration) (Begun, error) {
	if deliveryID == "" {
		return Begun{}, fmt.Errorf("begin turn: record delivery: %w", errEmptyID)
	}
	if ttl <= 0 {
		return Begun{}, fmt.Errorf("begin turn: record delivery %s: ttl %v is not positive", deliveryID, ttl)
	}
	return s.begin(ctx, c, eventID, tail, deliveryID, ttl)
}

func (s *RedisStore) begin(ctx context.Context, c Call, eventID string, tail int, deliveryID string, ttl time.Duration) (Begun, error) {
	callID := c.ID
	if callID == "" {
		return Begun{}, fmt.Errorf("begin turn: %w", errEmptyID)
	}
	ref := TurnRef{Line: c.LineID, Call: callID, Event: eventID}
	token := ""
	if eventID != "" {
		token = newToken()
	}
	rec, hist := s.callKeys(callID)
	claim, turn := s.turnKeys(ref)
	blanks := blankFields(c, time.Now())
	args := make([]any, 0, 7+2*len(blanks))
	args = append(args, c.Owner, token, s.opts.TurnLease.Milliseconds(), s.opts.Retention.Milliseconds(), tailStart(tail), ttl.Milliseconds())
	for k, v := range blanks {
		args = append(args, k, v)
	}
	// The delivery key is in the call's slot, as the script's other keys: one slot on Redis
	// Cluster too (BeginTurn passes it unused).
	res, err := beginScript.Run(ctx, s.rdb, []string{rec, hist, claim, turn, s.key("dlv:", callID) + deliveryID}, args...).Slice()
	if err != nil {
		// Redis may have run the script: the token may be the claim's (see Store.BeginTurn).
		return Begun{Lease: Lease{Ref: ref, Token: token}}, fmt.Errorf("begin turn for call %s: %w", callID, err)
	}
	if len(res) == 1 {
		if st, _ := res[0].(string); st == "duplicate" {
			return Begun{Status: TurnDuplicate}, nil
		}
		return Begun{}, fmt.Errorf("begin turn for call %s: %w", callID, ErrWrongLine)
	}
	b, err := decodeBegun(callID, res)
	if err != nil {
		return Begun{}, fmt.Errorf("begin turn for call %s: %w", callID, err)
	}
	b.Lease = Lease{Ref: ref}
	if b.Status != TurnHeld {
		b.Lease.Token = token
	}
	return b, nil
}

// beginScript is BeginTurn and BeginTurnOnce. KEYS: record, history, claim, turn log, the
// delivery key. ARGV: owner, token ("" for no event id), lease ms, retention ms, LRANGE start
// of the tail, the delivery key's ttl ms (0: no replay check), then field/value pairs to fill
// where the record lacks them. It returns {"duplicate"} (having written nothing else),
// {"wrong_line"}, or {status, lease left ms, record fields, history tail, turn log}.
var beginScript = redis.NewScript(`
if ARGV[6] ~= '0' then
  if not redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[6]) then return {'duplicate'} end
end
local rec = redis.call('HGETALL', KEYS[1])
local at = {}
for i = 1, #rec, 2 do at[rec[i]] = i + 1 end
local owner = ARGV[1]
if owner ~= '' and at['owner'] and rec[at['owner']] ~= owner then return {'wrong_line'} end
local status, left, log = 'claimed', 0, {}
if ARGV[2] ~= '' then
  if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
    if redis.call('EXISTS', KEYS[4]) == 1 then
      status = 'taken'
      log = redis.call('XRANGE', KEYS[4], '-', '+')
    end
  else
    status = 'held'
    left = redis.call('PTTL', KEYS[3])
  end
end
local function put(field, value)
  if at[field] then rec[at[field]] = value else
    rec[#rec + 1] = field
    rec[#rec + 1] = value
    at[field] = #rec
  end
end
if status == 'claimed' then put('turns', tostring(redis.call('HINCRBY', KEYS[1], 'turns', 1))) end
local fill = {}
for i = 7, #ARGV, 2 do
  if not at[ARGV[i]] then
    fill[#fill + 1] = ARGV[i]
    fill[#fill + 1] = ARGV[i + 1]
    put(ARGV[i], ARGV[i + 1])
  end
end
if #fill > 0 then redis.call('HSET', KEYS[1], unpack(fill)) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {status, left, rec, redis.call('LRANGE', KEYS[2], ARGV[5], -1), log}
`)

// decodeBegun decodes beginScript's answer.
func decodeBegun(callID string, res []any) (Begun, error) {
	if len(res) != 5 {
		return Begun{}, fmt.Errorf("begin script answered %d values", len(res))
	}
	status, _ := res[0].(string)
	left, _ := res[1].(int64)
	flat := strs(res[2])
	rec := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		rec[flat[i]] = flat[i+1]
	}
	st, err := decodeState(callID, rec, strs(res[3]))
	if err != nil {
		return Begun{}, err
	}
	b := Begun{State: st, Left: time.Duration(left) * time.Millisecond}
	switch status {
	case "claimed":
		b.Status = TurnClaimed
	case "held":
		b.Status = TurnHeld
	case "taken":
		if b.Log, err = decodeTurnLog(callID, res[4]); err != nil {
			return Begun{}, err
		}
		b.Status = TurnTakenOver
		if b.Log.Closed {
			// The turn finished, and its claim expired before its log: replay it.
			b.Status, b.Log = TurnHeld, TurnLog{}
		}
	default:
		return Begun{}, fmt.Errorf("begin script answered status %q", status)
	}
	return b, nil
}

// TakeOver implements Store with one script: SET NX PX of the claim, then XRANGE of the
// turn log, or PTTL of the holder's claim: 1 round trip.
func (s *RedisStore) TakeOver(ctx context.Context, ref TurnRef) (Takeover, error) {
	if ref.Call == "" || ref.Event == "" {
		return Takeover{}, fmt.Errorf("take over turn: %w", errEmptyID)
	}
	claim, turn := s.turnKeys(ref)
	token := newToken()
	res, err := takeOverScript.Run(ctx, s.rdb, []string{claim, turn}, token, s.opts.TurnLease.Milliseconds()).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("take-over script answered %d values", len(res))
	}
	if err != nil {
		return Takeover{}, fmt.Errorf("take over turn %s of call %s: %w", ref.Event, ref.Call, err)
	}
	if ok, _ := res[0].(int64); ok == 0 {
		left, _ := res[1].(int64)
		return Takeover{Left: time.Duration(left) * time.Millisecond}, nil
	}
	log, err := decodeTurnLog(ref.Call, res[1])
	if err != nil {
		return Takeover{}, fmt.Errorf("take over turn %s of call %s: %w", ref.Event, ref.Call, err)
	}
	return Takeover{Lease: Lease{Ref: ref, Token: token}, Log: log}, nil
}

// takeOverScript is TakeOver. KEYS: claim, turn log. ARGV: token, lease ms. It returns
// {1, turn log} or {0, lease left ms}.
var takeOverScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('XRANGE', KEYS[2], '-', '+')}
end
return {0, redis.call('PTTL', KEYS[1])}
`)

// decodeTurnLog decodes an XRANGE of a turn log as a script returns it.
func decodeTurnLog(callID string, v any) (TurnLog, error) {
	msgs, _ := v.([]any)
	var log TurnLog
	for _, m := range msgs {
		parts, _ := m.([]any)
		if len(parts) != 2 {
			continue
		}
		fv := strs(parts[1])
		for i := 0; i+1 < len(fv); i += 2 {
			switch fv[i] {
			case streamText:
				log.Lines = append(log.Lines, fv[i+1])
			case streamTool:
				tools, err := decodeEntries(callID, fv[i+1:i+2])
				if err != nil {
					return TurnLog{}, err
				}
				log.Tools = append(log.Tools, tools...)
			case streamEnd:
				log.Closed = true
			}
		}
	}
	return log, nil
}

// strs converts a script's array of strings.
func strs(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// SeenCaller implements Store with SET GET and the caller memory as expiry: 1 round trip.
func (s *RedisStore) SeenCaller(ctx context.Context, lineID, number, callID string) (bool, error) {
	if lineID == "" || number == "" || callID == "" {
		return false, fmt.Errorf("seen caller: %w", errEmptyID)
	}
	prev, err := s.rdb.SetArgs(ctx, s.key("caller:", lineID)+callerKey(lineID, number), callID,
		redis.SetArgs{Get: true, TTL: s.opts.CallerMemory}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("seen caller on line %s: %w", lineID, err)
	}
	return prev != callID, nil
}

// AppendLines implements Store with one script: GET and PEXPIRE of the claim (SET when it
// lapsed unclaimed), one XADD per line and PEXPIRE of the turn log: 1 round trip for a batch
// of lines, or for a renewal. An empty event id has no log: nothing is sent.
func (s *RedisStore) AppendLines(ctx context.Context, l Lease, lines ...string) error {
	items := make([]string, 0, 2*len(lines))
	for _, text := range lines {
		items = append(items, streamText, text)
	}
	if err := s.appendLog(ctx, l, items); err != nil {
		return fmt.Errorf("append %d lines to turn %s of call %s: %w", len(lines), l.Ref.Event, l.Ref.Call, err)
	}
	return nil
}

// AppendTools implements Store as AppendLines does, one XADD per tool call.
func (s *RedisStore) AppendTools(ctx context.Context, l Lease, tools ...Entry) error {
	enc, err := encodeEntries(l.Ref.Call, tools)
	if err != nil {
		return fmt.Errorf("append tools to turn %s: %w", l.Ref.Event, err)
	}
	items := make([]string, 0, 2*len(enc))
	for _, e := range enc {
		items = append(items, streamTool, e)
	}
	if err := s.appendLog(ctx, l, items); err != nil {
		return fmt.Errorf("append %d tool calls to turn %s of call %s: %w", len(tools), l.Ref.Event, l.Ref.Call, err)
	}
	return nil
}

// appendLog adds field/value items to l's turn log and renews l.
func (s *RedisStore) appendLog(ctx context.Context, l Lease, items []string) error {
	if l.Ref.Event == "" || (len(items) == 0 && l.Token == "") {
		return nil
	}
	if l.Ref.Call == "" {
		return errEmptyID
	}
	claim, turn := s.turnKeys(l.Ref)
	args := make([]any, 0, 3+len(items))
	args = append(args, l.Token, s.opts.TurnLease.Milliseconds(), s.opts.TurnTTL.Milliseconds())
	for _, it := range items {
		args = append(args, it)
	}
	ok, err := appendScript.Run(ctx, s.rdb, []string{claim, turn}, args...).Int()
	if err != nil {
		return err
	}
	if ok == 0 {
		return ErrLeaseLost
	}
	return nil
}

// appendScript is appendLog. KEYS: claim, turn log. ARGV: token ("" checks nothing), lease
// ms, turn TTL ms, then field/value pairs, one stream entry each. It returns 0 when another
// token holds the claim.
var appendScript = redis.NewScript(`
if ARGV[1] ~= '' then
  local cur = redis.call('GET', KEYS[1])
  if cur and cur ~= ARGV[1] then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
for i = 4, #ARGV, 2 do redis.call('XADD', KEYS[2], '*', ARGV[i], ARGV[i+1]) end
if #ARGV > 3 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
`)

// CommitTurn implements Store with one script: GET of the claim, RPUSH of the entries,
// PEXPIRE of the record and the history, and, with an event id, XADD of each line and of the
// closing entry, PEXPIRE of the turn log and SET of the claim to "done" for the turn TTL:
// 1 round trip, atomic (the call's keys share one hash slot, so on Redis Cluster too).
func (s *RedisStore) CommitTurn(ctx context.Context, l Lease, lines []string, entries ...Entry) error {
	callID, eventID := l.Ref.Call, l.Ref.Event
	if callID == "" {
		return fmt.Errorf("commit turn: %w", errEmptyID)
	}
	enc, err := encodeEntries(callID, entries)
	if err != nil {
		return fmt.Errorf("commit turn for call %s: %w", callID, err)
	}
	rec, hist := s.callKeys(callID)
	claim, turn := s.turnKeys(l.Ref)
	closing := "0"
	if eventID != "" {
		closing = "1"
	}
	if eventID == "" {
		lines = nil // no log to carry them
	}
	args := make([]any, 0, 5+len(lines)+len(enc))
	args = append(args, l.Token, s.opts.Retention.Milliseconds(), s.opts.TurnTTL.Milliseconds(), closing, len(lines))
	for _, text := range lines {
		args = append(args, text)
	}
	for _, e := range enc {
		args = append(args, e)
	}
	ok, err := commitScript.Run(ctx, s.rdb, []string{rec, hist, claim, turn}, args...).Int()
	if err == nil && ok == 0 {
		err = ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("commit turn %s for call %s: %w", eventID, callID, err)
	}
	return nil
}

// commitScript is CommitTurn. KEYS: record, history, claim, turn log. ARGV: token ("" checks
// nothing), retention ms, turn TTL ms, "1" to close the log, the number n of lines, then the
// n lines and the encoded entries. It returns 0 when another token holds the claim. The log is
// written and closed only by the claim's holder, or when nobody holds it: a commit without a
// token never touches a log another delivery holds or one already closed.
var commitScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[3])
if ARGV[1] ~= '' and cur and cur ~= ARGV[1] then return 0 end
local first = 6 + tonumber(ARGV[5])
for i = first, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if ARGV[4] == '1' and (not cur or cur == ARGV[1]) then
  for i = 6, first - 1 do redis.call('XADD', KEYS[4], '*', '` + streamText + `', ARGV[i]) end
  redis.call('XADD', KEYS[4], '*', '` + streamEnd + `', '1')
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
  redis.call('SET', KEYS[3], 'done', 'PX', ARGV[3])
end
return 1
`)

// FollowTurn implements Store with a loop of XREAD BLOCK (at most followBlock each, clamped to
// ctx's deadline): 1 round trip per batch of lines, plus 5 per second of waiting. Each wait
// holds a pool connection. A cancelled ctx is noticed when the current wait ends, within 200 ms;
// a deadline ends the wait on time. With ContextTimeoutEnabled on the client (cmd sets it),
// ctx also bounds connecting and writing. An empty eventID has no log: it returns
// ErrNotFound.
func (s *RedisStore) FollowTurn(ctx context.Context, ref TurnRef, fn func(text string) error) error {
	eventID := ref.Event
	if eventID == "" {
		return fmt.Errorf("follow turn: %w: %w", errEmptyID, ErrNotFound)
	}
	_, turn := s.turnKeys(ref)
	last := "0"
	for {
		if err := ctxErr(ctx); err != nil {
			return err
		}
		block := followBlock
		if deadline, ok := ctx.Deadline(); ok {
			// BLOCK 0 would wait forever: never go below a millisecond.
			block = max(min(block, time.Until(deadline)), time.Millisecond)
		}
		streams, err := s.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{turn, last},
			Count:   100,
			Block:   block,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue // the wait timed out with nothing new
		}
		if unblocked(err) {
			continue // a failover ended the wait: read on from last, on the new master
		}
		if err != nil {
			if err := ctxErr(ctx); err != nil {
				return err
			}
			return fmt.Errorf("follow turn %s: %w", eventID, err)
		}
		for _, st := range streams {
			for _, msg := range st.Messages {
				last = msg.ID
				if _, ok := msg.Values[streamEnd]; ok {
					return nil
				}
				text, ok := msg.Values[streamText].(string)
				if !ok {
					continue // a tool call, for a delivery taking the turn over
				}
				if err := fn(text); err != nil {
					return err
				}
			}
		}
	}
}

// unblocked reports whether err is Redis ending a blocked read because its node changed role
// (a Cluster or Sentinel failover turned the master into a replica): the read is to be
// sent again, and the client routes it to the new master.
func unblocked(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "UNBLOCKED")
}

// appendEntryScript is AppendEntry: KEYS are the record and the history; ARGV the owner
// ("" for none), the retention in ms and the encoded entry. It returns 0, having written
// nothing, when the call belongs to another owner.
var appendEntryScript = redis.NewScript(`
local owner = ARGV[1]
if owner ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'owner')
  if cur and cur ~= owner then return 0 end
  redis.call('HSETNX', KEYS[1], 'owner', owner)
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`)

// AppendEntry implements Store with one script (EVAL): the owner check, RPUSH, PEXPIRE of
// the record and the history, atomically: 1 round trip.
func (s *RedisStore) AppendEntry(ctx context.Context, callID, owner string, e Entry) error {
	if callID == "" {
		return fmt.Errorf("append entry: %w", errEmptyID)
	}
	enc, err := encodeEntries(callID, []Entry{e})
	if err != nil {
		return fmt.Errorf("append entry for call %s: %w", callID, err)
	}
	rec, hist := s.callKeys(callID)
	ok, err := appendEntryScript.Run(ctx, s.rdb, []string{rec, hist}, owner, s.opts.Retention.Milliseconds(), enc[0]).Int()
	if err != nil {
		return fmt.Errorf("append entry for call %s: %w", callID, err)
	}
	if ok == 0 {
		return fmt.Errorf("append entry for call %s as %s: %w", callID, owner, ErrWrongLine)
	}
	return nil
}

// AddSMS implements Store with MULTI LPUSH, LTRIM to the newest 1000, PEXPIRE: 1 round trip.
func (s *RedisStore) AddSMS(ctx context.Context, lineID string, msg SMS) error {
	if lineID == "" {
		return fmt.Errorf("add sms: %w", errEmptyID)
	}
	enc, err := encodeSMS(lineID, msg)
	if err != nil {
		return err
	}
	key := s.key("sms:", lineID)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, key, enc)
		p.LTrim(ctx, key, 0, smsKeep-1)
		p.PExpire(ctx, key, s.opts.Retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("add sms for line %s: %w", lineID, err)
	}
	return nil
}

// Ping implements Store with PING: 1 round trip.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// ctxErr returns ctx's error once ctx has ended or its deadline has passed. Past the deadline
// it waits for ctx to end: the context's timer may fire a moment after the socket deadline
// go-redis derived from it, and the caller must see context.DeadlineExceeded, not an i/o
// timeout.
func ctxErr(ctx context.Context) error {
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
		<-ctx.Done()
	}
	return ctx.Err()
}

// key returns the key of id in namespace, with id as its Redis Cluster hash tag.
func (s *RedisStore) key(namespace, id string) string {
	return s.opts.Prefix + namespace + "{" + id + "}"
}

// callKeys returns the keys of callID's record and history, which share a hash slot.
func (s *RedisStore) callKeys(callID string) (rec, hist string) {
	return s.key("call:", callID), s.key("hist:", callID)
}

// turnKeys returns the keys of ref's claim and log, in the hash slot of ref's call.
func (s *RedisStore) turnKeys(ref TurnRef) (claim, turn string) {
	k := turnKey(ref)
	return s.key("claim:", ref.Call) + k, s.key("turn:", ref.Call) + k
}
