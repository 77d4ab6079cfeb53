package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/callbrain/callbrain/agent"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBody      = 1 << 20
	DefaultClockSkew    = 300 * time.Second
	DefaultReplayWindow = 5 * time.Minute
	DefaultFallbackLine = "Sorry, I'm having a little trouble right now. Could you say that again?"
	// DefaultMaxIDLen bounds ids that become store keys: Saperly's ids are 36-character UUIDs.
	DefaultMaxIDLen = 128
	// DefaultMaxConns bounds open connections (see Config.MaxConns).
	DefaultMaxConns = 4096
)

const (
	// readyTimeout bounds a /readyz check, so a hung dependency reads as unready, not as a
	// probe timeout.
	readyTimeout = time.Second
	// maxLogField bounds ids copied into the log: before verification they are the sender's
	// choice, and a megabyte "delivery id" must not become a megabyte log line.
	maxLogField = 128
)

// Config is the transport's part of the brain's configuration. Zero values take the defaults.
type Config struct {
	// Secrets returns the accepted signing secrets for a line: the current one and, during a
	// rotation, the staged next one. It is called with the line_id read from a body that is
	// not verified yet ("" when the body has none), so it must treat its argument as untrusted.
	// Empty strings are ignored. Required.
	Secrets func(lineID string) []string
	// Signers, when set, replaces Secrets: it returns the accepted secrets for a line together
	// with their signing scope, from one snapshot of the configuration, so the two cannot
	// disagree across a reload: the line id when they are the line's own, OwnerGlobal when
	// they are the global secrets. A verified delivery carries the scope as Delivery.Owner, so
	// an event can only touch calls its scope owns. With Secrets alone, every delivery is in
	// the global scope.
	Signers func(lineID string) (scope string, secrets []string)
	// MaxBody is the largest body read, in bytes; larger deliveries get 413. Default 1 MiB.
	MaxBody int64
	// ClockSkew is how far a delivery's signed timestamp may be from Now. Default 300 s.
	ClockSkew time.Duration
	// ReplayWindow is how long an accepted delivery id is remembered. Default 5 min. It is
	// raised to twice ClockSkew when shorter, since a captured delivery stays validly signed
	// for ClockSkew on either side of its timestamp.
	ReplayWindow time.Duration
	// Now is the clock for timestamps; default time.Now.
	Now func() time.Time
	// Ready is the /readyz check, given one second; nil means always ready. It must return
	// when its context ends.
	Ready func(ctx context.Context) error
	// MaxIDLen is the longest delivery id, call_id, event_id, line_id (and the other short
	// fields kept on a call's record: numbers, direction, status, message_sid) accepted, in
	// bytes; a longer one is refused with 400 before the store is touched (ids become store
	// keys).
	// Default DefaultMaxIDLen.
	MaxIDLen int
	// MaxConns caps open connections. At the cap a new connection closes the one idle longest
	// (a keep-alive between requests, or one that has sent nothing yet), or is itself closed
	// when every connection is serving a request. Default DefaultMaxConns.
	MaxConns int
	// FallbackLine is spoken when the responder returns without saying anything. Default
	// DefaultFallbackLine.
	FallbackLine string
	// LogText logs the caller's words (personal data). Off by default: only lengths are logged.
	LogText bool
	// StoreTimeout bounds the replay check (DeliveryCache). A store that hangs is treated like
	// a store that fails (fail open): the caller must not wait on a cache in silence. Default
	// the agent's (BRAIN_STORE_TIMEOUT), the bound on every store operation of a turn.
	StoreTimeout time.Duration
	// ReplayInTurn hands the replay check of a message with words, and of an event that
	// updates a call's record (agent.RecordChecksReplay), to the responder, which does it in
	// its first store round trip (agent.Delivery.ReplayTTL), and answers 409
	// duplicate_delivery when it reports agent.ErrDuplicateDelivery. Every other event (blank
	// messages, interrupts, SMS included) is checked here, before it is dispatched.
	ReplayInTurn bool
	// OnDelivery, when set, is called with every verified delivery about a call (one with a
	// call id), after its log line is written: the lines spoken with their flush times
	// included. It runs on the request's goroutine, so it must hand the record off and
	// return at once (recording queues it).
	OnDelivery func(agent.DeliveryRecord)
	// OnResult, when set, is called once for every request to a delivery route, verified or
	// not, right after its log line: the seam metrics hang on. It runs on the request's
	// goroutine and must return at once.
	OnResult func(Result)
	// Hooks turns on the receivers of other platforms' call events (hooks.go); each needs
	// HookReceiver.
	Hooks Hooks
	// HookReceiver records what the receivers accept. Required when any of Hooks is set.
	HookReceiver HookReceiver
	// Tracer starts one span per delivery to /webhook or /status, the parent of the turn's
	// span (a W3C traceparent on the request, if any, is its parent). Nil: no tracing.
	Tracer trace.Tracer
}

