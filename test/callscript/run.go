package callscript

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/test/saperly"
)

// Defaults a Runner uses for the fields left zero.
const (
	DefaultLine = "00000000-0000-4000-8000-00000ca11000"
	DefaultFrom = "+15555550100" // 555-01xx numbers are reserved for fiction
	DefaultTo   = "+15555550199"
)

// Budgets are how long Saperly waits for an answer before it counts the delivery as failed
// (PROTOCOL §1.8). A Runner applies them the same way: a missed budget ends the delivery
// with an error of kind ErrTimeout.
type Budgets struct {
	// LineGap bounds the wait for each line of a streamed answer (the first included).
	LineGap time.Duration
	// Turn bounds a whole answer to a message.
	Turn time.Duration
	// Event bounds the answer to every other event.
	Event time.Duration
}

// DefaultBudgets are Saperly's.
var DefaultBudgets = Budgets{LineGap: 15 * time.Second, Turn: 5 * time.Minute, Event: 5 * time.Second}

// DefaultApologies start a line that is an apology (compared as Normalize does). They cover
// the brain's own fixed lines (agent.DefaultApologyLine and its kin) and the usual openings.
var DefaultApologies = []string{"sorry", "I'm sorry", "I am sorry", "apologies", "my apologies", "I apologize"}

// Runner plays scripts against one brain. Set URL; every other field has a default. A Runner
// is safe for concurrent use: Play keeps each call's state to itself, so a load generator can
// run many Plays at once with one Runner. Do not change its fields while calls are playing.
type Runner struct {
	// URL is the brain's base URL (webhook at /webhook, status callbacks at /status).
	URL string
	// Secret signs every delivery; "" uses saperly.DevSecret. SecretFor, when set, picks a
	// line's secret instead (returning "" falls back to Secret).
	Secret    string
	SecretFor func(lineID string) string
	// HTTP sends the requests; nil uses http.DefaultClient. Give it no overall Timeout: the
	// Runner applies Saperly's budgets itself.
	HTTP *http.Client
	// Now is the clock for the turns' offsets in a call and the deliveries' timestamps; nil
	// uses time.Now. A line's arrival time is always measured on the monotonic clock.
	Now func() time.Time
	// LineID, From and To are used when a script leaves them out; "" uses DefaultLine,
	// DefaultFrom and DefaultTo.
	LineID, From, To string
	// TimeScale multiplies every pause a script asks for (think, a late interrupted, a
	// retry's delay): 1 plays at the scripted pace, 0.5 twice as fast, 0 without pauses.
	TimeScale float64
	// Budgets are the waits for answers; zero fields use DefaultBudgets.
	Budgets Budgets
	// Holds are the holding phrases: a line equal to one (as Normalize compares) is a hold.
	// nil uses agent.DefaultHoldingPhrases.
	Holds []string
	// Apologies start an apology line (as Normalize compares). nil uses DefaultApologies.
	Apologies []string
	// Observer sees what the caller cannot hear: tool calls and hang-ups. nil sees nothing,
	// and expectations on them fail saying so.
	Observer Observer
	// OnTurn, when set, is called as each turn ends (from the goroutine calling Play), for a
	// live display; a late interrupted may still be on its way. It must not keep t.
	OnTurn func(callID string, t *TurnResult)
}

// Observer reports what the brain did for a turn that the caller cannot hear.
type Observer interface {
	// Observe is called after the answer to a message whose expectations need it. It
	// returns an error when it cannot tell.
	Observe(ctx context.Context, q Query) (Observation, error)
}

// Query names the turn an Observer is asked about.
type Query struct {
	CallID, EventID string
	// Text is what the caller said.
	Text string
	// Sent is when the message was sent, on the wall clock (time.Now, not Runner.Now), so an
	// observer can tell this turn's traces from earlier ones.
	Sent time.Time
	// WantHangup says the script expects a hang-up after this answer: the observer may wait
	// a moment for it, since the brain hangs up once the goodbye should have been heard.
	WantHangup bool
	// NeedTools and NeedHangup say what the expectations need.
	NeedTools, NeedHangup bool
}

