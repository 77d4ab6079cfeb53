package session

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisKind is the deployment a Redis URL names.
type RedisKind string

// The deployments a Redis URL can name.
const (
	RedisSingle   RedisKind = "single"   // one node: redis:// or rediss://
	RedisSentinel RedisKind = "sentinel" // a master found through Sentinels: redis+sentinel://
	RedisCluster  RedisKind = "cluster"  // a Redis Cluster: redis+cluster://
)

// RedisTarget is a parsed Redis URL: which deployment, where, and the client options. Make a
// client with Client after setting the tuning.
//
// The URL forms (query parameters are go-redis's, e.g. ?pool_size=50&dial_timeout=1s):
//
//	redis://[[user]:password@]host[:port][/db]             one node (rediss:// for TLS)
//	redis+sentinel://[[user]:password@]master@h1:26379,h2:26379[/db]
//	                                                       the master named "master", found
//	                                                       through the Sentinels h1, h2, …;
//	                                                       user and password are the data
//	                                                       nodes'; ?sentinel_password= for
//	                                                       Sentinels that require one
//	redis+cluster://[[user]:password@]h1:7000,h2:7001,…    a Redis Cluster, seeded by these
//	                                                       nodes (one is enough; no db: a
//	                                                       cluster has only db 0)
//
// rediss+sentinel:// and rediss+cluster:// use TLS.
type RedisTarget struct {
	Kind  RedisKind
	Addrs []string // the node, the Sentinels or the cluster's seed nodes
	DB    int
	// Master is the Sentinel master's name (RedisSentinel only).
	Master string

	simple   *redis.Options
	failover *redis.FailoverOptions
	cluster  *redis.ClusterOptions
}

// ErrRedisURL is wrapped by every error of ParseRedisURL. The errors never quote the URL,
// which may hold a password.
var ErrRedisURL = errors.New("not a valid Redis URL (redis://host:port/db, redis+sentinel://master@h1:port,h2:port/db or redis+cluster://h1:port,h2:port)")

// ParseRedisURL parses a Redis URL of one of RedisTarget's forms.
func ParseRedisURL(raw string) (*RedisTarget, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("%w: no scheme", ErrRedisURL)
	}
	base, kind, _ := strings.Cut(scheme, "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("%w: scheme %q", ErrRedisURL, scheme)
	}
	switch kind {
	case "":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrRedisURL, scrub(err))
		}
		return &RedisTarget{Kind: RedisSingle, Addrs: []string{o.Addr}, DB: o.DB, simple: o}, nil
	case "sentinel", "cluster":
	default:
		return nil, fmt.Errorf("%w: scheme %q", ErrRedisURL, scheme)
	}

	// authority[/path][?query]: the authority holds a comma-separated host list, which
	// net/url does not take, so split it by hand.
	rest, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	var user *url.Userinfo
	master := ""
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		head := authority[:at]
		authority = authority[at+1:]
		if kind == "sentinel" {
			// [[user]:password@]master
			if i := strings.LastIndex(head, "@"); i >= 0 {
				u, err := parseUserinfo(head[:i])
				if err != nil {
					return nil, err
				}
				user, master = u, head[i+1:]
			} else {
				master = head
			}
		} else {
			u, err := parseUserinfo(head)
			if err != nil {
				return nil, err
			}
			user = u
		}
	}
	addrs, err := splitAddrs(authority, map[string]string{"sentinel": "26379", "cluster": "6379"}[kind])
	if err != nil {
		return nil, err
	}
	db := 0
	if p := strings.Trim(path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil || db < 0 {
			return nil, fmt.Errorf("%w: database %q is not a number", ErrRedisURL, p)
		}
	}

	// Rewrite as go-redis's own URL forms (the first address as host, the others as addr=),
	// so its query parameters work unchanged.
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("%w: query: %s", ErrRedisURL, scrub(err))
	}
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u := url.URL{Scheme: base, Host: addrs[0], User: user}
	t := &RedisTarget{Addrs: addrs, DB: db, Master: master}
	switch kind {
	case "sentinel":
		if master == "" || strings.Contains(master, ":") {
			return nil, fmt.Errorf("%w: redis+sentinel:// needs the master's name: redis+sentinel://[[user]:password@]master@host:port", ErrRedisURL)
		}
		// The userinfo is the data nodes' (ParseFailoverURL would give it to the Sentinels).
		sentPass := q.Get("sentinel_password")
		q.Del("sentinel_password")
		q.Set("master_name", master)
		u.User = nil
		u.Path = "/" + strconv.Itoa(db)
		u.RawQuery = q.Encode()
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrRedisURL, scrub(err))
		}
		o.SentinelPassword = sentPass
		if user != nil {
			o.Username = user.Username()
			o.Password, _ = user.Password()
		}
		t.Kind, t.failover = RedisSentinel, o
	case "cluster":
		if db != 0 {
			return nil, fmt.Errorf("%w: a Redis Cluster has only database 0, not %d", ErrRedisURL, db)
		}
		u.RawQuery = q.Encode()
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrRedisURL, scrub(err))
		}
		t.Kind, t.cluster = RedisCluster, o
	}
	return t, nil
}

