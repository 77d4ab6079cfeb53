// Package rediscluster runs a real Redis Cluster for tests: redis-server processes in cluster
// mode on loopback ports, joined by `redis-cli --cluster create`, each master with its
// replicas, and a graceful failover of the master that holds a key's slot.
//
// It needs redis-server and redis-cli on PATH (Debian package redis-server).
package rediscluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// poll is the interval of the waits for the cluster to settle.
const poll = 20 * time.Millisecond

// Cluster is a running Redis Cluster.
type Cluster struct {
	dir     string
	masters int
	nodes   []*node
}

type node struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer
	mu   sync.Mutex
}

func (n *node) addr() string { return "127.0.0.1:" + strconv.Itoa(n.port) }

// Start runs masters masters with replicas replicas each, in dir, and waits until every node
// reports the cluster ok and every replica is in sync. Stop it with Stop.
func Start(ctx context.Context, dir string, masters, replicas int) (*Cluster, error) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("a Redis Cluster needs %s on PATH (Debian package redis-server): %w", bin, err)
		}
	}
	if masters < 3 {
		return nil, fmt.Errorf("a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	c := &Cluster{dir: dir, masters: masters}
	ports, err := freePorts(masters * (1 + replicas))
	if err != nil {
		return nil, err
	}
	for _, p := range ports {
		n, err := c.launch(p)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.up(ctx); err != nil {
			c.Stop()
			return nil, err
		}
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitSettled(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// launch starts one cluster node on port.
func (c *Cluster) launch(port int) (*node, error) {
	p := strconv.Itoa(port)
	// A short node timeout: failures are detected quickly; a graceful failover does not
	// depend on it.
	return launch(port, "--port", p, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(c.dir, "nodes-"+p+".conf"),
		"--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no", "--dir", c.dir,
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
}

// launch starts redis-server with args.
func launch(port int, args ...string) (*node, error) {
	n := &node{port: port, done: make(chan struct{})}
	n.cmd = exec.Command("redis-server", args...)
	n.cmd.Stdout, n.cmd.Stderr = n, n
	n.cmd.SysProcAttr = childAttr()
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server on port %d: %w", port, err)
	}
	go func() {
		_ = n.cmd.Wait() // Stop kills it; how it ended is not news
		close(n.done)
	}()
	return n, nil
}

// up waits until n answers PING.
func (n *node) up(ctx context.Context) error {
	err := waitFor(ctx, func(ctx context.Context) error {
		select {
		case <-n.done:
			return fmt.Errorf("%w: it exited", errGaveUp)
		default:
		}
		if !ping(ctx, n.addr()) {
			return errors.New("no PONG")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis-server on port %d did not come up: %w\n%s", n.port, err, n.output())
	}
	return nil
}

func (n *node) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.Write(p)
}

func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

// URL is the cluster's REDIS_URL: redis+cluster:// with every master as a seed.
func (c *Cluster) URL() string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr()
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr()
	}
	return out
}

// Stop kills every node and removes nothing: dir is the caller's.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		if n.cmd.Process != nil {
			_ = n.cmd.Process.Kill() // a kill is the point
		}
	}
	for _, n := range c.nodes {
		<-n.done
	}
}

// MasterOf returns the address of the master holding key's slot, as the cluster sees it.
func (c *Cluster) MasterOf(ctx context.Context, key string) (string, error) {
	view, err := c.view(ctx, c.nodes[0].addr())
	if err != nil {
		return "", err
	}
	slot := Slot(key)
	for _, e := range view {
		if e.master && e.owns(slot) {
			return e.addr, nil
		}
	}
	return "", fmt.Errorf("no master holds slot %d", slot)
}

// Failover promotes a replica of the master holding key's slot with CLUSTER FAILOVER (the
// graceful, manual kind: the master stops taking writes, the replica catches up, then takes
// over), and waits until every node agrees. It returns the old and the new master.
func (c *Cluster) Failover(ctx context.Context, key string) (from, to string, err error) {
	from, err = c.MasterOf(ctx, key)
	if err != nil {
		return "", "", err
	}
	view, err := c.view(ctx, from)
	if err != nil {
		return "", "", err
	}
	var masterID string
	for _, e := range view {
		if e.addr == from {
			masterID = e.id
		}
	}
	for _, e := range view {
		if !e.master && e.masterID == masterID && !e.failed {
			to = e.addr
			break
		}
	}
	if to == "" {
		return "", "", fmt.Errorf("master %s has no healthy replica to fail over to", from)
	}
	rdb := redis.NewClient(&redis.Options{Addr: to, ContextTimeoutEnabled: true})
	defer rdb.Close()
	if err := rdb.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		return "", "", fmt.Errorf("CLUSTER FAILOVER on %s: %w", to, err)
	}
	slot := Slot(key)
	err = waitFor(ctx, func(ctx context.Context) error {
		for _, n := range c.nodes {
			v, err := c.view(ctx, n.addr())
			if err != nil {
				return err
			}
			for _, e := range v {
				if e.owns(slot) && e.addr != to {
					return fmt.Errorf("%s sees slot %d on %s", n.addr(), slot, e.addr)
				}
			}
		}
		return nil
	})
	if err != nil {
		return from, to, fmt.Errorf("failover of slot %d from %s to %s did not settle: %w", slot, from, to, err)
	}
	return from, to, c.waitSettled(ctx)
}

