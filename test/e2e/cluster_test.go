package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/rediscluster"
	"github.com/callbrain/callbrain/test/saperly"
)

// One Redis Cluster (3 masters, 1 replica each) serves every cluster test of the run;
// TestMain stops it through stopCluster.
var (
	clusterOnce sync.Once
	clusterRun  struct {
		c   *rediscluster.Cluster
		dir string
		err error
	}
)

// sharedCluster starts the run's Redis Cluster on first use.
func sharedCluster(t *testing.T) *rediscluster.Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		if clusterRun.dir, clusterRun.err = rediscluster.TempDir(); clusterRun.err != nil {
			return
		}
		clusterRun.c, clusterRun.err = rediscluster.Start(context.Background(), clusterRun.dir, 3, 1)
	})
	require.NoError(t, clusterRun.err, "start the Redis Cluster")
	return clusterRun.c
}

func stopCluster() {
	if clusterRun.c != nil {
		clusterRun.c.Stop()
	}
	if clusterRun.dir != "" {
		_ = os.RemoveAll(clusterRun.dir) // a temporary directory; nothing to report
	}
}

// TestClusterFailoverMidCall: two replicas on a real Redis Cluster (REDIS_URL
// redis+cluster://…). While replica A speaks a call's answer, the master holding the call's
// slot fails over to its replica (CLUSTER FAILOVER). The answer goes on to its end with no
// apology or recovery line, the next turn on replica B has the whole conversation, and a
// retry of the first message replays it rather than running it twice (issue 12 §2).
func TestClusterFailoverMidCall(t *testing.T) {
	t.Parallel()
	cl := sharedCluster(t)
	m := startMock(t)
	a := startBrain(t, brainConfig{Redis: cl.URL(), Model: m.URL + "/v1"})
	b := startBrain(t, brainConfig{Redis: cl.URL(), Model: m.URL + "/v1",
		Env: map[string]string{"SAPERLY_WEBHOOK_SECRET": a.Secret}})
	b.Secret, b.client.Secret, b.Line = a.Secret, a.Secret, a.Line
	a.waitLog(t, "store: redis on the cluster", func(e logEntry) bool { return e.str("redis_kind") == "cluster" })

	c := newCall(a)
	reply := "Sure, I can look at that for you. We have openings on Tuesday at three thirty, " +
		"and on Wednesday at ten in the morning. Which one would you prefer?"
	m.script(t, mockllm.Behavior{Reply: reply, TokenDelay: 60 * time.Millisecond})

	const said = "When can I come in for a cleaning?"
	ev := c.message(said)
	done := deliverUntilLine(t, a, ev, 1)
	from, to, err := cl.Failover(t.Context(), "call:{"+c.ID+"}")
	require.NoError(t, err)
	t.Logf("failed over the call's slot from %s to %s", from, to)
	first := done()
	checkSpoken(t, first.res, first.err)
	assert.Equal(t, reply, first.res.Text(), "speech continues through the failover: %s", describe(first.res))
	assert.NotContains(t, texts(first.res), apologyLine)
	assert.NotContains(t, texts(first.res), recoveryLine)

	// A retry of the same message, on B, replays the committed answer: the model is not asked
	// again.
	retry, err := deliver(t, b.client, saperly.WebhookPath, ev, saperly.WithAttempt(2))
	checkSpoken(t, retry, err)
	assert.Equal(t, reply, retry.Text(), "the retry replays the answer")
	require.Len(t, m.requests(t), 1, "the turn ran once")

	// The next turn, on B, has the whole conversation: nothing was lost in the failover.
	bc := &call{b: b, ID: c.ID}
	m.script(t, mockllm.Behavior{Reply: "Wonderful, see you then."})
	const next = "Wednesday, please."
	bc.say(t, next)
	reqs := m.requests(t)
	require.Len(t, reqs, 2)
	checkConversation(t, reqs[1], []mockllm.Message{user(said), assistant(strings.TrimSpace(reply)), user(next)})
}

// TestPinnedVersionAcrossReplicasOnCluster: replicas A and B on the cluster with different
// prompt files. A call starts on A, pinned to A's version; its next turn lands on B, which
// never loaded that version, and B answers with A's prompt, read from the store (issue 12
// §2: pinned prompt versions are shared).
func TestPinnedVersionAcrossReplicasOnCluster(t *testing.T) {
	t.Parallel()
	cl := sharedCluster(t)
	m := startMock(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	const promptA, promptB = "You are the receptionist as replica A loaded it.", "You are the receptionist as edited on replica B."
	require.NoError(t, os.WriteFile(filepath.Join(dirA, "default.md"), []byte(promptA+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dirB, "default.md"), []byte(promptB+"\n"), 0o600))
	a := startBrain(t, brainConfig{Redis: cl.URL(), Model: m.URL + "/v1", Env: map[string]string{"PROMPTS_DIR": dirA}})
	b := startBrain(t, brainConfig{Redis: cl.URL(), Model: m.URL + "/v1",
		Env: map[string]string{"PROMPTS_DIR": dirB, "SAPERLY_WEBHOOK_SECRET": a.Secret}})
	b.Secret, b.client.Secret, b.Line = a.Secret, a.Secret, a.Line

	c := newCall(a)
	c.ack(t, c.event("call_started"))
	bc := &call{b: b, ID: c.ID}
	m.script(t, mockllm.Behavior{Reply: "Hello, how can I help?"})
	bc.say(t, "Hi there.")
	reqs := m.requests(t)
	require.Len(t, reqs, 1)
	assert.Equal(t, promptA, strings.TrimSpace(systemOf(t, reqs[0])), "B answers with the version the call is pinned to")
	b.waitLog(t, "pinned prompt version loaded from the store", func(e logEntry) bool {
		return e.str("msg") == "pinned prompt version loaded from the store"
	})

	// A new call on B gets B's own version.
	m.script(t, mockllm.Behavior{Reply: "Hello."})
	newCall(b).say(t, "Hi.")
	reqs = m.requests(t)
	require.Len(t, reqs, 2)
	assert.Equal(t, promptB, strings.TrimSpace(systemOf(t, reqs[1])))
}