// Result is what the transport reports about every delivery, rejected ones included. Its
// strings come from small fixed sets (Kind is the event's kind only once decoded), so they can
// serve as metric labels; it carries no id or number.
type Result struct {
	Route   string // "/webhook" or "/status"
	Kind    string // the event kind; "" when the delivery was refused before decoding
	Status  int    // the HTTP status answered (499 when the client left before one was written)
	Outcome string // as logged: "answered", "recorded", "rejected", "client_gone", …
	Verify  string // "ok", "skipped" (refused before the check) or the failure's reason
	Elapsed time.Duration
}

// OwnerGlobal is the signing scope of the global secrets (SAPERLY_WEBHOOK_SECRET): events
// without a line_id, or naming a line without secrets of its own.
const OwnerGlobal = "*"

// Responder is the part of the agent the HTTP layer needs.
type Responder interface {
	// Respond answers a message event, calling emit once per line to speak. emit fails once
	// the caller has gone away (ctx is cancelled too), and for a chunk type other than
	// "speak"; Respond should then stop. emit must not be called after Respond returns.
	Respond(ctx context.Context, ev agent.Event, emit func(agent.Chunk) error) error
	// Record keeps a non-message event. An error means it was not recorded (the sender
	// should retry).
	Record(ctx context.Context, ev agent.Event) error
}

// DeliveryCache remembers accepted delivery ids across replicas (session stores satisfy it).
type DeliveryCache interface {
	// FirstDelivery records deliveryID and reports whether it was unseen in the last ttl. An
	// error means the cache could not answer.
	FirstDelivery(ctx context.Context, deliveryID string, ttl time.Duration) (bool, error)
}

// Server is the brain's HTTP face: Saperly's webhook and status callback endpoints, and the
// health probes.
type Server struct {
	cfg       Config
	replayTTL time.Duration
	resp      Responder
	seen      DeliveryCache
	hooks     HookReceiver
	log       *zap.Logger
	e         *echo.Echo
	srv       *http.Server
	conns     *connLimit
	draining  atomic.Bool
}

// Routes.
const (
	routeWebhook = "/webhook"
	routeStatus  = "/status"
)

// New builds the server. Config.Secrets (or Signers), r and d are required: New panics without them, as
// that is a wiring mistake, not a runtime condition.
func New(cfg Config, r Responder, d DeliveryCache, log *zap.Logger) *Server {
	switch {
	case cfg.Secrets == nil && cfg.Signers == nil:
		panic("transport: Config.Secrets or Config.Signers is required")
	case r == nil:
		panic("transport: a Responder is required")
	case d == nil:
		panic("transport: a DeliveryCache is required")
	case (cfg.Hooks.Salpre != nil || cfg.Hooks.Itellico != nil || cfg.Hooks.SpeakNode != nil) && cfg.HookReceiver == nil:
		panic("transport: Config.HookReceiver is required with Config.Hooks")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = DefaultReplayWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = agent.Defaults().StoreTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if cfg.MaxIDLen <= 0 {
		cfg.MaxIDLen = DefaultMaxIDLen
	}
	if cfg.Signers == nil && cfg.Secrets != nil {
		secrets := cfg.Secrets
		cfg.Signers = func(lineID string) (string, []string) { return OwnerGlobal, secrets(lineID) }
	}
	if strings.TrimSpace(cfg.FallbackLine) == "" {
		cfg.FallbackLine = DefaultFallbackLine
	}
	s := &Server{
		cfg:       cfg,
		replayTTL: max(cfg.ReplayWindow, 2*cfg.ClockSkew),
		resp:      r,
		seen:      d,
		hooks:     cfg.HookReceiver,
		log:       log.Named("transport"),
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard) // everything worth saying goes through zap
	e.HTTPErrorHandler = s.handleError
	e.Use(s.guard)
	e.POST(routeWebhook, s.webhook)
	e.POST(routeStatus, s.status)
	s.routeHooks(e)
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	s.e = e

	s.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No write timeout: an NDJSON answer may stream for up to 5 minutes (PROTOCOL §1.8).
		WriteTimeout: 0,
		IdleTimeout:  120 * time.Second,
	}
	s.conns = newConnLimit(cfg.MaxConns, s.log)
	s.srv.ConnState = s.conns.track
	if std, err := zap.NewStdLogAt(s.log, zapcore.WarnLevel); err == nil {
		s.srv.ErrorLog = std
	}
	return s
}

