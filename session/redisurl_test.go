package session_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/session"
)

func TestParseRedisURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url    string
		kind   session.RedisKind
		addrs  []string
		db     int
		master string
	}{
		{"redis://127.0.0.1:6379/0", session.RedisSingle, []string{"127.0.0.1:6379"}, 0, ""},
		{"redis://:pw@10.0.0.1/3", session.RedisSingle, []string{"10.0.0.1:6379"}, 3, ""},
		{"rediss://u:pw@h:6380/1?pool_size=5", session.RedisSingle, []string{"h:6380"}, 1, ""},
		{"redis+sentinel://mymaster@h1:26379,h2:26380/2", session.RedisSentinel, []string{"h1:26379", "h2:26380"}, 2, "mymaster"},
		{"redis+sentinel://:pw@mymaster@h1,h2", session.RedisSentinel, []string{"h1:26379", "h2:26379"}, 0, "mymaster"},
		{"redis+sentinel://mymaster@h1:26379?sentinel_password=s&dial_timeout=1s", session.RedisSentinel, []string{"h1:26379"}, 0, "mymaster"},
		{"redis+cluster://h1:7000,h2:7001,h3:7002", session.RedisCluster, []string{"h1:7000", "h2:7001", "h3:7002"}, 0, ""},
		{"redis+cluster://u:p%40ss@h1:7000/0?max_redirects=5", session.RedisCluster, []string{"h1:7000"}, 0, ""},
		{"rediss+cluster://[::1]:7000,h2", session.RedisCluster, []string{"[::1]:7000", "h2:6379"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			tg, err := session.ParseRedisURL(tt.url)
			require.NoError(t, err)
			assert.Equal(t, tt.kind, tg.Kind)
			assert.Equal(t, tt.addrs, tg.Addrs)
			assert.Equal(t, tt.db, tg.DB)
			assert.Equal(t, tt.master, tg.Master)
			c := tg.Client(session.RedisTuning{PoolSize: 3})
			defer c.Close()
			switch tt.kind {
			case session.RedisCluster:
				require.IsType(t, &redis.ClusterClient{}, c)
			default:
				require.IsType(t, &redis.Client{}, c)
			}
		})
	}
}

func TestParseRedisURLPasswords(t *testing.T) {
	t.Parallel()
	tg, err := session.ParseRedisURL("redis+cluster://u:p%40ss@h1:7000,h2:7001")
	require.NoError(t, err)
	o := tg.Client(session.RedisTuning{}).(*redis.ClusterClient).Options()
	assert.Equal(t, "u", o.Username)
	assert.Equal(t, "p@ss", o.Password)
	assert.Equal(t, []string{"h1:7000", "h2:7001"}, o.Addrs)

	tg, err = session.ParseRedisURL("redis+sentinel://u:pw@mymaster@h1:26379/1?sentinel_password=spw")
	require.NoError(t, err)
	c := tg.Client(session.RedisTuning{})
	defer c.Close()
	fo := c.(*redis.Client).Options()
	assert.Equal(t, "u", fo.Username, "the data nodes' user")
	assert.Equal(t, "pw", fo.Password, "the data nodes' password")
	assert.Equal(t, 1, fo.DB)
}

func TestParseRedisURLRejects(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"",
		"127.0.0.1:6379",
		"http://h:6379",
		"redis+mesh://h:1",
		"redis://:secret@h:notaport/0",
		"redis+sentinel://h1:26379,h2:26379/0",       // no master name
		"redis+sentinel://:secret@m@h1:26379/x",      // db not a number
		"redis+cluster://:secret@h1:7000,,h2:7001",   // empty host
		"redis+cluster://:secret@h1:7000/1",          // a cluster has db 0 only
		"redis+cluster://:secret@h1:99999",           // port out of range
		"redis+cluster://:secret@h1:7000?bogus=1",    // unknown option
		"redis+sentinel://:secret@m@h1:26379?nope=1", // unknown option
	} {
		t.Run(raw, func(t *testing.T) {
			t.Parallel()
			_, err := session.ParseRedisURL(raw)
			require.ErrorIs(t, err, session.ErrRedisURL)
			assert.NotContains(t, err.Error(), "secret", "the error must not echo the password")
		})
	}
}
