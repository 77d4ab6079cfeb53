package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// followBlock bounds one XREAD BLOCK in FollowTurn. A cancelled context without a deadline
// cannot interrupt a blocked read, so this is how late FollowTurn may notice it; a deadline is
// honoured exactly, since the block is clamped to it.
const followBlock = time.Second

// Fields of turn log stream entries: a spoken line, or the closing entry.
const (
	streamText = "t"
	streamEnd  = "end"
)

var _ Store = (*RedisStore)(nil)

// RedisStore is a Store on Redis, shared by every replica. A call's keys share a Redis Cluster
// hash tag ({call id}), and so do an event's claim and turn log ({event id}), so a MULTI on
// either stays in one slot.
//
// Keys, under Options.Prefix:
//
//	call:{<call id>}       hash: the call's record, times in Unix ms
//	hist:{<call id>}       list: the call's history, one JSON Entry per element
//	dlv:<delivery id>      string: a delivery id seen in the last ttl
//	claim:{<event id>}     string: the claim of the turn answering an event
//	turn:{<event id>}      stream: the turn's spoken lines, then a closing entry
//	sms:{<line id>}        list: the line's last 1000 SMS, JSON, newest first
//	caller:{<line id>}<h>  string: the last call from a number (h: its hash) on the line
//
// Create the client with ContextTimeoutEnabled: true, so that contexts' deadlines bound every
// command, not only FollowTurn's waits.
type RedisStore struct {
	rdb  redis.UniversalClient
	opts Options
	// cluster is set for a Redis Cluster client, which refuses a MULTI across slots.
	cluster bool
}