// ServeHTTP serves one request through the Echo instance and all its middleware.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.e.ServeHTTP(w, r) }

// Serve accepts connections on ln, at most Config.MaxConns open at once, until Shutdown. It
// returns nil after a graceful shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(s.conns.listener(ln)); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Drain marks the server as draining: /readyz answers 503 from now on, so a load balancer
// stops sending new calls, while deliveries (retries of calls in progress included) are still
// served until Shutdown.
func (s *Server) Drain() {
	if !s.draining.Swap(true) {
		s.log.Info("draining")
	}
}

// Shutdown stops accepting connections and waits for deliveries in flight, streams included,
// until ctx ends. Whatever is still running then is cut off (its request context is
// cancelled) and the context's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	if err := s.srv.Shutdown(ctx); err != nil {
		return errors.Join(fmt.Errorf("drain connections: %w", err), s.srv.Close())
	}
	return nil
}

// Delivery outcomes, as logged.
const (
	outcomeRejected   = "rejected"
	outcomeRecorded   = "recorded"
	outcomeNotStored  = "record_failed"
	outcomeAnswered   = "answered"
	outcomeFallback   = "fallback"
	outcomeClientGone = "client_gone"
	outcomePanic      = "panic"
)

// statusClientGone is logged when the client left before any status was written
// (the nginx convention).
const statusClientGone = 499

// delivery is what one POST learns on its way through, for its single log line.
type delivery struct {
	route    string
	start    time.Time // monotonic: latencies
	received time.Time // Config.Now: the event's ReceivedAt
	lineID   string    // peeked from the body, not trusted
	id       string
	attempt  int
	verify   string
	ev       agent.Event
	outcome  string
	err      error // what rejected or degraded the delivery
	cacheErr error
	stack    []byte // set when a panic was recovered
	stream   *ndjson
}

func (s *Server) webhook(c echo.Context) error { return s.deliver(c, routeWebhook) }

func (s *Server) status(c echo.Context) error { return s.deliver(c, routeStatus) }

// deliver handles one POST from Saperly and writes exactly one log line for it, whatever
// happens, panics included.
func (s *Server) deliver(c echo.Context, route string) (err error) {
	d := &delivery{
		route:    route,
		start:    time.Now(),
		received: s.cfg.Now(),
		verify:   "skipped",
		outcome:  outcomeRejected,
	}
	req := c.Request()
	ctx := propagation.TraceContext{}.Extract(req.Context(), propagation.HeaderCarrier(req.Header))
	ctx, span := s.cfg.Tracer.Start(ctx, "delivery "+route, trace.WithSpanKind(trace.SpanKindServer))
	c.SetRequest(req.WithContext(ctx))
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			d.stack, d.outcome = debug.Stack(), outcomePanic
			err = echo.NewHTTPError(http.StatusInternalServerError, "internal_error").
				SetInternal(fmt.Errorf("panic: %v", p))
		}
		if err != nil {
			d.err = errors.Join(d.err, internal(err))
			c.Error(err)
		}
		s.logDelivery(c, d)
		s.result(c, d)
		s.report(c, d)
		endDeliverySpan(span, c, d)
		err = nil
	}()
	return s.handle(c, d)
}

