// Package bench measures the brain from the outside: benchmarks of whole deliveries through a
// real HTTP listener (the brain wired in process exactly as cmd/brain wires it), the brain's
// CPU per turn and its Redis traffic measured on the built binaries, and a load run of a
// thousand concurrent calls. It holds tests only; docs/performance.md explains every figure
// and how to rerun it (make bench).
//
// Speed is measured here, never asserted: the only failures are wrong answers and errors.
package bench

import (
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/redistest"
	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/transport"
)

// moduleRoot is the repository root, relative to this package's directory (where go test runs).
const moduleRoot = "../.."

// Store variants of the in-process brain.
const (
	storeMemory = "memory"
	storeRedis  = "redis"
)

// inproc is the brain wired in this process as cmd/brain's run wires it (transport.New,
// agent.New, session.NewRedisStore or NewMemoryStore, the go-openai adapter, the production JSON
// logger) behind a real loopback listener, with the stand-in model behind another.
type inproc struct {
	URL   string
	Mock  *mockllm.Server
	Turns *turnRecorder
	// Mock is the in-process stand-in model; nil when brainOptions.ModelURL names another.
	// Redis counts the brain's Redis round trips and commands; nil with the in-memory store.
	Redis *redisCounter
	// Pool is the brain's Redis client, for its pool statistics; nil with the in-memory store.
	Pool *redis.Client
}

// brainOptions choose the in-process brain's surroundings.
type brainOptions struct {
	Store string // storeMemory or storeRedis
	// RedisURL is the Redis of storeRedis; "" means TEST_REDIS_URL (the variant is skipped when
	// that is unset).
	RedisURL string
	// Model is the behaviour of a stand-in model started in process, unless ModelURL names one
	// running elsewhere (…/v1).
	Model    mockllm.Behavior
	ModelURL string
	// LogPath receives the brain's log; "" means /dev/null. A real file either way, as stderr
	// is in production, so each log line costs its write.
	LogPath string
}

// startInProcess starts the brain in this process.
func startInProcess(tb testing.TB, o brainOptions) *inproc {
	tb.Helper()
	b := &inproc{Turns: &turnRecorder{}}
	modelURL := o.ModelURL
	if modelURL == "" {
		b.Mock = mockllm.New(mockllm.Options{Default: o.Model})
		ms := httptest.NewServer(b.Mock)
		tb.Cleanup(ms.Close)
		modelURL = ms.URL + "/v1"
	}

	log := newBrainLogger(tb, o.LogPath)
	var st session.Store
	opts := session.Options{Retention: 24 * time.Hour}
	switch o.Store {
	case storeMemory:
		st = session.NewMemoryStore(opts)
	case storeRedis:
		rdb := newRedisClient(tb, o.RedisURL)
		b.Redis, b.Pool = &redisCounter{}, rdb
		rdb.AddHook(b.Redis)
		opts.Prefix = redisPrefix(tb, rdb)
		st = session.NewRedisStore(rdb, opts)
	default:
		tb.Fatalf("unknown store %q", o.Store)
	}

	lib, err := prompts.NewLive(filepath.Join(moduleRoot, "prompts"), log)
	require.NoError(tb, err, "load prompts")
	// cmd/brain's defaults: every other agent.Config field is the same default there and here.
	// No SAPERLY_API_KEY, so no call control, as in the binary runs.
	ag := agent.New(agent.Config{Model: "gpt-4o-mini", Getenv: os.Getenv, OnTurn: b.Turns.add}, agent.Deps{
		Primary: agent.NewOpenAI(modelURL, "bench-key"), Store: st, Prompts: lib, Log: log,
	})
	// The prompts directory names no line secrets: every line is verified with the global
	// secret, which is the development secret here as in the binary runs.
	secrets := []string{transport.DevSecret}
	srv := transport.New(transport.Config{
		Secrets:      func(string) []string { return secrets },
		Ready:        st.Ping,
		ReplayInTurn: true, // as cmd/brain: a message's replay check rides on BeginTurnOnce
	}, ag, st, log)

	// The prompt watcher runs beside the server, as in cmd/brain.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() { watched <- lib.Watch(watchCtx) }()
	tb.Cleanup(func() {
		stopWatch()
		assert.NoError(tb, <-watched, "prompt watcher")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // tb.Context is over
		defer cancel()
		assert.NoError(tb, srv.Shutdown(ctx), "shut the brain down")
		assert.NoError(tb, <-served, "serve")
	})
	b.URL = "http://" + ln.Addr().String()
	return b
}

