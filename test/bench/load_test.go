package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/loadgen"
)

// loadConfig shapes a load run. Every knob has an environment variable (BENCH_LOAD_*).
type loadConfig struct {
	Calls int // calls in the run; each is started once and ended once
	// Concurrency is how many calls run at once at most (the load engine's); default Calls.
	Concurrency int
	Messages    int           // messages per call
	Ramp        time.Duration // calls start evenly spread over this
	// Think is the mean time between the end of one answer and the next message (and before
	// hanging up): Saperly speaking the answer, then the caller speaking. It is drawn uniformly
	// from [Think/2, 3·Think/2] so calls do not march in step. The default, 5 s, is short for a
	// phone call (speaking a two-sentence answer alone takes about that long).
	Think      time.Duration
	TTFT       time.Duration // stand-in model: time to first token
	TokenDelay time.Duration // stand-in model: time between tokens
	Timeout    time.Duration // the run stops by then whatever happens
}

func loadConfigFromEnv(t *testing.T) loadConfig {
	t.Helper()
	calls := envInt(t, "BENCH_LOAD_CALLS", 1000)
	return loadConfig{
		Calls:       calls,
		Concurrency: envInt(t, "BENCH_LOAD_CONCURRENCY", calls),
		Messages:    envInt(t, "BENCH_LOAD_MESSAGES", 3),
		Ramp:        envDur(t, "BENCH_LOAD_RAMP", 10*time.Second),
		Think:       envDur(t, "BENCH_LOAD_THINK", 5*time.Second),
		TTFT:        envDur(t, "BENCH_LOAD_TTFT", 300*time.Millisecond),
		TokenDelay:  envDur(t, "BENCH_LOAD_TOKEN_DELAY", 20*time.Millisecond),
		Timeout:     envDur(t, "BENCH_LOAD_TIMEOUT", 3*time.Minute),
	}
}

// loadScripts are the calls of a load run, as call scripts: call_started, cfg.Messages
// messages and call_ended, the caller thinking before each. Each variant draws its think
// times uniformly from [Think/2, 3·Think/2] (seeded, so runs are comparable) and starts at
// another point of the conversation; calls play the variants in turn, so they do not march in
// step.
func loadScripts(cfg loadConfig) []*callscript.Script {
	const variants = 16
	rng := mrand.New(mrand.NewPCG(7, 7))
	think := func() time.Duration { return cfg.Think/2 + time.Duration(rng.Int64N(int64(cfg.Think)+1)) }
	var out []*callscript.Script
	for v := range variants {
		s := &callscript.Script{
			Name: fmt.Sprintf("bench-%d", v), LineID: benchLine, From: "+14155551234", To: "+14155550123",
			Turns: []callscript.Turn{{Kind: callscript.KindStart}},
		}
		for m := range cfg.Messages {
			s.Turns = append(s.Turns, callscript.Turn{Kind: callscript.KindSay, Think: think(), Text: conversation[(v+m)%len(conversation)]})
		}
		s.Turns = append(s.Turns, callscript.Turn{Kind: callscript.KindHangup, Think: think(), Fields: map[string]any{"status": "completed"}})
		out = append(out, s)
	}
	return out
}

// loadTarget is the brain a load run drives, and how to read it.
type loadTarget struct {
	name string
	URL  string
	// cpu returns the CPU time used so far: the brain binary's, or in process this whole test
	// process's (brain and clients together).
	cpu func() (time.Duration, error)
	// mem returns the resident set size now and at its peak.
	mem func() (rss, peak int64, err error)
	// stop ends the brain and flushes its log.
	stop    func() error
	logPath string
	// turns returns each turn's figures to the nanosecond (in process), or nil: then they come
	// from the log, to the microsecond.
	turns func() []turnFig
	// bare: the target writes no turn log (the floor), so the figures read from it are left out.
	bare  bool
	redis *redisCounter // in process: the brain's Redis round trips
	pool  *redis.Client // in process: the brain's Redis client, for its pool statistics
	pid   int
}

