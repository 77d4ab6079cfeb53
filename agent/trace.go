package agent

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracerOrNoop returns t, or a tracer that records nothing when t is nil: tracing off costs
// a few no-op calls per turn.
func tracerOrNoop(t trace.Tracer) trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer("")
	}
	return t
}

// traceContext writes the W3C trace context (traceparent, tracestate) into HTTP requests.
var traceContext = propagation.TraceContext{}

// injectTrace puts the span context of req's context into req's headers (traceparent), so a
// tool's own traces join the turn's. Nothing is written when the context carries no span.
func injectTrace(req *http.Request) {
	traceContext.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
}

// endTurnSpan records a turn's figures on its span: the timing breakdown as events at the
// moments they happened (measured from start, the delivery's receipt), the rest as attributes.
func endTurnSpan(span trace.Span, start time.Time, s TurnStats) {
	if !span.IsRecording() {
		return
	}
	event := func(name string, d time.Duration) {
		span.AddEvent(name, trace.WithTimestamp(start.Add(d)),
			trace.WithAttributes(attribute.Int64("since_receipt_ms", d.Milliseconds())))
	}
	if s.Verify > 0 {
		event("verified", s.Verify)
	}
	if !s.Replayed {
		event("state_loaded", s.Verify+s.StateLoad)
	}
	if s.ModelCalls > 0 {
		event("model_request", s.PreModel)
		if s.Model != "" {
			event("first_token", s.PreModel+s.TTFT)
		}
	}
	if s.Lines > 0 {
		event("first_line", s.FirstLine)
	}
	span.SetAttributes(
		attribute.String("callbrain.call_id", s.CallID),
		attribute.String("callbrain.event_id", s.EventID),
		attribute.String("callbrain.line_id", s.LineID),
		attribute.Int("callbrain.turn", s.Turn),
		attribute.String("callbrain.agent", s.Agent),
		attribute.String("callbrain.prompt_version", s.PromptVersion),
		attribute.String("callbrain.model", s.Model),
		attribute.String("callbrain.outcome", s.Outcome),
		attribute.String("callbrain.budget", s.Budget),
		attribute.Int("callbrain.lines", s.Lines),
		attribute.Int("callbrain.holds", s.Holds),
		attribute.Int("callbrain.model_calls", s.ModelCalls),
		attribute.Int("callbrain.tool_calls", s.ToolCalls),
		attribute.Bool("callbrain.fallback", s.Fallback),
		attribute.Bool("callbrain.hedged", s.Hedged),
		attribute.Bool("callbrain.replayed", s.Replayed),
		attribute.Bool("callbrain.degraded", s.Degraded),
		attribute.Int64("callbrain.ttft_ms", s.TTFT.Milliseconds()),
		attribute.Int64("callbrain.first_line_ms", s.FirstLine.Milliseconds()),
		attribute.Int64("callbrain.total_ms", s.Total.Milliseconds()),
	)
	switch {
	case s.ModelError != "":
		span.SetStatus(codes.Error, s.ModelError)
	case s.StoreError != "":
		span.SetStatus(codes.Error, s.StoreError)
	}
}