// newBrainLogger is cmd/brain's logger (production JSON, caller, stack traces on errors, no
// sampling, ISO 8601 times, durations in milliseconds) writing to a file.
func newBrainLogger(tb testing.TB, path string) *zap.Logger {
	tb.Helper()
	if path == "" {
		path = os.DevNull
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	require.NoError(tb, err, "open the brain's log")
	tb.Cleanup(func() { assert.NoError(tb, f.Close()) })
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeDuration = func(d time.Duration, pe zapcore.PrimitiveArrayEncoder) { // as cmd/brain
		pe.AppendFloat64(float64(d.Microseconds()) / 1000)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(f), zap.InfoLevel)
	return zap.New(core, zap.AddStacktrace(zap.ErrorLevel), zap.ErrorOutput(zapcore.Lock(f))).Named("brain")
}

// newClient returns a Saperly stand-in for the brain at url, with room for conns connections
// kept open (Saperly reuses connections too).
func newClient(url string, conns int) *saperly.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns
	tr.MaxIdleConnsPerHost = conns
	tr.DisableCompression = true
	return &saperly.Client{URL: url, Secret: saperly.DevSecret, HTTP: &http.Client{Transport: tr}}
}

// turnRecorder keeps the figures of every turn (agent.Config.OnTurn).
type turnRecorder struct {
	mu    sync.Mutex
	turns []agent.TurnStats
}

func (r *turnRecorder) add(s agent.TurnStats) {
	r.mu.Lock()
	r.turns = append(r.turns, s)
	r.mu.Unlock()
}

// take returns the turns recorded so far and forgets them.
func (r *turnRecorder) take() []agent.TurnStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.turns
	r.turns = nil
	return t
}

// newRedisClient connects to url, or to TEST_REDIS_URL when url is "", with cmd/brain's client
// settings (keep them in step with openStore in cmd/brain/main.go). It skips tb when neither is
// set, except in CI.
func newRedisClient(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	if url == "" {
		url = redistest.URL(tb)
	}
	opt, err := redis.ParseURL(url)
	require.NoError(tb, err, "parse the Redis URL")
	opt.ContextTimeoutEnabled = true // cmd/brain's openStore settings, as of this writing
	opt.DialTimeout = 500 * time.Millisecond
	opt.DialerRetries = 1
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.PoolTimeout = time.Second
	opt.MaxRetries = 1
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { assert.NoError(tb, rdb.Close()) })
	require.NoError(tb, rdb.Ping(tb.Context()).Err(), "ping %s", opt.Addr)
	return rdb
}

// redisPrefix returns a key prefix of its own and deletes its keys when tb ends.
func redisPrefix(tb testing.TB, rdb *redis.Client) string {
	tb.Helper()
	prefix := "callbrain-bench:" + rand.Text()[:12] + ":"
	tb.Cleanup(func() {
		ctx := context.Background() // tb.Context is already cancelled here
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		flush := func() {
			if len(keys) > 0 {
				assert.NoError(tb, rdb.Unlink(ctx, keys...).Err(), "delete bench keys")
				keys = keys[:0]
			}
		}
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				flush()
			}
		}
		assert.NoError(tb, iter.Err(), "list bench keys")
		flush()
	})
	return prefix
}

// redisCounter is a go-redis hook counting round trips (one per command or pipeline sent) and
// commands (a MULTI/EXEC block counts its MULTI and EXEC, as Redis does).
type redisCounter struct{ rtts, cmds atomic.Int64 }

func (c *redisCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *redisCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.rtts.Add(1)
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (c *redisCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.rtts.Add(1)
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// snapshot returns the counts so far.
func (c *redisCounter) snapshot() (rtts, cmds int64) { return c.rtts.Load(), c.cmds.Load() }
