package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/sashabaranov/go-openai"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/transport"
)

func newTestMetrics(t *testing.T) (*metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return newMetrics(reg), reg
}

func TestMetricsOnTurn(t *testing.T) {
	t.Parallel()
	m, reg := newTestMetrics(t)
	m.onTurn(agent.TurnStats{Outcome: agent.OutcomeAnswered, TTFT: 300 * time.Millisecond, PreModel: 200 * time.Microsecond,
		FirstLine: 400 * time.Millisecond, Total: 2 * time.Second, Lines: 3, Holds: 1, Hedged: true, Fallback: true,
		Tools: []agent.ToolUse{{Name: "lookup_order"}, {Name: "lookup_order"}, {Name: "lookup_order", Failed: true}}, HangUp: "sent", PinnedMiss: true})
	m.onTurn(agent.TurnStats{Outcome: agent.OutcomeStalled, Budget: "stall", Degraded: true, Lines: 0})
	m.onTurn(agent.TurnStats{Outcome: agent.OutcomeCut, Lines: 0, UtteranceCut: 9000}) // barge-in: not silent

	assert.InDelta(t, 1, testutil.ToFloat64(m.turns.WithLabelValues("answered", "none")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.turns.WithLabelValues("stalled", "stall")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.turnsDegraded), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.turnsSilent), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.holds), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.fallbacks), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.hedges), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.utterCuts), 0)
	assert.InDelta(t, 2, testutil.ToFloat64(m.toolCalls.WithLabelValues("lookup_order", "ok")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.toolCalls.WithLabelValues("lookup_order", "error")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.hangUps.WithLabelValues("sent")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.pinnedMisses), 0)
	// Zero durations (no model was asked) are not observed.
	assert.Equal(t, 1, testutil.CollectAndCount(m.ttft))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP callbrain_turn_time_to_first_token_seconds Model request to first token.
