package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// turn is a message delivery answered with lines at these offsets.
func turn(sent time.Time, lines ...time.Duration) Delivery {
	d := Delivery{Event: EventMessage, Sent: sent, Status: 200, Lines: lines, Chars: 20 * len(lines)}
	if len(lines) > 0 {
		d.Elapsed = lines[len(lines)-1] + time.Millisecond
	}
	return d
}

func TestNewRefusesUnboundedOrAmbiguousRuns(t *testing.T) {
	play := func(context.Context, int, func(Delivery)) error { return nil }
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no model", Config{Calls: 1}, "need a concurrency"},
		{"both models", Config{Concurrency: 1, Rate: 1, Calls: 1}, "exclude each other"},
		{"no bound", Config{Concurrency: 1}, "number of calls or a duration"},
		{"duration past the hard bound", Config{Concurrency: 1, Duration: time.Hour}, "shorter than the hard bound"},
		{"ramp past the hard bound", Config{Rate: 1, Calls: 5, Ramp: 20 * time.Minute}, "shorter than the hard bound"},
		{"negative", Config{Concurrency: 1, Calls: -1}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, play)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := New(Config{Concurrency: 1, Calls: 1}, nil)
	assert.Error(t, err)
}

// The closed model never has more than Concurrency calls in progress, and starts exactly
// Calls calls.
func TestClosedModelKeepsConcurrencyCalls(t *testing.T) {
	var active, peak atomic.Int64
	var seen sync.Map
	e, err := New(Config{Concurrency: 3, Calls: 10}, func(ctx context.Context, n int, report func(Delivery)) error {
		v := active.Add(1)
		defer active.Add(-1)
		for {
			old := peak.Load()
			if v <= old || peak.CompareAndSwap(old, v) {
				break
			}
		}
		seen.Store(n, true)
		report(Delivery{Event: "call_started", Sent: time.Now(), Status: 200})
		report(turn(time.Now(), 100*time.Millisecond, 300*time.Millisecond))
		return nil
	})
	require.NoError(t, err)
	r := e.Run(t.Context())
	assert.Equal(t, StopCalls, r.Stop)
	assert.Equal(t, 10, r.Calls.Started)
	assert.Equal(t, 10, r.Calls.Completed)
	assert.LessOrEqual(t, peak.Load(), int64(3))
	assert.LessOrEqual(t, r.PeakActive, 3)
	for n := range 10 {
		_, ok := seen.Load(n)
		assert.True(t, ok, "call %d played", n)
	}
	assert.Equal(t, 10, r.Turns)
	assert.Equal(t, map[string]int{"call_started": 10, "message": 10}, r.Deliveries)
	assert.EqualValues(t, 10, r.FirstLine.Count)
	assert.InDelta(t, 100, r.FirstLine.P50Ms, 1)
	assert.InDelta(t, 200, r.Gap.P99Ms, 1)
	assert.Zero(t, r.ErrorCount)
	l := e.Live()
	assert.Equal(t, 10, l.Done)
	assert.Zero(t, l.Active)
	assert.Equal(t, 100*time.Millisecond, l.FirstLine)
}

// The open model starts calls at its rate whatever the calls in progress do: here every call
// waits until all of them have started, which a closed model of fewer callers could never do.
func TestOpenModelStartsCallsWithoutWaitingForThem(t *testing.T) {
	const calls = 12
	var started atomic.Int64
	all := make(chan struct{})
	e, err := New(Config{Rate: 500, Calls: calls, MaxDuration: time.Minute}, func(ctx context.Context, n int, report func(Delivery)) error {
		if started.Add(1) == calls {
			close(all)
		}
		select {
		case <-all:
		case <-ctx.Done():
			return ctx.Err()
		}
		report(turn(time.Now(), 50*time.Millisecond))
		return nil
	})
	require.NoError(t, err)
	r := e.Run(t.Context())
	assert.Equal(t, StopCalls, r.Stop)
	assert.Equal(t, calls, r.Calls.Started)
	assert.Equal(t, calls, r.Calls.Completed)
	assert.Equal(t, calls, r.PeakActive)
	assert.Equal(t, "open", r.Model)
}

