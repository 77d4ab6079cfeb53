package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
)

// overhead is the brain's own latency to the first line, model time excluded:
//
//	PreModel      receipt of the delivery → model request sent (verify, replay check, claim and
//	              state load, prompt and request building)
//	+ FirstLineLag arrival of the token that completed the first line → that line flushed
//	              (hand-off to the turn loop, chunker, NDJSON encoding, write and flush)
//
// Everything between (the model's time to first token and its streaming up to the token that
// completes the first phrase) is the model's. ok is false when the first line was not a model
// line completed by a token (a holding phrase, or a line spoken only at the end of the stream).
func overhead(s agent.TurnStats) (d time.Duration, ok bool) { return figOf(s).overhead() }

// dist is a set of durations with nearest-rank percentiles.
type dist []time.Duration

// pct returns the p-th percentile (0 < p <= 100) by nearest rank, 0 for an empty set.
func (d dist) pct(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func (d dist) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// String formats p50/p99/max in milliseconds.
func (d dist) String() string {
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(d.pct(50)), ms(d.pct(99)), ms(d.max()), len(d))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// turnFig is one turn's figures, from agent.TurnStats (in process, to the nanosecond) or from
// the brain's "turn done"/"turn degraded" log line (its durations are milliseconds, to the
// microsecond).
type turnFig struct {
	Verify, StateLoad                       time.Duration
	PreModel, TTFT, FirstLine, FirstLineLag time.Duration
	Holds                                   int
	Outcome, Budget                         string
	Degraded, Fallback                      bool
	// Logged: the figures came from a log line, rounded down to the microsecond, so a
	// FirstLineLag of 0 means "under a microsecond" rather than "no model line".
	Logged bool
}

func figOf(s agent.TurnStats) turnFig {
	return turnFig{
		Verify: s.Verify, StateLoad: s.StateLoad,
		PreModel: s.PreModel, TTFT: s.TTFT, FirstLine: s.FirstLine, FirstLineLag: s.FirstLineLag,
		Holds: s.Holds, Outcome: s.Outcome, Budget: s.Budget, Degraded: s.Degraded, Fallback: s.Fallback,
	}
}

// overhead is overhead(TurnStats) for a turnFig. With figures from the log it is up to two
// microseconds low (two rounded-down terms), and a turn whose first line was spoken only at the
// end of the stream counts with a lag of 0.
func (f turnFig) overhead() (time.Duration, bool) {
	if f.Holds > 0 || (f.FirstLineLag <= 0 && !f.Logged) {
		return 0, false
	}
	return f.PreModel + f.FirstLineLag, true
}

// turnLine is the part of a "turn done" / "turn degraded" log line read here.
type turnLine struct {
	Outcome      string  `json:"outcome"`
	Verify       float64 `json:"verify_ms"`
	StateLoad    float64 `json:"state_load_ms"`
	PreModel     float64 `json:"pre_model_ms"`
	TTFT         float64 `json:"ttft_ms"`
	FirstChunk   float64 `json:"first_line_ms"`
	FirstLineLag float64 `json:"first_line_lag_ms"`
	Holds        int     `json:"holds"`
	Budget       string  `json:"budget"`
	Degraded     bool    `json:"degraded"`
	Fallback     bool    `json:"fallback"`
}

// eventLine is the part of the transport's "event" log line (one per delivery) read here.
type eventLine struct {
	EventType string `json:"event_type"`
	Status    int    `json:"status"`
	Outcome   string `json:"outcome"`
}

func msDur(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// brainLog is what a run's log says.
type brainLog struct {
	Turns      []turnFig
	Events     []eventLine
	Warnings   []string // warn and error lines other than turn lines, raw
	Unreadable int
}

// parseLog reads a brain log. Each line is read twice: for its message, then for the fields
// of that message.
func parseLog(r io.Reader) (brainLog, error) {
	var bl brainLog
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		raw := sc.Bytes()
		var head struct{ Level, Msg string }
		if err := json.Unmarshal(raw, &head); err != nil {
			bl.Unreadable++
			continue
		}
		var err error
		switch head.Msg {
		case "turn done", "turn degraded":
			var l turnLine
			if err = json.Unmarshal(raw, &l); err == nil {
				bl.Turns = append(bl.Turns, turnFig{
					Verify: msDur(l.Verify), StateLoad: msDur(l.StateLoad),
					PreModel: msDur(l.PreModel), TTFT: msDur(l.TTFT), FirstLine: msDur(l.FirstChunk),
					FirstLineLag: msDur(l.FirstLineLag), Holds: l.Holds, Outcome: l.Outcome,
					Budget: l.Budget, Degraded: l.Degraded, Fallback: l.Fallback, Logged: true,
				})
			}
		case "event":
			var l eventLine
			if err = json.Unmarshal(raw, &l); err == nil {
				bl.Events = append(bl.Events, l)
			}
		}
		if err != nil {
			bl.Unreadable++
			continue
		}
		if (head.Level == "warn" || head.Level == "error") && head.Msg != "turn degraded" {
			bl.Warnings = append(bl.Warnings, string(raw))
		}
	}
	if err := sc.Err(); err != nil {
		return bl, fmt.Errorf("read brain log: %w", err)
	}
	return bl, nil
}

func TestDist(t *testing.T) {
	t.Parallel()
	var d dist
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 50*time.Millisecond, d.pct(50))
	assert.Equal(t, 99*time.Millisecond, d.pct(99))
	assert.Equal(t, 100*time.Millisecond, d.pct(100))
	assert.Equal(t, 1*time.Millisecond, d.pct(0.1))
	assert.Equal(t, 100*time.Millisecond, d.max())
	assert.Equal(t, time.Duration(0), dist{}.pct(50))
	assert.Equal(t, 100*time.Millisecond, d[0], "pct must not reorder the set")
}

