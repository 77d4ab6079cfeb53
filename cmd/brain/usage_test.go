package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUsageListsEverySetting: `brain -h` names every variable loadConfig reads, and lists
// none it does not read.
func TestUsageListsEverySetting(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		read = map[string]bool{}
	)
	_, err := loadConfig(func(k string) string {
		mu.Lock()
		read[k] = true
		mu.Unlock()
		return ""
	})
	require.NoError(t, err)
	// The record settings are only read when recording is on.
	_, err = loadConfig(func(k string) string {
		read[k] = true
		return map[string]string{"BRAIN_RECORD": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"}[k]
	})
	require.NoError(t, err)
	listed := map[string]bool{}
	for _, s := range settings {
		listed[s.name] = true
	}
	for k := range read {
		assert.True(t, listed[k], "%s is read by loadConfig but not listed by brain -h", k)
	}
	for k := range listed {
		assert.True(t, read[k], "%s is listed by brain -h but not read by loadConfig", k)
	}
}

// TestUsageDefaultsAreTheDefaults: setting a variable to the default `brain -h` shows for it
// changes nothing.
func TestUsageDefaultsAreTheDefaults(t *testing.T) {
	t.Parallel()
	base, err := loadConfig(func(string) string { return "" })
	require.NoError(t, err)
	descriptive := map[string]bool{"": true, "off": true, "unset": true, "built in": true, "OpenAI": true,
		"in-process store": true, "the primary's": true, "dev secret on loopback": true, "see agent/config.go": true}
	for _, s := range settings {
		// PROMPTS_DIR also records that it was set; SAPERLY_API_BASE is defaulted by the agent.
		if descriptive[s.def] || strings.HasSuffix(s.def, "…") || s.name == "PROMPTS_DIR" || s.name == "SAPERLY_API_BASE" {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			got, err := loadConfig(func(k string) string {
				if k == s.name {
					return s.def
				}
				return ""
			})
			require.NoError(t, err)
			assert.Equal(t, base, got)
		})
	}
}

func TestCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string
		stderr     string
		noStdout   bool
		noServeMsg bool
	}{
		{name: "-h", args: []string{"-h"}, stdout: []string{"brain version", "prompts check", "brain calls", "brain jobs", "brain worker", "BRAIN_METRICS_ADDR", "127.0.0.1:8080", "BRAIN_DRAIN_DELAY "}},
		{name: "--help", args: []string{"--help"}, stdout: []string{"Settings"}},
		{name: "version", args: []string{"version"}, stdout: []string{"brain ", " commit "}},
		{name: "unknown flag", args: []string{"-port=9"}, code: 2, stderr: `unknown command or flag "-port=9"`, noStdout: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			code := command(t.Context(), tt.args, func(string) string { return "" }, &out, &errOut)
			assert.Equal(t, tt.code, code)
			for _, s := range tt.stdout {
				assert.Contains(t, out.String(), s)
			}
			if tt.stderr != "" {
				assert.Contains(t, errOut.String(), tt.stderr)
				assert.Contains(t, errOut.String(), "Usage:")
			}
			if tt.noStdout {
				assert.Empty(t, out.String())
			}
		})
	}
}

func TestVersionFromLinkerFlags(t *testing.T) {
	// Not parallel: it sets the package's link-time variables.
	version, commit = "v9.9.9", "abc1234"
	t.Cleanup(func() { version, commit = "", "" })
	assert.Equal(t, "brain v9.9.9 commit abc1234", versionString())
	assert.False(t, strings.Contains(versionString(), "dirty"))
}

// TestHealthCommand probes a real server: 200 is healthy, 503 and a closed port are not, and
// a bad path is refused.
func TestHealthCommand(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(ok.Close)
	addr := strings.TrimPrefix(ok.URL, "http://")
	getenv := func(k string) string {
		if k == "BRAIN_ADDR" {
			return addr
		}
		return ""
	}
	var stderr bytes.Buffer
	assert.Equal(t, 0, command(t.Context(), []string{"health"}, getenv, io.Discard, &stderr))
	assert.Equal(t, 1, command(t.Context(), []string{"health", "/readyz"}, getenv, io.Discard, &stderr))
	assert.Contains(t, stderr.String(), "503")
	assert.Equal(t, 2, command(t.Context(), []string{"health", "readyz"}, getenv, io.Discard, &stderr))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	assert.Equal(t, 1, command(t.Context(), []string{"health"}, func(string) string { return closed }, io.Discard, &stderr))
}

// TestCommandRoutesRecordCommands: calls and jobs are subcommands, not unknown flags; without
// REDIS_URL they say where records live instead of printing the usage.
func TestCommandRoutesRecordCommands(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"calls", "list"}, {"jobs", "dead"}} {
		var out, errOut bytes.Buffer
		code := command(t.Context(), args, func(string) string { return "" }, &out, &errOut)
		assert.NotZero(t, code, "%v", args)
		assert.Contains(t, errOut.String(), "REDIS_URL", "%v", args)
		assert.NotContains(t, errOut.String(), "unknown command", "%v", args)
	}
}
