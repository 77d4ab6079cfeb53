package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// The fixed lines and holding phrases every brain of the suite is configured with, so a test
// can tell them from the model's words.
var holdingPhrases = []string{"One moment.", "Let me check.", "Just a second."}

const (
	apologyLine  = "Sorry, I'm having some trouble on my end. Could you say that again?"
	recoveryLine = "Sorry, I lost my train of thought. Could you repeat the last part?"
	stallLine    = "I'm sorry, this is taking longer than it should. Could you ask me that again?"
)

const (
	// stopWait bounds how long a process may take to exit after SIGTERM. Every test ends its
	// turns before it stops the brain, so a clean brain exits at once.
	stopWait = 30 * time.Second
	// startWait bounds how long a process may take to listen (the race-enabled brain on a
	// busy two-core machine is slow to start).
	startWait = 30 * time.Second
	// poll is the interval of the few waits that can only poll (readiness, a log line).
	poll = 25 * time.Millisecond
)

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pickPort returns a loopback port that was free a moment ago.
func pickPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	return port, nil
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := pickPort()
	require.NoError(t, err)
	return port
}

// process is a child process and the end of its Wait.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to d for the exit, then kills. It reports whether the
// process exited on its own and its Wait error.
func (p *process) stop(d time.Duration) (clean bool, err error) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // it may have exited in between; Wait tells
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true, p.waitErr
	case <-timer.C:
		_ = p.cmd.Process.Kill() // it ignored SIGTERM; the caller reports that
		<-p.done
		return false, p.waitErr
	}
}

// redisServer is a private redis-server process without persistence.
type redisServer struct {
	process
	port int
	dir  string
	out  *syncBuffer
}

// launchRedis starts redis-server; extra arguments go after the defaults and override them.
func launchRedis(dir string, port int, wait time.Duration, extra ...string) (*redisServer, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir}, extra...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = childAttr()
	r := &redisServer{process: process{cmd: cmd, done: make(chan struct{})}, port: port, dir: dir, out: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.done)
	}()
	deadline := time.Now().Add(wait)
	for !redisPing(port) {
		if r.exited() || time.Now().After(deadline) {
			r.kill()
			return nil, fmt.Errorf("redis-server on port %d did not come up: %v\n%s", port, r.waitErr, r.out)
		}
		time.Sleep(poll)
	}
	return r, nil
}

// kill stops redis at once, as a crash would.
func (r *redisServer) kill() {
	if !r.exited() {
		_ = r.cmd.Process.Kill() // Wait reports how it ended; a kill is the point
	}
	<-r.done
}

// redisPing speaks just enough RESP to ask a Redis whether it is up.
func redisPing(port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second)) // a failed deadline shows up as a failed read
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// startRedis runs a private redis-server on port for this test only, killed at its end.
func startRedis(t *testing.T, port int) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("this test runs its own redis-server, and none is on PATH: install redis-server")
	}
	r, err := launchRedis(t.TempDir(), port, startWait)
	require.NoError(t, err)
	t.Cleanup(r.kill)
	return r
}

// mock is a running cmd/mockllm.
type mock struct {
	process
	// URL is the base URL, without /v1.
	URL string
	out *syncBuffer
}

// startMock runs the mockllm binary on a free port, with flags for its default behaviour.
func startMock(t *testing.T, args ...string) *mock {
	t.Helper()
	_, bin := binaries(t)
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	cmd.SysProcAttr = childAttr()
	m := &mock{process: process{cmd: cmd, done: make(chan struct{})}, out: &syncBuffer{}}
	cmd.Stderr = m.out
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		_, _ = io.Copy(m.out, stdout) // anything else it prints, for the failure report
		m.waitErr = cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		clean, err := m.stop(stopWait)
		assert.True(t, clean, "mockllm did not exit within %s of SIGTERM", stopWait)
		assert.NoError(t, err, "mockllm exit")
		if t.Failed() {
			t.Logf("mockllm output:\n%s", m.out)
		}
	})
	timer := time.NewTimer(startWait)
	defer timer.Stop()
	select {
	case line, ok := <-first:
		require.True(t, ok, "mockllm printed nothing: %s", m.out)
		const prefix = "mockllm listening on "
		require.True(t, strings.HasPrefix(line, prefix), "mockllm's first line: %q", line)
		m.URL = strings.TrimSuffix(strings.TrimPrefix(line, prefix), "/v1")
	case <-timer.C:
		t.Fatalf("mockllm did not start within %s: %s", startWait, m.out)
	}
	return m
}

