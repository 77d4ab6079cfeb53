package rediscluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name a Sentinel group monitors.
const SentinelMaster = "mymaster"

// Sentinel is a running Sentinel group: a master, a replica, and one Sentinel (quorum 1).
type Sentinel struct {
	master, replica, sentinel *node
}

// StartSentinel runs a master, its replica and a Sentinel in dir, and waits until the
// Sentinel knows the replica. Stop it with Stop.
func StartSentinel(ctx context.Context, dir string) (*Sentinel, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &Sentinel{}
	base := func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--dbfilename", "dump-" + strconv.Itoa(port) + ".rdb",
			"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}
	}
	if s.master, err = launch(ports[0], base(ports[0])...); err != nil {
		return nil, err
	}
	if s.replica, err = launch(ports[1], append(base(ports[1]), "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))...); err != nil {
		s.Stop()
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds %s 2000\nsentinel failover-timeout %s 10000\n",
		ports[2], SentinelMaster, ports[0], SentinelMaster, SentinelMaster)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		s.Stop()
		return nil, fmt.Errorf("write sentinel.conf: %w", err)
	}
	if s.sentinel, err = launch(ports[2], conf, "--sentinel"); err != nil {
		s.Stop()
		return nil, err
	}
	for _, n := range []*node{s.master, s.replica, s.sentinel} {
		if err := n.up(ctx); err != nil {
			s.Stop()
			return nil, err
		}
	}
	err = waitFor(ctx, func(ctx context.Context) error {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		defer sc.Close()
		reps, err := sc.Replicas(ctx, SentinelMaster).Result()
		if err != nil {
			return err
		}
		for _, r := range reps {
			if r["port"] == strconv.Itoa(s.replica.port) && !strings.Contains(r["flags"], "down") && r["master-link-status"] == "ok" {
				return nil
			}
		}
		return fmt.Errorf("sentinel does not see the replica in sync yet")
	})
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("sentinel group did not settle: %w", err)
	}
	return s, nil
}

// URL is the group's REDIS_URL.
func (s *Sentinel) URL() string {
	return "redis+sentinel://" + SentinelMaster + "@" + s.sentinel.addr() + "/0"
}

// Failover makes the Sentinel promote the replica (SENTINEL FAILOVER) and waits until it
// names the replica as the master and the replica acts as one. It returns the new master.
func (s *Sentinel) Failover(ctx context.Context) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.addr(), ContextTimeoutEnabled: true})
	defer sc.Close()
	if err := sc.Failover(ctx, SentinelMaster).Err(); err != nil {
		return "", fmt.Errorf("SENTINEL FAILOVER: %w", err)
	}
	want := s.replica.addr()
	err := waitFor(ctx, func(ctx context.Context) error {
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil {
			return err
		}
		if got := strings.Join(addr, ":"); got != want {
			return fmt.Errorf("sentinel names %s", got)
		}
		rdb := redis.NewClient(&redis.Options{Addr: want, ContextTimeoutEnabled: true, MaxRetries: -1})
		defer rdb.Close()
		info, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Errorf("%s is not a master yet", want)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("sentinel failover did not settle: %w", err)
	}
	return want, nil
}

// Stop kills every process of the group.
func (s *Sentinel) Stop() {
	for _, n := range []*node{s.master, s.replica, s.sentinel} {
		if n != nil {
			_ = n.cmd.Process.Kill() // a kill is the point
			<-n.done
		}
	}
}
