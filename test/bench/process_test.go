package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The process-level measurements run only when asked: they build binaries and take minutes.
const (
	envProc = "BENCH"      // BENCH=1: TestBrainCPU
	envLoad = "BENCH_LOAD" // BENCH_LOAD=1: TestLoad
)

func requireEnv(t *testing.T, name string) {
	t.Helper()
	if os.Getenv(name) != "1" {
		t.Skipf("%s=1 runs this measurement (make bench does)", name)
	}
}

// envInt and envDur read a tuning knob of a measurement, or its default.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

func envDur(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	require.NoError(t, err, name)
	return d
}

// buildBinaries builds cmd/brain and cmd/mockllm as a user would (no race detector) into a
// temporary directory.
//
// BENCH_BRAIN_BIN names a brain binary built elsewhere to measure instead (another commit's,
// to compare two builds under the same load with the same harness).
func buildBinaries(t *testing.T) (brain, mock string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/callbrain/callbrain/cmd/brain", "github.com/callbrain/callbrain/cmd/mockllm")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	brain = filepath.Join(dir, "brain")
	if bin := os.Getenv("BENCH_BRAIN_BIN"); bin != "" {
		brain = bin
		t.Logf("measuring the brain binary %s (BENCH_BRAIN_BIN)", bin)
	}
	return brain, filepath.Join(dir, "mockllm")
}

// proc is a process the test started. It is stopped (SIGTERM, then SIGKILL) when the test ends
// at the latest, and its output is kept in a file.
type proc struct {
	name     string
	cmd      *exec.Cmd
	out      *lineWatcher
	LogPath  string
	done     chan struct{}
	err      error
	stopOnce sync.Once
}

// startProc starts bin and waits until ready accepts a line of its output, returning what
// ready extracted from it.
func startProc(t *testing.T, name string, ready func(line string) (string, bool), env []string, bin string, args ...string) (*proc, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	p := &proc{name: name, LogPath: logPath, done: make(chan struct{})}
	p.out = &lineWatcher{f: f, ready: ready, found: make(chan string, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		assert.NoError(t, f.Close())
	})

	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case v := <-p.out.found:
		return p, v
	case <-p.done:
		t.Fatalf("%s exited before it was ready (%v); its output:\n%s", name, p.err, tail(logPath))
	case <-timer.C:
		t.Fatalf("%s not ready after 30s; its output:\n%s", name, tail(logPath))
	case <-t.Context().Done():
		t.FailNow()
	}
	return nil, ""
}

// stop sends SIGTERM and waits for the exit, killing the process after 15 s. It returns the
// exit error (nil for a clean exit).
func (p *proc) stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // it may have just exited: Wait reports
		timer := time.NewTimer(15 * time.Second)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	<-p.done
	return p.err
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// lineWatcher copies a process's output to a file and hands the first line ready accepts to
// found. exec serialises the writes when stdout and stderr share it.
type lineWatcher struct {
	f     *os.File
	ready func(string) (string, bool)
	found chan string
	buf   []byte
	done  bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	if !w.done {
		w.buf = append(w.buf, p...)
		for {
			i := bytes.IndexByte(w.buf, '\n')
			if i < 0 {
				break
			}
			line := string(w.buf[:i])
			w.buf = w.buf[i+1:]
			if v, ok := w.ready(line); ok {
				w.found <- v
				w.done, w.buf = true, nil
				break
			}
		}
	}
	return w.f.Write(p)
}

// tail returns the end of a log file, for a failure message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freePort returns a loopback port that was free a moment ago (for redis-server, which cannot
// report a port it picked itself).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	return port
}

// baseEnv is what every child process gets from the test's environment: nothing but the Go
// runtime's knobs, so a stray OPENAI_API_KEY or REDIS_URL cannot change what is measured.
func baseEnv() []string {
	var env []string
	// BRAIN_RECORD*: measure the brain with recording on (docs/recording.md, "Cost").
	for _, k := range []string{"PATH", "HOME", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "BRAIN_RECORD", "BRAIN_RECORD_TEXT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// privateRedis is a redis-server of the test's own, so its command counts are the brain's.
type privateRedis struct {
	URL  string
	rdb  *redis.Client
	proc *proc
}

func startRedis(t *testing.T) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (make bench installs it)")
	}
	port := freePort(t)
	p, _ := startProc(t, "redis", func(l string) (string, bool) { return "", strings.Contains(l, "Ready to accept connections") },
		baseEnv(), bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	r := &privateRedis{URL: "redis://127.0.0.1:" + port + "/0", proc: p}
	r.rdb = redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + port})
	t.Cleanup(func() { assert.NoError(t, r.rdb.Close()) })
	require.NoError(t, r.rdb.Ping(t.Context()).Err())
	return r
}

// commandStats returns the calls per command Redis has served, from INFO commandstats.
func (r *privateRedis) commandStats(t *testing.T) map[string]int64 {
	t.Helper()
	info, err := r.rdb.Info(t.Context(), "commandstats").Result()
	require.NoError(t, err)
	out := map[string]int64{}
	for _, l := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		require.NoError(t, err, "parse %q", l)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// commandDelta is after − before, without the INFO calls the measurement itself made.
func commandDelta(before, after map[string]int64) (total int64, per map[string]int64) {
	per = map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 && k != "info" {
			per[k] = d
			total += d
		}
	}
	return total, per
}

// startMock starts the stand-in model binary with a default behaviour and returns its base URL
// (…/v1).
func startMock(t *testing.T, bin string, ttft, tokenDelay time.Duration) (*proc, string) {
	t.Helper()
	return startProc(t, "mockllm", func(l string) (string, bool) {
		return strings.CutPrefix(strings.TrimSpace(l), "mockllm listening on ")
	}, baseEnv(), bin, "-addr", "127.0.0.1:0", "-ttft", ttft.String(), "-token-delay", tokenDelay.String())
}