// script queues behaviours for the next model requests (each taken by the first request
// whose model matches, or any request when Model is empty).
func (m *mock) script(t *testing.T, bs ...mockllm.Behavior) {
	t.Helper()
	body, err := json.Marshal(bs)
	require.NoError(t, err)
	res, err := http.Post(m.URL+"/mock/script", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	msg, _ := io.ReadAll(res.Body) // only for the message below
	require.Equal(t, http.StatusOK, res.StatusCode, "mock script: %s", msg)
}

// requests returns every model request the mock received, in order.
func (m *mock) requests(t *testing.T) []mockllm.Request {
	t.Helper()
	res, err := http.Get(m.URL + "/mock/requests")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var reqs []mockllm.Request
	require.NoError(t, json.NewDecoder(res.Body).Decode(&reqs))
	return reqs
}

// brainConfig is how one brain is started.
type brainConfig struct {
	// Redis is REDIS_URL; empty runs the in-process store.
	Redis string
	// Model is OPENAI_BASE_URL, e.g. a mock's URL + "/v1".
	Model string
	// Env adds or overrides variables; an empty value removes one.
	Env map[string]string
	// Unready waits for /healthz only: for a brain whose store is down on purpose.
	Unready bool
	// Port to listen on; 0 picks a free one. A restarted replica behind a balancer keeps its.
	Port int
}

// brain is a running cmd/brain.
type brain struct {
	process
	URL    string
	Secret string
	Line   string // a line id for this brain's calls
	logs   *syncBuffer
	client *saperly.Client
	killed bool // by kill9: no clean exit to check
}

// startBrain runs the race-enabled brain on a free port, waits until it is ready, and stops
// it at the end of the test with SIGTERM, checking that it exits with status 0 and without a
// data race. Its log is printed when the test failed.
func startBrain(t *testing.T, bc brainConfig) *brain {
	t.Helper()
	bin, _ := binaries(t)
	port := bc.Port
	if port == 0 {
		port = freePort(t)
	}
	var key [32]byte
	_, _ = rand.Read(key[:]) // crypto/rand.Read never returns an error
	b := &brain{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", port),
		Secret: hex.EncodeToString(key[:]),
		Line:   saperly.NewUUID(),
		logs:   &syncBuffer{},
	}
	env := map[string]string{
		"BRAIN_ADDR":             fmt.Sprintf("127.0.0.1:%d", port),
		"OPENAI_BASE_URL":        bc.Model,
		"OPENAI_API_KEY":         "test",
		"SAPERLY_WEBHOOK_SECRET": b.Secret,
		"REDIS_URL":              bc.Redis,
		"PROMPTS_DIR":            filepath.Join(repoRoot(t), "prompts"),
		"BRAIN_LOG_LEVEL":        "info",
		"BRAIN_HOLDING_PHRASES":  strings.Join(holdingPhrases, "|"),
		"BRAIN_APOLOGY_LINE":     apologyLine,
		"BRAIN_RECOVERY_LINE":    recoveryLine,
		"BRAIN_STALL_LINE":       stallLine,
		// A brain whose store is down when its test ends gives up the turns it kept for the
		// store (logged as lost) after this, not after the 5 min drain timeout, so it exits
		// within stopWait. The store outage tests set their own.
		"BRAIN_PENDING_RETENTION": "5s",
	}
	for k, v := range bc.Env {
		env[k] = v
	}
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = childEnv(env)
	cmd.SysProcAttr = childAttr()
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	b.process = process{cmd: cmd, done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go func() {
		b.waitErr = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() { b.stop(t) })
	b.client = &saperly.Client{URL: b.URL, Secret: b.Secret}

	path := "/readyz"
	if bc.Unready {
		path = "/healthz"
	}
	deadline := time.Now().Add(startWait)
	for {
		if status, _ := b.get(path); status == http.StatusOK {
			return b
		}
		if b.exited() {
			t.Fatalf("brain exited during start-up: %v", b.waitErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("brain: GET %s not 200 within %s", path, startWait)
		}
		time.Sleep(poll)
	}
}

// childEnv is a clean environment for a child: only what a Go binary needs from ours (so a
// developer's own REDIS_URL or OPENAI_API_KEY never leaks in), and then env.
func childEnv(env map[string]string) []string {
	var out []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GORACE", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	for k, v := range env {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// kill9 kills the brain at once (SIGKILL), as a crashed replica dies.
func (b *brain) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, b.cmd.Process.Kill())
	<-b.done
	b.killed = true
}

// stop ends the brain with SIGTERM and checks the exit (STYLE §10, end to end, step 5).
func (b *brain) stop(t *testing.T) {
	if b.killed {
		if t.Failed() {
			t.Logf("killed brain's log:\n%s", b.logs)
		}
		return
	}
	clean, err := b.process.stop(stopWait)
	assert.True(t, clean, "brain did not exit within %s of SIGTERM", stopWait)
	assert.NoError(t, err, "brain exit status (66 is a data race)")
	assert.NotContains(t, b.logs.String(), "WARNING: DATA RACE")
	assert.NotContains(t, b.logs.String(), "panic:")
	if t.Failed() {
		t.Logf("brain log:\n%s", b.logs)
	}
}

// get sends a GET to the brain; a failed request reads as status 0.
func (b *brain) get(path string) (int, []byte) {
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(b.URL + path)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil
	}
	return res.StatusCode, body
}

// waitStatus polls GET path until it answers want, up to d.
func (b *brain) waitStatus(t *testing.T, path string, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		status, body := b.get(path)
		if status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: want %d within %s, last got %d %s", path, want, d, status, body)
		}
		time.Sleep(poll)
	}
}

