package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(nil))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", c.Addr)
	assert.True(t, c.DevSecret, "no secret on loopback: development secret")
	assert.True(t, c.demo(), "no key and no base URL: offline demo model")
	assert.Empty(t, c.RedisURL)
	assert.Equal(t, "./prompts", c.PromptsDir)
	assert.Equal(t, 24*time.Hour, c.Retention)
	assert.Equal(t, 2*time.Second, c.Agent.TurnLease)
	assert.Equal(t, 10000, c.Agent.PendingTurns)
	assert.Equal(t, 64<<20, c.Agent.PendingBytes)
	assert.Equal(t, 15*time.Minute, c.Agent.PendingRetention)
	assert.Equal(t, []string{"dev"}, c.secrets("dev"))
}

func TestLoadConfigSecretRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		secrets []string
	}{
		{name: "public address needs a secret", env: map[string]string{"BRAIN_ADDR": ":8080"}, wantErr: "SAPERLY_WEBHOOK_SECRET is required"},
		{name: "all interfaces ipv4", env: map[string]string{"BRAIN_ADDR": "0.0.0.0:8080"}, wantErr: "SAPERLY_WEBHOOK_SECRET"},
		{name: "localhost is loopback", env: map[string]string{"BRAIN_ADDR": "localhost:9000"}, secrets: []string{"dev"}},
		{name: "ipv6 loopback", env: map[string]string{"BRAIN_ADDR": "[::1]:9000"}, secrets: []string{"dev"}},
		{name: "real secret anywhere", env: map[string]string{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": hex64}, secrets: []string{hex64}},
		{name: "secret from a file, with its newline", env: map[string]string{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": hex64 + "\n"}, secrets: []string{hex64}},
		{name: "blank secret off loopback", env: map[string]string{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": "   "}, wantErr: "SAPERLY_WEBHOOK_SECRET is blank"},
		{name: "short secret off loopback", env: map[string]string{"BRAIN_ADDR": "0.0.0.0:8080", "SAPERLY_WEBHOOK_SECRET": "hunter2"}, wantErr: "SAPERLY_WEBHOOK_SECRET is too short"},
		{name: "31 characters off loopback", env: map[string]string{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": hex64[:31]}, wantErr: "at least 32"},
		{name: "32 characters off loopback", env: map[string]string{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": hex64[:32]}, secrets: []string{hex64[:32]}},
		{name: "short next secret off loopback", env: map[string]string{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": hex64, "SAPERLY_WEBHOOK_SECRET_NEXT": "next"}, wantErr: "SAPERLY_WEBHOOK_SECRET_NEXT is too short"},
		{name: "short secret on loopback", env: map[string]string{"SAPERLY_WEBHOOK_SECRET": "s1"}, secrets: []string{"s1"}},
		{name: "blank secret on loopback is the dev secret", env: map[string]string{"SAPERLY_WEBHOOK_SECRET": " "}, secrets: []string{"dev"}},
		{name: "rotation", env: map[string]string{"SAPERLY_WEBHOOK_SECRET": "s1", "SAPERLY_WEBHOOK_SECRET_NEXT": "s2"}, secrets: []string{"s1", "s2"}},
		{name: "next without current", env: map[string]string{"SAPERLY_WEBHOOK_SECRET_NEXT": "s2"}, wantErr: "SAPERLY_WEBHOOK_SECRET_NEXT"},
		{name: "bad duration names the variable", env: map[string]string{"BRAIN_HOLD_AFTER": "soon"}, wantErr: "BRAIN_HOLD_AFTER"},
		{name: "bad integer names the variable", env: map[string]string{"BRAIN_MAX_CHARS": "-3"}, wantErr: "BRAIN_MAX_CHARS"},
		{name: "cap above Saperly's", env: map[string]string{"BRAIN_MAX_CHARS": "2000"}, wantErr: "1800"},
		{name: "stall steps must fit the line budget", env: map[string]string{"BRAIN_STALL_AFTER": "8s"}, wantErr: "BRAIN_STALL_AFTER"},
		{name: "bad id cap names the variable", env: map[string]string{"BRAIN_MAX_ID_LEN": "0"}, wantErr: "BRAIN_MAX_ID_LEN"},
		{name: "bad utterance cap names the variable", env: map[string]string{"BRAIN_MAX_UTTERANCE": "lots"}, wantErr: "BRAIN_MAX_UTTERANCE"},
		{name: "bad connection cap names the variable", env: map[string]string{"BRAIN_MAX_CONNS": "-1"}, wantErr: "BRAIN_MAX_CONNS"},
		{name: "negative drain delay", env: map[string]string{"BRAIN_DRAIN_DELAY": "-1s"}, wantErr: "BRAIN_DRAIN_DELAY"},
		{name: "zero drain delay is off", env: map[string]string{"BRAIN_DRAIN_DELAY": "0"}, secrets: []string{"dev"}},
		{name: "metrics address without a port", env: map[string]string{"BRAIN_METRICS_ADDR": "localhost"}, wantErr: "BRAIN_METRICS_ADDR"},
		{name: "metrics on the public port", env: map[string]string{"BRAIN_METRICS_ADDR": "127.0.0.1:8080"}, wantErr: "must differ from BRAIN_ADDR"},
		{name: "metrics on their own port", env: map[string]string{"BRAIN_METRICS_ADDR": "127.0.0.1:9090"}, secrets: []string{"dev"}},
		{name: "profiler without the metrics listener", env: map[string]string{"BRAIN_PPROF": "1"}, wantErr: "needs BRAIN_METRICS_ADDR"},
		{name: "profiler on the metrics listener", env: map[string]string{"BRAIN_PPROF": "1", "BRAIN_METRICS_ADDR": "127.0.0.1:9090"}, secrets: []string{"dev"}},
		{name: "OTLP endpoint without a scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, wantErr: "want an http or https URL"},
		{name: "OTLP endpoint over grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://collector:4317"}, wantErr: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{name: "OTLP endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, secrets: []string{"dev"}},
		{name: "turn lease too short to renew", env: map[string]string{"BRAIN_TURN_LEASE": "1s"}, wantErr: "BRAIN_TURN_LEASE"},
		{name: "turn lease longer than a retry waits", env: map[string]string{"BRAIN_TURN_LEASE": "6s"}, wantErr: "BRAIN_TURN_LEASE"},
		{name: "turn lease set", env: map[string]string{"BRAIN_TURN_LEASE": "3s"}, secrets: []string{"dev"}},
		{name: "drain must outlast turns", env: map[string]string{"BRAIN_DRAIN_TIMEOUT": "1m"}, wantErr: "BRAIN_DRAIN_TIMEOUT"},
		{name: "jobs run inline or in workers", env: map[string]string{"BRAIN_JOBS": "cron"}, wantErr: "BRAIN_JOBS"},
		{name: "sms answers need the API key", env: map[string]string{"BRAIN_SMS_ANSWER": "1"}, wantErr: "SAPERLY_API_KEY"},
		{name: "a job attempt ends before another worker takes it", env: map[string]string{"BRAIN_JOB_TIMEOUT": "40s"}, wantErr: "BRAIN_JOB_VISIBILITY"},
		{name: "a forward is signed", env: map[string]string{"BRAIN_FORWARD_URL": "https://crm.example/hook", "BRAIN_FORWARD_SECRET": "short"}, wantErr: "BRAIN_FORWARD_SECRET"},
		{name: "pending turns must be positive", env: map[string]string{"BRAIN_PENDING_TURNS": "0"}, wantErr: "BRAIN_PENDING_TURNS"},
		{name: "pending bytes must be a number", env: map[string]string{"BRAIN_PENDING_BYTES": "64MB"}, wantErr: "BRAIN_PENDING_BYTES"},
		{name: "pending retention must be a duration", env: map[string]string{"BRAIN_PENDING_RETENTION": "forever"}, wantErr: "BRAIN_PENDING_RETENTION"},
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
			assert.Equal(t, tc.secrets, c.secrets("dev"))
		})
	}
}

// hex64 is a signing secret as Saperly shows it.
const hex64 = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"

func TestLoadConfigNeverEchoesSecrets(t *testing.T) {
	for _, e := range []map[string]string{
		{"SAPERLY_WEBHOOK_SECRET_NEXT": "topsecret"},
		{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": "topsecret"},
		{"BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": hex64, "SAPERLY_WEBHOOK_SECRET_NEXT": "topsecret"},
	} {
		_, err := loadConfig(env(e))
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "topsecret")
	}
}

func TestLoadConfigCaps(t *testing.T) {
	c, err := loadConfig(env(nil))
	require.NoError(t, err)
	assert.Equal(t, 128, c.MaxIDLen)
	assert.Equal(t, 2000, c.Agent.MaxUtterance)
	assert.Equal(t, 4096, c.MaxConns)
	c, err = loadConfig(env(map[string]string{"BRAIN_MAX_ID_LEN": "64", "BRAIN_MAX_UTTERANCE": "500", "BRAIN_MAX_CONNS": "100"}))
	require.NoError(t, err)
	assert.Equal(t, 64, c.MaxIDLen)
	assert.Equal(t, 500, c.Agent.MaxUtterance)
	assert.Equal(t, 100, c.MaxConns)
}

func TestHoldingPhrasesFromEnv(t *testing.T) {
	c, err := loadConfig(env(map[string]string{"BRAIN_HOLDING_PHRASES": "Hang on. | Un momento. ||"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"Hang on.", "Un momento."}, c.Agent.HoldingPhrases)
}