// The open model's bound on calls in progress skips the calls due while it is reached: two
// calls that never end hold the bound until the hard bound cancels them.
func TestOpenModelSkipsPastMaxActive(t *testing.T) {
	e, err := New(Config{Rate: 1000, Calls: 6, MaxActive: 2, MaxDuration: 300 * time.Millisecond}, func(ctx context.Context, n int, report func(Delivery)) error {
		<-ctx.Done()
		return ctx.Err()
	})
	require.NoError(t, err)
	r := e.Run(t.Context())
	assert.Equal(t, 2, r.Calls.Started)
	assert.Equal(t, 4, r.Calls.Skipped)
	assert.Equal(t, 2, r.Calls.Aborted)
	assert.Equal(t, 2, r.PeakActive)
}

func TestOpenStartSpreadsCallsOverTheRamp(t *testing.T) {
	for _, tc := range []struct {
		k    int
		rate float64
		ramp time.Duration
		want time.Duration
	}{
		{0, 10, 0, 0},
		{5, 10, 0, 500 * time.Millisecond},
		{0, 10, 2 * time.Second, 0},
		// 10 calls/s reached after a 2 s ramp: 10 calls started during the ramp.
		{10, 10, 2 * time.Second, 2 * time.Second},
		{20, 10, 2 * time.Second, 3 * time.Second},
		// Halfway through the ramp a quarter of its calls have started.
		{5, 20, 2 * time.Second, time.Second},
	} {
		got := openStart(tc.k, tc.rate, tc.ramp)
		assert.InDelta(t, float64(tc.want), float64(got), float64(time.Microsecond), "call %d at %g/s ramp %s", tc.k, tc.rate, tc.ramp)
	}
}

// Ctrl-C (a cancelled context) ends the run at once, and the report keeps what was measured:
// the turns answered before, and the calls cut counted as aborted, not as errors.
func TestInterruptedRunReportsWhatWasMeasured(t *testing.T) {
	ctx, interrupt := context.WithCancel(t.Context())
	var answered atomic.Int64
	e, err := New(Config{Concurrency: 4, Duration: 5 * time.Minute}, func(ctx context.Context, n int, report func(Delivery)) error {
		if n < 8 {
			report(turn(time.Now(), 200*time.Millisecond))
			if answered.Add(1) == 8 {
				interrupt()
			}
			return nil
		}
		<-ctx.Done() // a call in progress when the operator presses Ctrl-C
		report(Delivery{Event: EventMessage, Sent: time.Now(), Err: ctx.Err()})
		return ctx.Err()
	})
	require.NoError(t, err)
	r := e.Run(ctx)
	assert.Equal(t, StopInterrupted, r.Stop)
	assert.True(t, r.Interrupted)
	assert.Equal(t, 8, r.Turns)
	assert.EqualValues(t, 8, r.FirstLine.Count)
	assert.Equal(t, 8, r.Calls.Completed)
	assert.Positive(t, r.Calls.Aborted)
	assert.Zero(t, r.ErrorCount, "calls cut by Ctrl-C are not the brain's errors")
	var sum bytes.Buffer
	require.NoError(t, r.WriteSummary(&sum))
	assert.Contains(t, sum.String(), "INTERRUPTED")
}

// The hard bound cancels calls that would never end by themselves.
func TestMaxDurationCancelsCallsInProgress(t *testing.T) {
	e, err := New(Config{Concurrency: 2, Calls: 2, MaxDuration: 20 * time.Millisecond}, func(ctx context.Context, n int, report func(Delivery)) error {
		<-ctx.Done()
		return ctx.Err()
	})
	require.NoError(t, err)
	r := e.Run(t.Context())
	assert.Equal(t, StopMaxDuration, r.Stop)
	assert.Equal(t, 2, r.Calls.Aborted)
	assert.False(t, r.Interrupted)
}

