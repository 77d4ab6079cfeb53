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

// Job is one unit of background work on the jobs stream.
type Job struct {
	ID      string // the stream entry id
	Kind    string
	Key     string // what the job is about, e.g. "salpre:1"; the handler's idempotency key
	Payload string
	Attempt int    // 1 for the first run
	Error   string // the last failure (dead letters)
}

// ErrNoJob is returned by Fetch when no job arrived within its wait.
var ErrNoJob = errors.New("no job")

// RedisJobs is an at-least-once job queue on a Redis stream with one consumer group: a job
// fetched by a worker that dies is claimed by another once it has been idle for the
// visibility timeout. Failed jobs wait in a sorted set until their retry is due; a job that
// failed its last attempt moves to the dead-letter stream.
type RedisJobs struct {
	rdb        redis.UniversalClient
	stream     string
	dead       string
	delayed    string
	group      string
	visibility time.Duration
}

// jobsGroup is the consumer group every worker reads in.
const jobsGroup = "workers"

// NewRedisJobs returns the queue under prefix ("" for "callbrain:"); a fetched job not
// acknowledged within visibility is handed to another worker.
func NewRedisJobs(rdb redis.UniversalClient, prefix string, visibility time.Duration) *RedisJobs {
	if prefix == "" {
		prefix = "callbrain:"
	}
	// One hash tag: the stream, its dead letters and the delayed set live in one slot.
	return &RedisJobs{rdb: rdb, stream: prefix + "{jobs}", dead: prefix + "{jobs}:dead",
		delayed: prefix + "{jobs}:delayed", group: jobsGroup, visibility: visibility}
}

// Enqueue adds a job for its first attempt.
func (q *RedisJobs) Enqueue(ctx context.Context, kind, key, payload string) error {
	return q.add(ctx, q.stream, Job{Kind: kind, Key: key, Payload: payload, Attempt: 1})
}

func (q *RedisJobs) add(ctx context.Context, stream string, j Job) error {
	err := q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{
		"kind": j.Kind, "key": j.Key, "payload": j.Payload, "attempt": j.Attempt, "error": j.Error,
	}}).Err()
	if err != nil {
		return fmt.Errorf("enqueue %s job %s: %w", j.Kind, j.Key, err)
	}
	return nil
}

func (q *RedisJobs) ensureGroup(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.stream, q.group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create job group: %w", err)
	}
	return nil
}

// Fetch returns the next job for consumer: a due retry, else one a dead worker left behind,
// else a new one, waiting up to wait. It returns ErrNoJob when there is none.
func (q *RedisJobs) Fetch(ctx context.Context, consumer string, wait time.Duration) (Job, error) {
	if err := q.ensureGroup(ctx); err != nil {
		return Job{}, err
	}
	if err := q.promoteDue(ctx); err != nil {
		return Job{}, err
	}
	msgs, _, err := q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: q.stream, Group: q.group, Consumer: consumer, MinIdle: q.visibility, Start: "0-0", Count: 1,
	}).Result()
	if err != nil {
		return Job{}, fmt.Errorf("claim stale job: %w", err)
	}
	if len(msgs) == 0 {
		res, err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: q.group, Consumer: consumer, Streams: []string{q.stream, ">"}, Count: 1, Block: wait,
		}).Result()
		if errors.Is(err, redis.Nil) {
			return Job{}, ErrNoJob
		}
		if err != nil {
			return Job{}, fmt.Errorf("read job: %w", err)
		}
		if len(res) == 0 || len(res[0].Messages) == 0 {
			return Job{}, ErrNoJob
		}
		msgs = res[0].Messages
	}
	return jobOf(msgs[0]), nil
}

func jobOf(m redis.XMessage) Job {
	s := func(k string) string { v, _ := m.Values[k].(string); return v }
	n, _ := strconv.Atoi(s("attempt"))
	return Job{ID: m.ID, Kind: s("kind"), Key: s("key"), Payload: s("payload"), Attempt: max(n, 1), Error: s("error")}
}

