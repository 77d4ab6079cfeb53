package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sashabaranov/go-openai"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
	"github.com/callbrain/callbrain/transport"
)

// metrics are the brain's Prometheus collectors, registered on a registry made in run (never
// the global one) and fed through the seams: agent.Config.OnTurn, transport.Config.OnResult
// and OnDelivery, a Store and a Responder wrapper, the model wrappers and prompts' OnReload.
// Every label value comes from a small fixed set: never a call id, a line id or a number.
// The names are listed in docs/metrics.md; a test checks the dashboard queries only these.
type metrics struct {
	deliveries      *prometheus.CounterVec
	deliverySeconds *prometheus.HistogramVec
	verifyFailures  *prometheus.CounterVec

	turns         *prometheus.CounterVec
	turnsDegraded prometheus.Counter
	turnsSilent   prometheus.Counter
	ttft          prometheus.Histogram
	preModel      prometheus.Histogram
	firstLine     prometheus.Histogram
	lineGap       prometheus.Histogram
	turnSeconds   prometheus.Histogram
	holds         prometheus.Counter
	fallbacks     prometheus.Counter
	hedges        prometheus.Counter
	utterCuts     prometheus.Counter
	toolCalls     *prometheus.CounterVec
	hangUps       *prometheus.CounterVec
	pinnedMisses  prometheus.Counter
	turnsActive   prometheus.Gauge
	callsActive   prometheus.Gauge

	storeOps     *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec
	storeSeconds *prometheus.HistogramVec

	modelErrors *prometheus.CounterVec

	promptReloads    *prometheus.CounterVec
	promptRejections prometheus.Counter
}

// Latency buckets, in seconds: the brain's own overhead is sub-millisecond, a first line
// should come within about a second, a turn may run for minutes.
var (
	fastBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	lineBuckets = []float64{.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 8, 15}
	turnBuckets = []float64{.25, .5, 1, 2, 3, 5, 8, 15, 30, 60, 120, 300}
)

// newMetrics registers the brain's collectors, and the Go runtime's and the process's, on reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		f(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		f(h)
		return h
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		f(g)
		return g
	}
	m := &metrics{
		deliveries: counterVec("callbrain_deliveries_total", "Deliveries answered, by route, event kind and HTTP status.", "route", "kind", "status"),
		deliverySeconds: func() *prometheus.HistogramVec {
			h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "callbrain_delivery_duration_seconds",
				Help: "Time from a delivery's arrival to its last byte, by route.", Buckets: turnBuckets}, []string{"route"})
			f(h)
			return h
		}(),
		verifyFailures: counterVec("callbrain_verification_failures_total", "Deliveries whose signature was refused, by reason.", "reason"),

		turns:         counterVec("callbrain_turns_total", "Turns answered, by outcome and the budget that ended them (none).", "outcome", "budget"),
		turnsDegraded: counter("callbrain_turns_degraded_total", "Turns answered without history because the store failed."),
		turnsSilent:   counter("callbrain_turns_silent_total", "Turns that spoke no line although the caller stayed on."),
		ttft:          histogram("callbrain_turn_time_to_first_token_seconds", "Model request to first token.", lineBuckets),
		preModel:      histogram("callbrain_turn_pre_model_seconds", "The brain's overhead before the model: receipt to model request.", fastBuckets),
		firstLine:     histogram("callbrain_turn_first_line_seconds", "Receipt to the first line flushed, holding phrases included.", lineBuckets),
		lineGap:       histogram("callbrain_turn_line_gap_seconds", "Gaps between consecutive lines of one answer.", lineBuckets),
		turnSeconds:   histogram("callbrain_turn_duration_seconds", "Receipt to the end of the turn.", turnBuckets),
		holds:         counter("callbrain_holding_phrases_total", "Holding phrases spoken while the model was slow."),
		fallbacks:     counter("callbrain_fallbacks_total", "Turns the fallback model answered."),
		hedges:        counter("callbrain_hedges_total", "Turns that started the fallback model in parallel."),
		utterCuts:     counter("callbrain_utterances_cut_total", "Caller messages cut to BRAIN_MAX_UTTERANCE."),
		toolCalls:     counterVec("callbrain_tool_calls_total", "HTTP tool calls, by tool and result (ok, error).", "tool", "result"),
		hangUps:       counterVec("callbrain_hangups_total", "Hang-ups the agent asked for, by result (sent, failed, skipped, too_long).", "result"),
		pinnedMisses:  counter("callbrain_pinned_version_misses_total", "Turns of a call pinned to a prompt version this replica does not know."),
		turnsActive:   gauge("callbrain_turns_active", "Turns in progress on this replica."),
		callsActive:   gauge("callbrain_calls_active", "Calls started minus calls ended, as seen by this replica: sum it over replicas."),

		storeOps:    counterVec("callbrain_store_operations_total", "Store operations, by operation.", "operation"),
		storeErrors: counterVec("callbrain_store_errors_total", "Store operations that failed (not found excluded), by operation.", "operation"),
		storeSeconds: func() *prometheus.HistogramVec {
			h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "callbrain_store_operation_duration_seconds",
				Help: "Store operation latency, by operation.", Buckets: fastBuckets}, []string{"operation"})
			f(h)
			return h
		}(),

		modelErrors: counterVec("callbrain_model_errors_total", "Model errors, by role (primary, fallback), phase (start, stream) and kind.", "role", "phase", "kind"),

		promptReloads:    counterVec("callbrain_prompt_reloads_total", "Prompt directory reloads, by result (changed, unchanged).", "result"),
		promptRejections: counter("callbrain_prompt_rejections_total", "Prompt files rejected by reloads (the last good version stays)."),
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// knownKinds bounds the kind label: a verified body may name any event.
var knownKinds = map[string]bool{
	agent.EventCallStarted: true, agent.EventMessage: true, agent.EventInterrupted: true,
	agent.EventCallEnded: true, agent.EventSMSReceived: true, agent.EventTest: true,
	agent.EventCallIncoming: true, agent.EventCallOutgoing: true,
}

