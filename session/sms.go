package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ThreadMessage is one message of an SMS thread between a line and a number.
type ThreadMessage struct {
	Role string    `json:"role"` // "user" (the texter) or "assistant"
	Text string    `json:"text"`
	At   time.Time `json:"at"`
}

// RedisSMS keeps what answering texts needs: each thread's history, the reply chosen for
// each inbound text (so a retried job sends the same words), and which replies were sent.
type RedisSMS struct {
	rdb       redis.UniversalClient
	prefix    string
	retention time.Duration
	maxThread int64
}

// NewRedisSMS returns the SMS state under prefix ("" for "callbrain:"), kept retention after
// the last message, at most maxThread messages per thread.
func NewRedisSMS(rdb redis.UniversalClient, prefix string, retention time.Duration, maxThread int) *RedisSMS {
	if prefix == "" {
		prefix = "callbrain:"
	}
	return &RedisSMS{rdb: rdb, prefix: prefix, retention: retention, maxThread: int64(maxThread)}
}

func (s *RedisSMS) threadKey(line, number string) string {
	return s.prefix + "sms:{" + line + ":" + number + "}"
}

// Thread returns a thread's messages, oldest first.
func (s *RedisSMS) Thread(ctx context.Context, line, number string) ([]ThreadMessage, error) {
	raw, err := s.rdb.LRange(ctx, s.threadKey(line, number), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("load sms thread: %w", err)
	}
	out := make([]ThreadMessage, 0, len(raw))
	for _, r := range raw {
		var m ThreadMessage
		if err := json.Unmarshal([]byte(r), &m); err != nil {
			return nil, fmt.Errorf("decode sms thread: %w", err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Reply returns the reply chosen for the inbound text key, or ErrNotFound.
func (s *RedisSMS) Reply(ctx context.Context, key string) (string, error) {
	v, err := s.rdb.Get(ctx, s.prefix+"sms:reply:"+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("load sms reply %s: %w", key, err)
	}
	return v, nil
}

// ChooseReply stores text as the reply to key unless one is stored, and returns the stored
// one: two runs of the same job send the same words.
func (s *RedisSMS) ChooseReply(ctx context.Context, key, text string) (string, error) {
	if err := s.rdb.SetNX(ctx, s.prefix+"sms:reply:"+key, text, s.retention).Err(); err != nil {
		return "", fmt.Errorf("store sms reply %s: %w", key, err)
	}
	return s.Reply(ctx, key)
}

// Sent reports whether the reply to key was sent.
func (s *RedisSMS) Sent(ctx context.Context, key string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.prefix+"sms:sent:"+key).Result()
	if err != nil {
		return false, fmt.Errorf("check sms sent %s: %w", key, err)
	}
	return n == 1, nil
}

// MarkSent records the reply to key as sent and, the first time only, adds the inbound text
// and the reply to the thread.
func (s *RedisSMS) MarkSent(ctx context.Context, key, line, number string, in, out ThreadMessage) error {
	first, err := s.rdb.SetNX(ctx, s.prefix+"sms:sent:"+key, "1", s.retention).Result()
	if err != nil {
		return fmt.Errorf("mark sms sent %s: %w", key, err)
	}
	if !first {
		return nil
	}
	a, _ := json.Marshal(in) // a struct of strings and a time: cannot fail
	b, _ := json.Marshal(out)
	tk := s.threadKey(line, number)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, tk, a, b)
		p.LTrim(ctx, tk, -s.maxThread, -1)
		p.Expire(ctx, tk, s.retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("append sms thread: %w", err)
	}
	return nil
}