// TestLoad runs a thousand concurrent calls against the brain, with a private Redis and the
// stand-in model binary paced like a real model, all on loopback. Each call is call_started,
// three messages and call_ended, the caller speaking between them. Every run is bounded by its
// call count and by BENCH_LOAD_TIMEOUT. BENCH_LOAD_CONCURRENCY caps the calls running at once
// (default: all of them); issue 10 §2's shape is BENCH_LOAD_CALLS=300 BENCH_LOAD_CONCURRENCY=150.
//
// Three targets, each a subtest (BENCH_LOAD_TARGET picks one):
//
//   - binary: the built cmd/brain, configured through its environment. Its CPU and memory are
//     read from /proc, its latencies from its own turn log lines (milliseconds to the
//     microsecond, as it logs them). BENCH_PERF=<file> records a perf profile of it, and
//     BENCH_CPUPROFILE=<file> a Go CPU profile (through BRAIN_PPROF), of
//     BENCH_CPUPROFILE_SECONDS (30) from 2 s after it is up.
//   - in_process: the brain wired in this process (as in the benchmarks), whose turn figures
//     come from agent.Config.OnTurn to the nanosecond; CPU and memory are then the test
//     process's, clients included. BENCH_CPUPROFILE=<file> writes a Go CPU profile.
//   - floor: test/bench/floor, the bare server of issue 10 §2 that does only the hot path
//     (verify, one Redis pipeline, the model's stream cut into phrases, NDJSON, one pipeline),
//     the reference for the brain's CPU per message. It logs no turns: its report has no
//     brain-side latencies, only what /proc, Redis and the clients see. BENCH_PERF works as
//     for binary.
//
// Each reports throughput, the brain's overhead to the first line (not the floor), what the clients saw, every
// failure (the test fails on any), CPU, memory and Redis traffic. BENCH_LOAD=1 runs it.
func TestLoad(t *testing.T) {
	requireEnv(t, envLoad)
	cfg := loadConfigFromEnv(t)
	t.Logf("config: %+v", cfg)
	brainBin, mockBin := buildBinaries(t)
	only := os.Getenv("BENCH_LOAD_TARGET")
	// BENCH_LOAD_REDIS_QUERY tunes the brain's Redis client through its URL (go-redis reads
	// options such as pool_size=100 from the query), as an operator would through REDIS_URL.
	redisURL := func(r *privateRedis) string {
		if q := os.Getenv("BENCH_LOAD_REDIS_QUERY"); q != "" {
			return r.URL + "?" + q
		}
		return r.URL
	}

	t.Run("binary", func(t *testing.T) {
		if only != "" && only != t.Name()[len("TestLoad/"):] {
			t.Skip("BENCH_LOAD_TARGET=" + only)
		}
		rds := startRedis(t)
		mock, modelURL := startMock(t, mockBin, cfg.TTFT, cfg.TokenDelay)
		var profiler []string // BENCH_CPUPROFILE: through the brain's own profiler
		profilerAddr := "127.0.0.1:" + freePort(t)
		if os.Getenv("BENCH_CPUPROFILE") != "" {
			profiler = []string{"BRAIN_METRICS_ADDR=" + profilerAddr, "BRAIN_PPROF=1"}
		}
		br, url := startBrainProc(t, brainBin, redisURL(rds), modelURL, profiler...)
		pid := br.pid()
		stopPerf := startPerf(t, pid)
		stopProfile := func() {}
		if profiler != nil {
			stopProfile = profileBinary(t, profilerAddr)
		}
		runLoad(t, cfg, rds, mock, loadTarget{
			name: "brain binary", URL: url, pid: pid, logPath: br.LogPath,
			cpu: func() (time.Duration, error) { u, err := readUsage(pid); return u.Sched, err },
			mem: func() (int64, int64, error) { return memory(pid) },
			stop: func() error {
				stopPerf()
				stopProfile()
				return br.stop()
			},
		})
	})

	t.Run("floor", func(t *testing.T) {
		if only != "" && only != t.Name()[len("TestLoad/"):] {
			t.Skip("BENCH_LOAD_TARGET=" + only)
		}
		floorBin := buildFloor(t)
		rds := startRedis(t)
		mock, modelURL := startMock(t, mockBin, cfg.TTFT, cfg.TokenDelay)
		fl, url := startFloorProc(t, floorBin, redisURL(rds), modelURL)
		pid := fl.pid()
		stopPerf := startPerf(t, pid)
		runLoad(t, cfg, rds, mock, loadTarget{
			name: "floor (test/bench/floor)", URL: url, pid: pid, logPath: fl.LogPath, bare: true,
			cpu: func() (time.Duration, error) { u, err := readUsage(pid); return u.Sched, err },
			mem: func() (int64, int64, error) { return memory(pid) },
			stop: func() error {
				stopPerf()
				return fl.stop()
			},
		})
	})

	t.Run("in_process", func(t *testing.T) {
		if only != "" && only != t.Name()[len("TestLoad/"):] {
			t.Skip("BENCH_LOAD_TARGET=" + only)
		}
		rds := startRedis(t)
		mock, modelURL := startMock(t, mockBin, cfg.TTFT, cfg.TokenDelay)
		logPath := filepath.Join(t.TempDir(), "brain.log")
		br := startInProcess(t, brainOptions{Store: storeRedis, RedisURL: redisURL(rds), ModelURL: modelURL, LogPath: logPath})
		stopProfile := startCPUProfile(t)
		self := os.Getpid()
		runLoad(t, cfg, rds, mock, loadTarget{
			name: "brain in process (with the clients)", URL: br.URL, pid: self, logPath: logPath, redis: br.Redis, pool: br.Pool,
			cpu: func() (time.Duration, error) { return selfCPU(), nil },
			mem: func() (int64, int64, error) { return memory(self) },
			stop: func() error {
				stopProfile()
				return nil // the brain stops when the test ends; its log is written line by line
			},
			turns: func() []turnFig {
				var out []turnFig
				for _, s := range br.Turns.take() {
					out = append(out, figOf(s))
				}
				return out
			},
		})
	})
}

