// Package saperly is a stand-in for Saperly's side of webhook mode (PROTOCOL §1): a client
// that signs and delivers webhook events exactly as Saperly does (§1.1, §1.2) and reads the
// answer as Saperly does, recording when each NDJSON line arrived (§1.7). It can also break
// the rules on purpose (a wrong secret, an old timestamp, a replayed delivery id, raw bytes)
// and hang up mid-answer the way Saperly does on barge-in. Tests, the end-to-end suite and
// cmd/callsim use it. API stands in for the other direction: Saperly's REST API, which a brain
// calls to hang up (§1.9) or send an SMS.
//
// It imports transport only for Sign, the header names and the development secret,
// test/serve for its JSON answers, and nothing else of callbrain.
package saperly

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/callbrain/callbrain/transport"
)

// DevSecret is the signing secret a development brain accepts when SAPERLY_WEBHOOK_SECRET is
// unset (on loopback only). It is transport.DevSecret, so the two sides cannot drift apart.
const DevSecret = transport.DevSecret

// The brain's endpoints: webhook_url and status_callback_url of a line.
const (
	WebhookPath = "/webhook"
	StatusPath  = "/status"
)

// maxBody bounds a plain (non-NDJSON) answer read into Result.Body.
const maxBody = 1 << 20

// ErrProtocol marks an NDJSON answer that breaks PROTOCOL §1.7: a line that is not a JSON
// object, or a last line without its newline.
var ErrProtocol = errors.New("answer breaks the NDJSON rules")

// Client delivers signed webhook events to a brain, as Saperly does.
type Client struct {
	// URL is the brain's base URL, e.g. http://127.0.0.1:8080.
	URL string
	// Secret is the line's signing secret (DevSecret for a development brain).
	Secret string
	// HTTP sends the requests; nil uses http.DefaultClient. Give it no overall Timeout: an
	// NDJSON answer may legitimately stream for minutes.
	HTTP *http.Client
	// Now stamps the deliveries (x-saperly-timestamp) and the events' timestamp field; nil
	// uses time.Now. Arrival times are always measured on the real monotonic clock.
	Now func() time.Time
}

// Result is the brain's answer to one delivery.
type Result struct {
	Status      int
	ContentType string
	// Lines are the NDJSON lines of a streamed answer, in arrival order.
	Lines []Line
	// Body is the whole body of an answer that is not NDJSON (plain JSON, an error).
	Body []byte
	// DeliveryID is the x-saperly-delivery-id this delivery was sent with.
	DeliveryID string
	// Elapsed is when the answer ended (or was cut), since the request was sent.
	Elapsed time.Duration
	// Sent is when the request, body included, had been written, since it was sent: the
	// end of the POST, from which a caller's wait for the first line is measured (0 when the
	// request was never written).
	Sent time.Duration
	// Cut reports that the client closed the connection after WithCloseAfter lines.
	Cut bool
}

// Line is one NDJSON line of a streamed answer.
type Line struct {
	Type string // "speak"; "" for the legacy {"text":…} form
	Text string
	// At is when the line arrived, since the request was sent.
	At time.Duration
	// Raw is the line as received, without its newline.
	Raw string
}

// Text returns the text of every line, joined with spaces: what the caller heard.
func (r *Result) Text() string {
	texts := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		texts[i] = l.Text
	}
	return strings.Join(texts, " ")
}

// Option changes one delivery, usually to break a rule on purpose.
type Option func(*delivery)

type delivery struct {
	id         string
	timestamp  time.Time
	attempt    int
	secret     *string
	headers    [][2]string
	closeAfter int // < 0: read the whole answer
}

// WithDeliveryID sends this x-saperly-delivery-id instead of a fresh UUID (to replay one).
func WithDeliveryID(id string) Option { return func(d *delivery) { d.id = id } }

// WithTimestamp signs with this time instead of Client.Now (to send a stale delivery).
func WithTimestamp(t time.Time) Option { return func(d *delivery) { d.timestamp = t } }

// WithAttempt sets x-saperly-delivery-attempt (1 by default); 0 omits the header, as older
// deliveries do.
func WithAttempt(n int) Option { return func(d *delivery) { d.attempt = n } }

// WithSecret signs with this secret instead of Client.Secret.
func WithSecret(secret string) Option { return func(d *delivery) { d.secret = &secret } }

// WithHeader sets a header after signing, overriding the signed one; an empty value removes
// it (to send a malformed or missing timestamp, id or signature).
func WithHeader(name, value string) Option {
	return func(d *delivery) { d.headers = append(d.headers, [2]string{name, value}) }
}

// WithCloseAfter closes the connection once n NDJSON lines have arrived (0: as soon as the
// answer starts), as Saperly does when the caller talks over the answer: the brain sees its
// request context cancelled. Result then holds the lines received and Cut is set.
func WithCloseAfter(n int) Option { return func(d *delivery) { d.closeAfter = n } }

