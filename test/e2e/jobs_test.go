package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
)

// downstream is a CRM stand-in: it applies each forwarded record once per Idempotency-Key,
// and counts every request.
type downstream struct {
	mu       sync.Mutex
	requests []string // Idempotency-Key of each request, in order
	applied  map[string]int
	bodies   map[string]string
	status   int           // answered to every request; 0 means 200
	hold     chan struct{} // when set, the first request waits on it (never answered if closed by kill)
	arrived  chan struct{} // closed when the first request arrives
}

func newDownstream(t *testing.T) (*downstream, *httptest.Server) {
	d := &downstream{applied: map[string]int{}, bodies: map[string]string{}, arrived: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		d.mu.Lock()
		first := len(d.requests) == 0
		d.requests = append(d.requests, key)
		hold, status := d.hold, d.status
		d.mu.Unlock()
		if first {
			close(d.arrived)
			if hold != nil {
				select { // held until the worker is killed and the test lets go
				case <-hold:
				case <-r.Context().Done():
				}
				return
			}
		}
		if status != 0 && status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		if !strings.HasPrefix(r.Header.Get("X-Callbrain-Signature"), "t=") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		d.mu.Lock()
		d.applied[key]++
		d.bodies[key] = string(body)
		d.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return d, srv
}

func (d *downstream) snapshot() (requests []string, applied map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := map[string]int{}
	for k, v := range d.applied {
		a[k] = v
	}
	return append([]string(nil), d.requests...), a
}

// startWorkerProc runs `brain worker` with env, and waits for it to start.
func startWorkerProc(t *testing.T, env map[string]string) *brain {
	t.Helper()
	bin, _ := binaries(t)
	w := &brain{logs: &syncBuffer{}}
	cmd := exec.Command(bin, "worker")
	cmd.Env = childEnv(env)
	cmd.SysProcAttr = childAttr()
	cmd.Stdout, cmd.Stderr = w.logs, w.logs
	w.process = process{cmd: cmd, done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go func() { w.waitErr = cmd.Wait(); close(w.done) }()
	t.Cleanup(func() { w.stop(t) })
	w.waitLog(t, "worker started", func(e logEntry) bool { return e.str("msg") == "worker started" })
	return w
}

// jobsEnv is a brain (or worker) on its own Redis with the receivers on and jobs in a
// separate worker process.
func jobsEnv(t *testing.T, redisURL, forward string, extra map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sources.yaml"), []byte(e2eSources), 0o600))
	env := map[string]string{
		"PROMPTS_DIR": dir, "REDIS_URL": redisURL, "SALPRE_KEY": e2eSalpreKey, "SALPRE_KEY_NEXT": e2eSalpreNext,
		"ITELLICO_SECRET": e2eItellicoKey, "SPEAKNODE_SECRET": e2eSpeakNodeKey,
		"BRAIN_JOBS": "worker", "BRAIN_FORWARD_URL": forward, "BRAIN_FORWARD_SECRET": "forward-secret-0123456789",
		"BRAIN_JOB_VISIBILITY": "2s", "BRAIN_JOB_TIMEOUT": "1500ms", "BRAIN_JOB_BACKOFF": "100ms",
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func closeSpeakNodeCall(t *testing.T, b *brain, sess string) {
	t.Helper()
	body := hookFixture(t, "speaknode_conversation_complete.json", map[string]string{"sess_01HZX4K7Q2": sess})
	status, out := hookPost(t, b, "/hooks/speaknode", body, map[string]string{"X-SpeakNode-Signature": macHex(e2eSpeakNodeKey, body)})
	require.Equal(t, http.StatusOK, status, out)
}

// TestJobWorkerKilledMidJob: a `brain worker` killed (SIGKILL) while it forwards a finished
// call leaves the job unacknowledged; a second worker takes it after the visibility timeout
// and sends it again with the same Idempotency-Key, so the downstream applies it once. The
// job is then acknowledged: not pending, not dead.
func TestJobWorkerKilledMidJob(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startRedis(t, port)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	d, srv := newDownstream(t)
	d.hold = make(chan struct{})
	env := jobsEnv(t, redisURL, srv.URL, nil)
	b := startBrain(t, brainConfig{Redis: redisURL, Env: env})

	w1 := startWorkerProc(t, env)
	closeSpeakNodeCall(t, b, "sess_kill")
	select {
	case <-d.arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the first worker never forwarded the call")
	}
	w1.kill9(t) // mid-job: the forward is in flight, never acknowledged
	close(d.hold)

	startWorkerProc(t, env)
	require.Eventually(t, func() bool {
		_, applied := d.snapshot()
		return applied["call:speaknode:sess_kill"] == 1
	}, 20*time.Second, 20*time.Millisecond, "the second worker forwards the call")
	requests, applied := d.snapshot()
	assert.Equal(t, []string{"call:speaknode:sess_kill", "call:speaknode:sess_kill"}, requests, "sent twice, same key")
	assert.Equal(t, map[string]int{"call:speaknode:sess_kill": 1}, applied, "applied once")
	assert.Contains(t, d.bodies["call:speaknode:sess_kill"], `"platform":"speaknode"`)
	dead := brainJobs(t, redisURL, "dead")
	assert.Equal(t, 1, strings.Count(dead, "\n"), "no dead letters: %s", dead)
}

// TestJobDeadLetterAndRetry: a downstream that keeps failing sends the job to the dead
// letters after BRAIN_JOB_ATTEMPTS; `brain jobs retry ID` re-drives it once it is back.
func TestJobDeadLetterAndRetry(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startRedis(t, port)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	d, srv := newDownstream(t)
	d.status = http.StatusInternalServerError
	env := jobsEnv(t, redisURL, srv.URL, map[string]string{"BRAIN_JOB_ATTEMPTS": "3", "BRAIN_JOBS": "inline"})
	b := startBrain(t, brainConfig{Redis: redisURL, Env: env})
	closeSpeakNodeCall(t, b, "sess_dead")

	var dead string
	require.Eventually(t, func() bool {
		dead = brainJobs(t, redisURL, "dead")
		return strings.Contains(dead, "speaknode:sess_dead")
	}, 20*time.Second, 50*time.Millisecond)
	requests, _ := d.snapshot()
	assert.Len(t, requests, 3, "three attempts, then dead")
	assert.Contains(t, dead, "downstream answered 500")
	id := strings.Fields(strings.Split(dead, "\n")[1])[0]

	d.mu.Lock()
	d.status = http.StatusOK
	d.mu.Unlock()
	out := brainJobs(t, redisURL, "retry", id)
	assert.Contains(t, out, "requeued forward job speaknode:sess_dead")
	require.Eventually(t, func() bool {
		_, applied := d.snapshot()
		return applied["call:speaknode:sess_dead"] == 1
	}, 20*time.Second, 20*time.Millisecond)
	assert.NotContains(t, brainJobs(t, redisURL, "dead"), "sess_dead")
}

func brainJobs(t *testing.T, redisURL string, args ...string) string {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"jobs"}, args...)...)
	cmd.Env = childEnv(map[string]string{"REDIS_URL": redisURL})
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "brain jobs %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// TestJobSummaryThenForward: with BRAIN_SUMMARY the finished call's summary is written by the
// agent's model with PROMPTS_DIR/summary.txt as the instruction, stored on the record, and
// forwarded with it.
func TestJobSummaryThenForward(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startRedis(t, port)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	m := startMock(t)
	summary := "The caller asked how the agent was. Nothing was booked."
	m.script(t, mockllm.Behavior{Reply: summary})
	d, srv := newDownstream(t)
	env := jobsEnv(t, redisURL, srv.URL, map[string]string{"BRAIN_JOBS": "inline", "BRAIN_SUMMARY": "1",
		"BRAIN_JOB_TIMEOUT": "10s", "BRAIN_JOB_VISIBILITY": "30s", "OPENAI_MODEL": "summary-model"})
	instruction := "Summarise the call in one line for the CRM."
	require.NoError(t, os.WriteFile(filepath.Join(env["PROMPTS_DIR"], "summary.txt"), []byte(instruction+"\n"), 0o600))
	b := startBrain(t, brainConfig{Redis: redisURL, Model: m.URL + "/v1", Env: env})

	ids := map[string]string{`"call_id":1`: `"call_id":4242`}
	status, out := hookPost(t, b, "/hooks/salpre", hookFixture(t, "salpre_call_ended.json", ids), map[string]string{"X-Api-Key": e2eSalpreKey})
	require.Equal(t, http.StatusOK, status, out)
	require.Eventually(t, func() bool {
		_, applied := d.snapshot()
		return applied["call:salpre:4242"] == 1
	}, 20*time.Second, 20*time.Millisecond)
	d.mu.Lock()
	body := d.bodies["call:salpre:4242"]
	d.mu.Unlock()
	assert.Contains(t, body, `"summary":"`+summary+`"`)

	reqs := m.requests(t)
	require.Len(t, reqs, 1)
	assert.Equal(t, "summary-model", reqs[0].Model)
	require.Len(t, reqs[0].Messages, 2)
	assert.Equal(t, instruction, reqs[0].Messages[0].Content)
	assert.Contains(t, reqs[0].Messages[1].Content, "caller: customer message 1")
}