// promoteScript moves one delayed job onto the stream, atomically: a worker that dies between
// taking it off the delayed set and adding it to the stream would lose it. KEYS: the delayed
// set, the stream. ARGV: the set's member, then the job's kind, key, payload, attempt and
// error. It returns 0 when another worker moved it first.
var promoteScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'kind', ARGV[2], 'key', ARGV[3], 'payload', ARGV[4], 'attempt', ARGV[5], 'error', ARGV[6])
return 1
`)

// promoteDue moves retries whose time has come back onto the stream. ZREM decides which
// worker moves each, so none is moved twice; the move is one script, so none is lost.
func (q *RedisJobs) promoteDue(ctx context.Context) error {
	due, err := q.rdb.ZRangeByScore(ctx, q.delayed, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: 16,
	}).Result()
	if err != nil {
		return fmt.Errorf("read due retries: %w", err)
	}
	for _, enc := range due {
		j, ok := decodeDelayed(enc)
		if !ok {
			// Not a job this code wrote: it can never run, so it must not block the set.
			if err := q.rdb.ZRem(ctx, q.delayed, enc).Err(); err != nil {
				return fmt.Errorf("drop unreadable retry: %w", err)
			}
			continue
		}
		err := promoteScript.Run(ctx, q.rdb, []string{q.delayed, q.stream},
			enc, j.Kind, j.Key, j.Payload, j.Attempt, j.Error).Err()
		if err != nil {
			return fmt.Errorf("move due retry of %s job %s: %w", j.Kind, j.Key, err)
		}
	}
	return nil
}

// Ack marks a job done.
func (q *RedisJobs) Ack(ctx context.Context, j Job) error {
	if err := q.ack(ctx, j.ID); err != nil {
		return fmt.Errorf("ack %s job %s: %w", j.Kind, j.Key, err)
	}
	return nil
}

func (q *RedisJobs) ack(ctx context.Context, id string) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, q.stream, q.group, id)
		p.XDel(ctx, q.stream, id)
		return nil
	})
	return err
}

// Retry schedules the job's next attempt at at, recording why this one failed, and
// acknowledges this one.
func (q *RedisJobs) Retry(ctx context.Context, j Job, at time.Time, cause string) error {
	j.Attempt++
	j.Error = cause
	if err := q.rdb.ZAdd(ctx, q.delayed, redis.Z{Score: float64(at.UnixMilli()), Member: encodeDelayed(j)}).Err(); err != nil {
		return fmt.Errorf("schedule retry of %s job %s: %w", j.Kind, j.Key, err)
	}
	if err := q.ack(ctx, j.ID); err != nil {
		return fmt.Errorf("ack %s job %s: %w", j.Kind, j.Key, err)
	}
	return nil
}

// Bury moves the job to the dead-letter stream with its last failure.
func (q *RedisJobs) Bury(ctx context.Context, j Job, cause string) error {
	j.Error = cause
	if err := q.add(ctx, q.dead, j); err != nil {
		return err
	}
	if err := q.ack(ctx, j.ID); err != nil {
		return fmt.Errorf("ack %s job %s: %w", j.Kind, j.Key, err)
	}
	return nil
}

// Dead returns the dead letters, oldest first; each ID is its dead-letter id.
func (q *RedisJobs) Dead(ctx context.Context) ([]Job, error) {
	msgs, err := q.rdb.XRange(ctx, q.dead, "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	out := make([]Job, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, jobOf(m))
	}
	return out, nil
}

// Redrive puts the dead letter id back on the jobs stream for a fresh set of attempts.
func (q *RedisJobs) Redrive(ctx context.Context, id string) (Job, error) {
	msgs, err := q.rdb.XRange(ctx, q.dead, id, id).Result()
	if err != nil {
		return Job{}, fmt.Errorf("read dead letter %s: %w", id, err)
	}
	if len(msgs) == 0 {
		return Job{}, fmt.Errorf("dead letter %s: %w", id, ErrNotFound)
	}
	j := jobOf(msgs[0])
	j.Attempt, j.Error = 1, ""
	if err := q.add(ctx, q.stream, j); err != nil {
		return Job{}, err
	}
	if err := q.rdb.XDel(ctx, q.dead, id).Err(); err != nil {
		return Job{}, fmt.Errorf("remove dead letter %s: %w", id, err)
	}
	return j, nil
}

// Pending returns how many jobs are fetched and not yet acknowledged.
func (q *RedisJobs) Pending(ctx context.Context) (int64, error) {
	p, err := q.rdb.XPending(ctx, q.stream, q.group).Result()
	if err != nil {
		return 0, fmt.Errorf("read pending jobs: %w", err)
	}
	return p.Count, nil
}

// A delayed job is stored as one string: attempt, kind, key, error and payload, separated by
// NUL (none of them holds one: they come from our own code and JSON).
func encodeDelayed(j Job) string {
	return strings.Join([]string{strconv.Itoa(j.Attempt), j.Kind, j.Key, j.Error, j.Payload, strconv.FormatInt(time.Now().UnixNano(), 36)}, "\x00")
}

func decodeDelayed(s string) (Job, bool) {
	p := strings.Split(s, "\x00")
	if len(p) != 6 {
		return Job{}, false
	}
	n, err := strconv.Atoi(p[0])
	if err != nil {
		return Job{}, false
	}
	return Job{Attempt: n, Kind: p[1], Key: p[2], Error: p[3], Payload: p[4]}, true
}