// Budgets, silence, holding phrases, apologies and errors by kind are counted per turn.
func TestRecorderCountsWhatTheCallerHears(t *testing.T) {
	start := time.Now()
	e, err := New(Config{Concurrency: 1, Calls: 1}, func(ctx context.Context, n int, report func(Delivery)) error {
		ok := turn(start, 300*time.Millisecond, 16*time.Second) // a 15.7 s gap
		ok.Holds = 1
		report(ok)
		long := turn(start.Add(time.Second), time.Second)
		long.Elapsed, long.Chars, long.Apologies = 6*time.Minute, 1900, 1
		report(long)
		report(Delivery{Event: EventMessage, Sent: start.Add(2 * time.Second), Status: 200, Elapsed: time.Second}) // silent
		report(Delivery{Event: EventMessage, Sent: start.Add(2 * time.Second), Status: 200, Cut: true})            // a barge-in before any line
		report(Delivery{Event: EventMessage, Sent: start.Add(3 * time.Second), Status: 500, Err: errors.New("status 500"), Kind: "non-200"})
		report(Delivery{Event: "call_ended", Sent: start.Add(3 * time.Second), Status: 503, Err: errors.New("status 503"), Kind: "non-200"})
		report(Delivery{Event: "call_ended", Sent: start.Add(3 * time.Second), Status: 503, Err: errors.New("status 503"), Kind: "non-200"}) // the same error again
		return nil
	})
	require.NoError(t, err)
	r := e.Run(t.Context())
	assert.Equal(t, 5, r.Turns)
	assert.Equal(t, 1, r.Holds)
	assert.Equal(t, 1, r.Apologies)
	assert.Equal(t, 1, r.Silent)
	assert.Equal(t, 1, r.BargeIns)
	assert.Equal(t, 1, r.Budget.GapMisses)
	assert.Equal(t, 1, r.Budget.TurnMisses)
	assert.Equal(t, 1, r.Budget.CharMisses)
	assert.Equal(t, map[ErrorKind]int{"non-200": 3}, r.Errors)
	assert.Equal(t, 3, r.ErrorCount)
	assert.Equal(t, 1, r.Calls.Failed)
	assert.Len(t, r.ErrorSamples, 2, "one example of each distinct error")

	// The JSON report holds every figure under a key naming its unit.
	var buf bytes.Buffer
	require.NoError(t, r.WriteJSON(&buf))
	var doc map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
	for _, key := range []string{"model", "calls", "first_line", "gap", "turn", "holding_phrases", "apologies", "silent_turns", "budget", "errors", "series", "wall_s", "stop"} {
		assert.Contains(t, doc, key)
	}
	fl := doc["first_line"].(map[string]any)
	for _, key := range []string{"count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "hdr", "buckets"} {
		assert.Contains(t, fl, key)
	}
	assert.Equal(t, map[string]any{"gap_s": 15.0, "turn_s": 300.0, "chars": 1800.0, "gap_misses": 1.0, "turn_misses": 1.0, "char_misses": 1.0}, doc["budget"])
}

func TestPickSpreadsWeightedItems(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    []int
	}{
		{[]int{1}, []int{0}},
		{[]int{1, 1, 1}, []int{0, 1, 2}},
		{[]int{3, 1}, []int{0, 0, 1, 0}},
		{[]int{2, 1, 1}, []int{0, 1, 2, 0}},
	} {
		got, err := Pick(tc.weights)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "weights %v", tc.weights)
	}
	for _, bad := range [][]int{nil, {0}, {1, -2}, {MaxWeight + 1}} {
		_, err := Pick(bad)
		assert.Error(t, err, "weights %v", bad)
	}
}

// Each second of the series has the first-line percentiles of the turns sent in it.
func TestSeriesPercentilesPerSecond(t *testing.T) {
	start := time.Now()
	e, err := New(Config{Concurrency: 1, Calls: 1, Now: func() time.Time { return start }}, func(ctx context.Context, n int, report func(Delivery)) error {
		for i := 1; i <= 100; i++ {
			report(turn(start.Add(100*time.Millisecond), time.Duration(i)*time.Millisecond)) // second 0: 1..100 ms
		}
		report(turn(start.Add(2500*time.Millisecond), 700*time.Millisecond)) // second 2
		return nil
	})
	require.NoError(t, err)
	r := e.Run(t.Context())
	require.Len(t, r.Series, 3)
	assert.Equal(t, []float64{50, 90, 99}, []float64{r.Series[0].FirstLineP50Ms, r.Series[0].FirstLineP90Ms, r.Series[0].FirstLineP99Ms})
	assert.Equal(t, 100, r.Series[0].Turns)
	assert.Zero(t, r.Series[1].Turns)
	assert.Zero(t, r.Series[1].FirstLineP50Ms, "no turn sent in second 1")
	assert.InDelta(t, 700, r.Series[2].FirstLineP99Ms, 0.01)
	assert.Equal(t, 1, r.Series[0].Started)
}
