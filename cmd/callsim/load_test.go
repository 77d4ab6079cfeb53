package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/loadgen"
	"github.com/callbrain/callbrain/test/saperly"
)

// writeScript writes a script file into dir and returns its path.
func writeScript(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

const shortCall = "turns:\n  - start: {}\n  - say: Hello\n  - hangup: {}\n"

// Mistakes on the command line are refused with a usage error (exit 2) and nothing is sent.
func TestLoadRefusesBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	good := writeScript(t, dir, "good.yaml", shortCall)
	broken := writeScript(t, dir, "broken.yaml", "turns:\n  - say: hi\n    think: soon\n")
	empty := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"no scripts", []string{}, "no scripts", true},
		{"both models", []string{"--concurrency", "2", "--rate", "3", good}, "exclude each other", true},
		{"bad rate", []string{"--rate", "fast", good}, `--rate: "fast"`, true},
		{"bad rate unit", []string{"--rate", "5/h", good}, `unit "h"`, true},
		{"zero rate", []string{"--rate", "0", good}, "above 0", true},
		{"weight out of range", []string{good + ":0"}, "weight 0", true},
		{"duration past the hard bound", []string{"--duration", "20m", good}, "shorter than the hard bound", true},
		{"unknown flag", []string{"--concurency", "3", good}, "flag provided but not defined", true},
		{"missing script", []string{filepath.Join(dir, "nope.yaml")}, "nope.yaml", false},
		{"directory without scripts", []string{empty}, "no *.yaml", false},
		{"broken script", []string{good, broken}, "broken.yaml:3: think", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), append([]string{"load", "--url", "http://127.0.0.1:1"}, tc.args...), func(string) string { return "" }, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			var ue usageError
			assert.Equal(t, tc.usage, errors.As(err, &ue), "usage error (exit 2): %v", err)
			assert.Empty(t, stdout.String(), "no run, no summary")
		})
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{{"5", 5}, {"5/s", 5}, {" 2.5 /s", 2.5}, {"120/m", 2}, {"30/min", 0.5}} {
		got, err := parseRate(tc.in)
		require.NoError(t, err, tc.in)
		assert.InDelta(t, tc.want, got, 1e-9, tc.in)
	}
	for _, bad := range []string{"", "x", "-1", "0", "5/h", "1e9"} {
		_, err := parseRate(bad)
		assert.Error(t, err, bad)
	}
}

func TestSplitWeight(t *testing.T) {
	dir := t.TempDir()
	odd := writeScript(t, dir, "odd:2", shortCall) // a file whose name ends like a weight
	for _, tc := range []struct {
		in   string
		path string
		w    int
	}{
		{"a.yaml", "a.yaml", 1},
		{"a.yaml:3", "a.yaml", 3},
		{"dir/x:y.yaml", "dir/x:y.yaml", 1},
		{odd, odd, 1},
	} {
		p, w, err := splitWeight(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.path, p, tc.in)
		assert.Equal(t, tc.w, w, tc.in)
	}
	_, _, err := splitWeight("a.yaml:1001")
	assert.Error(t, err)
}

// The live display shows calls done, calls in progress, errors and the first-line latency,
// and ends with the run.
func TestProgressDisplay(t *testing.T) {
	e, err := loadgen.New(loadgen.Config{Concurrency: 2, Calls: 5}, func(ctx context.Context, n int, report func(loadgen.Delivery)) error {
		report(loadgen.Delivery{Event: loadgen.EventMessage, Sent: time.Now(), Status: 200, Lines: []time.Duration{420 * time.Millisecond}, Elapsed: time.Second})
		return nil
	})
	require.NoError(t, err)
	var out bytes.Buffer
	stop := showProgress(&out, e)
	e.Run(t.Context())
	stop()
	assert.Contains(t, out.String(), "calls 5/5")
	assert.Contains(t, out.String(), "active 0  turns 5  errors 0  first line 420ms")
	assert.False(t, isTerminal(&out))
}

// brokenBrain answers messages as a broken brain would, by path prefix: a 500, NDJSON that is
// not JSON, an answer cut by a connection reset. Every other event gets 200 {}.
func brokenBrain(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	handle := func(prefix string, message http.HandlerFunc) {
		mux.HandleFunc(prefix+"/webhook", func(w http.ResponseWriter, r *http.Request) {
			var ev struct {
				Event string `json:"event"`
			}
			if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.Event != "message" {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, "{}")
				return
			}
			message(w, r)
		})
	}
	handle("/500", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
	})
	handle("/ndjson", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, "{\"type\":\"speak\",\"text\":\"Hello\"}\nnot json at all\n")
	})
	handle("/reset", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, "{\"type\":\"speak\",\"text\":\"Hello\"}\n")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if !assert.NoError(t, err) {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with a RST, as a crashed process's kernel does
		}
		_ = conn.Close()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A load run against a broken brain counts each failure by its kind, in the summary and the
