package session_test

import (
	"fmt"
	"testing"

	"github.com/callbrain/callbrain/session"
)

// benchTurn runs one turn per iteration as the agent does: BeginTurn, three spoken lines,
// CommitTurn. Every tenth turn starts a new call, so histories stay call-sized.
func benchTurn(b *testing.B, s session.Store) {
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		call, ev := fmt.Sprintf("c%d", i/10), fmt.Sprintf("e%d", i)
		i++
		if _, _, err := beginTurn(s, ctx, session.Call{ID: call}, ev); err != nil {
			b.Fatal(err)
		}
		for _, line := range []string{"One.", "Two.", "Three."} {
			if err := s.AppendLines(ctx, lease(call, ev), line); err != nil {
				b.Fatal(err)
			}
		}
		err := s.CommitTurn(ctx, lease(call, ev), nil,
			session.Entry{Kind: session.EntryUser, Text: "hi", At: int64(i), EventID: ev},
			session.Entry{Kind: session.EntryAssistant, Text: "One. Two. Three.", At: int64(i), EventID: ev},
		)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTurn(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchTurn(b, session.NewMemoryStore(session.Options{}))
	})
	b.Run("redis", func(b *testing.B) {
		s, rtts := newCountedRedisStore(b, session.Options{})
		before := rtts.RoundTrips()
		benchTurn(b, s)
		b.ReportMetric(float64(rtts.RoundTrips()-before)/float64(b.N), "rtt/op")
	})
}
