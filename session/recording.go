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

// Recording calls (BRAIN_RECORD) keeps, per call, the facts every replica captured about it,
// until one replica takes them all and writes the call's script. Both RedisStore and
// MemoryRecordings implement the methods below; the recorder (package agent) declares the
// interface it needs.
//
// Keys, under Options.Prefix:
//
//	rec:{<call id>}      list: the call's captures, in the order replicas wrote them
//	recdone:{<call id>}  string: the call's captures were taken (its script is written)
//	recopen              sorted set: calls with captures, scored by their last write (Unix ms)
//	recordings           stream: assembled scripts (fields call_id, script), for collection

// Fields of the recordings stream.
const (
	recFieldCall   = "call_id"
	recFieldScript = "script"
)

// Capture is one fact about a call, encoded by the recorder.
type Capture struct {
	CallID string
	Data   []byte
}

// Recording is one assembled call script in the collection stream.
type Recording struct {
	// ID is the stream entry id ("<unix ms>-<seq>"); set by the store.
	ID     string
	CallID string
	Script []byte
}

// AppendCaptures adds captures to their calls' lists, in order, refreshes each list's expiry
// to the retention and marks the calls as having captures now: one pipeline of RPUSH and
// PEXPIRE per call and one ZADD, 1 round trip.
func (s *RedisStore) AppendCaptures(ctx context.Context, caps ...Capture) error {
	if len(caps) == 0 {
		return nil
	}
	var calls []string
	items := make(map[string][]any, 1)
	for _, c := range caps {
		if c.CallID == "" {
			return fmt.Errorf("append capture: %w", errEmptyID)
		}
		if _, ok := items[c.CallID]; !ok {
			calls = append(calls, c.CallID)
		}
		items[c.CallID] = append(items[c.CallID], c.Data)
	}
	now := float64(time.Now().UnixMilli())
	open := make([]redis.Z, len(calls))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range calls {
			key := s.key("rec:", id)
			p.RPush(ctx, key, items[id]...)
			p.PExpire(ctx, key, s.opts.Retention)
			open[i] = redis.Z{Score: now, Member: id}
		}
		p.ZAdd(ctx, s.opts.Prefix+"recopen", open...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d captures: %w", len(caps), err)
	}
	return nil
}

// IdleCaptures returns up to limit calls whose captures were last written before since,
// oldest first: ZRANGEBYSCORE, 1 round trip.
func (s *RedisStore) IdleCaptures(ctx context.Context, since time.Time, limit int) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.opts.Prefix+"recopen", &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(since.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list idle captures: %w", err)
	}
	return ids, nil
}

// TakeCaptures claims callID's captures for this caller and removes them: claimed is true
// for exactly one caller per call within the retention. A later caller (captures that came
// after the script was written) gets claimed false, and those captures are discarded. 3
// round trips: SET NX of the claim, MULTI LRANGE DEL, ZREM.
func (s *RedisStore) TakeCaptures(ctx context.Context, callID string) (items [][]byte, claimed bool, err error) {
	if callID == "" {
		return nil, false, fmt.Errorf("take captures: %w", errEmptyID)
	}
	key := s.key("rec:", callID)
	claimed, err = s.rdb.SetNX(ctx, s.key("recdone:", callID), "1", s.opts.Retention).Result()
	if err != nil {
		return nil, false, fmt.Errorf("take captures of call %s: %w", callID, err)
	}
	var list *redis.StringSliceCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if claimed {
			list = p.LRange(ctx, key, 0, -1)
		}
		p.Del(ctx, key)
		return nil
	})
	if err == nil {
		err = s.rdb.ZRem(ctx, s.opts.Prefix+"recopen", callID).Err()
	}
	if err != nil {
		return nil, claimed, fmt.Errorf("take captures of call %s: %w", callID, err)
	}
	if list != nil {
		for _, v := range list.Val() {
			items = append(items, []byte(v))
		}
	}
	return items, claimed, nil
}

// PublishRecording adds r to the recordings stream, trimmed to about maxLen entries (XADD
// MAXLEN ~), and returns its id: 1 round trip.
func (s *RedisStore) PublishRecording(ctx context.Context, maxLen int64, r Recording) (string, error) {
	id, err := s.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: s.opts.Prefix + "recordings",
		MaxLen: maxLen,
		Approx: true,
		Values: []string{recFieldCall, r.CallID, recFieldScript, string(r.Script)},
	}).Result()
	if err != nil {
		return "", fmt.Errorf("publish recording of call %s: %w", r.CallID, err)
	}
	return id, nil
}

// Recordings returns up to count recordings from the stream, oldest first, starting after
// the entry id after ("" for the oldest kept). An id of the form "<unix ms>-0" starts at a
// time. 1 round trip.
func (s *RedisStore) Recordings(ctx context.Context, after string, count int64) ([]Recording, error) {
	start := "-"
	if after != "" {
		if !validStreamID(after) {
			return nil, fmt.Errorf("read recordings after %q: %w", after, ErrBadStreamID)
		}
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, s.opts.Prefix+"recordings", start, "+", count).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read recordings after %q: %w", after, err)
	}
	out := make([]Recording, 0, len(msgs))
	for _, m := range msgs {
		call, _ := m.Values[recFieldCall].(string)
		script, _ := m.Values[recFieldScript].(string)
		out = append(out, Recording{ID: m.ID, CallID: call, Script: []byte(script)})
	}
	return out, nil
}

// ErrBadStreamID is returned for a stream position that is not "<ms>" or "<ms>-<seq>".
var ErrBadStreamID = errors.New("not a stream id (<unix ms>-<seq>)")

// validStreamID reports whether id is "<ms>" or "<ms>-<seq>", both decimal.
func validStreamID(id string) bool {
	_, _, ok := parseStreamID(id)
	return ok
}

func parseStreamID(id string) (ms, seq uint64, ok bool) {
	a, b, two := strings.Cut(id, "-")
	ms, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if !two {
		return ms, 0, true
	}
	seq, err = strconv.ParseUint(b, 10, 64)
	return ms, seq, err == nil
}
