package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/test/redistest"
)

// testRedis returns TEST_REDIS_URL and a store under a prefix of its own, whose keys are
// deleted at the end. Without TEST_REDIS_URL it skips, except in CI.
func testRedis(t *testing.T) (url, prefix string, store *session.RedisStore) {
	t.Helper()
	url = redistest.URL(t)
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	prefix = "callsim-test:" + rand.Text()[:12] + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+"*").Result() // a handful of keys under a unique prefix
		if len(keys) > 0 {
			assert.NoError(t, rdb.Del(ctx, keys...).Err())
		}
		assert.NoError(t, rdb.Close())
	})
	return url, prefix, session.NewRedisStore(rdb, session.Options{Prefix: prefix})
}

func TestRecordPull(t *testing.T) {
	t.Parallel()
	url, prefix, store := testRedis(t)
	ctx := t.Context()
	var ids []string
	for _, call := range []string{"call-a", "call-b", "../call-c"} {
		id, err := store.PublishRecording(ctx, 100, session.Recording{CallID: call, Script: []byte("name: " + call + "\n")})
		require.NoError(t, err)
		ids = append(ids, id)
	}

	pull := func(t *testing.T, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, append([]string{"record", "pull", "--redis", url, "--prefix", prefix}, args...),
			func(string) string { return "" }, &out, &errOut)
		return out.String(), errOut.String(), err
	}

	dir := filepath.Join(t.TempDir(), "calls")
	out, _, err := pull(t, "--out", dir)
	require.NoError(t, err)
	assert.Contains(t, out, "3 scripts written to "+dir)
	assert.Contains(t, out, "next: callsim record pull --since "+ids[2])
	names, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.Len(t, names, 3)
	var all []string
	for _, n := range names {
		data, err := os.ReadFile(n)
		require.NoError(t, err)
		all = append(all, string(data))
		assert.Equal(t, dir, filepath.Dir(n), "a call id never leaves the directory")
	}
	assert.Contains(t, strings.Join(all, ""), "name: call-a")

	dir2 := t.TempDir()
	out, _, err = pull(t, "--out", dir2, "--since", ids[0])
	require.NoError(t, err)
	assert.Contains(t, out, "2 scripts written", "only those after the position")

	out, _, err = pull(t, "--out", t.TempDir(), "--since", ids[2])
	require.NoError(t, err)
	assert.Contains(t, out, "0 scripts written")

	out, _, err = pull(t, "--out", t.TempDir(), "--since", "1h")
	require.NoError(t, err)
	assert.Contains(t, out, "3 scripts written", "recorded in the last hour")

	out, _, err = pull(t, "--out", t.TempDir(), "--max", "1")
	require.NoError(t, err)
	assert.Contains(t, out, "1 script written")
}

func TestRecordPullBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no subcommand", args: []string{"record"}, want: "missing subcommand"},
		{name: "unknown subcommand", args: []string{"record", "push"}, want: `unknown subcommand "push"`},
		{name: "no redis", args: []string{"record", "pull"}, want: "--redis (or REDIS_URL) is required"},
		{name: "bad since", args: []string{"record", "pull", "--redis", "redis://127.0.0.1:1/0", "--since", "last tuesday"}, want: "--since"},
		{name: "bad url", args: []string{"record", "pull", "--redis", "http://user:hunter2@x"}, want: "not a valid Redis URL"},
		{name: "stray argument", args: []string{"record", "pull", "--redis", "redis://127.0.0.1:1/0", "extra"}, want: "unexpected argument"},
		{name: "bad max", args: []string{"record", "pull", "--redis", "redis://127.0.0.1:1/0", "--max", "0"}, want: "--max"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(t.Context(), tc.args, func(string) string { return "" }, &out, &errOut)
			require.Error(t, err)
			var ue usageError
			assert.ErrorAs(t, err, &ue, "a mistake in the command line exits 2")
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "hunter2", "a URL's password is never echoed")
		})
	}
}

func TestRecordPullRedisDown(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err := run(ctx, []string{"record", "pull", "--redis", "redis://127.0.0.1:1/0", "--out", t.TempDir()},
		func(string) string { return "" }, &out, &errOut)
	require.Error(t, err, "an unreachable Redis is an error, not zero scripts")
	var ue usageError
	assert.NotErrorAs(t, err, &ue)
}

func TestSincePosition(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1764504000000)
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: ""},
		{in: "1764504000000-3", want: "1764504000000-3"},
		{in: "1764504000000", want: "1764503999999-18446744073709551615"},
		{in: "2h", want: "1764496799999-18446744073709551615"},
		{in: "2025-12-01T00:00:00Z", want: "1764547199999-18446744073709551615"},
		{in: "-2h", bad: true},
		{in: "soon", bad: true},
	}
	for _, tc := range tests {
		got, err := sincePosition(tc.in, now)
		if tc.bad {
			assert.Error(t, err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}