// Observation is what an Observer saw for one turn. Seen flags say which parts it could see.
type Observation struct {
	Tools     []string
	ToolsSeen bool
	HungUp    bool
	HangSeen  bool
}

// ErrorKind classifies a failed delivery, as a load report counts them.
type ErrorKind string

// The kinds of failed delivery.
const (
	ErrStatus    ErrorKind = "non-200"            // the brain answered with another status
	ErrTimeout   ErrorKind = "timeout"            // a budget ran out (Budgets)
	ErrNDJSON    ErrorKind = "bad-ndjson"         // a line was not a JSON object, or lost its newline
	ErrReset     ErrorKind = "connection-reset"   // the connection broke mid-answer
	ErrRefused   ErrorKind = "connection-refused" // nothing accepted the connection
	ErrTransport ErrorKind = "request"            // any other failure to send or read
)

// DeliveryError is why a delivery failed.
type DeliveryError struct {
	Kind ErrorKind
	Msg  string
}

func (e *DeliveryError) Error() string { return string(e.Kind) + ": " + e.Msg }

// Line is one spoken line as the caller heard it.
type Line struct {
	Text string
	// At is when it arrived, since the end of the POST.
	At      time.Duration
	Hold    bool
	Apology bool
}

// Delivery is one POST and its answer.
type Delivery struct {
	Event      string // the event kind sent
	EventID    string
	DeliveryID string
	Status     int
	// Lines are the spoken lines (a plain JSON answer's text is one line).
	Lines []Line
	// Total is when the answer ended or was cut, since the end of the POST.
	Total time.Duration
	// Cut reports that the caller closed the connection (a barge-in).
	Cut bool
	// Err is set when the delivery failed: a status other than 200, a missed budget, a
	// broken stream. A cut answer is not a failure.
	Err *DeliveryError
}

// Text returns the lines joined with spaces: what the caller heard.
func (d *Delivery) Text() string {
	if d == nil {
		return ""
	}
	texts := make([]string, len(d.Lines))
	for i, l := range d.Lines {
		texts[i] = l.Text
	}
	return strings.Join(texts, " ")
}

// Chars returns how many characters the caller heard (Saperly caps a turn at 1800).
func (d *Delivery) Chars() int {
	if d == nil {
		return 0
	}
	n := 0
	for _, l := range d.Lines {
		n += len([]rune(l.Text))
	}
	return n
}

// FirstLine returns when the first line arrived, since the end of the POST, and false when
// no line did.
func (d *Delivery) FirstLine() (time.Duration, bool) {
	if d == nil || len(d.Lines) == 0 {
		return 0, false
	}
	return d.Lines[0].At, true
}

// Gaps returns the time between each line and the one before it.
func (d *Delivery) Gaps() []time.Duration {
	if d == nil || len(d.Lines) < 2 {
		return nil
	}
	gaps := make([]time.Duration, len(d.Lines)-1)
	for i := 1; i < len(d.Lines); i++ {
		gaps[i-1] = d.Lines[i].At - d.Lines[i-1].At
	}
	return gaps
}

// Check is one expectation or protocol rule checked on a turn.
type Check struct {
	Name   string // "contains", "status", "retry same words", …
	OK     bool
	Detail string // what was wanted and what came, for a failure
}

// TurnResult is what happened on one turn.
type TurnResult struct {
	Index int
	Turn  Turn
	// At is when the turn was sent, since the call started (on Runner.Now).
	At time.Duration
	// Delivery is the turn's own POST and its answer.
	Delivery *Delivery
	// Heard and Interrupt are the barge-in's partial_response_text and its delivery.
	Heard     string
	Interrupt *Delivery
	// Retry and Duplicate are the second delivery of a retry or duplicate turn.
	Retry     *Delivery
	Duplicate *Delivery
	// Observed is what the Observer saw, when it was asked.
	Observed *Observation
	Checks   []Check
}