// JSON, and exits non-zero.
func TestLoadClassifiesErrors(t *testing.T) {
	srv := brokenBrain(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there any more
	script := writeScript(t, t.TempDir(), "call.yaml", shortCall)
	for _, tc := range []struct {
		name, url, kind string
		events          map[string]any
	}{
		{"non-200", srv.URL + "/500", "non-200", map[string]any{"call_started": 3.0, "message": 3.0, "call_ended": 3.0}},
		{"bad ndjson", srv.URL + "/ndjson", "bad-ndjson", map[string]any{"call_started": 3.0, "message": 3.0, "call_ended": 3.0}},
		{"connection reset", srv.URL + "/reset", "connection-reset", map[string]any{"call_started": 3.0, "message": 3.0, "call_ended": 3.0}},
		{"connection refused", closed.URL, "connection-refused", map[string]any{"call_started": 3.0, "message": 3.0, "call_ended": 3.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jsonPath := filepath.Join(t.TempDir(), "run.json")
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), []string{"load", "--url", tc.url, "--concurrency", "3", "--calls", "3", "--json", jsonPath, script},
				func(string) string { return "" }, &stdout, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "failed")
			assert.Contains(t, stdout.String(), tc.kind)

			raw, err := os.ReadFile(jsonPath)
			require.NoError(t, err)
			var rep struct {
				Errors     map[string]int `json:"errors"`
				ErrorCount int            `json:"error_count"`
				Deliveries map[string]any `json:"deliveries"`
				Calls      struct {
					Failed int `json:"failed"`
				} `json:"calls"`
			}
			require.NoError(t, json.Unmarshal(raw, &rep))
			assert.Positive(t, rep.Errors[tc.kind], "errors: %v", rep.Errors)
			if tc.kind == "connection-refused" {
				assert.Equal(t, map[string]int{tc.kind: 9}, rep.Errors, "every delivery is refused")
			} else {
				assert.Equal(t, map[string]int{tc.kind: 3}, rep.Errors, "each call's message fails; its other events are answered")
			}
			assert.Equal(t, rep.ErrorCount, sum(rep.Errors))
			assert.Equal(t, 3, rep.Calls.Failed)
			assert.Equal(t, tc.events, rep.Deliveries)
		})
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Ctrl-C (the context cancelled) ends a run early: the summary and the JSON still say what
// was measured, marked interrupted, and the command fails.
func TestLoadInterruptedPrintsWhatWasMeasured(t *testing.T) {
	b := newBrain(t, saperly.DevSecret)
	// The test event follows each call's first answer once the caller has read all of it;
	// then the callers think for ten minutes.
	tested := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		r.Body = io.NopCloser(bytes.NewReader(raw))
		b.ServeHTTP(w, r)
		if bytes.Contains(raw, []byte(`"event":"test"`)) {
			tested <- struct{}{}
		}
	}))
	t.Cleanup(srv.Close)
	script := writeScript(t, t.TempDir(), "slow.yaml",
		"turns:\n  - start: {}\n  - say: Hello\n  - send: {event: test}\n  - say: Still there?\n    think: 10m\n")
	jsonPath := filepath.Join(t.TempDir(), "run.json")
	ctx, interrupt := context.WithCancel(t.Context())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"load", "--url", srv.URL, "--concurrency", "2", "--calls", "2", "--json", jsonPath, script},
			func(string) string { return "" }, &stdout, &stderr)
	}()
	for range 2 {
		<-tested
	}
	interrupt()
	err := <-done
	require.Error(t, err)
	assert.Contains(t, err.Error(), "interrupted")
	assert.Contains(t, stdout.String(), "INTERRUPTED, figures so far")
	assert.Contains(t, stdout.String(), "calls       2 started, 0 completed, 0 failed, 2 aborted")
	raw, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var rep map[string]any
	require.NoError(t, json.Unmarshal(raw, &rep))
	assert.Equal(t, true, rep["interrupted"])
	assert.EqualValues(t, 2, rep["turns"], "the first answers were measured")
	assert.EqualValues(t, 0, rep["error_count"], "calls cut by Ctrl-C are no errors")
}

// Deliveries are signed with --secret, else SAPERLY_WEBHOOK_SECRET: a brain with another
// secret refuses them all (401, counted as non-200).
func TestLoadSignsWithTheLineSecret(t *testing.T) {
	b := newBrain(t, "s3cret")
	script := writeScript(t, t.TempDir(), "call.yaml", shortCall)
	env := func(k string) string {
		if k == "SAPERLY_WEBHOOK_SECRET" {
			return "s3cret"
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"load", "--url", b.srv.URL, "--calls", "2", "--concurrency", "2", script}, env, &stdout, &stderr)
	require.NoError(t, err, stdout.String())
	assert.Contains(t, stdout.String(), "errors      none")

	stdout.Reset()
	err = run(t.Context(), []string{"load", "--url", b.srv.URL, "--secret", "wrong", "--calls", "2", "--concurrency", "2", script}, env, &stdout, &stderr)
	require.Error(t, err)
	assert.Contains(t, stdout.String(), "errors      6: non-200 6")
	assert.Contains(t, stdout.String(), "signature_mismatch")
}