// startBrainProc starts the brain binary on a free loopback port with Redis and the stand-in
// model, configured only through its environment as in production, and returns its base URL.
func startBrainProc(t *testing.T, bin, redisURL, modelURL string, extraEnv ...string) (*proc, string) {
	t.Helper()
	prompts, err := filepath.Abs(filepath.Join(moduleRoot, "prompts"))
	require.NoError(t, err)
	env := append(baseEnv(),
		"BRAIN_ADDR=127.0.0.1:0",
		"REDIS_URL="+redisURL,
		"OPENAI_BASE_URL="+modelURL,
		"OPENAI_API_KEY=bench",
		"PROMPTS_DIR="+prompts,
		"BRAIN_LOG_LEVEL=info",
	)
	env = append(env, extraEnv...)
	p, addr := startProc(t, "brain", listening, env, bin)
	return p, "http://" + addr
}

// listening is the ready-matcher of the brain and of the floor: the JSON log line
// {"msg":"listening","addr":…} they print once they accept connections.
func listening(l string) (string, bool) {
	var v struct{ Msg, Addr string }
	if json.Unmarshal([]byte(l), &v) != nil || v.Msg != "listening" {
		return "", false
	}
	return v.Addr, true
}

// buildFloor builds test/bench/floor, the bare hot-path server of issue 10 §2.
func buildFloor(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/callbrain/callbrain/test/bench/floor")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return filepath.Join(dir, "floor")
}

// startFloorProc starts the floor binary as startBrainProc starts the brain: on a free
// loopback port, with Redis and the stand-in model, through the same environment variables.
func startFloorProc(t *testing.T, bin, redisURL, modelURL string) (*proc, string) {
	t.Helper()
	env := append(baseEnv(),
		"BRAIN_ADDR=127.0.0.1:0",
		"REDIS_URL="+redisURL,
		"OPENAI_BASE_URL="+modelURL,
		"OPENAI_API_KEY=bench",
	)
	p, addr := startProc(t, "floor", listening, env, bin)
	return p, "http://" + addr
}

// usage is a process's CPU time so far, all threads, user and system.
type usage struct {
	// Sched is the sum of the threads' on-CPU time from /proc/<pid>/task/*/schedstat, in
	// nanoseconds (a Go process's threads live as long as it does, so none is lost).
	Sched time.Duration
	// Ticks is utime+stime from /proc/<pid>/stat, with the kernel's 10 ms resolution: a cross-check.
	Ticks time.Duration
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func readUsage(pid int) (usage, error) {
	var u usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("read stat: %w", err)
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return u, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err := errors.Join(err1, err2); err != nil {
		return u, fmt.Errorf("parse stat: %w", err)
	}
	u.Ticks = time.Duration(ut+st) * clockTick

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil {
		return u, fmt.Errorf("list threads: %w", err)
	}
	for _, path := range tasks {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the thread just exited
		}
		run, _, _ := strings.Cut(string(b), " ")
		ns, err := strconv.ParseInt(run, 10, 64)
		if err != nil {
			return u, fmt.Errorf("parse %s: %w", path, err)
		}
		u.Sched += time.Duration(ns)
	}
	return u, nil
}

// memory returns a process's resident set size now and at its peak, in bytes.
func memory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read status: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

// machineCPU is the whole machine's CPU time so far, from /proc/stat: busy (everything but idle
// and iowait, all cores together) and steal (time the hypervisor gave to other guests).
func machineCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat")
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
	}
	busyTicks := v[0] + v[1] + v[2] + v[5] + v[6] // user nice system irq softirq
	return time.Duration(busyTicks) * clockTick, time.Duration(v[7]) * clockTick, nil
}

// selfCPU is this process's own CPU time (the Saperly stand-in clients), from getrusage.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// kernelEvents are counted per turn by perfStat: every system call the brain makes, the busiest
// ones by name, and its context switches.
var kernelEvents = []string{
	"raw_syscalls:sys_enter", "context-switches",
	"syscalls:sys_enter_read", "syscalls:sys_enter_write", "syscalls:sys_enter_futex",
	"syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_nanosleep",
}

// perfStat counts kernelEvents in process pid until the returned function is called, which
// returns the counts (nil when perf is missing or not permitted here). The counter is stopped
// when the test ends at the latest.
func perfStat(t *testing.T, pid int) func() map[string]int64 {
	t.Helper()
	bin, err := exec.LookPath("perf")
	if err != nil {
		return func() map[string]int64 { return nil }
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "stat", "-x", ",", "-e", strings.Join(kernelEvents, ","), "-p", strconv.Itoa(pid))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return func() map[string]int64 { return nil }
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // perf exits non-zero on SIGINT; what it printed is what counts
		close(done)
	}()
	var once sync.Once
	var counts map[string]int64
	stop := func() map[string]int64 {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGINT)
			timer := time.NewTimer(10 * time.Second)
			defer timer.Stop()
			select {
			case <-done:
			case <-timer.C:
				_ = cmd.Process.Kill()
				<-done
			}
			for _, l := range strings.Split(out.String(), "\n") {
				f := strings.Split(l, ",") // value,unit,event,…
				if len(f) < 3 {
					continue
				}
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					if counts == nil {
						counts = map[string]int64{}
					}
					counts[strings.TrimPrefix(strings.TrimPrefix(f[2], "syscalls:sys_enter_"), "raw_syscalls:sys_enter")] = n
				}
			}
		})
		return counts
	}
	t.Cleanup(func() { stop() })
	// perf needs a moment to attach; counting a few events less is harmless next to thousands.
	return stop
}