// Failed reports whether a check of the turn failed.
func (t *TurnResult) Failed() bool {
	for _, c := range t.Checks {
		if !c.OK {
			return true
		}
	}
	return false
}

// Deliveries returns every delivery the turn made, in the order they were sent.
func (t *TurnResult) Deliveries() []*Delivery {
	var ds []*Delivery
	for _, d := range []*Delivery{t.Delivery, t.Retry, t.Duplicate, t.Interrupt} {
		if d != nil {
			ds = append(ds, d)
		}
	}
	return ds
}

// Result is one played call.
type Result struct {
	Script *Script
	CallID string
	LineID string
	Turns  []*TurnResult
	// Elapsed is the whole call, on Runner.Now.
	Elapsed time.Duration
	// Err is set when the call stopped early (its context ended); Turns holds what was
	// played.
	Err error
}

// Failed reports whether the call stopped early or a check failed.
func (r *Result) Failed() bool {
	if r.Err != nil {
		return true
	}
	for _, t := range r.Turns {
		if t.Failed() {
			return true
		}
	}
	return false
}

// Causes of a cancelled delivery, so its error says which budget fired.
var (
	errLineGap   = errors.New("no line within the line budget")
	errTurnTotal = errors.New("answer over the turn budget")
	errEvent     = errors.New("no answer within the event budget")
	errBargeIn   = errors.New("caller talked over the answer")
)

// Play plays one script as one call with a fresh call id and returns what happened. It
// returns when every turn is done (late interrupted events included) or ctx ends.
func (r *Runner) Play(ctx context.Context, s *Script) *Result {
	p := r.newCall(s)
	start := p.now()
	res := &Result{Script: s, CallID: p.callID, LineID: p.lineID}
	var late sync.WaitGroup // late interrupted events, which do not hold up the next turn
	defer func() {
		late.Wait()
		for _, tr := range res.Turns {
			if b := tr.Turn.BargeIn; b != nil && b.Late > 0 && tr.Interrupt != nil {
				tr.Checks = append(tr.Checks, statusCheck(tr.Interrupt))
			}
		}
		res.Elapsed = p.now().Sub(start)
	}()
	for i, t := range s.Turns {
		if err := p.pause(ctx, t.Think); err != nil {
			res.Err = fmt.Errorf("turn %d: %w", i+1, err)
			return res
		}
		tr := &TurnResult{Index: i, Turn: t, At: p.now().Sub(start)}
		res.Turns = append(res.Turns, tr)
		p.turn(ctx, tr, &late)
		if r.OnTurn != nil {
			r.OnTurn(p.callID, tr)
		}
		if err := ctx.Err(); err != nil {
			res.Err = fmt.Errorf("turn %d: %w", i+1, context.Cause(ctx))
			return res
		}
	}
	return res
}

// call is one Play's state.
type call struct {
	r        *Runner
	client   *saperly.Client
	callID   string
	lineID   string
	from, to string
	dir      string
	budgets  Budgets
	holds    map[string]bool
	apology  []string
}

func (r *Runner) newCall(s *Script) *call {
	lineID := or(s.LineID, r.LineID, DefaultLine)
	secret := ""
	if r.SecretFor != nil {
		secret = r.SecretFor(lineID)
	}
	secret = or(secret, r.Secret, saperly.DevSecret)
	hc := r.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	watched := *hc // a copy whose transport watches the gaps between an answer's bytes
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	watched.Transport = gapTransport{base: base}
	b := r.Budgets
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&b.LineGap, DefaultBudgets.LineGap)
	setDur(&b.Turn, DefaultBudgets.Turn)
	setDur(&b.Event, DefaultBudgets.Event)
	holds := r.Holds
	if holds == nil {
		holds = agent.DefaultHoldingPhrases
	}
	apologies := r.Apologies
	if apologies == nil {
		apologies = DefaultApologies
	}
	c := &call{
		r:       r,
		client:  &saperly.Client{URL: r.URL, Secret: secret, HTTP: &watched, Now: r.Now},
		callID:  saperly.NewUUID(),
		lineID:  lineID,
		from:    or(s.From, r.From, DefaultFrom),
		to:      or(s.To, r.To, DefaultTo),
		dir:     or(s.Direction, "inbound"),
		budgets: b,
		holds:   map[string]bool{},
	}
	for _, h := range holds {
		c.holds[Normalize(h)] = true
	}
	for _, a := range apologies {
		if n := Normalize(a); n != "" {
			c.apology = append(c.apology, n)
		}
	}
	return c
}

