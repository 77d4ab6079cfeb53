package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

func TestLoadRecord(t *testing.T) {
	t.Parallel()
	const redisURL = "redis://127.0.0.1:6379/0"
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		on      bool
		dir     string
		stream  bool
		text    bool
	}{
		{name: "off by default", env: nil},
		{name: "off spelled out", env: map[string]string{"BRAIN_RECORD": "off"}},
		{name: "a directory", env: map[string]string{"BRAIN_RECORD": "dir:/var/lib/callbrain/calls"}, on: true, dir: "/var/lib/callbrain/calls"},
		{name: "the default directory", env: map[string]string{"BRAIN_RECORD": "1"}, on: true, dir: "./recordings"},
		{name: "directory and stream", env: map[string]string{"BRAIN_RECORD": "dir:/tmp/x, redis", "REDIS_URL": redisURL},
			on: true, dir: "/tmp/x", stream: true},
		{name: "stream only", env: map[string]string{"BRAIN_RECORD": "redis", "REDIS_URL": redisURL}, on: true, stream: true},
		{name: "text", env: map[string]string{"BRAIN_RECORD": "dir", "BRAIN_RECORD_TEXT": "1"}, on: true, dir: "./recordings", text: true},
		{name: "stream needs redis", env: map[string]string{"BRAIN_RECORD": "redis"}, wantErr: "REDIS_URL"},
		{name: "unknown sink", env: map[string]string{"BRAIN_RECORD": "s3:bucket"}, wantErr: `"s3:bucket" is not a sink`},
		{name: "empty directory", env: map[string]string{"BRAIN_RECORD": "dir:"}, wantErr: "BRAIN_RECORD"},
		{name: "bad text switch", env: map[string]string{"BRAIN_RECORD": "1", "BRAIN_RECORD_TEXT": "yes please"}, wantErr: "BRAIN_RECORD_TEXT"},
		{name: "idle past retention", env: map[string]string{"BRAIN_RECORD": "1", "BRAIN_RECORD_IDLE": "48h"}, wantErr: "BRAIN_RECORD_IDLE"},
		{name: "bad maxlen", env: map[string]string{"BRAIN_RECORD": "1", "BRAIN_RECORD_MAXLEN": "0"}, wantErr: "BRAIN_RECORD_MAXLEN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(env(tc.env))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			r := c.Record
			assert.Equal(t, tc.on, r.On)
			assert.Equal(t, tc.dir, r.Cfg.Dir)
			assert.Equal(t, tc.stream, r.Cfg.Stream)
			assert.Equal(t, tc.text, r.Cfg.Text)
			assert.Equal(t, 30*time.Minute, r.Cfg.Idle)
		})
	}
}

func TestStartRecorderChecksTheDirectory(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	c, err := loadConfig(env(map[string]string{"BRAIN_RECORD": "dir:" + file}))
	require.NoError(t, err)
	_, _, err = startRecorder(t.Context(), c, zap.NewNop())
	require.Error(t, err, "a directory that cannot be written fails at start-up")
	assert.Contains(t, err.Error(), "BRAIN_RECORD")

	dir := filepath.Join(t.TempDir(), "calls", "new")
	c, err = loadConfig(env(map[string]string{"BRAIN_RECORD": "dir:" + dir}))
	require.NoError(t, err)
	rec, stop, err := startRecorder(t.Context(), c, zap.NewNop())
	require.NoError(t, err)
	require.NotNil(t, rec)
	stop()
	assert.DirExists(t, dir, "made when missing")
}
