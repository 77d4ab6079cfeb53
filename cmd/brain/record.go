package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
)

// defaultRecordDir is where BRAIN_RECORD=dir (or 1) writes scripts.
const defaultRecordDir = "./recordings"

// recordSettings is call recording as configured (BRAIN_RECORD*): off unless On.
type recordSettings struct {
	On  bool
	Cfg agent.RecordConfig
	raw string // BRAIN_RECORD as given
}

// loadRecord reads BRAIN_RECORD (rs.raw; BRAIN_RECORD_TEXT, BRAIN_RECORD_IDLE and
// BRAIN_RECORD_MAXLEN are read by their settings): a comma-separated list of sinks, dir:PATH
// (or dir, or 1, for ./recordings) and redis (the recordings stream in REDIS_URL's Redis);
// empty, 0 or off records nothing.
func loadRecord(rs *recordSettings, c config) error {
	raw := strings.TrimSpace(rs.raw)
	switch strings.ToLower(raw) {
	case "", "0", "off", "false":
		return nil
	}
	for _, sink := range strings.Split(raw, ",") {
		sink = strings.TrimSpace(sink)
		kind, arg, _ := strings.Cut(sink, ":")
		switch {
		case sink == "1" || sink == "dir" || sink == "on" || sink == "true":
			rs.Cfg.Dir = defaultRecordDir
		case kind == "dir" && strings.TrimSpace(arg) != "":
			rs.Cfg.Dir = strings.TrimSpace(arg)
		case sink == "redis":
			if c.RedisURL == "" {
				return fmt.Errorf("BRAIN_RECORD=%s: the redis sink needs REDIS_URL", raw)
			}
			rs.Cfg.Stream = true
		default:
			return fmt.Errorf("BRAIN_RECORD=%s: %q is not a sink: want dir:PATH, dir or redis, comma-separated", raw, sink)
		}
	}
	if rs.Cfg.Idle >= c.Retention {
		return fmt.Errorf("BRAIN_RECORD_IDLE=%s: must be shorter than BRAIN_RETENTION=%s, which keeps the captures", rs.Cfg.Idle, c.Retention)
	}
	rs.On = true
	return nil
}

// startRecorder starts recording calls when configured: it returns the recorder (nil when
// off) and a stop function that writes what is queued and must run after the server has
// drained. With REDIS_URL the captures go to Redis, on a small connection pool of their own,
// so recording never takes a connection a turn is waiting for.
func startRecorder(ctx context.Context, cfg config, log *zap.Logger) (*agent.Recorder, func(), error) {
	rs := cfg.Record
	if !rs.On {
		return nil, func() {}, nil
	}
	if rs.Cfg.Dir != "" {
		if err := checkDir(rs.Cfg.Dir); err != nil {
			return nil, nil, fmt.Errorf("BRAIN_RECORD: %w", err)
		}
	}
	opts := session.Options{Retention: cfg.Retention}
	var store agent.RecordStore
	closeStore := func() {}
	if cfg.RedisURL == "" {
		store = session.NewMemoryRecordings(opts)
		rs.Cfg.WriteOpenOnStop = true // the captures die with the process: write every call
	} else {
		target, err := session.ParseRedisURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		rdb := target.Client(session.RedisTuning{PoolSize: 4, DialTimeout: time.Second})
		store = session.NewRedisStore(rdb, opts)
		closeStore = func() { _ = rdb.Close() }
	}
	rec := agent.NewRecorder(rs.Cfg, store, log)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { rec.Run(runCtx) })
	log.Info("recording calls", zap.String("dir", rs.Cfg.Dir), zap.Bool("stream", rs.Cfg.Stream),
		zap.Bool("text", rs.Cfg.Text), agent.Millis("idle_ms", rs.Cfg.Idle))
	return rec, func() {
		cancel()
		wg.Wait()
		closeStore()
		if n := rec.Dropped(); n > 0 {
			log.Warn("recording: captures dropped while running", zap.Int64("dropped", n))
		}
	}, nil
}

// checkDir makes dir and checks that scripts can be written in it, so a typo fails at
// start-up, not at the end of the first call.
func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}
