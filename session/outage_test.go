package session_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

// privateRedis is a redis-server of the test's own, so the test can pause or kill it.
type privateRedis struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startPrivateRedis starts redis-server on port (a free one when 0). It skips tb when
// redis-server is not installed, except in CI.
func startPrivateRedis(tb testing.TB, port int, dir string) *privateRedis {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-server is not on PATH; CI must run the store outage tests")
		}
		tb.Skip("redis-server is not on PATH: skipping the store outage tests")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(tb, err)
		port = ln.Addr().(*net.TCPAddr).Port
		require.NoError(tb, ln.Close())
	}
	r := &privateRedis{port: port, dir: dir, done: make(chan struct{})}
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	require.NoError(tb, r.cmd.Start())
	go func() {
		_ = r.cmd.Wait() // killed by the test: how it ended is the point
		close(r.done)
	}()
	tb.Cleanup(r.kill)
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	require.Eventually(tb, func() bool { return rdb.Ping(context.Background()).Err() == nil },
		waitFor, 10*time.Millisecond, "redis-server on port %d did not come up", port)
	return r
}

func (r *privateRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *privateRedis) kill() {
	_ = r.cmd.Process.Kill() // it may be gone already
	<-r.done
}

// brainClient connects to addr as cmd/brain does (deadlines from contexts, one retry), with
// one pooled connection, so the test knows which connection a command goes out on.
func brainClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, ContextTimeoutEnabled: true, MaxRetries: 1, PoolSize: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// replyCutter is a TCP proxy in front of Redis that can drop Redis's replies while still
// passing the commands on: a network that loses the answer to a command Redis ran.
type replyCutter struct {
	ln     net.Listener
	target string
	mute   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newReplyCutter(t *testing.T, target string) *replyCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &replyCutter{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Go(func() {
				_, _ = io.Copy(s, c) // commands always go through
				_ = s.Close()
			})
			p.wg.Go(func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 && !p.mute.Load() {
						if _, err := c.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = p.ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *replyCutter) addr() string { return p.ln.Addr().String() }

// TestRedisStoreCommitRetriedAfterOutage: a commit that fails in an outage is written again
// once Redis is back, after the call's next turn was written (by another replica): the history
// holds each turn once, in the order the turns began, whether or not Redis had applied the
// failed attempt.
func TestRedisStoreCommitRetriedAfterOutage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// away takes Redis away and returns how to bring it back.
		away func(t *testing.T, r *privateRedis, p *replyCutter) func()
		// applied is how many copies of the failed commit Redis holds once it is back.
		applied int
	}{
		{
			// Redis ran the commit but its answer was lost: a timeout after Redis applied it.
			name: "reply lost", applied: 1,
			away: func(_ *testing.T, _ *privateRedis, p *replyCutter) func() {
				p.mute.Store(true)
				return func() { p.mute.Store(false) }
			},
		},
		{
			// The client gives up on a paused server (SIGSTOP) and drops the connection; Redis
			// finds the commit on the socket when it resumes and runs it: another timeout
			// after Redis applied it.
			name: "paused", applied: 1,
			away: func(t *testing.T, r *privateRedis, _ *replyCutter) func() {
				require.NoError(t, r.cmd.Process.Signal(syscall.SIGSTOP))
				return func() { require.NoError(t, r.cmd.Process.Signal(syscall.SIGCONT)) }
			},
		},
		{
			name: "killed and restarted", applied: 0,
			away: func(t *testing.T, r *privateRedis, _ *replyCutter) func() {
				r.kill()
				return func() { startPrivateRedis(t, r.port, r.dir) }
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startPrivateRedis(t, 0, t.TempDir())
			p := newReplyCutter(t, r.addr())
			s := session.NewRedisStore(brainClient(t, p.addr()), session.Options{})
			raw := brainClient(t, r.addr())
			ctx := t.Context()
			turn := func(at int64, ev, said, answer string) []session.Entry {
				return []session.Entry{
					{Kind: session.EntryUser, Text: said, At: at, EventID: ev},
					{Kind: session.EntryAssistant, Text: answer, At: at, EventID: ev},
				}
			}
			t1 := turn(1000, "e1", "Hi.", "Hello, how can I help?")
			t2 := turn(3000, "e2", "Hours?", "Nine to five.")
			// A connection already set up and the commit script loaded, as in a running brain (a
			// fresh connection would stall in its handshake, and an unloaded script in its
			// NOSCRIPT answer, before the commit is applied).
			require.NoError(t, s.CommitTurn(ctx, session.Lease{Ref: session.TurnRef{Call: "c0", Event: "e0"}}, nil))

			back := tc.away(t, r, p)
			cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := s.CommitTurn(cctx, session.Lease{Ref: session.TurnRef{Call: "c1", Event: "e1"}}, nil, t1...)
			cancel()
			require.Error(t, err, "the store is away")
			back()

			const hist = "callbrain:hist:{c1}"
			var before int64
			require.Eventually(t, func() bool {
				before, err = raw.LLen(ctx, hist).Result()
				return err == nil
			}, waitFor, 10*time.Millisecond, "Redis is back")
			require.Equal(t, int64(len(t1)*tc.applied), before, "copies of the failed commit Redis holds")

			require.Eventually(t, func() bool {
				return s.CommitTurn(ctx, session.Lease{Ref: session.TurnRef{Call: "c1", Event: "e2"}}, nil, t2...) == nil
			},
				waitFor, 10*time.Millisecond, "the call's next turn, once the client has reconnected")
			require.NoError(t, s.CommitTurn(ctx, session.Lease{Ref: session.TurnRef{Call: "c1", Event: "e1"}}, nil, t1...), "the kept turn's retry")

			st, err := s.Load(ctx, "c1")
			require.NoError(t, err)
			assert.Equal(t, append(t1, t2...), st.History, "each turn once, in the order it began")
			n, err := raw.LLen(ctx, hist).Result()
			require.NoError(t, err)
			assert.Equal(t, before+int64(len(t1)+len(t2)), n, "the log holds every write; Fold keeps each turn once")
		})
	}
}