// runLoad runs one load run against target and reports it.
func runLoad(t *testing.T, cfg loadConfig, rds *privateRedis, mock *proc, target loadTarget) {
	t.Helper()
	c := newClient(target.URL, cfg.Calls+16)
	run := rand.Text()[:8]
	const warm = 2 * turnsPerCall
	drive(t, c, run+"-warm", warm, 2)
	if target.turns != nil {
		target.turns() // forget the warm-up's
	}

	scripts := loadScripts(cfg)
	runner := &callscript.Runner{URL: c.URL, Secret: c.Secret, HTTP: c.HTTP, TimeScale: 1}
	play, err := loadgen.ScriptPlayer(runner, scripts, nil)
	require.NoError(t, err)
	engine, err := loadgen.New(loadgen.Config{
		Concurrency: cfg.Concurrency, Calls: cfg.Calls, Ramp: cfg.Ramp, MaxDuration: cfg.Timeout,
	}, play)
	require.NoError(t, err)

	// CPU samples, for the busiest second.
	type sample struct {
		at  time.Time
		cpu time.Duration
	}
	var samples []sample
	sampleStop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if cpu, err := target.cpu(); err == nil {
				samples = append(samples, sample{at: time.Now(), cpu: cpu})
			}
			select {
			case <-sampleStop:
				return
			case <-tick.C:
			}
		}
	}()

	// BENCH_LOAD_SYSCALLS=1 counts the target's system calls and context switches with perf
	// (a process target only). Counting makes each system call dearer: the CPU figure of
	// such a run is not comparable with one without.
	kernel := func() map[string]int64 { return nil }
	if os.Getenv("BENCH_LOAD_SYSCALLS") == "1" && target.pid != os.Getpid() {
		kernel = perfStat(t, target.pid)
	}
	cmds0 := rds.commandStats(t)
	var pool0 *redis.PoolStats
	if target.pool != nil {
		pool0 = target.pool.PoolStats()
	}
	var rtt0 int64
	if target.redis != nil {
		rtt0, _ = target.redis.snapshot()
	}
	cpu0, err := target.cpu()
	require.NoError(t, err)
	mock0, err := readUsage(mock.pid())
	require.NoError(t, err)
	redis0, err := readUsage(rds.proc.pid())
	require.NoError(t, err)
	busy0, steal0, err := machineCPU()
	require.NoError(t, err)
	load0 := loadAvg()
	self0 := selfCPU()
	start := time.Now()
	res := engine.Run(t.Context())
	wall := time.Since(start)
	counts := kernel()
	cpu1, err := target.cpu()
	require.NoError(t, err)
	mock1, err := readUsage(mock.pid())
	require.NoError(t, err)
	redis1, err := readUsage(rds.proc.pid())
	require.NoError(t, err)
	busy1, steal1, err := machineCPU()
	require.NoError(t, err)
	self1 := selfCPU()
	_, peakRSS, err := target.mem()
	require.NoError(t, err)
	cmdsTotal, perCmd := commandDelta(cmds0, rds.commandStats(t))
	var rtts int64
	if target.redis != nil {
		rtt1, _ := target.redis.snapshot()
		rtts = rtt1 - rtt0
	}
	close(sampleStop)
	<-sampled
	require.NotEqual(t, loadgen.StopMaxDuration, res.Stop, "the run hit BENCH_LOAD_TIMEOUT")
	require.NoError(t, target.stop(), "the brain must exit cleanly")
	if keep := os.Getenv("BENCH_LOAD_LOG"); keep != "" && !target.bare {
		raw, err := os.ReadFile(target.logPath)
		require.NoError(t, err)
		path := keep + "." + t.Name()[len("TestLoad/"):] + ".log"
		require.NoError(t, os.WriteFile(path, raw, 0o644))
		t.Logf("the brain's log is kept in %s", path)
	}

	var bl brainLog
	var turns []turnFig
	source := "its log, to the µs"
	if !target.bare {
		f, err := os.Open(target.logPath)
		require.NoError(t, err)
		defer f.Close()
		bl, err = parseLog(f)
		require.NoError(t, err)
		turns = bl.Turns[min(warm, len(bl.Turns)):]
		if target.turns != nil {
			turns, source = target.turns(), "OnTurn, ns"
		}
	}

	var over, verify, load, pre, lag, ttft, firstLine dist
	outcomes := map[string]int{}
	holds, degraded, unmeasured := 0, 0, 0
	for _, f := range turns {
		outcomes[f.Outcome]++
		holds += f.Holds
		if f.Degraded || f.Fallback || f.Budget != "" {
			degraded++
		}
		verify = append(verify, f.Verify)
		load = append(load, f.StateLoad)
		pre = append(pre, f.PreModel)
		ttft = append(ttft, f.TTFT)
		firstLine = append(firstLine, f.FirstLine)
		if o, ok := f.overhead(); ok {
			over = append(over, o)
			lag = append(lag, f.FirstLineLag)
		} else {
			unmeasured++
		}
	}
	statuses := map[string]int{}
	for _, e := range bl.Events[min(warm, len(bl.Events)):] {
		statuses[fmt.Sprintf("%s %d %s", e.EventType, e.Status, e.Outcome)]++
	}
	var busiest float64
	for i := range samples {
		for j := i + 1; j < len(samples); j++ {
			if d := samples[j].at.Sub(samples[i].at); d >= time.Second {
				busiest = max(busiest, float64(samples[j].cpu-samples[i].cpu)/float64(d))
				break
			}
		}
	}

	busiestRate := 0
	for _, sec := range res.Series {
		busiestRate = max(busiestRate, sec.Turns)
	}
	res.Target = target.URL
	res.Note = fmt.Sprintf("test/bench TestLoad against the %s; model ttft %s, token delay %s; %d cores shared with whatever else runs (see the machine line)",
		target.name, cfg.TTFT, cfg.TokenDelay, runtime.NumCPU())
	if prefix := os.Getenv("BENCH_LOAD_REPORT"); prefix != "" {
		for ext, write := range map[string]func(io.Writer) error{"json": res.WriteJSON, "html": res.WriteHTML} {
			path := fmt.Sprintf("%s.%s.%s", prefix, t.Name()[len("TestLoad/"):], ext)
			f, err := os.Create(path)
			if !assert.NoError(t, err, "BENCH_LOAD_REPORT: the figures are still logged below") {
				continue
			}
			assert.NoError(t, write(f))
			assert.NoError(t, f.Close())
			t.Logf("the load engine's report is in %s", path)
		}
	}
	var summary strings.Builder
	require.NoError(t, res.WriteSummary(&summary))
	messages := int(res.FirstLine.Count)

	cpu := cpu1 - cpu0
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("load run against the %s: %d calls × (call_started + %d messages + call_ended), at most %d at once, ramp %s, think ~%s, model ttft %s, token delay %s",
		target.name, cfg.Calls, cfg.Messages, cfg.Concurrency, cfg.Ramp, cfg.Think, cfg.TTFT, cfg.TokenDelay)
	p("wall                      %.1f s", wall.Seconds())
	p("peak concurrent calls     %d", res.PeakActive)
	p("throughput                %.1f messages/s, %.1f deliveries/s over the whole run; busiest second: %d messages sent",
		float64(messages)/wall.Seconds(), float64(res.Deliveries["message"]+res.Deliveries["call_started"]+res.Deliveries["call_ended"])/wall.Seconds(), busiestRate)
	p("answered                  messages %d of %d, events %d of %d", messages, cfg.Calls*cfg.Messages,
		res.Deliveries["call_started"]+res.Deliveries["call_ended"], 2*cfg.Calls)
	p("failures                  %d %v %v", res.ErrorCount, res.Errors, res.ErrorSamples)
	if !target.bare {
		p("brain overhead 1st line   %s   (pre_model + first_line_lag, from %s; %d turns not measured)", over, source, unmeasured)
		p("  pre_model               %s", pre)
		p("    verify                %s   (read and check the delivery)", verify)
		p("    state_load            %s   (claim and state load)", load)
		p("  first_line_lag          %s", lag)
		p("model ttft (brain's view) %s", ttft)
		p("first line (brain's view) %s   (receipt → first line flushed)", firstLine)
	}
	p("first line (client)       p50 %s  p99 %s  max %s  (the load engine's HDR histogram)", msF(res.FirstLine.P50Ms), msF(res.FirstLine.P99Ms), msF(res.FirstLine.MaxMs))
	p("whole answer (client)     p50 %s  p99 %s  max %s", msF(res.Turn.P50Ms), msF(res.Turn.P99Ms), msF(res.Turn.MaxMs))
	if target.bare {
		p("lines logged              %d besides the ready line (the floor logs only errors)", bareLogLines(t, target.logPath))
	} else {
		p("turn outcomes             %v;  holding phrases %d;  degraded/fallback/budget turns %d", outcomes, holds, degraded)
		p("deliveries logged         %v", statuses)
		p("warnings/errors logged    %d (turn lines aside)", len(bl.Warnings))
	}
	p("CPU (%s)  %.2f s = %.1f%% of one core over the run, busiest second %.0f%%;  %.0f µs per message, its call's events included",
		target.name, cpu.Seconds(), 100*float64(cpu)/float64(wall), 100*busiest, us(cpu/time.Duration(max(messages, 1))))
	if counts != nil {
		all, switches := counts[""], counts["context-switches"]
		delete(counts, "")
		delete(counts, "context-switches")
		n := max(messages, 1)
		p("system calls (perf stat)  %.1f per message, its call's events included: %s; context switches %.1f",
			float64(all)/float64(n), perOp(counts, n), float64(switches)/float64(n))
	}
	p("RSS peak                  %.1f MiB", float64(peakRSS)/(1<<20))
	p("redis commands            %d: %.1f per call: %s", cmdsTotal, float64(cmdsTotal)/float64(cfg.Calls), perOp(perCmd, cfg.Calls))
	if target.redis != nil {
		p("redis round trips         %.1f per call", float64(rtts)/float64(cfg.Calls))
	}
	if target.pool != nil {
		ps := target.pool.PoolStats()
		p("redis pool                %d connections (%d idle) at the end; %d waits for a free connection, %s waiting in all, %d timeouts",
			ps.TotalConns, ps.IdleConns, ps.WaitCount-pool0.WaitCount,
			time.Duration(ps.WaitDurationNs-pool0.WaitDurationNs), ps.Timeouts-pool0.Timeouts)
	}
	ours := (mock1.Sched - mock0.Sched) + (redis1.Sched - redis0.Sched) + (self1 - self0)
	if target.pid != os.Getpid() {
		ours += cpu
	}
	p("the machine               %d cores %.0f%% busy over the run (steal %.1f%%): stand-in model %.2f s, redis %.2f s, clients (this process) %.2f s, processes not in this run %.2f s; load average before %s",
		runtime.NumCPU(), 100*float64(busy1-busy0)/float64(wall)/float64(runtime.NumCPU()), 100*float64(steal1-steal0)/float64(wall)/float64(runtime.NumCPU()),
		(mock1.Sched - mock0.Sched).Seconds(), (redis1.Sched - redis0.Sched).Seconds(), (self1 - self0).Seconds(),
		max(busy1-busy0-ours, 0).Seconds(), load0)
	t.Log("\n" + b.String() + "\nthe load engine's summary (callsim load):\n" + summary.String())
	for i, w := range bl.Warnings {
		if i == 3 {
			break
		}
		t.Logf("brain warning: %s", w)
	}

	assert.Zero(t, res.ErrorCount, "every delivery must be answered 200 (%v)", res.ErrorSamples)
	assert.Zero(t, res.Silent, "every message must be answered with speech")
	if !target.bare {
		assert.Len(t, turns, messages, "one turn per answered message")
		assert.Zero(t, bl.Unreadable, "unreadable brain log lines")
	}
}

