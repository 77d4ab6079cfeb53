package bench

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"

	"github.com/callbrain/callbrain/test/saperly"
)

// benchLine is the line id every benchmark call is on.
const benchLine = "5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f"

// conversation is what a benchmark caller says, in order, one message per turn; a call is
// ten turns, so the history grows as on a real call. Each utterance draws a different answer
// of the stand-in model (agent.DemoReply), of two or three sentences.
var conversation = []string{
	"Hi there, I have a question",
	"I'd like to book a cleaning",
	"Tuesday works for me",
	"Do you take walk-ins on weekends",
	"Great, thank you, bye",
}

const turnsPerCall = 10

// say sends the i-th message of a benchmark run: call i/turnsPerCall of run, and fails b on
// anything but a spoken NDJSON answer.
func say(b *testing.B, c *saperly.Client, run string, i int) *saperly.Result {
	call := fmt.Sprintf("bench-%s-%d", run, i/turnsPerCall)
	res, err := c.Say(b.Context(), call, benchLine, conversation[i%len(conversation)])
	if err != nil {
		b.Fatalf("message %d: %v", i, err)
	}
	if res.Status != http.StatusOK || len(res.Lines) == 0 {
		b.Fatalf("message %d: status %d, %d lines, body %q", i, res.Status, len(res.Lines), res.Body)
	}
	return res
}

// BenchmarkMessageTurn is one signed message event through the whole brain, answered by a
// stand-in model that costs no time: HTTP, signature check, replay check, claim and state
// load, the go-openai adapter over loopback HTTP, chunking, NDJSON, the turn log and the
// commit, and the brain's two log lines. Sequential, one turn at a time.
//
// ns/op and allocs/op are the whole loop in this process: the Saperly stand-in client and the
// stand-in model included (the brain's own CPU per turn is TestBrainCPU's figure). The custom
// metrics are the brain's own, from agent.Config.OnTurn:
//
//	overhead-p50/p99/max-ns  the brain's latency to the first line, model time excluded (see overhead)
//	premodel-p50-ns          receipt to model request
//	lag-p50-ns               first-line-completing token to its flush
//	ttft-p50-ns              model request to first token: the adapter, loopback HTTP and the stand-in
//	firstline-p50-ns         what the client saw: request sent to first line read
//	redis-rtt/op, redis-cmds/op  (redis only) round trips and commands per message turn
func BenchmarkMessageTurn(b *testing.B) {
	for _, store := range []string{storeMemory, storeRedis} {
		b.Run(store, func(b *testing.B) {
			br := startInProcess(b, brainOptions{Store: store})
			c := newClient(br.URL, 4)
			run := rand.Text()[:8]
			for i := range 2 * turnsPerCall { // connections to the brain, the model and Redis
				say(b, c, run+"w", i)
			}
			br.Turns.take()
			var rtt0, cmd0 int64
			if br.Redis != nil {
				rtt0, cmd0 = br.Redis.snapshot()
			}

			var client dist
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				res := say(b, c, run, i)
				client = append(client, res.Lines[0].At)
				i++
				if i%1000 == 0 {
					br.Mock.Reset() // it records every request; keep its memory flat
				}
			}

			if br.Redis != nil {
				rtt, cmds := br.Redis.snapshot()
				b.ReportMetric(float64(rtt-rtt0)/float64(i), "redis-rtt/op")
				b.ReportMetric(float64(cmds-cmd0)/float64(i), "redis-cmds/op")
			}
			var over, pre, lag, ttft dist
			lines := 0
			turns := br.Turns.take()
			for _, s := range turns {
				lines += s.Lines
				pre = append(pre, s.PreModel)
				ttft = append(ttft, s.TTFT)
				if o, ok := overhead(s); ok {
					over = append(over, o)
					lag = append(lag, s.FirstLineLag)
				}
			}
			if len(turns) != i {
				b.Fatalf("%d turns recorded for %d messages", len(turns), i)
			}
			b.ReportMetric(float64(lines)/float64(i), "lines/op")
			b.ReportMetric(float64(over.pct(50)), "overhead-p50-ns")
			b.ReportMetric(float64(over.pct(99)), "overhead-p99-ns")
			b.ReportMetric(float64(over.max()), "overhead-max-ns")
			b.ReportMetric(float64(pre.pct(50)), "premodel-p50-ns")
			b.ReportMetric(float64(lag.pct(50)), "lag-p50-ns")
			b.ReportMetric(float64(ttft.pct(50)), "ttft-p50-ns")
			b.ReportMetric(float64(client.pct(50)), "firstline-p50-ns")
			if len(over) < i {
				b.Logf("%d of %d turns had no model first line completed by a token; their overhead is not counted", i-len(over), i)
			}
		})
	}
}

