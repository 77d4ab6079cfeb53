package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// A REDIS_URL the brain cannot use stops it at start-up with an error naming the variable,
// and never echoes the URL, which may hold a password.
func TestOpenStoreRejectsBadRedisURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"http://:hunter2@h:6379",
		"redis+sentinel://:hunter2@h1:26379",     // no master name
		"redis+cluster://:hunter2@h1:7000/2",     // a cluster has db 0 only
		"redis+cluster://:hunter2@h1:7000,h2:x",  // bad port
		"redis://:hunter2@h1:6379/0?pool_sise=3", // typo in an option
	} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			_, _, err := openStore(t.Context(), config{RedisURL: raw}, zap.NewNop())
			require.Error(t, err)
			assert.Contains(t, err.Error(), "REDIS_URL")
			assert.NotContains(t, err.Error(), "hunter2")
		})
	}
}