func (s *Server) handle(c echo.Context, d *delivery) error {
	req := c.Request()
	ctx := req.Context()

	body, err := s.readRequest(c)
	if err != nil {
		return err
	}

	d.lineID = peekLineID(body)
	d.id = req.Header.Get(HeaderDeliveryID)
	d.attempt, _ = strconv.Atoi(strings.TrimSpace(req.Header.Get(HeaderAttempt)))
	scope, secrets := s.cfg.Signers(d.lineID)
	if err := Verify(req.Header, body, secrets, s.cfg.Now(), s.cfg.ClockSkew); err != nil {
		d.verify = "invalid_signature"
		if ve, ok := errors.AsType[*VerifyError](err); ok {
			d.verify = ve.Reason
		}
		return httpError(http.StatusUnauthorized, d.verify, err)
	}
	d.verify = "ok"
	verified := time.Since(d.start)

	// Everything that can be judged without the store is, before the store is touched.
	if len(d.id) > s.cfg.MaxIDLen {
		return httpError(http.StatusBadRequest, fmt.Sprintf("delivery id is longer than %d bytes", s.cfg.MaxIDLen),
			fmt.Errorf("delivery id of %d bytes", len(d.id)))
	}
	ev, err := DecodeEvent(body)
	if err != nil {
		msg := "invalid body"
		if de, ok := errors.AsType[*DecodeError](err); ok {
			msg = de.Msg
		}
		return httpError(http.StatusBadRequest, msg, err)
	}
	if ev.LineID != d.lineID {
		// Cannot happen while peekLineID and DecodeEvent read line_id the same way; if they
		// ever drift, a body verified with one line's secret must not act on another line.
		return httpError(http.StatusBadRequest, "ambiguous line_id",
			fmt.Errorf("line_id peeked %q, decoded %q", clip(d.lineID), clip(ev.LineID)))
	}
	// Ids become store keys; numbers, direction and status are kept on the call's record and
	// rendered into prompts. None is ever longer than a few dozen bytes from Saperly.
	if err := s.checkLengths([]field{
		{"call_id", ev.CallID}, {"event_id", ev.ID}, {"line_id", ev.LineID}, {"interrupted_event_id", ev.Interrupts},
		{"from_number", ev.From}, {"to_number", ev.To}, {"direction", ev.Direction}, {"status", ev.Status},
		{"message_sid", ev.MessageID},
	}); err != nil {
		return err
	}

	// The replay check rides on the store's first write when there is one to ride on: the
	// turn's claim of a message, the record's update of a call's event.
	inTurn := s.cfg.ReplayInTurn && ev.Kind == agent.EventMessage && d.route == routeWebhook &&
		ev.CallID != "" && strings.TrimSpace(ev.Text) != ""
	inRecord := s.cfg.ReplayInTurn && !inTurn && agent.RecordChecksReplay(ev)
	first, err := true, error(nil)
	if !inTurn && !inRecord {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		first, err = s.seen.FirstDelivery(cctx, d.id, s.replayTTL)
		cancel()
	}
	switch {
	case err != nil:
		// Fail open: silence on a call is worse than a rare replay slipping through.
		d.cacheErr = fmt.Errorf("check delivery %s: %w", clip(d.id), err)
	case !first:
		// For the log line and the record: a duplicate of what call, if any.
		d.ev = ev
		d.ev.Delivery = agent.Delivery{ID: d.id, Attempt: d.attempt, ReceivedAt: d.received, Owner: scope}
		return httpError(http.StatusConflict, "duplicate_delivery",
			fmt.Errorf("delivery %s seen in the last %s", clip(d.id), s.replayTTL))
	}

	ev.Delivery = agent.Delivery{
		ID:         d.id,
		Attempt:    d.attempt,
		ReceivedAt: d.received,
		Verify:     verified,
		Callback:   d.route == routeStatus,
		Owner:      scope,
	}
	if inTurn || inRecord {
		ev.Delivery.ReplayTTL = s.replayTTL
	}
	d.ev = ev

	if ev.Kind == agent.EventMessage && d.route == routeWebhook {
		s.answer(c, d)
		return nil
	}
	// Everything else, unknown kinds and status callbacks included (even one whose body says
	// "message"), is recorded and never spoken to.
	if err := s.resp.Record(ctx, ev); err != nil {
		if errors.Is(err, agent.ErrWrongLine) {
			return httpError(http.StatusForbidden, "wrong_line",
				fmt.Errorf("record %s event %s: %w", ev.Kind, clip(ev.ID), err))
		}
		if errors.Is(err, agent.ErrDuplicateDelivery) {
			return httpError(http.StatusConflict, "duplicate_delivery",
				fmt.Errorf("delivery %s seen in the last %s: %w", clip(d.id), s.replayTTL, err))
		}
		d.outcome = outcomeNotStored
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			d.outcome = outcomeClientGone
		}
		return httpError(http.StatusServiceUnavailable, "store_unavailable",
			fmt.Errorf("record %s event %s: %w", ev.Kind, clip(ev.ID), err))
	}
	d.outcome = outcomeRecorded
	return c.JSONBlob(http.StatusOK, []byte("{}"))
}