// onResult counts one delivery (transport.Config.OnResult).
func (m *metrics) onResult(r transport.Result) {
	kind := r.Kind
	switch {
	case kind == "":
		kind = "none"
	case !knownKinds[kind]:
		kind = "other"
	}
	m.deliveries.WithLabelValues(r.Route, kind, strconv.Itoa(r.Status)).Inc()
	m.deliverySeconds.WithLabelValues(r.Route).Observe(r.Elapsed.Seconds())
	if r.Verify != "ok" && r.Verify != "skipped" && r.Verify != "" {
		m.verifyFailures.WithLabelValues(r.Verify).Inc()
	}
}

// onDelivery measures the gaps between the lines of an answer (transport.Config.OnDelivery).
func (m *metrics) onDelivery(d agent.DeliveryRecord) {
	for i := 1; i < len(d.Lines); i++ {
		m.lineGap.Observe(d.Lines[i].At.Sub(d.Lines[i-1].At).Seconds())
	}
}

// onTurn counts one turn (agent.Config.OnTurn).
func (m *metrics) onTurn(s agent.TurnStats) {
	budget := s.Budget
	if budget == "" {
		budget = "none"
	}
	m.turns.WithLabelValues(s.Outcome, budget).Inc()
	if s.Degraded {
		m.turnsDegraded.Inc()
	}
	if s.Lines == 0 && s.Outcome != agent.OutcomeCut {
		m.turnsSilent.Inc()
	}
	if s.TTFT > 0 {
		m.ttft.Observe(s.TTFT.Seconds())
	}
	if s.PreModel > 0 {
		m.preModel.Observe(s.PreModel.Seconds())
	}
	if s.FirstLine > 0 {
		m.firstLine.Observe(s.FirstLine.Seconds())
	}
	m.turnSeconds.Observe(s.Total.Seconds())
	m.holds.Add(float64(s.Holds))
	if s.Fallback {
		m.fallbacks.Inc()
	}
	if s.Hedged {
		m.hedges.Inc()
	}
	if s.UtteranceCut > 0 {
		m.utterCuts.Inc()
	}
	for _, t := range s.Tools {
		result := "ok"
		if t.Failed {
			result = "error"
		}
		m.toolCalls.WithLabelValues(t.Name, result).Inc() // tool names come from the operator's agents
	}
	if s.HangUp != "" {
		m.hangUps.WithLabelValues(s.HangUp).Inc()
	}
	if s.PinnedMiss {
		m.pinnedMisses.Inc()
	}
}