// waitSettled waits until every node reports the cluster ok and every replica's link to its
// master is up.
func (c *Cluster) waitSettled(ctx context.Context) error {
	err := waitFor(ctx, func(ctx context.Context) error {
		for _, n := range c.nodes {
			rdb := redis.NewClient(&redis.Options{Addr: n.addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
			info, err := rdb.ClusterInfo(ctx).Result()
			repl, err2 := rdb.Info(ctx, "replication").Result()
			_ = rdb.Close()
			switch {
			case err != nil || err2 != nil:
				return fmt.Errorf("%s: %w", n.addr(), errors.Join(err, err2))
			case !strings.Contains(info, "cluster_state:ok"):
				return fmt.Errorf("%s: cluster state not ok", n.addr())
			case strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up"):
				return fmt.Errorf("%s: replica link down", n.addr())
			}
			view, err := c.view(ctx, n.addr())
			if err != nil {
				return err
			}
			masters, replicas := 0, 0
			for _, e := range view {
				switch {
				case e.failed:
					return fmt.Errorf("%s sees %s failing", n.addr(), e.addr)
				case e.master && len(e.slots) > 0:
					masters++
				case !e.master && e.masterID != "-":
					replicas++
				}
			}
			if masters != c.masters || masters+replicas != len(c.nodes) {
				return fmt.Errorf("%s sees %d masters and %d replicas", n.addr(), masters, replicas)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis cluster did not settle: %w", err)
	}
	return nil
}

// entry is one line of CLUSTER NODES.
type entry struct {
	id, addr, masterID string
	master, failed     bool
	slots              [][2]int
}

func (e entry) owns(slot int) bool {
	for _, r := range e.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// view returns CLUSTER NODES as node addr sees it.
func (c *Cluster) view(ctx context.Context, addr string) ([]entry, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	text, err := rdb.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", addr, err)
	}
	var out []entry
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		e := entry{id: f[0], addr: strings.SplitN(f[1], "@", 2)[0], masterID: f[3]}
		e.master = strings.Contains(f[2], "master")
		e.failed = strings.Contains(f[2], "fail")
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being migrated
			}
			a, b, ok := strings.Cut(s, "-")
			lo, err := strconv.Atoi(a)
			if err != nil {
				continue
			}
			hi := lo
			if ok {
				if hi, err = strconv.Atoi(b); err != nil {
					continue
				}
			}
			e.slots = append(e.slots, [2]int{lo, hi})
		}
		out = append(out, e)
	}
	return out, nil
}

// errGaveUp ends a wait at once.
var errGaveUp = errors.New("gave up")

// settleTime bounds every wait for the cluster: starting, joining, failing over.
const settleTime = 30 * time.Second

// waitFor polls cond until it returns nil, or fails with cond's last error after settleTime
// or when ctx ends.
func waitFor(ctx context.Context, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, settleTime)
	defer cancel()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := cond(cctx)
		cancel()
		if err == nil || errors.Is(err, errGaveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// ping speaks just enough RESP to ask a Redis whether it is up (go-redis would log every
// refused dial).
func ping(ctx context.Context, addr string) bool {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl) // a failed deadline shows up as a failed read
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// freePorts returns n loopback ports that are free, each with its cluster bus port (port +
// 10000) free as well.
func freePorts(n int) ([]int, error) {
	var out []int
	for tries := 0; len(out) < n && tries < 200; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close() // only probing
		if p+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		_ = bus.Close() // only probing
		out = append(out, p)
	}
	if len(out) < n {
		return nil, errors.New("could not find free ports for the cluster and its bus")
	}
	return out, nil
}

// Slot is the Redis Cluster hash slot of key (CRC16 of its hash tag, mod 16384).
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16([]byte(key)) % 16384)
}

func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// TempDir makes a temporary directory for a cluster that outlives a single test.
func TempDir() (string, error) { return os.MkdirTemp("", "callbrain-cluster-") }
