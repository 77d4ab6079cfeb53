package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// newTracedToolHarness is newToolHarness with a tracer whose spans end up in the recorder.
func newTracedToolHarness(t *testing.T, llm agent.LLM, rec *tracetest.SpanRecorder) (*toolHarness, trace.Tracer) {
	t.Helper()
	tool := newToolServer(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"), fmt.Appendf(nil, ordersAgent, tool.URL, "2s"), 0o644))
	lib, err := prompts.NewLive(dir, zap.NewNop())
	require.NoError(t, err)
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	h := &toolHarness{harness: &harness{t: t, store: session.NewMemoryStore(session.Options{})}, tool: tool, hangups: &hangups{}}
	cfg := agent.Config{Model: "primary", OnTurn: func(s agent.TurnStats) {
		h.mu.Lock()
		h.stats = append(h.stats, s)
		h.mu.Unlock()
	}}
	h.agent = agent.New(cfg, agent.Deps{Primary: llm, Store: h.store, Prompts: lib, Control: h.hangups,
		HTTP: tool.client, Tracer: tracer})
	return h, tracer
}

func spansNamed(spans []sdktrace.ReadOnlySpan, name string) (out []sdktrace.ReadOnlySpan) {
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// A turn is a child of the delivery's span; its model calls and tool calls are its children,
// its timing breakdown is its events, and the tool's request carries the trace context.
func TestTurnSpansModelAndToolChildrenAndTraceparent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"12345"}`)},
			say("Your order 12345 has shipped and arrives Thursday.", 0, 0),
		)
		rec := tracetest.NewSpanRecorder()
		h, tracer := newTracedToolHarness(t, llm, rec)

		ctx, delivery := tracer.Start(t.Context(), "delivery /webhook")
		h.respond(ctx, message("c1", "e1", "Where is order 12345?"))
		delivery.End()

		spans := rec.Ended()
		turns := spansNamed(spans, "turn")
		require.Len(t, turns, 1, "one span per turn")
		turn := turns[0]
		assert.Equal(t, delivery.SpanContext().SpanID(), turn.Parent().SpanID(), "the turn is the delivery's child")
		assert.Equal(t, delivery.SpanContext().TraceID(), turn.SpanContext().TraceID())

		models := spansNamed(spans, "model")
		require.Len(t, models, 2, "the tool round and the answer")
		for _, m := range models {
			assert.Equal(t, turn.SpanContext().SpanID(), m.Parent().SpanID(), "a model call is the turn's child")
			assert.Equal(t, trace.SpanKindClient, m.SpanKind())
		}
		tools := spansNamed(spans, "tool get_order_status")
		require.Len(t, tools, 1)
		assert.Equal(t, turn.SpanContext().SpanID(), tools[0].Parent().SpanID(), "a tool call is the turn's child")

		var events []string
		for _, e := range turn.Events() {
			events = append(events, e.Name)
		}
		assert.Subset(t, events, []string{"state_loaded", "model_request", "first_token", "first_line"},
			"the timing breakdown, as events")
		attrs := map[string]string{}
		for _, kv := range turn.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		assert.Equal(t, "answered", attrs["callbrain.outcome"])
		assert.Equal(t, "1", attrs["callbrain.tool_calls"])
		assert.Equal(t, "c1", attrs["callbrain.call_id"])

		calls := h.tool.requests()
		require.Len(t, calls, 1)
		want := fmt.Sprintf("00-%s-%s-01", turn.SpanContext().TraceID(), tools[0].SpanContext().SpanID())
		assert.Equal(t, want, calls[0].traceparent, "the tool's request carries the W3C trace context of its span")
	})
}

// With no tracer, nothing is traced and tools get no traceparent.
func TestNoTracerSendsNoTraceparent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"12345"}`)},
			say("Shipped.", 0, 0),
		)
		h := newToolHarness(t, llm, "2s")
		h.respond(t.Context(), message("c1", "e1", "Where is order 12345?"))
		calls := h.tool.requests()
		require.Len(t, calls, 1)
		assert.Empty(t, calls[0].traceparent)
	})
}