// errEmitClosed is returned by emit once Respond has returned.
var errEmitClosed = errors.New("emit after respond returned")

// ErrChunkType is returned by emit for a chunk type Saperly does not know: an unknown line
// may break the turn (PROTOCOL §1.7), so it is never written.
var ErrChunkType = errors.New("unknown chunk type")

const chunkSpeak = "speak"

// answer streams the responder's answer to a message as NDJSON. It never fails the delivery:
// once a message is accepted the caller hears the answer, or the fallback line, or, when
// Saperly has already hung up, nothing.
func (s *Server) answer(c echo.Context, d *delivery) {
	ctx := c.Request().Context()
	w := newNDJSON(ctx, c.Response())
	w.keep = s.cfg.OnDelivery != nil
	d.stream = w

	var mu sync.Mutex // emit may be called from the responder's goroutines; lines never interleave
	open := true
	emit := func(ch agent.Chunk) error {
		mu.Lock()
		defer mu.Unlock()
		if !open {
			return errEmitClosed
		}
		if ch.Type == "" {
			ch.Type = chunkSpeak
		}
		if ch.Type != chunkSpeak {
			return fmt.Errorf("emit %q: %w", ch.Type, ErrChunkType)
		}
		if strings.TrimSpace(ch.Text) == "" {
			return nil // nothing to say; a blank line would only cost a round trip
		}
		return w.Write(ch)
	}
	err := s.respond(ctx, d, emit)
	mu.Lock()
	open = false
	mu.Unlock()

	switch {
	case w.Lines() > 0:
		d.outcome = outcomeAnswered
	case errors.Is(err, agent.ErrDuplicateDelivery):
		// The replay check, done in the turn's first round trip: refused as it is before
		// dispatch, never spoken to.
		d.outcome = outcomeRejected
		if werr := c.JSON(http.StatusConflict, map[string]string{"error": "duplicate_delivery"}); werr != nil {
			err = errors.Join(err, werr)
		}
	case errors.Is(err, agent.ErrWrongLine), errors.Is(err, agent.ErrUnknownCall):
		// A forged or misrouted event about another line's call, or about a call Saperly
		// does not know: refused, never spoken to.
		d.outcome = outcomeRejected
		reason := "wrong_line"
		if errors.Is(err, agent.ErrUnknownCall) {
			reason = "unknown_call"
		}
		if werr := c.JSON(http.StatusForbidden, map[string]string{"error": reason}); werr != nil {
			err = errors.Join(err, werr)
		}
	case ctx.Err() == nil:
		// Never an empty 200, never a non-200: the caller would hear silence.
		d.outcome = outcomeFallback
		if ferr := w.Write(agent.Speak(s.cfg.FallbackLine)); ferr != nil {
			err = errors.Join(err, fmt.Errorf("speak fallback: %w", ferr))
		}
	default:
		d.outcome = outcomeClientGone
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			d.outcome = outcomeClientGone // interrupted, hung up, or Saperly timed out
		}
		d.err = fmt.Errorf("respond to %s: %w", clip(d.ev.ID), err)
	}
	if d.stack != nil {
		d.outcome = outcomePanic
	}
}

// respond runs the responder, turning a panic into an error so the caller still hears the
// fallback line.
func (s *Server) respond(ctx context.Context, d *delivery, emit func(agent.Chunk) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			d.stack = debug.Stack()
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return s.resp.Respond(ctx, d.ev, emit)
}

// readRequest reads a delivery's body, at most MaxBody bytes: 413 body_too_large past it,
// 400 when it cannot be read.
func (s *Server) readRequest(c echo.Context) ([]byte, error) {
	body, err := readBody(c.Response().Writer, c.Request(), s.cfg.MaxBody)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, httpError(http.StatusRequestEntityTooLarge, "body_too_large", err)
		}
		return nil, httpError(http.StatusBadRequest, "unreadable body", err)
	}
	return body, nil
}

// field is a named value of a decoded event, for checkLengths.
type field struct{ name, v string }

