package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// BenchmarkLongCall is one message turn of a call that already has n turns (n = 10 and 300),
// through agent.Respond over the real Redis store (TEST_REDIS_URL), with a model that costs
// nothing. After each turn the call's history is trimmed back to its n turns (timer stopped),
// so every turn sees the same call length. Sequential, one turn at a time.
//
//	cpu-ns/op         this process's CPU per turn (user + system): the brain's own cost,
//	                  Redis's excluded (another process)
//	state-load-ns/op  the claim and state load (BeginTurn), as the turn log line reports it
//	history-entries   entries in the call's history log
func BenchmarkLongCall(b *testing.B) {
	for _, n := range []int{10, 50, 300} {
		b.Run(fmt.Sprintf("turn=%d", n), func(b *testing.B) {
			rdb := newRedisClient(b, "")
			prefix := redisPrefix(b, rdb)
			store := session.NewRedisStore(rdb, session.Options{Prefix: prefix})
			lib, err := prompts.NewLive(filepath.Join(moduleRoot, "prompts"), zap.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			var load time.Duration
			a := agent.New(agent.Config{Model: "m", OnTurn: func(s agent.TurnStats) { load += s.StateLoad }},
				agent.Deps{Primary: &agent.DemoLLM{}, Store: store, Prompts: lib}) // answers at once: what a turn costs is the brain's own work
			ctx := context.Background()
			call := "long-" + rand.Text()[:10]
			turn := func(i int) {
				ev := agent.Event{
					Kind: agent.EventMessage, ID: fmt.Sprintf("%s-e%d", call, i), CallID: call, LineID: benchLine,
					Text:     conversation[i%len(conversation)],
					Delivery: agent.Delivery{ID: fmt.Sprintf("%s-d%d", call, i), ReceivedAt: time.Now()},
				}
				if err := a.Respond(ctx, ev, func(agent.Chunk) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				turn(i)
			}
			hist := prefix + "hist:{" + call + "}"
			keep, err := rdb.LLen(ctx, hist).Result()
			if err != nil {
				b.Fatal(err)
			}
			load = 0
			var cpu time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c0 := selfCPU()
				turn(n + i)
				cpu += selfCPU() - c0
				b.StopTimer()
				if err := rdb.LTrim(ctx, hist, 0, keep-1).Err(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(load.Nanoseconds())/float64(b.N), "state-load-ns/op")
			b.ReportMetric(float64(keep), "history-entries")
		})
	}
}
