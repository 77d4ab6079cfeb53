package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callsimBinary (play_test.go) builds cmd/callsim once per run.

// loadScripts are the load tests' call scripts, in test/e2e/testdata: load/ holds the
// samples the README plays, slow/ the call the interrupt test cuts.
func loadScripts(t *testing.T, names ...string) []string {
	t.Helper()
	var out []string
	for _, n := range names {
		out = append(out, filepath.Join(repoRoot(t), "test", "e2e", "testdata", n))
	}
	return out
}

// loadRun is a finished callsim load.
type loadRun struct {
	stdout, stderr string
	code           int
	report         map[string]any // the --json file
	jsonPath, html string
}

// runLoad runs callsim load against b with these flags and scripts, and reads its JSON.
func runLoad(t *testing.T, b *brain, args ...string) loadRun {
	t.Helper()
	dir := t.TempDir()
	r := loadRun{jsonPath: filepath.Join(dir, "run.json"), html: filepath.Join(dir, "run.html")}
	full := append([]string{"load", "--url", b.URL, "--secret", b.Secret, "--line", b.Line,
		"--json", r.jsonPath, "--report", r.html, "--max-duration", "2m"}, args...)
	cmd := exec.Command(callsimBinary(t), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	raw, err := os.ReadFile(r.jsonPath)
	require.NoError(t, err, "callsim load wrote no JSON: %s %s", r.stdout, r.stderr)
	require.NoError(t, json.Unmarshal(raw, &r.report))
	return r
}

func (r loadRun) num(path ...string) float64 {
	var v any = r.report
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	n, _ := v.(float64)
	return n
}

// countTurns counts the brain's turn lines so far.
func countTurns(b *brain) int {
	n := 0
	for _, e := range b.entries() {
		if msg := e.str("msg"); msg == "turn done" || msg == "turn degraded" {
			n++
		}
	}
	return n
}

// countEvents counts the brain's delivery lines of this event kind so far.
func countEvents(b *brain, kind string) int {
	n := 0
	for _, e := range b.entries() {
		if e.str("msg") == "event" && e.str("event_type") == kind {
			n++
		}
	}
	return n
}

// TestLoadSmoke is the bounded load run CI makes: 20 calls of two scripts (one played twice
// as often), 4 at once, against the built brain on Redis with the stand-in model. Every
// delivery is answered, every figure is in the JSON, and the brain logged every turn.
func TestLoadSmoke(t *testing.T) {
	t.Parallel()
	_, b := newRedisPair(t, nil, "-ttft", "50ms", "-token-delay", "5ms")
	scripts := loadScripts(t, "load/booking.yaml:2", "load/hours.yaml")
	r := runLoad(t, b, append([]string{"--concurrency", "4", "--calls", "20", "--ramp", "200ms", "--quiet"}, scripts...)...)
	require.Zero(t, r.code, "exit status; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)

	// booking (2 messages) twice for each hours (1 message), spread: calls 0..19 play
	// b h b  b h b  …, so 13 bookings and 7 hours calls.
	const bookings, hours = 13, 7
	const turns = 2*bookings + hours
	assert.Equal(t, "closed", r.report["model"])
	assert.EqualValues(t, 20, r.num("calls", "started"))
	assert.EqualValues(t, 20, r.num("calls", "completed"))
	assert.EqualValues(t, turns, r.num("turns"))
	assert.EqualValues(t, turns, r.num("first_line", "count"))
	assert.Positive(t, r.num("first_line", "p50_ms"))
	assert.GreaterOrEqual(t, r.num("turn", "p99_ms"), r.num("first_line", "p99_ms"))
	assert.Zero(t, r.num("error_count"), "errors: %v", r.report["errors"])
	assert.Zero(t, r.num("silent_turns"))
	assert.LessOrEqual(t, r.num("peak_active"), 4.0)
	assert.Equal(t, map[string]any{"call_started": 20.0, "message": float64(turns), "call_ended": 20.0}, r.report["deliveries"])
	series, _ := r.report["series"].([]any)
	assert.NotEmpty(t, series)
	assert.NotEmpty(t, r.report["first_line"].(map[string]any)["hdr"])

	for _, want := range []string{"closed model, 4 at once, 20 calls", "all calls done", "first line", "errors      none"} {
		assert.Contains(t, r.stdout, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countTurns(b) < turns && time.Now().Before(deadline) {
		time.Sleep(poll) // the brain's log pipe may lag behind the last answer
	}
	assert.Equal(t, turns, countTurns(b), "one turn line per message")

	checkReportInBrowser(t, r.html)
}

// TestLoadOpenModel starts calls at a rate, not when earlier ones end: 12 calls at 30 per
// second are all started while the first ones still think.
func TestLoadOpenModel(t *testing.T) {
	t.Parallel()
	_, b := newRedisPair(t, nil, "-ttft", "50ms", "-token-delay", "5ms")
	r := runLoad(t, b, append([]string{"--rate", "30/s", "--calls", "12", "--quiet"}, loadScripts(t, "load/booking.yaml")...)...)
	require.Zero(t, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	assert.Equal(t, "open", r.report["model"])
	assert.EqualValues(t, 30, r.num("rate_per_s"))
	assert.EqualValues(t, 12, r.num("calls", "started"))
	assert.EqualValues(t, 12, r.num("calls", "completed"))
	assert.EqualValues(t, 24, r.num("turns"))
	assert.Zero(t, r.num("error_count"))
	assert.Contains(t, r.stdout, "open model, 30 calls/s")
}

// TestLoadInterrupted: Ctrl-C (SIGINT) stops the run at once, and callsim prints and writes
// what it measured until then; the calls cut are counted as aborted, not as errors.
func TestLoadInterrupted(t *testing.T) {
	t.Parallel()
	_, b := newRedisPair(t, nil, "-ttft", "20ms", "-token-delay", "5ms")
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "run.json")
	cmd := exec.Command(callsimBinary(t), append([]string{"load", "--url", b.URL, "--secret", b.Secret, "--line", b.Line,
		"--concurrency", "3", "--calls", "3", "--json", jsonPath, "--quiet"}, loadScripts(t, "slow/long.yaml")...)...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a no-op once it has exited
		<-done
	})

	// Each call's first message is answered and read (its test event follows), then the
	// caller thinks for ten minutes.
	deadline := time.Now().Add(30 * time.Second)
	for countEvents(b, "test") < 3 {
		require.True(t, time.Now().Before(deadline), "the three first messages were not answered")
		time.Sleep(poll)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
		done <- err // for the cleanup
	case <-timer.C:
		t.Fatal("callsim load did not stop within 30s of SIGINT")
	}
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 1, exit.ExitCode())
	out := stdout.String()
	assert.Contains(t, out, "INTERRUPTED, figures so far")
	assert.Contains(t, out, "calls       3 started, 0 completed, 0 failed, 3 aborted")
	assert.Contains(t, stderr.String(), "interrupted")

	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var rep map[string]any
	require.NoError(t, json.Unmarshal(raw, &rep))
	assert.Equal(t, true, rep["interrupted"])
	assert.Equal(t, "interrupted", rep["stop"])
	assert.EqualValues(t, 3, rep["turns"], "the answered first messages are measured")
	assert.EqualValues(t, 0, rep["error_count"])
}

// checkReportInBrowser renders the HTML report in headless Chromium: it must load with no
// network, draw every chart and show the headline figures. LOAD_REPORT_SCREENSHOT=<file>
// keeps the screenshot (docs/load-report.png is made so).
func checkReportInBrowser(t *testing.T, page string) {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	require.NotEmpty(t, bin, "chromium is not installed: the load report is checked in it (apt-get install chromium; make test installs it)")
	dir := t.TempDir()
	shot := filepath.Join(dir, "report.png")
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile"),
		"--window-size=1280,1600"}
	url := "file://" + page

	began := time.Now()
	cmd := exec.Command(bin, append(flags, "--screenshot="+shot, url)...)
	out, err := cmd.CombinedOutput()
	t.Logf("chromium --screenshot took %s", time.Since(began).Round(time.Millisecond))
	require.NoError(t, err, "chromium --screenshot: %s", out)
	f, err := os.Open(shot)
	require.NoError(t, err, "chromium wrote no screenshot: %s", out)
	img, err := png.Decode(f)
	f.Close()
	require.NoError(t, err)
	assert.Equal(t, 1280, img.Bounds().Dx())
	if keep := os.Getenv("LOAD_REPORT_SCREENSHOT"); keep != "" {
		raw, err := os.ReadFile(shot)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(keep, raw, 0o644))
	}

	dump, err := exec.Command(bin, append(flags, "--dump-dom", url)...).Output()
	require.NoError(t, err, "chromium --dump-dom")
	dom := string(dump)
	for _, chart := range []string{"first-line-distribution", "first-line-over-time", "concurrency-over-time", "throughput-over-time", "errors-over-time"} {
		assert.Contains(t, dom, `data-chart="`+chart+`"`, "chart %s", chart)
	}
	for _, fig := range []string{"calls", "first_line_p50", "first_line_p99", "turns_per_s", "errors", "holding_phrases", "apologies", "silent_turns", "budget_misses"} {
		assert.Contains(t, dom, `data-figure="`+fig+`"`, "figure %s", fig)
	}
	assert.Contains(t, dom, "<rect", "the distribution has bars")
	assert.Contains(t, dom, "<path", "the percentiles over time are drawn")
	for _, external := range []string{"src=", "<link", "<script", "url("} {
		assert.NotContains(t, dom, external, "a self-contained page loads nothing")
	}
	assert.Equal(t, 1, strings.Count(dom, `id="latencies"`))
}

// TestLoadFaults: a script's duplicate, retry and late barge-in are played under load and
// counted as deliveries of their own, not as turns or errors: the brain refuses the duplicate
// (as it must), answers the retry, and accepts the late interrupted.
func TestLoadFaults(t *testing.T) {
	t.Parallel()
	_, b := newRedisPair(t, nil, "-ttft", "50ms", "-token-delay", "5ms")
	r := runLoad(t, b, append([]string{"--concurrency", "2", "--calls", "2", "--quiet"}, loadScripts(t, "faults/faults.yaml")...)...)
	require.Zero(t, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	assert.Equal(t, map[string]any{
		"call_started": 2.0, "message": 6.0, "message-duplicate": 2.0, "message-retry": 2.0, "interrupted": 2.0, "call_ended": 2.0,
	}, r.report["deliveries"])
	assert.EqualValues(t, 6, r.num("turns"))
	assert.EqualValues(t, 2, r.num("barge_ins"))
	assert.Zero(t, r.num("error_count"), "errors: %v %v", r.report["errors"], r.report["error_samples"])
	assert.EqualValues(t, 2, r.num("calls", "completed"))
}
