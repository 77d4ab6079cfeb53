package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The first PROTOCOL §1.2 vector's line, call and secret, used by most tests.
const (
	testSecret = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"
	testLine   = "5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f"
	testCall   = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"

	// rotatingLine is mid-rotation: both secrets are accepted.
	rotatingLine = "7a7a7a7a-0000-4000-8000-000000000002"
	oldSecret    = "old-secret-0123456789abcdef0123456789abcdef0123456789abcdef012345"
	newSecret    = "new-secret-0123456789abcdef0123456789abcdef0123456789abcdef012345"
)

// testNow is the fixed clock: the first vector's timestamp.
var testNow = time.Unix(1767225600, 0)

func testSecrets(lineID string) []string {
	switch lineID {
	case testLine:
		return []string{testSecret}
	case rotatingLine:
		return []string{oldSecret, newSecret}
	}
	return nil
}

// scripted is a Responder that speaks fixed lines and remembers what it was given.
type scripted struct {
	lines     []string
	err       error // returned by Respond after speaking
	respond   func(ctx context.Context, ev agent.Event, emit func(agent.Chunk) error) error
	recordErr error
	record    func(ctx context.Context, ev agent.Event) error

	mu        sync.Mutex
	responded []agent.Event
	recorded  []agent.Event
}

func (r *scripted) Respond(ctx context.Context, ev agent.Event, emit func(agent.Chunk) error) error {
	r.mu.Lock()
	r.responded = append(r.responded, ev)
	r.mu.Unlock()
	if r.respond != nil {
		return r.respond(ctx, ev, emit)
	}
	for _, l := range r.lines {
		if err := emit(agent.Speak(l)); err != nil {
			return err
		}
	}
	return r.err
}

func (r *scripted) Record(ctx context.Context, ev agent.Event) error {
	r.mu.Lock()
	r.recorded = append(r.recorded, ev)
	r.mu.Unlock()
	if r.record != nil {
		return r.record(ctx, ev)
	}
	return r.recordErr
}

func (r *scripted) Responded() []agent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]agent.Event(nil), r.responded...)
}

func (r *scripted) Recorded() []agent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]agent.Event(nil), r.recorded...)
}

// mapCache is an in-process DeliveryCache.
type mapCache struct {
	err error

	mu   sync.Mutex
	seen map[string]bool
	ttls []time.Duration
}

func (c *mapCache) FirstDelivery(_ context.Context, id string, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ttls = append(c.ttls, ttl)
	if c.err != nil {
		return false, c.err
	}
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	if c.seen[id] {
		return false, nil
	}
	c.seen[id] = true
	return true, nil
}

func (c *mapCache) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ttls)
}

type fixture struct {
	s     *Server
	resp  *scripted
	cache *mapCache
	logs  *observer.ObservedLogs
}

// newFixture builds a server with the fixed clock, the test secrets, a scripted responder and
// a map cache; edit adjusts the config.
func newFixture(t testing.TB, resp *scripted, edit func(*Config)) *fixture {
	t.Helper()
	if resp == nil {
		resp = &scripted{}
	}
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := Config{Secrets: testSecrets, Now: func() time.Time { return testNow }}
	if edit != nil {
		edit(&cfg)
	}
	cache := &mapCache{}
	return &fixture{s: New(cfg, resp, cache, zap.New(core)), resp: resp, cache: cache, logs: logs}
}

var deliverySeq atomic.Int64

func nextDeliveryID() string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", deliverySeq.Add(1))
}

// deliveryReq describes a request as Saperly would send it; zero fields take sensible values.
type deliveryReq struct {
	path    string // default /webhook
	body    []byte
	secret  string // default testSecret
	ts      string // default testNow
	id      string // default a fresh id
	attempt string
	edit    func(h http.Header) // last word on the headers
}

func (d deliveryReq) request(t testing.TB) *http.Request {
	t.Helper()
	if d.path == "" {
		d.path = "/webhook"
	}
	if d.secret == "" {
		d.secret = testSecret
	}
	if d.ts == "" {
		d.ts = strconv.FormatInt(testNow.Unix(), 10)
	}
	if d.id == "" {
		d.id = nextDeliveryID()
	}
	req := httptest.NewRequest(http.MethodPost, d.path, bytes.NewReader(d.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, d.ts)
	req.Header.Set(HeaderDeliveryID, d.id)
	req.Header.Set(HeaderSignature, Sign(d.secret, d.ts, d.id, d.body))
	if d.attempt != "" {
		req.Header.Set(HeaderAttempt, d.attempt)
	}
	if d.edit != nil {
		d.edit(req.Header)
	}
	return req
}

func (f *fixture) do(t testing.TB, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	f.s.ServeHTTP(rec, req)
	return rec
}

func (f *fixture) send(t testing.TB, d deliveryReq) *httptest.ResponseRecorder {
	t.Helper()
	return f.do(t, d.request(t))
}

// eventLines returns the "event" log entries.
func (f *fixture) eventLines() []observer.LoggedEntry {
	return f.logs.FilterMessage("event").AllUntimed()
}

func readEvent(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "events", name))
	require.NoError(t, err)
	return b
}

func eventFiles(t testing.TB) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "events", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, names)
	return names
}

// msgBody is a message event on the test line and call.
func msgBody(text string) []byte {
	b, err := json.Marshal(map[string]string{
		"event":       "message",
		"event_id":    fmt.Sprintf("e-%d", deliverySeq.Add(1)),
		"line_id":     testLine,
		"call_id":     testCall,
		"text":        text,
		"from_number": "+14155551234",
	})
	if err != nil {
		panic(err)
	}
	return b
}

var errStore = errors.New("store down")