# TYPE callbrain_turn_time_to_first_token_seconds histogram
callbrain_turn_time_to_first_token_seconds_bucket{le="0.05"} 0
callbrain_turn_time_to_first_token_seconds_bucket{le="0.1"} 0
callbrain_turn_time_to_first_token_seconds_bucket{le="0.2"} 0
callbrain_turn_time_to_first_token_seconds_bucket{le="0.3"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="0.5"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="0.75"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="1"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="1.5"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="2"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="3"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="5"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="8"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="15"} 1
callbrain_turn_time_to_first_token_seconds_bucket{le="+Inf"} 1
callbrain_turn_time_to_first_token_seconds_sum 0.3
callbrain_turn_time_to_first_token_seconds_count 1
`), "callbrain_turn_time_to_first_token_seconds"))
}

func TestMetricsOnResultBoundsLabels(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t)
	tests := []struct {
		name            string
		in              transport.Result
		kind, status    string
		verifyFailure   string
		wantVerifyCount float64
	}{
		{name: "answered message", in: transport.Result{Route: "/webhook", Kind: "message", Status: 200, Verify: "ok"}, kind: "message", status: "200"},
		{name: "bad signature, not decoded", in: transport.Result{Route: "/webhook", Status: 401, Verify: "invalid_signature"}, kind: "none", status: "401", verifyFailure: "invalid_signature", wantVerifyCount: 1},
		{name: "refused before the check", in: transport.Result{Route: "/status", Status: 413, Verify: "skipped"}, kind: "none", status: "413"},
		{name: "an unknown kind is not a label value", in: transport.Result{Route: "/status", Kind: "+14155551234", Status: 200, Verify: "ok"}, kind: "other", status: "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.onResult(tt.in)
			assert.InDelta(t, 1, testutil.ToFloat64(m.deliveries.WithLabelValues(tt.in.Route, tt.kind, tt.status)), 0)
			if tt.verifyFailure != "" {
				assert.InDelta(t, tt.wantVerifyCount, testutil.ToFloat64(m.verifyFailures.WithLabelValues(tt.verifyFailure)), 0)
			}
		})
	}
	assert.Equal(t, 1, testutil.CollectAndCount(m.verifyFailures), "ok and skipped are not failures")
}

func TestMetricsLineGaps(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t)
	t0 := time.Now()
	m.onDelivery(agent.DeliveryRecord{Lines: []agent.LineRecord{{At: t0}, {At: t0.Add(200 * time.Millisecond)}, {At: t0.Add(500 * time.Millisecond)}}})
	m.onDelivery(agent.DeliveryRecord{}) // an acknowledgement: no lines, no gaps
	ch := make(chan prometheus.Metric, 1)
	m.lineGap.Collect(ch)
	got := metricOf(t, <-ch)
	assert.Equal(t, uint64(2), got.GetHistogram().GetSampleCount())
	assert.InDelta(t, 0.5, got.GetHistogram().GetSampleSum(), 1e-9)
}

func TestMetricsModelErrorKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "cancelled is not an error", err: fmt.Errorf("%w: %w", agent.ErrModel, context.Canceled), want: ""},
		{name: "timeout", err: fmt.Errorf("%w: %w", agent.ErrModel, context.DeadlineExceeded), want: "timeout"},
		{name: "rate limited", err: fmt.Errorf("%w: %w", agent.ErrModel, &openai.APIError{HTTPStatusCode: 429}), want: "rate_limited"},
		{name: "server error", err: fmt.Errorf("%w: %w", agent.ErrModel, &openai.RequestError{HTTPStatusCode: 503, Err: errors.New("x")}), want: "http_5xx"},
		{name: "client error", err: &openai.APIError{HTTPStatusCode: 401}, want: "http_4xx"},
		{name: "truncated", err: agent.ErrTruncated, want: "truncated"},
		{name: "broken stream", err: io.ErrUnexpectedEOF, want: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, modelErrorKind(tt.err))
		})
	}
}

// TestMeteredStore runs real store operations through the wrapper: each is counted and timed,
// and a not-found is not a store error.
func TestMeteredStore(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t)
	s := meteredStore{s: session.NewMemoryStore(session.Options{}), m: m}
	_, err := s.Load(t.Context(), "nope")
	require.ErrorIs(t, err, session.ErrNotFound)
	first, err := s.FirstDelivery(t.Context(), "d1", time.Minute)
	require.NoError(t, err)
	assert.True(t, first)
	require.NoError(t, s.Ping(t.Context()))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _ = s.Load(ctx, "nope")

	assert.InDelta(t, 2, testutil.ToFloat64(m.storeOps.WithLabelValues("load")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.storeOps.WithLabelValues("first_delivery")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.storeOps.WithLabelValues("ping")), 0)
	assert.Equal(t, 0, testutil.CollectAndCount(m.storeErrors), "not found and cancelled are not failures")
	assert.Equal(t, 3, testutil.CollectAndCount(m.storeSeconds))
}

func TestMetricsOnReload(t *testing.T) {
	t.Parallel()
	m, _ := newTestMetrics(t)
	m.onReload(true, 0)
	m.onReload(false, 2)
	assert.InDelta(t, 1, testutil.ToFloat64(m.promptReloads.WithLabelValues("changed")), 0)
	assert.InDelta(t, 1, testutil.ToFloat64(m.promptReloads.WithLabelValues("unchanged")), 0)
	assert.InDelta(t, 2, testutil.ToFloat64(m.promptRejections), 0)
}

// TestServeMetrics scrapes the listener over real HTTP: Prometheus text with our metrics and
// the Go runtime's; a bad address fails at once, naming the variable.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	m, reg := newTestMetrics(t)
	m.onReload(true, 0)
	addr, stop, err := serveMetrics("127.0.0.1:0", reg, false, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(stop)
	res, err := http.Get("http://" + addr.String() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(body), `callbrain_prompt_reloads_total{result="changed"} 1`)
	assert.Contains(t, string(body), "go_goroutines ")
	assert.Contains(t, string(body), "process_resident_memory_bytes ")

	res, err = http.Get("http://" + addr.String() + "/debug/pprof/goroutine")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "no profiler unless BRAIN_PPROF")

	_, _, err = serveMetrics("127.0.0.1:notaport", reg, false, zap.NewNop())
	require.ErrorContains(t, err, "BRAIN_METRICS_ADDR")
}

// TestServeProfiler: with BRAIN_PPROF the metrics listener serves Go's profiler too.
func TestServeProfiler(t *testing.T) {
	t.Parallel()
	_, reg := newTestMetrics(t)
	addr, stop, err := serveMetrics("127.0.0.1:0", reg, true, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(stop)
	res, err := http.Get("http://" + addr.String() + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, string(body), "goroutine profile:")
	res, err = http.Get("http://" + addr.String() + "/debug/pprof/profile?seconds=1")
	require.NoError(t, err)
	body, err = io.ReadAll(res.Body)
	require.NoError(t, res.Body.Close())
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.NotEmpty(t, body, "a CPU profile")
}

func metricOf(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var out dto.Metric
	require.NoError(t, m.Write(&out))
	return &out
}

// BenchmarkMetricsPerTurn is what the metrics add to one message turn: its delivery, its turn
// (3 lines, one tool call) and its store operations.
func BenchmarkMetricsPerTurn(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry())
	t0 := time.Now()
	rec := agent.DeliveryRecord{Lines: []agent.LineRecord{{At: t0}, {At: t0.Add(time.Second)}, {At: t0.Add(2 * time.Second)}}}
	st := agent.TurnStats{Outcome: agent.OutcomeAnswered, TTFT: time.Second, PreModel: time.Millisecond, FirstLine: time.Second,
		Total: 3 * time.Second, Lines: 3, Tools: []agent.ToolUse{{Name: "lookup"}}}
	res := transport.Result{Route: "/webhook", Kind: "message", Status: 200, Verify: "ok", Elapsed: time.Second}
	ms := meteredStore{s: session.NewMemoryStore(session.Options{}), m: m}
	b.ReportAllocs()
	for b.Loop() {
		m.onResult(res)
		m.onDelivery(rec)
		m.onTurn(st)
		for range 5 { // the round trips of a message turn
			ms.observe("commit_turn", t0, nil)
		}
	}
}