// checkLengths refuses (400) a field longer than MaxIDLen: ids become store keys, and the
// other fields are kept on records and rendered into prompts.
func (s *Server) checkLengths(fields []field) error {
	for _, f := range fields {
		if len(f.v) > s.cfg.MaxIDLen {
			return httpError(http.StatusBadRequest, fmt.Sprintf("%s is longer than %d bytes", f.name, s.cfg.MaxIDLen),
				fmt.Errorf("%s of %d bytes", f.name, len(f.v)))
		}
	}
	return nil
}

// readBody reads the whole body once, at most limit bytes. w is the writer under Echo's, so
// that MaxBytesReader can tell net/http to close the connection after an oversized body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, fmt.Errorf("read body: %w", &http.MaxBytesError{Limit: limit})
	}
	size := 512
	if r.ContentLength > 0 {
		size = int(r.ContentLength) + 1 // +1: room to see EOF without growing
	}
	body := make([]byte, 0, size)
	rd := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(body) == cap(body) {
			body = append(body, 0)[:len(body)]
		}
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read body: %w", err)
		}
	}
}

func (s *Server) logDelivery(c echo.Context, d *delivery) {
	res := c.Response()
	status := res.Status
	if !res.Committed {
		status = statusClientGone
	}
	lineID := d.ev.LineID
	if d.ev.Kind == "" {
		lineID = d.lineID
	}
	fields := make([]zap.Field, 0, 24)
	fields = append(fields,
		zap.String("route", d.route),
		zap.String("event_type", clip(d.ev.Kind)),
		zap.String("call_id", clip(d.ev.CallID)),
		zap.String("line_id", clip(lineID)),
		zap.String("delivery_id", clip(d.id)),
		zap.String("event_id", clip(d.ev.ID)),
		zap.Int("attempt", d.attempt),
		zap.String("verify", d.verify),
		zap.Int("status", status),
		zap.String("outcome", d.outcome),
		agent.Millis("elapsed_ms", time.Since(d.start)),
	)
	if w := d.stream; w != nil {
		fields = append(fields, zap.Int("lines", w.Lines()))
		if !w.First().IsZero() {
			fields = append(fields, agent.Millis("first_line_ms", w.First().Sub(d.start)))
		}
	}
	if d.ev.From != "" {
		fields = append(fields, zap.String("from", agent.MaskNumber(d.ev.From)))
	}
	if d.ev.To != "" {
		fields = append(fields, zap.String("to", agent.MaskNumber(d.ev.To)))
	}
	fields = s.appendText(fields, "text", d.ev.Text)
	fields = s.appendText(fields, "partial_text", d.ev.PartialText)
	if d.err != nil {
		fields = append(fields, zap.Error(d.err))
	}
	if d.cacheErr != nil {
		fields = append(fields, zap.NamedError("cache_error", d.cacheErr))
	}
	if d.stack != nil {
		fields = append(fields, zap.ByteString("stack", d.stack))
	}

	level := zapcore.InfoLevel
	switch {
	case d.stack != nil:
		level = zapcore.ErrorLevel
	case d.outcome == outcomeClientGone:
		// The caller cut in or hung up: part of a call's life, not a fault.
	case status >= 400, d.err != nil, d.cacheErr != nil, d.outcome == outcomeFallback:
		level = zapcore.WarnLevel // rejected or degraded
	}
	s.log.Log(level, "event", fields...)
}

// result hands every delivery's figures to Config.OnResult.
func (s *Server) result(c echo.Context, d *delivery) {
	if s.cfg.OnResult == nil {
		return
	}
	status := c.Response().Status
	if !c.Response().Committed {
		status = statusClientGone
	}
	s.cfg.OnResult(Result{Route: d.route, Kind: d.ev.Kind, Status: status, Outcome: d.outcome,
		Verify: d.verify, Elapsed: time.Since(d.start)})
}

// report hands a verified delivery about a call to Config.OnDelivery.
func (s *Server) report(c echo.Context, d *delivery) {
	if s.cfg.OnDelivery == nil || d.verify != "ok" || d.ev.CallID == "" {
		return
	}
	status := c.Response().Status
	if !c.Response().Committed {
		status = statusClientGone
	}
	rec := agent.DeliveryRecord{Event: d.ev, Status: status, Outcome: d.outcome, Done: s.cfg.Now()}
	if d.stream != nil {
		rec.Lines = d.stream.kept
	}
	s.cfg.OnDelivery(rec)
}