func (c *call) now() time.Time {
	if c.r.Now != nil {
		return c.r.Now()
	}
	return time.Now()
}

// pause waits d scaled by the Runner's TimeScale, or until ctx ends.
func (c *call) pause(ctx context.Context, d time.Duration) error {
	d = time.Duration(float64(d) * c.r.TimeScale)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (c *call) turn(ctx context.Context, tr *TurnResult, late *sync.WaitGroup) {
	t := tr.Turn
	switch t.Kind {
	case KindStart:
		ev := c.event("call_started")
		ev["from_number"], ev["to_number"], ev["direction"] = c.from, c.to, c.dir
		tr.Delivery = c.send(ctx, saperly.WebhookPath, with(ev, t.Fields))
	case KindHangup:
		ev := c.event("call_ended")
		ev["status"] = "completed"
		tr.Delivery = c.send(ctx, saperly.WebhookPath, with(ev, t.Fields))
	case KindStatus:
		ev := c.event(t.Event)
		ev["from_number"], ev["to_number"], ev["direction"] = c.from, c.to, c.dir
		tr.Delivery = c.send(ctx, saperly.StatusPath, with(ev, t.Fields))
	case KindSend:
		tr.Delivery = c.send(ctx, saperly.WebhookPath, with(c.event(t.Event), t.Fields))
	case KindSMS:
		ev := c.event("sms_received")
		ev["from_number"], ev["to_number"], ev["message"] = c.from, c.to, t.Text
		ev["message_sid"] = "SM" + strings.ReplaceAll(saperly.NewUUID(), "-", "")
		tr.Delivery = c.send(ctx, saperly.WebhookPath, ev)
	case KindSay:
		c.say(ctx, tr, late)
		return
	}
	tr.Checks = append(tr.Checks, statusCheck(tr.Delivery))
}

// event returns a body of this kind for the call.
func (c *call) event(kind string) saperly.Event {
	return c.client.NewEvent(kind, c.callID, c.lineID)
}

func with(ev saperly.Event, fields map[string]any) saperly.Event {
	for k, v := range fields {
		ev[k] = v
	}
	return ev
}

func (c *call) say(ctx context.Context, tr *TurnResult, late *sync.WaitGroup) {
	t := tr.Turn
	ev := c.event("message")
	ev["text"] = t.Text
	sent := time.Now()
	switch {
	case t.BargeIn != nil:
		c.bargeIn(ctx, tr, ev, late)
	case t.Retry != nil && t.Retry.When == RetryWhileStreaming:
		done := make(chan *Delivery, 1)
		go func() { done <- c.send(ctx, saperly.WebhookPath, ev) }()
		if c.pause(ctx, t.Retry.After) == nil {
			tr.Retry = c.send(ctx, saperly.WebhookPath, ev, saperly.WithAttempt(2))
		}
		tr.Delivery = <-done
	default:
		tr.Delivery = c.send(ctx, saperly.WebhookPath, ev)
		switch {
		case t.Retry != nil:
			if c.pause(ctx, t.Retry.After) == nil {
				tr.Retry = c.send(ctx, saperly.WebhookPath, ev, saperly.WithAttempt(2))
			}
		case t.Duplicate:
			tr.Duplicate = c.send(ctx, saperly.WebhookPath, ev, saperly.WithDeliveryID(tr.Delivery.DeliveryID))
		}
	}
	tr.Checks = append(tr.Checks, statusCheck(tr.Delivery))
	if d := tr.Delivery; d.Err == nil && !d.Cut && len(d.Lines) == 0 {
		tr.Checks = append(tr.Checks, Check{Name: "not silent", Detail: "the answer has no spoken line: the caller hears silence"})
	}
	if tr.Retry != nil {
		tr.Checks = append(tr.Checks, statusCheck(tr.Retry))
		same := tr.Retry.Err == nil && tr.Delivery.Err == nil && tr.Retry.Text() == tr.Delivery.Text()
		tr.Checks = append(tr.Checks, Check{Name: "retry same words", OK: same,
			Detail: fmt.Sprintf("first answer %q, retry %q", tr.Delivery.Text(), tr.Retry.Text())})
	}
	if tr.Duplicate != nil {
		refused := tr.Duplicate.Status >= 300
		detail := fmt.Sprintf("status %d", tr.Duplicate.Status)
		if tr.Duplicate.Status == 0 && tr.Duplicate.Err != nil {
			detail = tr.Duplicate.Err.Error()
		}
		tr.Checks = append(tr.Checks, Check{Name: "duplicate refused", OK: refused, Detail: "want a non-2xx status (409), got " + detail})
	}
	if e := t.Expect; e != nil {
		var obs *Observation
		q := Query{CallID: c.callID, EventID: ev["event_id"].(string), Text: t.Text, Sent: sent,
			NeedTools: len(e.ToolCalled)+len(e.ToolNotCalled) > 0, NeedHangup: e.EndsCall != nil}
		var obsErr error
		if q.NeedTools || q.NeedHangup {
			q.WantHangup = e.EndsCall != nil && *e.EndsCall
			if c.r.Observer == nil {
				obsErr = errors.New("no observer: the caller cannot hear tool calls or hang-ups")
			} else {
				o, err := c.r.Observer.Observe(ctx, q)
				if err != nil {
					obsErr = err
				} else {
					obs = &o
					tr.Observed = obs
				}
			}
		}
		tr.Checks = append(tr.Checks, expectChecks(e, tr.Delivery, obs, obsErr)...)
	}
}

// bargeIn sends the message, cuts the answer as the caller talks over it, then sends
// interrupted with what was heard: at once, or Late in the background.
func (c *call) bargeIn(ctx context.Context, tr *TurnResult, ev saperly.Event, late *sync.WaitGroup) {
	b := tr.Turn.BargeIn
	if b.After > 0 {
		cutCtx, cut := context.WithCancelCause(ctx)
		timer := time.AfterFunc(b.After, func() { cut(errBargeIn) })
		tr.Delivery = c.send(cutCtx, saperly.WebhookPath, ev)
		timer.Stop()
		cut(nil)
	} else {
		tr.Delivery = c.send(ctx, saperly.WebhookPath, ev, saperly.WithCloseAfter(b.AfterLines))
	}
	if !tr.Delivery.Cut {
		// The answer ended before the caller spoke up: nothing was talked over, and Saperly
		// sends no interrupted.
		return
	}
	tr.Heard = tr.Delivery.Text()
	if b.Heard != nil {
		tr.Heard = *b.Heard
	}
	iev := c.event("interrupted") // stamped now, at the cut, even when it is sent late
	iev["partial_response_text"] = tr.Heard
	if b.Late <= 0 {
		tr.Interrupt = c.send(ctx, saperly.WebhookPath, iev)
		tr.Checks = append(tr.Checks, statusCheck(tr.Interrupt))
		return
	}
	// Sent later, in the background; Play waits for it and then adds its check.
	interrupt := &Delivery{Event: "interrupted"}
	tr.Interrupt = interrupt
	late.Add(1)
	go func() {
		defer late.Done()
		if err := c.pause(ctx, b.Late); err != nil {
			interrupt.Err = &DeliveryError{Kind: ErrTransport, Msg: "not sent: " + err.Error()}
			return
		}
		*interrupt = *c.send(ctx, saperly.WebhookPath, iev)
	}()
}

// send delivers one event under its budget and turns the answer into a Delivery.
func (c *call) send(ctx context.Context, path string, ev saperly.Event, opts ...saperly.Option) *Delivery {
	kind, _ := ev["event"].(string)
	d := &Delivery{Event: kind}
	d.EventID, _ = ev["event_id"].(string)

	budget, cause := c.budgets.Event, errEvent
	if kind == "message" && path == saperly.WebhookPath {
		budget, cause = c.budgets.Turn, errTurnTotal
	}
	ctx, cancel := context.WithTimeoutCause(ctx, budget, cause)
	defer cancel()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	w := &watch{gap: c.budgets.LineGap, stop: stop}
	if kind != "message" {
		w.gap = 0 // other events have the event budget only
	}
	defer w.close()
	ctx = context.WithValue(ctx, watchKey{}, w)

	res, err := c.client.Send(ctx, path, ev, opts...)
	if res != nil {
		d.DeliveryID, d.Status, d.Cut = res.DeliveryID, res.Status, res.Cut
		d.Total = res.Elapsed - res.Sent
		for _, l := range res.Lines {
			d.Lines = append(d.Lines, c.line(l.Text, l.At-res.Sent))
		}
		if len(res.Lines) == 0 && res.Status == http.StatusOK && kind == "message" {
			if text := plainText(res.Body); text != "" {
				d.Lines = append(d.Lines, c.line(text, d.Total))
			}
		}
	}
	cause = context.Cause(ctx)
	switch {
	case errors.Is(cause, errBargeIn):
		d.Cut = true // the caller talked over it: not a failure
	case err != nil:
		d.Err = classify(err, cause)
	case res.Status != http.StatusOK:
		d.Err = &DeliveryError{Kind: ErrStatus, Msg: fmt.Sprintf("status %d: %s", res.Status, strings.TrimSpace(string(res.Body)))}
	}
	return d
}

func (c *call) line(text string, at time.Duration) Line {
	n := Normalize(text)
	l := Line{Text: text, At: at, Hold: c.holds[n]}
	for _, a := range c.apology {
		if strings.HasPrefix(n, a) {
			l.Apology = true
			break
		}
	}
	return l
}

// classify names the kind of a failed delivery.
func classify(err, cause error) *DeliveryError {
	msg := err.Error()
	switch {
	case errors.Is(cause, errLineGap), errors.Is(cause, errTurnTotal), errors.Is(cause, errEvent):
		return &DeliveryError{Kind: ErrTimeout, Msg: cause.Error()}
	case errors.Is(err, saperly.ErrProtocol):
		return &DeliveryError{Kind: ErrNDJSON, Msg: msg}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &DeliveryError{Kind: ErrRefused, Msg: msg}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), strings.Contains(msg, "connection reset"):
		return &DeliveryError{Kind: ErrReset, Msg: msg}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &DeliveryError{Kind: ErrTimeout, Msg: msg}
	}
	return &DeliveryError{Kind: ErrTransport, Msg: msg}
}

func statusCheck(d *Delivery) Check {
	c := Check{Name: d.Event + " answered", OK: d.Err == nil}
	if d.Err != nil {
		c.Detail = d.Err.Error()
	}
	return c
}

// Normalize folds text for comparing phrases: lower case, letters and digits only, single
// spaces ("One moment." and "one moment" are the same).
func Normalize(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r == '\'' || r == '’':
			// "I'm" and "Im" are the same phrase
		case isWordRune(r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		default:
			space = true
		}
	}
	return b.String()
}

func isWordRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 && !isSpaceOrPunct(r)
}

func isSpaceOrPunct(r rune) bool {
	return strings.ContainsRune(" \u00a0\u2009\u202f—–…“”«»¿¡", r)
}

func or(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
