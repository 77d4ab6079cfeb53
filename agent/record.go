package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/callbrain/callbrain/session"
)

// RecordStore keeps what every replica captured about a call until one of them writes the
// call's script (session.RedisStore across replicas, session.MemoryRecordings in process).
type RecordStore interface {
	// AppendCaptures adds captures to their calls, in order, and marks the calls active now.
	AppendCaptures(ctx context.Context, caps ...session.Capture) error
	// IdleCaptures lists up to limit calls with captures none newer than since.
	IdleCaptures(ctx context.Context, since time.Time, limit int) ([]string, error)
	// TakeCaptures claims and removes a call's captures; claimed is true for one caller only.
	TakeCaptures(ctx context.Context, callID string) (items [][]byte, claimed bool, err error)
	// PublishRecording adds a script to the recordings stream, bounded to about maxLen.
	PublishRecording(ctx context.Context, maxLen int64, r session.Recording) (string, error)
}

// RecordConfig configures call recording. Zero fields take the defaults noted.
type RecordConfig struct {
	// Text keeps the caller's words, what they heard, SMS bodies, the answers' words and tool
	// arguments (personal data). Off: each is replaced by a placeholder giving its length.
	Text bool
	// Dir, when set, receives one file per call: <start time>-<call id>.yaml.
	Dir string
	// Stream publishes each script to the store's recordings stream, trimmed to about
	// StreamMaxLen entries (default 10000).
	Stream       bool
	StreamMaxLen int64
	// Idle: a call with no event for this long is written without its call_ended (Saperly
	// never sent it, or the replica that saw it died first); default 30 min.
	Idle time.Duration
	// Settle is how long after call_ended the script is assembled, so the last answers'
	// captures, still queued on other replicas, are in; default 2 s.
	Settle time.Duration
	// SweepEvery is how often idle calls are looked for; default Idle/4, at most 1 min.
	SweepEvery time.Duration
	// SweepLimit bounds the calls one sweep takes; default 64.
	SweepLimit int
	// Queue bounds the captures waiting to be written; when full, new captures are dropped
	// and counted, never waited for; default 4096.
	Queue int
	// StoreTimeout bounds each store operation of the recorder; default 2 s.
	StoreTimeout time.Duration
	// WriteOpenOnStop writes every call still open when Run stops, ended or not: for a store
	// that dies with the process (the in-process one), where no other replica would.
	WriteOpenOnStop bool
}

// Defaults of RecordConfig read from the brain's settings (BRAIN_RECORD_MAXLEN, BRAIN_RECORD_IDLE).
const (
	DefaultRecordMaxLen = 10000
	DefaultRecordIdle   = 30 * time.Minute
)

func (c RecordConfig) withDefaults() RecordConfig {
	if c.StreamMaxLen <= 0 {
		c.StreamMaxLen = DefaultRecordMaxLen
	}
	if c.Idle <= 0 {
		c.Idle = DefaultRecordIdle
	}
	if c.Settle <= 0 {
		c.Settle = 2 * time.Second
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = min(c.Idle/4, time.Minute)
	}
	if c.SweepLimit <= 0 {
		c.SweepLimit = 64
	}
	if c.Queue <= 0 {
		c.Queue = 4096
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 2 * time.Second
	}
	return c
}

// Recorder records calls as call scripts, off the turn's path: the transport and the agent
// hand it what happened (OnDelivery, OnTurn), which it queues without waiting; its worker
// (Run) writes the captures to the shared store and, once a call has ended, assembles the
// call's script from every replica's captures and writes it to the sinks.
type Recorder struct {
	cfg   RecordConfig
	store RecordStore
	log   *zap.Logger
	queue chan capture

	dropped atomic.Int64
	written atomic.Int64
	mu      sync.Mutex
	lost    map[string]int // call id → captures dropped since the last write
}

