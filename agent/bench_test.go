package agent_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// instantLLM answers at once with pre-split tokens: what is left is the brain's own cost.
type instantLLM struct{ toks []string }

func (l instantLLM) Stream(context.Context, agent.Request) (agent.TokenStream, error) {
	return &instantStream{toks: l.toks}, nil
}

type instantStream struct{ toks []string }

func (s *instantStream) Recv() (string, error) {
	if len(s.toks) == 0 {
		return "", io.EOF
	}
	t := s.toks[0]
	s.toks = s.toks[1:]
	return t, nil
}

func (s *instantStream) ToolCalls() []agent.ToolCall { return nil }

func (s *instantStream) Close() error { return nil }

// BenchmarkTurn measures one whole turn with a model that costs nothing: claim and state load
// (in-process store), request building, chunking, emitting and committing. ns/op is the brain's
// CPU per turn; first-line-lag-ns is its share of the latency to the first word.
func BenchmarkTurn(b *testing.B) {
	lib, err := prompts.NewLive(b.TempDir(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	store := session.NewMemoryStore(session.Options{})
	var lag time.Duration
	a := agent.New(agent.Config{Model: "m", OnTurn: func(s agent.TurnStats) { lag += s.PreModel + s.FirstLineLag }},
		agent.Deps{Primary: instantLLM{toks: agent.DemoTokens(answer)}, Store: store, Prompts: lib})
	ctx := context.Background()
	emit := func(agent.Chunk) error { return nil }
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// A call of ten turns: history grows as it does on a real call.
		ev := message(fmt.Sprintf("call-%d", i/10), fmt.Sprintf("ev-%d", i), "I'd like to book a cleaning")
		if err := a.Respond(ctx, ev, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lag.Nanoseconds())/float64(b.N), "brain-lag-ns/op")
}