// logEntry is one JSON log line of the brain.
type logEntry map[string]any

func (e logEntry) str(k string) string {
	s, _ := e[k].(string)
	return s
}

func (e logEntry) num(k string) float64 {
	n, _ := e[k].(float64)
	return n
}

// entries parses the brain's log so far; lines that are not JSON (a race report) are skipped.
func (b *brain) entries() []logEntry {
	var out []logEntry
	for line := range strings.SplitSeq(b.logs.String(), "\n") {
		var e logEntry
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// waitLog waits for a log line that matches. The brain writes a turn's line as the answer
// ends, but the pipe from its stderr may lag a little behind the HTTP answer.
func (b *brain) waitLog(t *testing.T, what string, match func(logEntry) bool) logEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range b.entries() {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for %s within 10s", what)
		}
		time.Sleep(poll)
	}
}

// turnLine waits for the turn line ("turn done" or "turn degraded", README) of one message
// event; of a retried event, the first delivery's or the retry's, whichever is logged first.
func (b *brain) turnLine(t *testing.T, eventID string) logEntry {
	t.Helper()
	return b.waitLog(t, "the turn of event "+eventID, func(e logEntry) bool {
		msg := e.str("msg")
		return (msg == "turn done" || msg == "turn degraded") && e.str("event_id") == eventID
	})
}

// firstLineTransport signals the first NDJSON line of a streamed answer as it arrives, so a
// test can act while the answer is still streaming (saperly.Client returns only at the end).
type firstLineTransport struct {
	first chan struct{}
	once  sync.Once
}

func newFirstLineTransport() *firstLineTransport {
	return &firstLineTransport{first: make(chan struct{})}
}

func (f *firstLineTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	res.Body = &lineWatcher{ReadCloser: res.Body, f: f}
	return res, nil
}

type lineWatcher struct {
	io.ReadCloser
	f *firstLineTransport
}

func (w *lineWatcher) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	if bytes.IndexByte(p[:n], '\n') >= 0 {
		w.f.once.Do(func() { close(w.f.first) })
	}
	return n, err
}