// NewRecorder returns a Recorder; Run must be running for it to write anything.
func NewRecorder(cfg RecordConfig, store RecordStore, log *zap.Logger) *Recorder {
	if log == nil {
		log = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	return &Recorder{
		cfg: cfg, store: store, log: log.Named("record"),
		queue: make(chan capture, cfg.Queue),
		lost:  make(map[string]int),
	}
}

// Dropped returns how many captures were dropped because the queue was full.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Written returns how many scripts were written.
func (r *Recorder) Written() int64 { return r.written.Load() }

// Capture types.
const (
	capDelivery = "delivery"
	capTurn     = "turn"
	capDropped  = "dropped"
)

// capture is one fact about a call as stored between replicas (JSON). Times are Unix
// microseconds; line times are microseconds after the delivery arrived.
type capture struct {
	Type   string `json:"type"`
	CallID string `json:"-"`

	// A delivery (capDelivery).
	Status     bool    `json:"status_url,omitempty"` // arrived on the status callback URL
	Kind       string  `json:"kind,omitempty"`
	EventID    string  `json:"event_id,omitempty"`
	DeliveryID string  `json:"delivery_id,omitempty"`
	Attempt    int     `json:"attempt,omitempty"`
	At         int64   `json:"at,omitempty"`
	Done       int64   `json:"done,omitempty"`
	HTTP       int     `json:"http,omitempty"`
	Outcome    string  `json:"outcome,omitempty"`
	Text       text    `json:"text,omitzero"`
	Heard      text    `json:"heard,omitzero"`
	LineID     string  `json:"line_id,omitempty"`
	From       string  `json:"from,omitempty"`
	To         string  `json:"to,omitempty"`
	Direction  string  `json:"direction,omitempty"`
	CallStatus string  `json:"call_status,omitempty"`
	Duration   float64 `json:"duration,omitempty"`
	Lines      []line  `json:"lines,omitempty"`

	// A turn (capTurn): the agent's side of a message delivery; on a delivery's capture when
	// both were stored as one (HasTurn).
	HasTurn       bool      `json:"has_turn,omitempty"`
	Turn          int       `json:"turn,omitempty"`
	Agent         string    `json:"agent,omitempty"`
	PromptVersion string    `json:"prompt_version,omitempty"`
	Holds         []int     `json:"holds,omitempty"`
	Tools         []toolCap `json:"tools,omitempty"`
	Replayed      bool      `json:"replayed,omitempty"`
	HangUp        string    `json:"hang_up,omitempty"`
	TurnOutcome   string    `json:"turn_outcome,omitempty"`

	// Captures of the call dropped before this one was written (capDropped).
	Dropped int `json:"dropped,omitempty"`
}

// text is a piece of personal text: its words when recording text, else only its length.
type text struct {
	S string `json:"s,omitempty"`
	N int    `json:"n,omitempty"` // runes
}

func (t text) IsZero() bool { return t.S == "" && t.N == 0 }

type line struct {
	Text text  `json:"t"`
	At   int64 `json:"at"`
	Hold bool  `json:"hold,omitempty"`
}

type toolCap struct {
	Name string `json:"name"`
	Args string `json:"args,omitempty"`
}

// OnDelivery queues a delivery's record (transport.Config.OnDelivery). It never blocks.
func (r *Recorder) OnDelivery(d DeliveryRecord) {
	if d.Status == http.StatusForbidden {
		return // about a call of another line: not this call's to record (wrong_line)
	}
	ev := d.Event
	c := capture{
		Type: capDelivery, CallID: ev.CallID,
		Status: ev.Delivery.Callback, Kind: ev.Kind, EventID: ev.ID,
		DeliveryID: ev.Delivery.ID, Attempt: ev.Delivery.Attempt,
		At: ev.Delivery.ReceivedAt.UnixMicro(), Done: d.Done.UnixMicro(),
		HTTP: d.Status, Outcome: d.Outcome,
		Text: text{S: ev.Text}, Heard: text{S: ev.PartialText},
		LineID: ev.LineID, From: ev.From, To: ev.To, Direction: ev.Direction,
		CallStatus: ev.Status, Duration: ev.Duration,
	}
	if len(d.Lines) > 0 {
		c.Lines = make([]line, len(d.Lines))
		for i, l := range d.Lines {
			c.Lines[i] = line{Text: text{S: l.Text}, At: l.At.Sub(ev.Delivery.ReceivedAt).Microseconds()}
		}
	}
	r.enqueue(c)
}

// OnTurn queues a turn's figures (Config.OnTurn). It never blocks.
func (r *Recorder) OnTurn(s TurnStats) {
	if s.Outcome == OutcomeRejected {
		return // refused as another line's call
	}
	c := capture{
		Type: capTurn, CallID: s.CallID, EventID: s.EventID, DeliveryID: s.DeliveryID,
		Turn: s.Turn, Agent: s.Agent, PromptVersion: s.PromptVersion, Holds: s.HoldLines,
		Replayed: s.Replayed, HangUp: s.HangUp, TurnOutcome: s.Outcome,
	}
	for _, t := range s.Tools {
		c.Tools = append(c.Tools, toolCap{Name: t.Name, Args: t.Args})
	}
	r.enqueue(c)
}

func (r *Recorder) enqueue(c capture) {
	if c.CallID == "" {
		return
	}
	select {
	case r.queue <- c:
	default:
		// Never make a turn wait for a recording: drop, count, and mark the call's script.
		r.dropped.Add(1)
		r.mu.Lock()
		if len(r.lost) < r.cfg.Queue || r.lost[c.CallID] > 0 {
			r.lost[c.CallID]++
		}
		r.mu.Unlock()
	}
}

// maxBatch bounds the captures written in one round trip.
const maxBatch = 256

// drainTimeout bounds what Run writes on its way out.
const drainTimeout = 10 * time.Second

// Run writes captures and scripts until ctx ends; then it writes what is queued and the
// scripts of the calls that ended here, within 10 s, and returns. Run it
// once, after the server has drained (so the last deliveries are in the queue).
func (r *Recorder) Run(ctx context.Context) {
	w := newRecordWorker(r)
	sweep := time.NewTicker(r.cfg.SweepEvery)
	defer sweep.Stop()
	settle := time.NewTimer(time.Hour)
	defer settle.Stop()
	for {
		settle.Reset(w.nextDue(time.Now()))
		select {
		case c := <-r.queue:
			batch := append(make([]capture, 0, 16), c)
		more:
			for len(batch) < maxBatch {
				select {
				case c := <-r.queue:
					batch = append(batch, c)
				default:
					break more
				}
			}
			w.write(ctx, batch, false)
		case now := <-settle.C:
			w.assembleDue(ctx, now)
		case <-sweep.C:
			w.write(ctx, nil, false) // turns whose delivery never came
			w.sweep(ctx)
		case <-ctx.Done():
			// Bounded as a whole: a store that is down must not hold up the process's exit.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
			w.drain(dctx)
			cancel()
			return
		}
	}
}

// recordWorker is the state of Run's goroutine.
type recordWorker struct {
	r *Recorder
	// ended holds the calls whose call_ended this replica saw: when to assemble them.
	ended map[string]time.Time
	// turns holds a turn's capture, by delivery id, until its delivery's arrives (it follows
	// in the queue: the agent reports before the transport), so that both are stored as one
	// and the delivery's holding phrases are known when its text is redacted.
	turns map[string]heldTurn
}

type heldTurn struct {
	c  capture
	at time.Time
}

func newRecordWorker(r *Recorder) *recordWorker {
	return &recordWorker{r: r, ended: make(map[string]time.Time), turns: make(map[string]heldTurn)}
}

// turnWait is how long a turn's capture waits for its delivery's before it is stored alone
// (the delivery's was dropped, or never came).
const turnWait = 5 * time.Second

func (w *recordWorker) nextDue(now time.Time) time.Duration {
	next := time.Hour
	for _, at := range w.ended {
		next = min(next, at.Sub(now))
	}
	return max(next, 0)
}

// write stores a batch of captures in one round trip.
// With final, turns still waiting for their delivery are stored alone (at shutdown).
func (w *recordWorker) write(ctx context.Context, batch []capture, final bool) {
	r := w.r
	caps := make([]session.Capture, 0, len(batch)+1)
	r.mu.Lock()
	lost := r.lost
	if len(lost) > 0 {
		r.lost = make(map[string]int)
	}
	r.mu.Unlock()
	for id, n := range lost {
		data, _ := json.Marshal(capture{Type: capDropped, Dropped: n}) // cannot fail
		caps = append(caps, session.Capture{CallID: id, Data: data})
	}
	if len(lost) > 0 {
		r.log.Warn("recording queue full: captures dropped", zap.Int("calls", len(lost)),
			zap.Int64("dropped_total", r.dropped.Load()))
	}
	now := time.Now()
	encode := func(c capture) {
		w.redact(&c)
		data, err := json.Marshal(c)
		if err != nil {
			r.log.Error("capture not encoded", zap.String("call_id", c.CallID), zap.Error(err))
			return
		}
		caps = append(caps, session.Capture{CallID: c.CallID, Data: data})
	}
	for _, c := range batch {
		if c.Type == capTurn && c.DeliveryID != "" && len(w.turns) < maxHeld {
			w.turns[c.DeliveryID] = heldTurn{c: c, at: now}
			continue
		}
		if p, ok := w.turns[c.DeliveryID]; ok && c.Type == capDelivery {
			delete(w.turns, c.DeliveryID)
			c.withTurn(p.c)
		}
		encode(c)
		if c.Type == capDelivery && c.Kind == EventCallEnded && !c.Status {
			w.ended[c.CallID] = now.Add(r.cfg.Settle)
		}
	}
	for id, p := range w.turns {
		if final || now.Sub(p.at) >= turnWait {
			delete(w.turns, id)
			encode(p.c)
		}
	}
	if len(caps) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	if err := r.store.AppendCaptures(sctx, caps...); err != nil {
		r.dropped.Add(int64(len(caps)))
		r.log.Warn("captures not stored", zap.Int("captures", len(caps)), zap.Error(err))
	}
}

// maxHeld bounds the turns waiting for their delivery's capture.
const maxHeld = 4096

// withTurn adds the agent's side of a delivery (a turn's capture) to the delivery's capture.
func (c *capture) withTurn(t capture) {
	c.HasTurn = true
	c.Turn, c.Agent, c.PromptVersion, c.Holds = t.Turn, t.Agent, t.PromptVersion, t.Holds
	c.Tools, c.Replayed, c.HangUp, c.TurnOutcome = t.Tools, t.Replayed, t.HangUp, t.TurnOutcome
}

// redact replaces personal text by its length unless Text is on. A delivery's lines that
// were holding phrases stay: they are the operator's words, not the caller's.
func (w *recordWorker) redact(c *capture) {
	if w.r.cfg.Text {
		return
	}
	hide := func(t *text) {
		if t.S != "" {
			t.N, t.S = utf8.RuneCountInString(t.S), ""
		}
	}
	hide(&c.Text)
	hide(&c.Heard)
	for i := range c.Lines {
		if !slices.Contains(c.Holds, i) {
			hide(&c.Lines[i].Text)
		}
	}
	for i := range c.Tools {
		c.Tools[i].Args = ""
	}
}

// assembleDue writes the scripts of the calls that ended here and have settled.
func (w *recordWorker) assembleDue(ctx context.Context, now time.Time) {
	for id, at := range w.ended {
		if !at.After(now) {
			delete(w.ended, id)
			w.r.assemble(ctx, id)
		}
	}
}

// sweep writes the scripts of calls idle for Idle: calls that never sent call_ended, or
// whose call_ended was seen by a replica that stopped before writing them.
func (w *recordWorker) sweep(ctx context.Context) {
	r := w.r
	sctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	ids, err := r.store.IdleCaptures(sctx, time.Now().Add(-r.cfg.Idle), r.cfg.SweepLimit)
	cancel()
	if err != nil {
		r.log.Warn("idle calls not listed", zap.Error(err))
		return
	}
	for _, id := range ids {
		if _, ok := w.ended[id]; ok {
			continue // ended here, written when it settles
		}
		r.assemble(ctx, id)
	}
}

// drain writes what is queued and the scripts of the calls that ended here, at shutdown.
func (w *recordWorker) drain(ctx context.Context) {
	for {
		batch := make([]capture, 0, maxBatch)
	fill:
		for len(batch) < maxBatch {
			select {
			case c := <-w.r.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		w.write(ctx, batch, len(batch) == 0)
		if len(batch) == 0 {
			break
		}
	}
	for id := range w.ended {
		w.r.assemble(ctx, id)
	}
	clear(w.ended)
	if !w.r.cfg.WriteOpenOnStop {
		return
	}
	for ctx.Err() == nil {
		ids, err := w.r.store.IdleCaptures(ctx, time.Now().Add(time.Hour), w.r.cfg.SweepLimit)
		if err != nil || len(ids) == 0 {
			return
		}
		for _, id := range ids {
			w.r.assemble(ctx, id)
		}
	}
}

// assemble takes a call's captures and, when this replica claims them, writes its script.
func (r *Recorder) assemble(ctx context.Context, callID string) {
	sctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	items, claimed, err := r.store.TakeCaptures(sctx, callID)
	cancel()
	log := r.log.With(zap.String("call_id", callID))
	switch {
	case err != nil:
		log.Warn("call captures not taken", zap.Error(err))
		return
	case !claimed:
		if len(items) > 0 {
			log.Debug("late captures discarded", zap.Int("captures", len(items)))
		}
		return
	}
	caps := make([]capture, 0, len(items))
	for _, raw := range items {
		var c capture
		if err := json.Unmarshal(raw, &c); err != nil {
			log.Warn("capture not decoded", zap.Error(err))
			continue
		}
		caps = append(caps, c)
	}
	sc, ok := assembleScript(callID, caps)
	if !ok {
		return // nothing the caller did: no script
	}
	data, err := sc.encode()
	if err != nil {
		log.Error("script not encoded", zap.Error(err))
		return
	}
	var errs []error
	if r.cfg.Dir != "" {
		if err := writeScript(r.cfg.Dir, sc.fileName(), data); err != nil {
			errs = append(errs, err)
		}
	}
	if r.cfg.Stream {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
		_, err := r.store.PublishRecording(sctx, r.cfg.StreamMaxLen, session.Recording{CallID: callID, Script: data})
		cancel()
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("recording not written", zap.Error(err))
		return
	}
	r.written.Add(1)
	log.Info("call recorded", zap.Int("turns", len(sc.Turns)), zap.Int("dropped", sc.dropped),
		zap.Bool("ended", sc.ended))
}

// writeScript writes a script file atomically: a reader never sees half a script.
func writeScript(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("write recording %s: %w", name, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name()) // best effort: a stray temporary file is the lesser harm
		return fmt.Errorf("write recording %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write recording %s: %w", name, err)
	}
	return nil
}