// NewRedisStore returns a RedisStore on rdb. It does not contact Redis; call Ping to check.
func NewRedisStore(rdb redis.UniversalClient, opts Options) *RedisStore {
	_, cluster := rdb.(*redis.ClusterClient)
	return &RedisStore{rdb: rdb, opts: opts.withDefaults(), cluster: cluster}
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

// updateCallScript is UpdateCall: KEYS are the record and the history; ARGV the owner to
// check ("" for none), the retention in ms, the number n of fields to set, n field-value
// pairs to HSET, then the pins to HSETNX. It returns 0, having written nothing, when the
// record belongs to another owner.
const updateCallScript = `
local owner = ARGV[1]
if owner ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'owner')
  if cur and cur ~= owner then return 0 end
end
local n = tonumber(ARGV[3])
local i = 4
if n > 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV, i, i + 2*n - 1))
  i = i + 2*n
end
while i < #ARGV do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i+1])
  i = i + 2
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`

// UpdateCall implements Store with one script (EVAL): the owner check, HSET of the fields,
// HSETNX of each pin, PEXPIRE of the record and the history, atomically: 1 round trip.
func (s *RedisStore) UpdateCall(ctx context.Context, c Call) error {
	if c.ID == "" {
		return fmt.Errorf("update call: %w", errEmptyID)
	}
	rec, hist := s.callKeys(c.ID)
	fields, pins := callFields(c), pinFields(c)
	args := make([]any, 0, 3+2*(len(fields)+len(pins)))
	args = append(args, c.Owner, s.opts.Retention.Milliseconds(), len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	for k, v := range pins {
		args = append(args, k, v)
	}
	ok, err := s.rdb.Eval(ctx, updateCallScript, []string{rec, hist}, args...).Int()
	if err != nil {
		return fmt.Errorf("update call %s: %w", c.ID, err)
	}
	if ok == 0 {
		return fmt.Errorf("update call %s as %s: %w", c.ID, c.Owner, ErrWrongLine)
	}
	return nil
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

// BeginTurn implements Store with one pipeline: SET NX of the claim for TurnTTL (skipped for
// an empty eventID), HSETNX of the record's id, started_at and c's fields, PEXPIRE of the
// record and the history, HGETALL and LRANGE: 1 round trip. On Redis Cluster the claim and
// the call live in different slots; go-redis sends both parts at once, so it is still one
// round trip of waiting.
func (s *RedisStore) BeginTurn(ctx context.Context, c Call, eventID string) (State, bool, error) {
	callID := c.ID
	if callID == "" {
		return State{}, false, fmt.Errorf("begin turn: %w", errEmptyID)
	}
	rec, hist := s.callKeys(callID)
	p := s.rdb.Pipeline()
	var claim *redis.BoolCmd
	if eventID != "" {
		claim = p.SetNX(ctx, s.key("claim:", eventID), "1", s.opts.TurnTTL)
	}
	for k, v := range blankFields(c, time.Now()) {
		p.HSetNX(ctx, rec, k, v)
	}
	p.PExpire(ctx, rec, s.opts.Retention)
	p.PExpire(ctx, hist, s.opts.Retention)
	fields := p.HGetAll(ctx, rec)
	log := p.LRange(ctx, hist, 0, -1)
	if _, err := p.Exec(ctx); err != nil {
		return State{}, false, fmt.Errorf("begin turn for call %s: %w", callID, err)
	}
	st, err := decodeState(callID, fields.Val(), log.Val())
	if err != nil {
		return State{}, false, fmt.Errorf("begin turn for call %s: %w", callID, err)
	}
	return st, claim == nil || claim.Val(), nil
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

// AppendLines implements Store with a pipeline of one XADD per line and PEXPIRE of the turn
// log: 1 round trip for a batch of lines. No MULTI: each command is atomic on its own, the
// pipeline keeps their order, and a PEXPIRE lost with a failed batch is set again by the next
// write. An empty eventID has no log: the lines are dropped, with no round trip.
func (s *RedisStore) AppendLines(ctx context.Context, eventID string, lines ...string) error {
	if eventID == "" || len(lines) == 0 {
		return nil
	}
	turn := s.key("turn:", eventID)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, text := range lines {
			p.XAdd(ctx, &redis.XAddArgs{Stream: turn, Values: []string{streamText, text}})
		}
		p.PExpire(ctx, turn, s.opts.TurnTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d lines to turn %s: %w", len(lines), eventID, err)
	}
	return nil
}

// CommitTurn implements Store with MULTI RPUSH of the entries, PEXPIRE of the record and the
// history, and, for a non-empty eventID, XADD of the closing entry and PEXPIRE of the turn
// log: 1 round trip. On Redis Cluster the history and the turn log live in different slots,
// which one MULTI cannot span; there it sends a plain pipeline instead (still 1 round trip),
// and the history and the log each change atomically but not together.
func (s *RedisStore) CommitTurn(ctx context.Context, callID, eventID string, entries ...Entry) error {
	if callID == "" {
		return fmt.Errorf("commit turn: %w", errEmptyID)
	}
	enc, err := encodeEntries(callID, entries)
	if err != nil {
		return fmt.Errorf("commit turn for call %s: %w", callID, err)
	}
	rec, hist := s.callKeys(callID)
	var p redis.Pipeliner
	if s.cluster {
		p = s.rdb.Pipeline()
	} else {
		p = s.rdb.TxPipeline()
	}
	if len(enc) > 0 {
		p.RPush(ctx, hist, enc)
	}
	p.PExpire(ctx, rec, s.opts.Retention)
	p.PExpire(ctx, hist, s.opts.Retention)
	if eventID != "" {
		turn := s.key("turn:", eventID)
		p.XAdd(ctx, &redis.XAddArgs{Stream: turn, Values: []string{streamEnd, "1"}})
		p.PExpire(ctx, turn, s.opts.TurnTTL)
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("commit turn %s for call %s: %w", eventID, callID, err)
	}
	return nil
}

// FollowTurn implements Store with a loop of XREAD BLOCK (at most 1s each, clamped to ctx's
// deadline): 1 round trip per batch of lines, plus 1 per second of waiting. Each wait holds a
// pool connection. A cancelled ctx is noticed when the current wait ends, within a second;
// a deadline ends the wait on time. With ContextTimeoutEnabled on the client (cmd sets it),
// ctx also bounds connecting and writing. An empty eventID has no log: it returns
// ErrNotFound.
func (s *RedisStore) FollowTurn(ctx context.Context, eventID string, fn func(text string) error) error {
	if eventID == "" {
		return fmt.Errorf("follow turn: %w: %w", errEmptyID, ErrNotFound)
	}
	turn := s.key("turn:", eventID)
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
				text, _ := msg.Values[streamText].(string)
				if err := fn(text); err != nil {
					return err
				}
			}
		}
	}
}

// appendEntryScript is AppendEntry: KEYS are the record and the history; ARGV the owner
// ("" for none), the retention in ms and the encoded entry. It returns 0, having written
// nothing, when the call belongs to another owner.
const appendEntryScript = `
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
`

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
	ok, err := s.rdb.Eval(ctx, appendEntryScript, []string{rec, hist}, owner, s.opts.Retention.Milliseconds(), enc[0]).Int()
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