// parseUserinfo parses "[user][:password]", percent-encoded.
func parseUserinfo(s string) (*url.Userinfo, error) {
	name, pass, hasPass := strings.Cut(s, ":")
	name, err1 := url.PathUnescape(name)
	pass, err2 := url.PathUnescape(pass)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: bad escape in user or password", ErrRedisURL)
	}
	if hasPass {
		return url.UserPassword(name, pass), nil
	}
	return url.User(name), nil
}

// splitAddrs splits a comma-separated list of host[:port], filling in port.
func splitAddrs(list, port string) ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(list, ",") {
		if a == "" {
			return nil, fmt.Errorf("%w: empty host in the host list", ErrRedisURL)
		}
		host, p, err := net.SplitHostPort(a)
		if err != nil {
			host, p = a, port // no port given
		}
		if host == "" || strings.ContainsAny(host, "/?#@ ") {
			return nil, fmt.Errorf("%w: bad host %q", ErrRedisURL, a)
		}
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%w: bad port in %q", ErrRedisURL, a)
		}
		addrs = append(addrs, net.JoinHostPort(host, p))
	}
	return addrs, nil
}

// scrub returns err's text with any URL (which may hold a password) removed: go-redis and
// net/url quote the URL they failed on.
func scrub(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// RedisTuning overrides client options of every kind; zero fields keep the URL's (or
// go-redis's) values.
type RedisTuning struct {
	DialTimeout   time.Duration
	DialerRetries int
	ReadTimeout   time.Duration
	WriteTimeout  time.Duration
	PoolTimeout   time.Duration
	PoolSize      int
	MaxRetries    int
}

// Client returns a client for t: *redis.Client, *redis.Client on a Sentinel master
// (NewFailoverClient), or *redis.ClusterClient. Contexts' deadlines bound every command
// (ContextTimeoutEnabled), as RedisStore requires.
func (t *RedisTarget) Client(tune RedisTuning) redis.UniversalClient {
	switch t.Kind {
	case RedisSentinel:
		o := *t.failover
		tune.apply(&o.ContextTimeoutEnabled, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.DialerRetries, &o.PoolSize, &o.MaxRetries)
		return redis.NewFailoverClient(&o)
	case RedisCluster:
		o := *t.cluster
		tune.apply(&o.ContextTimeoutEnabled, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.DialerRetries, &o.PoolSize, &o.MaxRetries)
		return redis.NewClusterClient(&o)
	default:
		o := *t.simple
		tune.apply(&o.ContextTimeoutEnabled, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout,
			&o.DialerRetries, &o.PoolSize, &o.MaxRetries)
		return redis.NewClient(&o)
	}
}

// apply turns on context deadlines and sets tune's non-zero fields on one kind of client's
// options: the three kinds name the same fields in three types.
func (tune RedisTuning) apply(ctxTimeout *bool, dial, read, write, pool *time.Duration, dialerRetries, poolSize, maxRetries *int) {
	*ctxTimeout = true
	for _, d := range []struct {
		dst *time.Duration
		v   time.Duration
	}{{dial, tune.DialTimeout}, {read, tune.ReadTimeout}, {write, tune.WriteTimeout}, {pool, tune.PoolTimeout}} {
		if d.v != 0 {
			*d.dst = d.v
		}
	}
	for _, n := range []struct {
		dst *int
		v   int
	}{{dialerRetries, tune.DialerRetries}, {poolSize, tune.PoolSize}, {maxRetries, tune.MaxRetries}} {
		if n.v != 0 {
			*n.dst = n.v
		}
	}
}
