package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/callbrain/callbrain/test/orderdesk"
	"github.com/callbrain/callbrain/test/saperly"
)

// otlpReceiver is an OTLP/HTTP trace collector: it decodes each protobuf export request and
// keeps its spans' names, trace ids, span ids and parents.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []recvSpan
	bad   []string // requests it could not decode
}

type recvSpan struct {
	name, traceID, spanID, parentID string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
		o.bad = append(o.bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				o.spans = append(o.spans, recvSpan{name: s.GetName(), traceID: hexOf(s.GetTraceId()),
					spanID: hexOf(s.GetSpanId()), parentID: hexOf(s.GetParentSpanId())})
			}
		}
	}
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}

func (o *otlpReceiver) named(name string) []recvSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []recvSpan
	for _, s := range o.spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestTracesExported: with OTEL_EXPORTER_OTLP_ENDPOINT set, the brain exports, over OTLP/HTTP,
// a span per delivery, a turn span under it, and the model and tool calls under the turn; the
// tool's request carries the turn's W3C traceparent (docs/metrics.md, Traces).
func TestTracesExported(t *testing.T) {
	t.Parallel()
	recv := &otlpReceiver{}
	collector := httptest.NewServer(recv)
	t.Cleanup(collector.Close)

	token := "od-" + saperly.NewUUID()
	desk := orderdesk.New(orderdesk.Config{Token: token})
	var mu sync.Mutex
	var traceparents []string
	tools := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("traceparent"))
		mu.Unlock()
		desk.ServeHTTP(w, r)
	}))
	t.Cleanup(tools.Close)

	line := saperly.NewUUID()
	dir := t.TempDir()
	writePrompt(t, dir, "orders.md", orderAgent(tools.URL+"/orders/status"))
	writePrompt(t, dir, "lines.yaml", line+":\n  agent: orders\n")
	m := startMock(t)
	b := startBrain(t, brainConfig{Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR":                 dir,
		"ORDERDESK_TOKEN":             "Bearer " + token,
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
		"OTEL_SERVICE_NAME":           "brain-e2e",
	}})
	b.Line = line
	c := newCall(b)
	_, res := c.say(t, "Where is order 12345?")
	assert.Contains(t, modelSpeech(res), "shipped")
	c.ack(t, c.event("call_started")) // a status-style event: a delivery without a turn

	// SIGTERM flushes the spans still batched: no waiting on the exporter's schedule.
	b.stop(t)

	recv.mu.Lock()
	assert.Empty(t, recv.bad, "every export decodes as OTLP protobuf")
	recv.mu.Unlock()
	deliveries := recv.named("delivery /webhook")
	assert.Len(t, deliveries, 2, "one span per delivery")
	turns := recv.named("turn")
	require.Len(t, turns, 1, "one turn")
	turn := turns[0]
	var parent *recvSpan
	for i := range deliveries {
		if deliveries[i].spanID == turn.parentID {
			parent = &deliveries[i]
		}
	}
	require.NotNil(t, parent, "the turn is a delivery's child")
	assert.Equal(t, parent.traceID, turn.traceID)
	models := recv.named("model")
	require.Len(t, models, 2, "the tool round and the answer")
	for _, s := range models {
		assert.Equal(t, turn.spanID, s.parentID, "a model call is the turn's child")
	}
	toolSpans := recv.named("tool get_order_status")
	require.Len(t, toolSpans, 1)
	assert.Equal(t, turn.spanID, toolSpans[0].parentID)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, traceparents, 1, "one tool request")
	assert.Equal(t, "00-"+turn.traceID+"-"+toolSpans[0].spanID+"-01", traceparents[0],
		"the tool request carries the W3C trace context of its span")
}