func TestParseLog(t *testing.T) {
	t.Parallel()
	log := strings.Join([]string{
		`{"level":"info","ts":"2025-01-01T00:00:00.000Z","logger":"brain","msg":"listening","addr":"127.0.0.1:1"}`,
		`{"level":"info","logger":"brain.agent","msg":"turn done","call_id":"c","outcome":"answered","verify_ms":0.05,"state_load_ms":0.2,"pre_model_ms":0.4,"ttft_ms":300.1,"first_line_ms":420.5,"first_line_lag_ms":0.12,"elapsed_ms":900,"lines":3,"holds":0}`,
		`{"level":"warn","logger":"brain.agent","msg":"turn degraded","outcome":"answered","pre_model_ms":0.4,"first_line_lag_ms":0,"holds":1,"budget":"stall"}`,
		`{"level":"info","logger":"brain.transport","msg":"event","event_type":"message","verify":"ok","status":200,"outcome":"answered"}`,
		`{"level":"warn","logger":"brain.transport","msg":"event","event_type":"call_ended","status":503,"outcome":"record_failed"}`,
		`not json`,
	}, "\n")
	bl, err := parseLog(strings.NewReader(log))
	require.NoError(t, err)
	require.Len(t, bl.Turns, 2)
	require.Len(t, bl.Events, 2)
	assert.Equal(t, 1, bl.Unreadable)
	assert.Len(t, bl.Warnings, 1, "the failed event; turn degraded lines are counted as turns")
	o, ok := bl.Turns[0].overhead()
	require.True(t, ok)
	assert.InDelta(t, 0.52, float64(o)/float64(time.Millisecond), 1e-9)
	_, ok = bl.Turns[1].overhead()
	assert.False(t, ok, "a turn that opened with a holding phrase has no model first line")
	o, ok = turnFig{PreModel: 2 * time.Millisecond, Logged: true}.overhead()
	assert.True(t, ok, "a logged lag of 0 is under a millisecond")
	assert.Equal(t, 2*time.Millisecond, o)
	_, ok = turnFig{PreModel: 2 * time.Millisecond}.overhead()
	assert.False(t, ok, "in process, a lag of 0 means no model line completed by a token")
	assert.Equal(t, 503, bl.Events[1].Status)
}