// appendText logs the caller's words only when the operator switched it on; otherwise their
// length, which is enough to tell an empty transcript from a long one.
func (s *Server) appendText(fields []zap.Field, key, text string) []zap.Field {
	if text == "" {
		return fields
	}
	if s.cfg.LogText {
		return append(fields, zap.String(key, text))
	}
	return append(fields, zap.Int(key+"_len", utf8.RuneCountInString(text)))
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSONBlob(http.StatusOK, []byte(`{"status":"ok"}`))
}

func (s *Server) readyz(c echo.Context) error {
	if s.draining.Load() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unready", "error": "draining"})
	}
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		err := s.cfg.Ready(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil {
			// The probe sees a fixed word; the chain, which may name hosts, goes to the log.
			reason := "dependency_unavailable"
			if timedOut || errors.Is(err, context.DeadlineExceeded) {
				reason = "timeout"
			}
			s.log.Warn("unready", zap.String("reason", reason), zap.Error(err))
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "unready", "error": reason})
		}
	}
	return c.JSONBlob(http.StatusOK, []byte(`{"status":"ready"}`))
}

// guard turns panics outside the delivery handlers into 500s and sends every error through
// the error handler, logging failed requests that are not deliveries (deliveries log
// themselves, once).
func (s *Server) guard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		var stack []byte
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				stack = debug.Stack()
				err = echo.NewHTTPError(http.StatusInternalServerError, "internal_error").
					SetInternal(fmt.Errorf("panic: %v", p))
			}
			if err == nil {
				return
			}
			c.Error(err)
			status := c.Response().Status
			level := zapcore.InfoLevel
			switch {
			case stack != nil, status >= 500 && status != http.StatusServiceUnavailable:
				level = zapcore.ErrorLevel
			case status >= 500:
				level = zapcore.WarnLevel
			}
			fields := []zap.Field{
				zap.String("method", clip(c.Request().Method)),
				zap.String("path", clip(c.Request().URL.Path)),
				zap.Int("status", status),
				zap.Error(internal(err)),
			}
			if stack != nil {
				fields = append(fields, zap.ByteString("stack", stack))
			}
			s.log.Log(level, "request failed", fields...)
			err = nil
		}()
		return next(c)
	}
}

// handleError is the one place errors become responses: a status and a safe
// {"error": "..."} message. The full chain stays in the error for the log.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return // a stream has started: its status cannot change
	}
	code, msg := http.StatusInternalServerError, "internal_error"
	if he, ok := errors.AsType[*echo.HTTPError](err); ok {
		code = he.Code
		if m, ok := he.Message.(string); ok && m != "" {
			msg = m
		}
		if msg == http.StatusText(code) { // Echo's own errors: 404, 405
			msg = strings.ReplaceAll(strings.ToLower(msg), " ", "_")
		}
		if code == http.StatusInternalServerError {
			msg = "internal_error"
		}
	}
	if werr := c.JSON(code, map[string]string{"error": msg}); werr != nil {
		s.log.Debug("write error response", zap.Error(werr))
	}
}

func httpError(code int, msg string, err error) *echo.HTTPError {
	return echo.NewHTTPError(code, msg).SetInternal(err)
}

// internal returns the cause carried by an HTTP error, for the log; the status is logged
// on its own.
func internal(err error) error {
	if he, ok := err.(*echo.HTTPError); ok && he.Internal != nil {
		return he.Internal
	}
	return err
}

// clip bounds a sender-chosen string before it is logged.
func clip(s string) string {
	if len(s) <= maxLogField {
		return s
	}
	cut := maxLogField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// endDeliverySpan records how a delivery went on its span and ends it.
func endDeliverySpan(span trace.Span, c echo.Context, d *delivery) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	status := c.Response().Status
	if !c.Response().Committed {
		status = statusClientGone
	}
	span.SetAttributes(
		attribute.String("http.route", d.route),
		attribute.Int("http.response.status_code", status),
		// Clipped as in the log line: before verification these are anyone's bytes.
		attribute.String("callbrain.kind", clip(d.ev.Kind)),
		attribute.String("callbrain.outcome", d.outcome),
		attribute.String("callbrain.verify", d.verify),
		attribute.String("callbrain.delivery_id", clip(d.id)),
		attribute.Int("callbrain.attempt", d.attempt),
		attribute.String("callbrain.call_id", clip(d.ev.CallID)),
		attribute.String("callbrain.event_id", clip(d.ev.ID)),
	)
	if status >= 500 || d.outcome == outcomePanic {
		span.SetStatus(codes.Error, d.outcome)
	}
}