// events are the non-message deliveries, built for a call.
var events = []struct {
	name string
	path string
	make func(c *saperly.Client, call string) saperly.Event
}{
	{name: "call_started", path: saperly.WebhookPath, make: func(c *saperly.Client, call string) saperly.Event {
		ev := c.NewEvent("call_started", call, benchLine)
		ev["from_number"], ev["to_number"], ev["direction"] = "+14155551234", "+14155550123", "inbound"
		return ev
	}},
	{name: "interrupted", path: saperly.WebhookPath, make: func(c *saperly.Client, call string) saperly.Event {
		ev := c.NewEvent("interrupted", call, benchLine)
		ev["partial_response_text"] = "Sure, we have openings on Tuesday at"
		return ev
	}},
	{name: "call_ended", path: saperly.WebhookPath, make: func(c *saperly.Client, call string) saperly.Event {
		ev := c.NewEvent("call_ended", call, benchLine)
		ev["status"], ev["duration_seconds"] = "completed", 184
		return ev
	}},
	{name: "sms_received", path: saperly.WebhookPath, make: func(c *saperly.Client, _ string) saperly.Event {
		ev := c.NewEvent("sms_received", "", benchLine)
		ev["from_number"], ev["to_number"] = "+14155551234", "+14155550123"
		ev["message"], ev["message_sid"] = "Hello, can I move my appointment to Friday?", "SM"+rand.Text()[:16]
		return ev
	}},
	{name: "test", path: saperly.WebhookPath, make: func(c *saperly.Client, _ string) saperly.Event {
		ev := c.NewEvent("test", "", benchLine)
		ev["message"] = "This is a test webhook from Saperly."
		return ev
	}},
	{name: "status_callback", path: saperly.StatusPath, make: func(c *saperly.Client, call string) saperly.Event {
		ev := c.NewEvent("call_incoming", call, benchLine)
		ev["from_number"], ev["to_number"], ev["direction"], ev["status"] = "+14155551234", "+14155550123", "inbound", "ringing"
		return ev
	}},
}

// BenchmarkEvent is one non-message delivery (answered 200 {}) through the whole brain, per
// event kind, sequential. With Redis it reports the round trips and commands the brain sends
// per delivery (redis-rtt/op, redis-cmds/op). ns/op and allocs/op include the client.
func BenchmarkEvent(b *testing.B) {
	for _, store := range []string{storeMemory, storeRedis} {
		b.Run(store, func(b *testing.B) {
			br := startInProcess(b, brainOptions{Store: store})
			c := newClient(br.URL, 4)
			run := rand.Text()[:8]
			for _, e := range events {
				b.Run(e.name, func(b *testing.B) {
					send := func(i int) {
						call := fmt.Sprintf("bench-%s-%s-%d", run, e.name, i/turnsPerCall)
						res, err := c.Send(b.Context(), e.path, e.make(c, call))
						if err != nil {
							b.Fatalf("%s %d: %v", e.name, i, err)
						}
						if res.Status != http.StatusOK {
							b.Fatalf("%s %d: status %d, body %q", e.name, i, res.Status, res.Body)
						}
					}
					for i := range 3 { // open the connections this kind uses
						send(-1 - i)
					}
					var rtt0, cmd0 int64
					if br.Redis != nil {
						rtt0, cmd0 = br.Redis.snapshot()
					}
					i := 0
					b.ReportAllocs()
					for b.Loop() {
						send(i)
						i++
					}
					if br.Redis != nil {
						rtt, cmds := br.Redis.snapshot()
						b.ReportMetric(float64(rtt-rtt0)/float64(i), "redis-rtt/op")
						b.ReportMetric(float64(cmds-cmd0)/float64(i), "redis-cmds/op")
					}
				})
			}
		})
	}
}
