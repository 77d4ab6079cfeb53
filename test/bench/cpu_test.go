package bench

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/test/serve"
)

// TestBrainCPU measures the brain's CPU time per turn on the built binary: cmd/brain and
// cmd/mockllm run as processes of their own, with a private redis-server, and this test only
// drives them. The brain's CPU is read from /proc/<pid> before and after N message turns, so
// neither the stand-in model nor the client is in the figure. It also reports the Redis
// commands per turn and per event as Redis itself counted them (INFO commandstats).
//
// With perf installed it also counts the brain's system calls and context switches per turn,
// in a separate window of N/4 turns (counting slows the brain down).
//
// BENCH=1 runs it; BENCH_CPU_TURNS sets N (default 2000).
func TestBrainCPU(t *testing.T) {
	requireEnv(t, envProc)
	brainBin, mockBin := buildBinaries(t)
	rds := startRedis(t)
	n := envInt(t, "BENCH_CPU_TURNS", 2000)

	cases := []struct {
		name             string
		ttft, tokenDelay time.Duration
		parallel, turns  int
	}{
		// The model answers at once: the brain's cost with nothing to wait for.
		{name: "instant_model/sequential", parallel: 1, turns: n},
		{name: "instant_model/parallel_8", parallel: 8, turns: n},
		// Tokens paced like a real model: each one wakes the brain on its own.
		{name: "paced_model/parallel_50", ttft: 300 * time.Millisecond, tokenDelay: 20 * time.Millisecond, parallel: 50, turns: n / 2},
	}
	var report []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, modelURL := startMock(t, mockBin, tc.ttft, tc.tokenDelay)
			br, url := startBrainProc(t, brainBin, rds.URL, modelURL)
			c := newClient(url, tc.parallel+4)
			run := rand.Text()[:8]
			drive(t, c, run+"-warm", 5*turnsPerCall, min(tc.parallel, 5)) // connections, pools, first GC cycles

			idle0, err := readUsage(br.pid())
			require.NoError(t, err)
			require.NoError(t, serve.Wait(t.Context(), 2*time.Second))
			idle1, err := readUsage(br.pid())
			require.NoError(t, err)
			idle := (idle1.Sched - idle0.Sched) / 2 // per second

			cmds0 := rds.commandStats(t)
			u0, err := readUsage(br.pid())
			require.NoError(t, err)
			start := time.Now()
			drive(t, c, run, tc.turns, tc.parallel)
			wall := time.Since(start)
			u1, err := readUsage(br.pid())
			require.NoError(t, err)
			cmdsTotal, per := commandDelta(cmds0, rds.commandStats(t))

			// System calls and context switches, counted by perf in a window of their own:
			// counting costs the brain CPU time, which must not be in the figure above.
			kernel := perfStat(t, br.pid())
			kernelTurns := max(tc.turns/4, turnsPerCall)
			drive(t, c, run+"-perf", kernelTurns, tc.parallel)
			counts := kernel()
			turnCPU := (u1.Sched - u0.Sched) / time.Duration(tc.turns)

			// Non-message events: call_started then call_ended on fresh calls.
			const events = 1000
			cmds0 = rds.commandStats(t)
			e0, err := readUsage(br.pid())
			require.NoError(t, err)
			sendEvents(t, c, run, events, max(tc.parallel, 1))
			e1, err := readUsage(br.pid())
			require.NoError(t, err)
			evTotal, evPer := commandDelta(cmds0, rds.commandStats(t))

			line := fmt.Sprintf("%-26s turns %5d in %6.1fs (%6.0f/s)  brain CPU/turn %7.1f µs (ticks: %7.1f µs)  CPU %4.0f%%  "+
				"redis cmds/turn %.2f  | CPU/event %6.1f µs  redis cmds/event %.2f  | idle CPU %.2f ms/s",
				tc.name, tc.turns, wall.Seconds(), float64(tc.turns)/wall.Seconds(),
				us(turnCPU), us((u1.Ticks-u0.Ticks)/time.Duration(tc.turns)),
				100*float64(u1.Sched-u0.Sched)/float64(wall),
				float64(cmdsTotal)/float64(tc.turns),
				us((e1.Sched-e0.Sched)/events), float64(evTotal)/events,
				float64(idle)/float64(time.Millisecond))
			t.Log(line)
			t.Logf("redis commands per message turn: %s", perOp(per, tc.turns))
			t.Logf("redis commands per event (call_started, call_ended): %s", perOp(evPer, events))
			if counts != nil {
				all, switches := counts[""], counts["context-switches"]
				delete(counts, "")
				delete(counts, "context-switches")
				line += fmt.Sprintf("  | per turn: %.0f system calls, %.0f context switches", float64(all)/float64(kernelTurns), float64(switches)/float64(kernelTurns))
				t.Logf("system calls per message turn (perf stat): all %.1f, %s; context switches %.1f",
					float64(all)/float64(kernelTurns), perOp(counts, kernelTurns), float64(switches)/float64(kernelTurns))
			}
			report = append(report, line)
		})
	}
	t.Log("summary:\n" + strings.Join(report, "\n"))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// perOp formats per-command counts divided by n.
func perOp(per map[string]int64, n int) string {
	var parts []string
	for k, v := range per {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(v)/float64(n)))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// drive sends n messages as n/turnsPerCall calls of turnsPerCall turns each, parallel calls
// at a time (a call's turns in order, as on a phone), and fails t on any answer that is not
// spoken NDJSON. It returns the client-side time to each first line.
func drive(t *testing.T, c *saperly.Client, run string, n, parallel int) dist {
	t.Helper()
	calls := max(n/turnsPerCall, 1)
	var (
		next   atomic.Int64
		mu     sync.Mutex
		first  dist
		failed []string
		wg     sync.WaitGroup
	)
	ctx := t.Context()
	for range parallel {
		wg.Go(func() {
			for {
				call := int(next.Add(1) - 1)
				if call >= calls || ctx.Err() != nil {
					return
				}
				id := fmt.Sprintf("cpu-%s-%d", run, call)
				for turn := range turnsPerCall {
					res, err := c.Say(ctx, id, benchLine, conversation[turn%len(conversation)])
					mu.Lock()
					switch {
					case err != nil:
						failed = append(failed, err.Error())
					case res.Status != http.StatusOK || len(res.Lines) == 0:
						failed = append(failed, fmt.Sprintf("status %d, %d lines, body %q", res.Status, len(res.Lines), res.Body))
					default:
						first = append(first, res.Lines[0].At)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of %d messages failed; first: %s", len(failed), calls*turnsPerCall, failed[0])
	}
	return first
}

// sendEvents sends n/2 call_started and n/2 call_ended events, each pair on a fresh call.
func sendEvents(t *testing.T, c *saperly.Client, run string, n, parallel int) {
	t.Helper()
	var (
		next   atomic.Int64
		errs   atomic.Int64
		firstE atomic.Value
		wg     sync.WaitGroup
	)
	ctx := t.Context()
	check := func(res *saperly.Result, err error) {
		if err == nil && res.Status != http.StatusOK {
			err = fmt.Errorf("status %d, body %q", res.Status, res.Body)
		}
		if err != nil {
			errs.Add(1)
			firstE.CompareAndSwap(nil, err.Error())
		}
	}
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n/2 || ctx.Err() != nil {
					return
				}
				call := fmt.Sprintf("ev-%s-%d", run, i)
				check(c.StartCall(ctx, call, benchLine, "+14155551234", "+14155550123"))
				check(c.End(ctx, call, benchLine))
			}
		})
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Errorf("%d of %d events failed; first: %v", errs.Load(), n, firstE.Load())
	}
}