// onReload counts one prompt reload (prompts.Live.OnReload).
func (m *metrics) onReload(changed bool, rejected int) {
	result := "unchanged"
	if changed {
		result = "changed"
	}
	m.promptReloads.WithLabelValues(result).Inc()
	m.promptRejections.Add(float64(rejected))
}

// serveMetrics serves GET /metrics from reg on addr; it returns the address bound and a
// function that stops the listener and waits. It listens at once, so a bad address fails
// start-up.
func serveMetrics(addr string, reg *prometheus.Registry, profiler bool, log *zap.Logger) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on BRAIN_METRICS_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if profiler { // BRAIN_PPROF
		mux.HandleFunc("GET /debug/pprof/", pprof.Index) // the named profiles: heap, goroutine, …
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: zap.NewStdLog(log.Named("metrics"))}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", zap.Error(err))
		}
	}()
	log.Info("metrics listening", zap.String("addr", ln.Addr().String()))
	return ln.Addr(), func() {
		_ = srv.Close() // scrapes are short: no drain
		<-done
	}, nil
}

// meteredResponder counts turns and calls in progress around the agent.
type meteredResponder struct {
	transport.Responder
	m *metrics
}

func (r meteredResponder) Respond(ctx context.Context, ev agent.Event, emit func(agent.Chunk) error) error {
	r.m.turnsActive.Inc()
	defer r.m.turnsActive.Dec()
	return r.Responder.Respond(ctx, ev, emit)
}

func (r meteredResponder) Record(ctx context.Context, ev agent.Event) error {
	err := r.Responder.Record(ctx, ev)
	if err == nil {
		switch ev.Kind {
		case agent.EventCallStarted:
			r.m.callsActive.Inc()
		case agent.EventCallEnded:
			r.m.callsActive.Dec()
		}
	}
	return err
}

// meteredLLM counts a model's errors by kind. A cancelled request (the caller hung up, or
// the other model of a hedge won) is not an error.
type meteredLLM struct {
	agent.LLM
	role string
	m    *metrics
}

func (l meteredLLM) Stream(ctx context.Context, req agent.Request) (agent.TokenStream, error) {
	s, err := l.LLM.Stream(ctx, req)
	if err != nil {
		l.count("start", err)
		return nil, err
	}
	return meteredStream{TokenStream: s, l: l}, nil
}

func (l meteredLLM) count(phase string, err error) {
	if kind := modelErrorKind(err); kind != "" {
		l.m.modelErrors.WithLabelValues(l.role, phase, kind).Inc()
	}
}

type meteredStream struct {
	agent.TokenStream
	l meteredLLM
}

func (s meteredStream) Recv() (string, error) {
	t, err := s.TokenStream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		s.l.count("stream", err)
	}
	return t, err
}

// modelErrorKind classifies a model error into a small fixed set; "" for a cancellation.
func modelErrorKind(err error) string {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	switch {
	case errors.Is(err, context.Canceled):
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, agent.ErrTruncated):
		return "truncated"
	case errors.As(err, &apiErr):
		return statusKind(apiErr.HTTPStatusCode)
	case errors.As(err, &reqErr):
		return statusKind(reqErr.HTTPStatusCode)
	default:
		return "other"
	}
}

func statusKind(code int) string {
	switch {
	case code == http.StatusTooManyRequests:
		return "rate_limited"
	case code >= 500:
		return "http_5xx"
	case code >= 400:
		return "http_4xx"
	default:
		return "other"
	}
}

// meteredStore times every store operation and counts its failures.
type meteredStore struct {
	s session.Store
	m *metrics
}

var _ session.Store = meteredStore{}

func (ms meteredStore) observe(op string, start time.Time, err error) {
	ms.m.storeOps.WithLabelValues(op).Inc()
	ms.m.storeSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, context.Canceled) {
		ms.m.storeErrors.WithLabelValues(op).Inc()
	}
}

func (ms meteredStore) FirstDelivery(ctx context.Context, deliveryID string, ttl time.Duration) (first bool, err error) {
	defer func(t time.Time) { ms.observe("first_delivery", t, err) }(time.Now())
	return ms.s.FirstDelivery(ctx, deliveryID, ttl)
}

func (ms meteredStore) UpdateCall(ctx context.Context, c session.Call) (err error) {
	defer func(t time.Time) { ms.observe("update_call", t, err) }(time.Now())
	return ms.s.UpdateCall(ctx, c)
}

