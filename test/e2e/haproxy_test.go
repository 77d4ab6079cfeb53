package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/saperly"
)

// haproxyConfig balances the brains round-robin, checks /readyz every 100 ms, and retries a
// delivery on another replica when the connection fails or the replica closes it without an
// answer (a replica that has stopped accepting while it drains).
const haproxyConfig = `global
  maxconn 1000
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch 1
  option http-buffer-request
  retry-on conn-failure empty-response
frontend fe
  bind 127.0.0.1:%d
  default_backend brains
backend brains
  balance roundrobin
  option httpchk GET /readyz
  default-server inter 100ms fall 1 rise 1
%s`

// startHAProxy runs haproxy in the foreground in front of ports, until the test ends.
func startHAProxy(t *testing.T, ports []int) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy" // Debian's, off a non-root PATH
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("this test runs a real HAProxy, and none is on PATH: install the Debian package haproxy (.ci/test does)")
		}
	}
	var servers strings.Builder
	for i, p := range ports {
		fmt.Fprintf(&servers, "  server b%d 127.0.0.1:%d check\n", i, p)
	}
	port := freePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(haproxyConfig, port, servers.String())), 0o600))
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.SysProcAttr = childAttr()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p := &process{cmd: cmd, done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_, _ = p.stop(stopWait) // SIGTERM; how haproxy ends is not under test
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out)
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	lb := &brain{URL: url}
	deadline := time.Now().Add(startWait)
	for {
		if status, _ := lb.get("/readyz"); status == 200 {
			return url
		}
		if p.exited() {
			t.Fatalf("haproxy exited: %v\n%s", p.waitErr, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy: no ready brain behind it within %s\n%s", startWait, out)
		}
		time.Sleep(poll)
	}
}

// TestRollingRestartBehindHAProxy: three brains on the Redis Cluster behind a real HAProxy.
// Callers keep calls going through the balancer (a failed delivery is retried, as Saperly
// does: same event, next attempt, landing on whichever replica HAProxy picks) while every
// replica in turn is stopped with SIGTERM, drains, and starts again on its port. No turn
// fails or is silent after its retries, and every call's history in Redis holds each
// message and each answer exactly once (issue 12 §3).
func TestRollingRestartBehindHAProxy(t *testing.T) {
	t.Parallel()
	cl := sharedCluster(t)
	m := startMock(t, "-reply", "Sure, I can help with that. Anything else?", "-token-delay", "15ms")
	secret := strings.Repeat("ab", 32)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	bc := func(port int) brainConfig {
		return brainConfig{Redis: cl.URL(), Model: m.URL + "/v1", Port: port,
			Env: map[string]string{"SAPERLY_WEBHOOK_SECRET": secret}}
	}
	brains := make([]*brain, len(ports))
	for i, p := range ports {
		brains[i] = startBrain(t, bc(p))
	}
	lb := &saperly.Client{URL: startHAProxy(t, ports), Secret: secret}
	line := saperly.NewUUID()

	const callers, turns, maxCalls, maxAttempts = 4, 3, 40, 5
	var (
		stopLoad  atomic.Bool
		retries   atomic.Int64
		mu        sync.Mutex
		failures  []string
		sentCalls = map[string][]string{} // call id → messages sent, in order
		wg        sync.WaitGroup
	)
	ctx := t.Context()
	for w := range callers {
		wg.Go(func() {
			for n := 0; n < maxCalls && !stopLoad.Load(); n++ {
				callID := saperly.NewUUID()
				var said []string
				for turn := range turns {
					ev := lb.NewEvent("message", callID, line)
					text := fmt.Sprintf("caller %d call %d turn %d", w, n, turn)
					ev["text"] = text
					var ok bool
					var last string
					for attempt := 1; attempt <= maxAttempts && !ok; attempt++ {
						if attempt > 1 {
							retries.Add(1)
						}
						sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
						res, err := lb.Send(sctx, saperly.WebhookPath, ev, saperly.WithAttempt(attempt))
						cancel()
						switch {
						case err != nil:
							last = err.Error()
						case res.Status != 200 || len(res.Lines) == 0:
							last = fmt.Sprintf("status %d, %d lines: %s", res.Status, len(res.Lines), res.Body)
						default:
							ok = true
						}
					}
					said = append(said, text)
					if !ok {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: failed after %d attempts: %s", text, maxAttempts, last))
						mu.Unlock()
					}
				}
				mu.Lock()
				sentCalls[callID] = said
				mu.Unlock()
			}
		})
	}

	// Rolling restart: each replica in turn drains and comes back on its port.
	for i, b := range brains {
		start := time.Now()
		b.stop(t)
		brains[i] = startBrain(t, bc(ports[i]))
		t.Logf("replica %d restarted in %v", i, time.Since(start).Round(time.Millisecond))
	}
	stopLoad.Store(true)
	wg.Wait()

	require.Empty(t, failures, "no turn fails after its retries")
	t.Logf("%d calls, %d retried deliveries", len(sentCalls), retries.Load())
	require.NotEmpty(t, sentCalls)

	target, err := session.ParseRedisURL(cl.URL())
	require.NoError(t, err)
	rdb := target.Client(session.RedisTuning{})
	defer rdb.Close()
	store := session.NewRedisStore(rdb, session.Options{})
	for callID, said := range sentCalls {
		st, err := store.Load(ctx, callID)
		require.NoError(t, err, "call %s", callID)
		var users []string
		answers := 0
		for _, e := range st.History {
			switch e.Kind {
			case session.EntryUser:
				users = append(users, e.Text)
			case session.EntryAssistant:
				answers++
			}
		}
		assert.Equal(t, said, users, "call %s: every message once, in order", callID)
		assert.Equal(t, len(said), answers, "call %s: every answer once", callID)
	}
}
