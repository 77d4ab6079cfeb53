package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

// replicaOf starts a second brain on a's Redis and model, answering a's line with a's
// secret: a replica behind the same load balancer.
func replicaOf(t *testing.T, a *brain, model string, env map[string]string) *brain {
	t.Helper()
	e := map[string]string{"SAPERLY_WEBHOOK_SECRET": a.Secret}
	for k, v := range env {
		e[k] = v
	}
	b := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: model, Env: e})
	b.Secret, b.Line = a.Secret, a.Line
	b.client = &saperly.Client{URL: b.URL, Secret: a.Secret}
	return b
}

// waitScripts waits until the directories hold at least one script of the call, and returns
// every script of it they hold, by file name. (A developer's long-lived Redis may hold calls of
// earlier, aborted runs, which a brain's idle sweep writes too: they are not this test's.)
func waitScripts(t *testing.T, callID string, dirs ...string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		found := map[string]string{}
		for _, dir := range dirs {
			names, err := filepath.Glob(filepath.Join(dir, "*-"+callID+".yaml"))
			require.NoError(t, err)
			for _, n := range names {
				data, err := os.ReadFile(n)
				require.NoError(t, err)
				found[n] = string(data)
			}
		}
		if len(found) > 0 {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recorded script in %v within 30s", dirs)
		}
		time.Sleep(poll)
	}
}

// TestRecordingAcrossReplicas: with BRAIN_RECORD on two brains sharing Redis, a call that
// starts on A, is answered by A and B in turn (a barge-in, a retry replayed by the other
// replica) and ends on B is written once, as one script holding every event and answer in
// order. Without BRAIN_RECORD_TEXT the caller's words and numbers are not in it; with it, the
// words are.
func TestRecordingAcrossReplicas(t *testing.T) {
	t.Parallel()
	for _, text := range []bool{false, true} {
		name := "text off"
		if text {
			name = "text on"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			recordAcrossReplicas(t, text)
		})
	}
}