// Send signs body and POSTs it to the brain at path (WebhookPath or StatusPath). The body is
// marshalled to JSON, except a []byte or json.RawMessage, which is sent byte for byte (for
// malformed-body tests). Any HTTP status is a Result, not an error. The error reports a
// failed request or a broken or malformed NDJSON answer; in the latter cases the Result is
// returned too, with the lines that arrived.
func (c *Client) Send(ctx context.Context, path string, body any, opts ...Option) (*Result, error) {
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	case json.RawMessage:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
	}
	d := delivery{id: NewUUID(), timestamp: c.now(), attempt: 1, closeAfter: -1}
	for _, o := range opts {
		o(&d)
	}
	secret := c.Secret
	if d.secret != nil {
		secret = *d.secret
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var start time.Time
	var sent atomic.Int64 // written by the transport's goroutine
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				sent.Store(int64(time.Since(start)))
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+path, bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	ts := strconv.FormatInt(d.timestamp.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "callbrain-saperly-standin")
	req.Header.Set(transport.HeaderTimestamp, ts)
	req.Header.Set(transport.HeaderDeliveryID, d.id)
	req.Header.Set(transport.HeaderSignature, transport.Sign(secret, ts, d.id, raw))
	if d.attempt > 0 {
		req.Header.Set(transport.HeaderAttempt, strconv.Itoa(d.attempt))
	}
	for _, h := range d.headers {
		if h[1] == "" {
			req.Header.Del(h[0])
		} else {
			req.Header.Set(h[0], h[1])
		}
	}

	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	start = time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", path, err)
	}
	defer res.Body.Close()
	r := &Result{Status: res.StatusCode, ContentType: res.Header.Get("Content-Type"), DeliveryID: d.id, Sent: time.Duration(sent.Load())}
	if mt, _, _ := mime.ParseMediaType(r.ContentType); mt != "application/x-ndjson" {
		r.Body, err = io.ReadAll(io.LimitReader(res.Body, maxBody))
		r.Elapsed = time.Since(start)
		if err != nil {
			return r, fmt.Errorf("read answer to %s: %w", path, err)
		}
		return r, nil
	}
	err = r.readLines(res.Body, start, d.closeAfter, cancel)
	r.Elapsed = time.Since(start)
	if err != nil {
		return r, fmt.Errorf("read answer to %s: %w", path, err)
	}
	return r, nil
}

// readLines reads an NDJSON answer line by line, stamping each on arrival. With closeAfter
// >= 0 it hangs up after that many lines.
func (r *Result) readLines(body io.ReadCloser, start time.Time, closeAfter int, hangUp context.CancelFunc) error {
	br := bufio.NewReader(body)
	var bad error // the first rule broken; reading goes on so Lines holds everything
	for {
		if closeAfter >= 0 && len(r.Lines) >= closeAfter {
			hangUp()
			r.Cut = true
			_ = body.Close() // hanging up is the point; the answer is abandoned
			return bad
		}
		raw, err := br.ReadBytes('\n')
		at := time.Since(start)
		if len(bytes.TrimSpace(raw)) > 0 {
			if err == io.EOF && bad == nil {
				bad = fmt.Errorf("%w: line %d has no newline", ErrProtocol, len(r.Lines)+1)
			}
			l := Line{At: at, Raw: string(bytes.TrimRight(raw, "\r\n"))}
			var v struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if jerr := json.Unmarshal(raw, &v); jerr != nil && bad == nil {
				bad = fmt.Errorf("%w: line %d is not a JSON object: %w", ErrProtocol, len(r.Lines)+1, jerr)
			}
			l.Type, l.Text = v.Type, v.Text
			r.Lines = append(r.Lines, l)
		}
		if err == io.EOF {
			return bad
		}
		if err != nil {
			return fmt.Errorf("after %d lines: %w", len(r.Lines), err)
		}
	}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Event is a webhook body: one flat JSON object (PROTOCOL §1.5). Add or change keys to send
// what a test needs.
type Event map[string]any

// NewEvent returns an event of this kind with a fresh event_id, the line, the call (omitted
// when callID is "") and a timestamp in Unix milliseconds.
func (c *Client) NewEvent(kind, callID, lineID string) Event {
	ev := Event{"event": kind, "event_id": NewUUID(), "line_id": lineID, "timestamp": c.now().UnixMilli()}
	if callID != "" {
		ev["call_id"] = callID
	}
	return ev
}

// StartCall sends call_started for an inbound call from one number to another.
func (c *Client) StartCall(ctx context.Context, callID, lineID, from, to string, opts ...Option) (*Result, error) {
	ev := c.NewEvent("call_started", callID, lineID)
	ev["from_number"], ev["to_number"], ev["direction"] = from, to, "inbound"
	return c.Send(ctx, WebhookPath, ev, opts...)
}

// Say sends a message event with the caller's words, under a new event_id, and returns the
// brain's answer.
func (c *Client) Say(ctx context.Context, callID, lineID, text string, opts ...Option) (*Result, error) {
	ev := c.NewEvent("message", callID, lineID)
	ev["text"] = text
	return c.Send(ctx, WebhookPath, ev, opts...)
}

// Interrupt sends interrupted with what the caller actually heard of the last answer (which
// may be empty).
func (c *Client) Interrupt(ctx context.Context, callID, lineID, partial string, opts ...Option) (*Result, error) {
	ev := c.NewEvent("interrupted", callID, lineID)
	ev["partial_response_text"] = partial
	return c.Send(ctx, WebhookPath, ev, opts...)
}

// End sends call_ended.
func (c *Client) End(ctx context.Context, callID, lineID string, opts ...Option) (*Result, error) {
	ev := c.NewEvent("call_ended", callID, lineID)
	ev["status"] = "completed"
	return c.Send(ctx, WebhookPath, ev, opts...)
}

// NewUUID returns a random (version 4) UUID, as Saperly uses for ids.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (it crashes instead)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
