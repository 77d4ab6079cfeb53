package transport

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/callbrain/callbrain/agent"
)

// Every delivery, answered or refused, is one server span; the responder runs inside it, and a
// traceparent sent with the delivery becomes its parent.
func TestDeliverySpan(t *testing.T) {
	t.Parallel()
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := []struct {
		name        string
		req         deliveryReq
		status      int
		outcome     string
		traceparent string
	}{
		{"answered", deliveryReq{body: msgBody("hello")}, http.StatusOK, outcomeAnswered, ""},
		{"bad signature", deliveryReq{body: msgBody("hello"), secret: "wrong"}, http.StatusUnauthorized, outcomeRejected, ""},
		{"with a parent", deliveryReq{body: msgBody("hello")}, http.StatusOK, outcomeAnswered, parent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := tracetest.NewSpanRecorder()
			tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
			var inside trace.SpanContext
			resp := &scripted{respond: func(ctx context.Context, _ agent.Event, emit func(agent.Chunk) error) error {
				inside = trace.SpanContextFromContext(ctx)
				return emit(agent.Speak("Hi."))
			}}
			f := newFixture(t, resp, func(cfg *Config) { cfg.Tracer = tracer })
			if c.traceparent != "" {
				c.req.edit = func(h http.Header) { h.Set("traceparent", c.traceparent) }
			}
			res := f.send(t, c.req)
			require.Equal(t, c.status, res.Code)

			spans := rec.Ended()
			require.Len(t, spans, 1, "one span per delivery")
			s := spans[0]
			assert.Equal(t, "delivery /webhook", s.Name())
			assert.Equal(t, trace.SpanKindServer, s.SpanKind())
			attrs := map[string]string{}
			for _, kv := range s.Attributes() {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			assert.Equal(t, c.outcome, attrs["callbrain.outcome"])
			assert.Equal(t, strconv.Itoa(c.status), attrs["http.response.status_code"])
			if c.status == http.StatusOK {
				assert.Equal(t, s.SpanContext().SpanID(), inside.SpanID(), "the responder runs in the delivery's span")
			}
			if c.traceparent != "" {
				assert.Equal(t, "0af7651916cd43dd8448eb211c80319c", s.SpanContext().TraceID().String())
				assert.Equal(t, "b7ad6b7169203331", s.Parent().SpanID().String())
			} else {
				assert.False(t, s.Parent().IsValid(), "a root span")
			}
		})
	}
}