func recordAcrossReplicas(t *testing.T, keepText bool) {
	m := startMock(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	env := func(dir string) map[string]string {
		e := map[string]string{"BRAIN_RECORD": "dir:" + dir + ",redis"}
		if keepText {
			e["BRAIN_RECORD_TEXT"] = "1"
		}
		return e
	}
	a := startBrain(t, brainConfig{Redis: sharedRedisURL(t), Model: m.URL + "/v1", Env: env(dirA)})
	b := replicaOf(t, a, m.URL+"/v1", env(dirB))
	onA := newCall(a)
	onB := &call{b: b, ID: onA.ID}

	const (
		from   = "+14155550123"
		to     = "+18005550199"
		said1  = "Hi, I'd like to book a cleaning."
		said2  = "Do you have anything on Friday?"
		said3  = "Friday at nine then."
		reply1 = "Sure, I can help with that. When would you like to come in?"
		reply3 = "Done, you're booked for Friday at nine."
	)
	start := onA.event("call_started")
	start["from_number"], start["to_number"], start["direction"] = from, to, "inbound"
	onA.ack(t, start)

	m.script(t, mockllm.Behavior{Reply: reply1})
	_, res1 := onA.say(t, said1)

	// On B, talked over after the first line; Saperly reports what was heard on A.
	m.script(t, mockllm.Behavior{Reply: bargeInReply, TokenDelay: 150 * time.Millisecond})
	ev2 := onB.message(said2)
	res2, err := onB.send(t, ev2, saperly.WithCloseAfter(1))
	require.NoError(t, err)
	require.True(t, res2.Cut)
	require.Len(t, res2.Lines, 1)
	heard := strings.Join(strings.Fields(res2.Lines[0].Text)[:2], " ")
	in := onA.event("interrupted")
	in["partial_response_text"] = heard
	onA.ack(t, in)
	b.turnLine(t, ev2["event_id"].(string)) // the cut turn is closed before the caller speaks again

	// On B, answered; Saperly retries it on A, which replays B's answer.
	m.script(t, mockllm.Behavior{Reply: reply3})
	ev3, res3 := onB.say(t, said3)
	retry, err := onA.send(t, ev3, saperly.WithAttempt(2))
	checkSpoken(t, retry, err)
	assert.Equal(t, texts(res3), texts(retry))

	end := onB.event("call_ended")
	end["status"] = "completed"
	onB.ack(t, end)

	scripts := waitScripts(t, onA.ID, dirA, dirB)
	require.Len(t, scripts, 1, "one script for the call, whichever replica wrote it")
	var file, raw string
	for f, s := range scripts {
		file, raw = f, s
	}
	assert.Contains(t, filepath.Base(file), onA.ID)
	sc, err := callscript.Parse(file, []byte(raw))
	require.NoError(t, err, raw)

	// The same script, once, in the recordings stream that callsim record pull reads.
	opts, err := redis.ParseURL(sharedRedisURL(t))
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	recs, err := session.NewRedisStore(rdb, session.Options{}).Recordings(t.Context(), "", 10000)
	require.NoError(t, err)
	var streamed []string
	for _, r := range recs {
		if r.CallID == onA.ID {
			streamed = append(streamed, string(r.Script))
		}
	}
	assert.Equal(t, []string{raw}, streamed)

	var kinds []callscript.Kind
	for _, turn := range sc.Turns {
		kinds = append(kinds, turn.Kind)
	}
	require.Equal(t, []callscript.Kind{callscript.KindStart, callscript.KindSay, callscript.KindSay,
		callscript.KindSay, callscript.KindHangup}, kinds, raw)
	assert.Equal(t, a.Line, sc.LineID)
	assert.Equal(t, "+15550000001", sc.From)
	assert.Equal(t, "+15550000002", sc.To)
	require.NotNil(t, sc.Recorded)
	assert.NotEmpty(t, sc.Recorded.PromptVersion)
	assert.NotContains(t, raw, from)
	assert.NotContains(t, raw, to)

	say1, say2, say3 := sc.Turns[1], sc.Turns[2], sc.Turns[3]
	require.NotNil(t, say2.BargeIn, "the barge-in on B, reported on A: %s", raw)
	assert.Equal(t, 1, say2.BargeIn.AfterLines)
	require.NotNil(t, say3.Retry, "the retry on A of the message answered on B: %s", raw)
	assert.Equal(t, callscript.RetryAfterAnswer, say3.Retry.When)
	require.NotNil(t, say1.Answer)
	require.NotNil(t, say3.Answer)
	assert.Len(t, say1.Answer.Lines, len(res1.Lines), "the answer's shape is kept")
	assert.Equal(t, "completed", sc.Turns[4].Fields["status"])

	answerText := func(a *callscript.Answer) []string {
		var out []string
		for _, l := range a.Lines {
			out = append(out, l.Text)
		}
		return out
	}
	if !keepText {
		for _, personal := range []string{said1, said2, said3, "cleaning", "Friday", heard, "booked"} {
			assert.NotContains(t, raw, personal)
		}
		assert.Equal(t, "<utterance 1, 32 chars>", say1.Text)
		return
	}
	assert.Equal(t, said1, say1.Text)
	assert.Equal(t, said2, say2.Text)
	assert.Equal(t, said3, say3.Text)
	require.NotNil(t, say2.BargeIn.Heard)
	assert.Equal(t, heard, *say2.BargeIn.Heard)
	assert.Equal(t, texts(res1), answerText(say1.Answer))
	assert.Equal(t, texts(res3), answerText(say3.Answer), "the answer B gave, not A's replay")

	// The recording plays back: the same call, against the same brains.
	m.script(t, mockllm.Behavior{Reply: reply1},
		mockllm.Behavior{Reply: bargeInReply, TokenDelay: 150 * time.Millisecond},
		mockllm.Behavior{Reply: reply3})
	runner := &callscript.Runner{URL: a.URL, Secret: a.Secret, TimeScale: 1, Holds: holdingPhrases}
	played := runner.Play(t.Context(), sc)
	require.NoError(t, played.Err)
	for _, tr := range played.Turns {
		for _, c := range tr.Checks {
			assert.True(t, c.OK, "turn %d: %+v", tr.Index+1, c)
		}
	}
}

// TestRecordingIdleCall: a call that never sends call_ended is written by the idle sweep,
// from Redis, once it has been silent for BRAIN_RECORD_IDLE, and says so.
func TestRecordingIdleCall(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	dir := t.TempDir()
	// A database of its own: its sweep, every half second, must not take the calls of other
	// tests' brains on the shared Redis.
	u, err := url.Parse(sharedRedisURL(t))
	require.NoError(t, err)
	u.Path = "/3"
	b := startBrain(t, brainConfig{Redis: u.String(), Model: m.URL + "/v1",
		Env: map[string]string{"BRAIN_RECORD": "dir:" + dir, "BRAIN_RECORD_IDLE": "2s"}})
	c := newCall(b)
	c.ack(t, c.event("call_started"))
	m.script(t, mockllm.Behavior{Reply: "Sure, what day works for you?"})
	c.say(t, "I'd like to book a cleaning.")

	scripts := waitScripts(t, c.ID, dir)
	require.Len(t, scripts, 1)
	for file, raw := range scripts {
		assert.Contains(t, raw, "# No call_ended was received")
		sc, err := callscript.Parse(file, []byte(raw))
		require.NoError(t, err, raw)
		require.Len(t, sc.Turns, 2)
		assert.Equal(t, callscript.KindSay, sc.Turns[1].Kind)
	}
}
