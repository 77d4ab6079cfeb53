package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/loadgen"
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