// bareLogLines counts the lines of the floor's output other than its ready line: its errors.
func bareLogLines(t *testing.T, path string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if _, ready := listening(l); !ready && l != "" {
			n++
		}
	}
	return n
}

// msF prints milliseconds as the bench figures do.
func msF(v float64) string { return ms(msDur(v)) }

// loadAvg is the machine's load average (1, 5, 15 min), for the report.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// startCPUProfile writes a Go CPU profile of this process to BENCH_CPUPROFILE, when set, until
// the returned function is called (or the test ends).
func startCPUProfile(t *testing.T) func() {
	t.Helper()
	path := os.Getenv("BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, pprof.StartCPUProfile(f))
	var once sync.Once
	stop := func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			assert.NoError(t, f.Close())
			t.Logf("Go CPU profile in %s (go tool pprof -top %s)", path, path)
		})
	}
	t.Cleanup(stop)
	return stop
}

// profileBinary writes a Go CPU profile of the brain binary to BENCH_CPUPROFILE: the
// BENCH_CPUPROFILE_SECONDS (30) from 2 s after the brain is up (the warm-up and the first
// calls), fetched from its profiler (BRAIN_PPROF, on its metrics address). Keep the seconds
// within the run: the returned function waits for the profile.
func profileBinary(t *testing.T, addr string) func() {
	t.Helper()
	path := os.Getenv("BENCH_CPUPROFILE")
	secs := envInt(t, "BENCH_CPUPROFILE_SECONDS", 30)
	done := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second) // the calls are ramping up
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			done <- err
			return
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			done <- fmt.Errorf("GET %s: %s (a brain without BRAIN_PPROF?)", url, res.Status)
			return
		}
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, res.Body)
		done <- errors.Join(err, f.Close())
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			if err := <-done; err != nil {
				t.Errorf("CPU profile of the brain binary: %v", err)
				return
			}
			t.Logf("Go CPU profile of the brain binary in %s (%d s; go tool pprof -top %s)", path, secs, path)
		})
	}
}

// startPerf records a CPU profile of pid with perf when BENCH_PERF names the output file. The
// returned function stops it; it is also stopped when the test ends.
func startPerf(t *testing.T, pid int) func() {
	t.Helper()
	out := os.Getenv("BENCH_PERF")
	if out == "" {
		return func() {}
	}
	bin, err := exec.LookPath("perf")
	if err != nil {
		t.Logf("BENCH_PERF set but perf is not installed: no profile")
		return func() {}
	}
	cmd := exec.Command(bin, "record", "-F", "499", "-g", "-p", fmt.Sprint(pid), "-o", out)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	require.NoError(t, cmd.Start(), "start perf")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGINT) // perf writes its file on SIGINT
			timer := time.NewTimer(30 * time.Second)
			defer timer.Stop()
			select {
			case err := <-done:
				if err != nil && !strings.Contains(err.Error(), "interrupt") {
					t.Logf("perf: %v: %s", err, stderr.String())
				}
			case <-timer.C:
				_ = cmd.Process.Kill()
				<-done
			}
			t.Logf("perf profile of the brain in %s (perf report -i %s --no-children)", out, out)
		})
	}
	t.Cleanup(stop)
	return stop
}