func (ms meteredStore) UpdateCallOnce(ctx context.Context, c session.Call, deliveryID string, ttl time.Duration) (first bool, err error) {
	defer func(t time.Time) { ms.observe("update_call", t, err) }(time.Now())
	return ms.s.UpdateCallOnce(ctx, c, deliveryID, ttl)
}

func (ms meteredStore) SeenCaller(ctx context.Context, lineID, number, callID string) (seen bool, err error) {
	defer func(t time.Time) { ms.observe("seen_caller", t, err) }(time.Now())
	return ms.s.SeenCaller(ctx, lineID, number, callID)
}

func (ms meteredStore) Load(ctx context.Context, callID string) (st session.State, err error) {
	defer func(t time.Time) { ms.observe("load", t, err) }(time.Now())
	return ms.s.Load(ctx, callID)
}

func (ms meteredStore) BeginTurn(ctx context.Context, c session.Call, eventID string, tail int) (b session.Begun, err error) {
	defer func(t time.Time) { ms.observe("begin_turn", t, err) }(time.Now())
	return ms.s.BeginTurn(ctx, c, eventID, tail)
}

func (ms meteredStore) BeginTurnOnce(ctx context.Context, c session.Call, eventID string, tail int, deliveryID string, ttl time.Duration) (b session.Begun, err error) {
	defer func(t time.Time) { ms.observe("begin_turn", t, err) }(time.Now())
	return ms.s.BeginTurnOnce(ctx, c, eventID, tail, deliveryID, ttl)
}

func (ms meteredStore) TakeOver(ctx context.Context, ref session.TurnRef) (to session.Takeover, err error) {
	defer func(t time.Time) { ms.observe("take_over", t, err) }(time.Now())
	return ms.s.TakeOver(ctx, ref)
}

func (ms meteredStore) AppendLines(ctx context.Context, l session.Lease, lines ...string) (err error) {
	defer func(t time.Time) { ms.observe("append_lines", t, err) }(time.Now())
	return ms.s.AppendLines(ctx, l, lines...)
}

func (ms meteredStore) AppendTools(ctx context.Context, l session.Lease, tools ...session.Entry) (err error) {
	defer func(t time.Time) { ms.observe("append_tools", t, err) }(time.Now())
	return ms.s.AppendTools(ctx, l, tools...)
}

func (ms meteredStore) CommitTurn(ctx context.Context, l session.Lease, lines []string, entries ...session.Entry) (err error) {
	defer func(t time.Time) { ms.observe("commit_turn", t, err) }(time.Now())
	return ms.s.CommitTurn(ctx, l, lines, entries...)
}

// FollowTurn waits on another delivery's turn for as long as it speaks: its duration is that
// turn's, not the store's, so only the count and the errors are kept.
func (ms meteredStore) FollowTurn(ctx context.Context, ref session.TurnRef, fn func(text string) error) error {
	err := ms.s.FollowTurn(ctx, ref, fn)
	ms.m.storeOps.WithLabelValues("follow_turn").Inc()
	if err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, context.Canceled) {
		ms.m.storeErrors.WithLabelValues("follow_turn").Inc()
	}
	return err
}

func (ms meteredStore) AppendEntry(ctx context.Context, callID, owner string, e session.Entry) (err error) {
	defer func(t time.Time) { ms.observe("append_entry", t, err) }(time.Now())
	return ms.s.AppendEntry(ctx, callID, owner, e)
}

func (ms meteredStore) AddSMS(ctx context.Context, lineID string, s session.SMS) (err error) {
	defer func(t time.Time) { ms.observe("add_sms", t, err) }(time.Now())
	return ms.s.AddSMS(ctx, lineID, s)
}

func (ms meteredStore) SaveVersion(ctx context.Context, v session.PromptVersion) (err error) {
	defer func(t time.Time) { ms.observe("save_version", t, err) }(time.Now())
	return ms.s.SaveVersion(ctx, v)
}

func (ms meteredStore) LoadVersion(ctx context.Context, version string) (v session.PromptVersion, err error) {
	defer func(t time.Time) { ms.observe("load_version", t, err) }(time.Now())
	return ms.s.LoadVersion(ctx, version)
}

func (ms meteredStore) Ping(ctx context.Context) (err error) {
	defer func(t time.Time) { ms.observe("ping", t, err) }(time.Now())
	return ms.s.Ping(ctx)
}
