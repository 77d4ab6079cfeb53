package saperly_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
	"github.com/callbrain/callbrain/transport"
)

// delivery is one request as the fake brain received it.
type delivery struct {
	header http.Header
	body   []byte
}

// recorder is a fake brain that records every delivery and answers {}.
func recorder(t *testing.T) (*httptest.Server, <-chan delivery) {
	t.Helper()
	got := make(chan delivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- delivery{header: r.Header.Clone(), body: body}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func receive[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, "timed out")
		var zero T
		return zero
	}
}

// PROTOCOL §1.2's vectors: the client must produce exactly Saperly's header.
func TestSignsTheProtocolVectors(t *testing.T) {
	t.Parallel()
	vectors := []struct {
		name, secret, id, body, header string
		ts                             int64
	}{
		{
			name:   "message",
			secret: "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a",
			ts:     1767225600,
			id:     "7d3f1e2a-9b4c-4d8e-a1f0-5c6b7e8d9f01",
			body:   `{"event":"message","event_id":"0b9e2c1d-4f3a-4e5b-8c7d-6a5b4c3d2e1f","line_id":"5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f","call_id":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","text":"I would like to book an appointment."}`,
			header: "v1=11e847f7a5c0eaee1327ef7acb844ae79301c0be6478b7b7a95faf88066aa12b",
		},
		{
			name:   "sms",
			secret: "test-secret-shhh",
			ts:     1700000000,
			id:     "00000000-0000-4000-8000-000000000000",
			body:   `{"event":"sms_received","line_id":"00000000-0000-0000-0000-000000000001","from_number":"+15551234567"}`,
			header: "v1=7d8bd5ea270566bd2d0f17ba0de49aebbb27a9373549e86688107ba21ba6ed32",
		},
		{
			name:   "utf-8",
			secret: "k",
			ts:     1767225600,
			id:     "11111111-1111-4111-8111-111111111111",
			body:   `{"event":"message","text":"¿Hola? שלום 👋"}`,
			header: "v1=af40ebc96ce512cc0c8604b9013d9453fe6a5f4aeb2eff992e519611b9b8336c",
		},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			srv, got := recorder(t)
			at := time.Unix(v.ts, 0)
			c := &saperly.Client{URL: srv.URL, Secret: v.secret, Now: func() time.Time { return at }}

			res, err := c.Send(t.Context(), saperly.WebhookPath, []byte(v.body), saperly.WithDeliveryID(v.id))

			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, res.Status)
			assert.Equal(t, v.id, res.DeliveryID)
			d := receive(t, got)
			assert.Equal(t, v.body, string(d.body), "raw bytes are sent as they are")
			assert.Equal(t, v.header, d.header.Get(transport.HeaderSignature))
			assert.Equal(t, strconv.FormatInt(v.ts, 10), d.header.Get(transport.HeaderTimestamp))
			assert.Equal(t, v.id, d.header.Get(transport.HeaderDeliveryID))
			assert.Equal(t, "1", d.header.Get(transport.HeaderAttempt))
			assert.Equal(t, "application/json", d.header.Get("Content-Type"))
			assert.NoError(t, transport.Verify(d.header, d.body, []string{v.secret}, at, 300*time.Second))
		})
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestHelpersSendVerifiableEvents(t *testing.T) {
	t.Parallel()
	srv, got := recorder(t)
	c := &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret}
	call, line := saperly.NewUUID(), saperly.NewUUID()

	_, err := c.StartCall(t.Context(), call, line, "+15555550100", "+15555550199")
	require.NoError(t, err)
	_, err = c.Say(t.Context(), call, line, "I'd like to book a cleaning")
	require.NoError(t, err)
	_, err = c.Say(t.Context(), call, line, "Tuesday works")
	require.NoError(t, err)
	_, err = c.Interrupt(t.Context(), call, line, "")
	require.NoError(t, err)
	_, err = c.End(t.Context(), call, line)
	require.NoError(t, err)

	kinds := []string{"call_started", "message", "message", "interrupted", "call_ended"}
	deliveryIDs, eventIDs := map[string]bool{}, map[string]bool{}
	var bodies []map[string]any
	for range kinds {
		d := receive(t, got)
		require.NoError(t, transport.Verify(d.header, d.body, []string{saperly.DevSecret}, time.Now(), 300*time.Second))
		var body map[string]any
		require.NoError(t, json.Unmarshal(d.body, &body))
		bodies = append(bodies, body)
		id := d.header.Get(transport.HeaderDeliveryID)
		assert.Regexp(t, uuidV4, id)
		deliveryIDs[id] = true
		eventIDs[body["event_id"].(string)] = true
	}
	assert.Len(t, deliveryIDs, len(kinds), "a fresh delivery id each time")
	assert.Len(t, eventIDs, len(kinds), "a fresh event id each time")
	for i, body := range bodies {
		assert.Equal(t, kinds[i], body["event"])
		assert.Equal(t, call, body["call_id"])
		assert.Equal(t, line, body["line_id"])
		assert.InDelta(t, float64(time.Now().UnixMilli()), body["timestamp"], float64(time.Minute.Milliseconds()), "milliseconds")
	}
	assert.Equal(t, "+15555550100", bodies[0]["from_number"])
	assert.Equal(t, "+15555550199", bodies[0]["to_number"])
	assert.Equal(t, "I'd like to book a cleaning", bodies[1]["text"])
	assert.Equal(t, "Tuesday works", bodies[2]["text"])
	assert.Contains(t, bodies[3], "partial_response_text", "present even when empty")
}

func TestOptionsBreakTheRulesOnPurpose(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name    string
		opts    []saperly.Option
		reason  string // transport.Verify's verdict with DevSecret; "" accepts
		attempt string
	}{
		{name: "defaults", attempt: "1"},
		{name: "retry attempt", opts: []saperly.Option{saperly.WithAttempt(3)}, attempt: "3"},
		{name: "no attempt header", opts: []saperly.Option{saperly.WithAttempt(0)}},
		{name: "wrong secret", opts: []saperly.Option{saperly.WithSecret("not-the-secret")}, reason: transport.ReasonSignatureMismatch, attempt: "1"},
		{name: "stale", opts: []saperly.Option{saperly.WithTimestamp(now.Add(-301 * time.Second))}, reason: transport.ReasonStaleTimestamp, attempt: "1"},
		{name: "no signature", opts: []saperly.Option{saperly.WithHeader(transport.HeaderSignature, "")}, reason: transport.ReasonMissingSignature, attempt: "1"},
		{name: "malformed timestamp", opts: []saperly.Option{saperly.WithHeader(transport.HeaderTimestamp, "soon")}, reason: transport.ReasonMalformedTimestamp, attempt: "1"},
		{name: "unknown version", opts: []saperly.Option{saperly.WithHeader(transport.HeaderSignature, "v2=abc")}, reason: transport.ReasonUnknownVersion, attempt: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, got := recorder(t)
			c := &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret, Now: func() time.Time { return now }}

			_, err := c.Send(t.Context(), saperly.WebhookPath, c.NewEvent("test", "", saperly.NewUUID()), tt.opts...)

			require.NoError(t, err)
			d := receive(t, got)
			assert.Equal(t, tt.attempt, d.header.Get(transport.HeaderAttempt))
			err = transport.Verify(d.header, d.body, []string{saperly.DevSecret}, now, 300*time.Second)
			if tt.reason == "" {
				assert.NoError(t, err)
				return
			}
			var ve *transport.VerifyError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, tt.reason, ve.Reason)
		})
	}
}

func TestReplayedDeliveryID(t *testing.T) {
	t.Parallel()
	srv, got := recorder(t)
	c := &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret}
	ev := c.NewEvent("message", saperly.NewUUID(), saperly.NewUUID())
	ev["text"] = "hello"

	first, err := c.Send(t.Context(), saperly.WebhookPath, ev)
	require.NoError(t, err)
	_, err = c.Send(t.Context(), saperly.WebhookPath, ev, saperly.WithDeliveryID(first.DeliveryID))
	require.NoError(t, err)
	retry, err := c.Send(t.Context(), saperly.WebhookPath, ev, saperly.WithAttempt(2))
	require.NoError(t, err)

	a, b, r := receive(t, got), receive(t, got), receive(t, got)
	assert.Equal(t, a.header.Get(transport.HeaderDeliveryID), b.header.Get(transport.HeaderDeliveryID))
	assert.NotEqual(t, first.DeliveryID, retry.DeliveryID, "a retry is a new delivery")
	assert.Equal(t, string(a.body), string(r.body), "with the same event")
}

// ndjsonServer streams lines, each after gap, flushed one by one.
func ndjsonServer(t *testing.T, gap time.Duration, lines ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		for _, l := range lines {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(gap):
			}
			_, _ = io.WriteString(w, l)
			_ = http.NewResponseController(w).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestReadsNDJSONWithArrivalTimes(t *testing.T) {
	t.Parallel()
	const gap = 40 * time.Millisecond
	srv := ndjsonServer(t, gap,
		`{"type":"speak","text":"Sure, I can help you book that."}`+"\n",
		`{"type":"speak","text":"Tuesday or Wednesday?"}`+"\n",
		`{"text":"Legacy form."}`+"\n",
	)
	c := &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret}

	res, err := c.Say(t.Context(), saperly.NewUUID(), saperly.NewUUID(), "book")

	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.Status)
	assert.Equal(t, "application/x-ndjson", res.ContentType)
	assert.Nil(t, res.Body)
	assert.False(t, res.Cut)
	require.Len(t, res.Lines, 3)
	assert.Equal(t, saperly.Line{Type: "speak", Text: "Sure, I can help you book that.", At: res.Lines[0].At,
		Raw: `{"type":"speak","text":"Sure, I can help you book that."}`}, res.Lines[0])
	assert.Equal(t, "", res.Lines[2].Type)
	assert.Equal(t, "Legacy form.", res.Lines[2].Text)
	assert.Equal(t, "Sure, I can help you book that. Tuesday or Wednesday? Legacy form.", res.Text())
	// Each line is written gap after the previous one, so line i cannot arrive before
	// (i+1)*gap. The gap between two stamps may look shorter when the first was read late.
	for i, l := range res.Lines {
		assert.GreaterOrEqual(t, l.At, time.Duration(i+1)*gap, "line %d is stamped on arrival", i)
		if i > 0 {
			assert.Greater(t, l.At, res.Lines[i-1].At, "line %d arrives after the previous one", i)
		}
	}
	assert.GreaterOrEqual(t, res.Elapsed, res.Lines[2].At)
	// The POST was written before any line of the answer could arrive.
	assert.Positive(t, res.Sent)
	assert.Less(t, res.Sent, res.Lines[0].At)
}

func TestPlainAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == saperly.StatusPath {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"signature_mismatch"}`)
			return
		}
		_, _ = io.WriteString(w, `{"text":"Sure, what day works for you?"}`)
	}))
	t.Cleanup(srv.Close)
	c := &saperly.Client{URL: srv.URL + "/", Secret: saperly.DevSecret}

	ok, err := c.Send(t.Context(), saperly.WebhookPath, c.NewEvent("test", "", "line"))
	require.NoError(t, err)
	denied, err := c.Send(t.Context(), saperly.StatusPath, c.NewEvent("call_incoming", "call", "line"))
	require.NoError(t, err, "a status is an answer, not an error")

	assert.Equal(t, http.StatusOK, ok.Status)
	assert.JSONEq(t, `{"text":"Sure, what day works for you?"}`, string(ok.Body))
	assert.Empty(t, ok.Lines)
	assert.Equal(t, http.StatusUnauthorized, denied.Status)
	assert.JSONEq(t, `{"error":"signature_mismatch"}`, string(denied.Body))
}

func TestCloseAfterHangsUp(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, `{"type":"speak","text":"Line %d."}`+"\n", i); err != nil {
				break
			}
			_ = http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				cancelled <- struct{}{}
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		<-r.Context().Done()
		cancelled <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	c := &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret}

	res, err := c.Say(t.Context(), saperly.NewUUID(), saperly.NewUUID(), "hello", saperly.WithCloseAfter(2))

	require.NoError(t, err)
	assert.True(t, res.Cut)
	require.Len(t, res.Lines, 2)
	assert.Equal(t, "Line 0. Line 1.", res.Text())
	receive(t, cancelled) // the brain sees its request context cancelled, as on barge-in
}

func TestBrokenAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		abort     bool
		lines     int
		protocol  bool
		wantInErr string
	}{
		{name: "not json", body: "{\"type\":\"speak\",\"text\":\"Hi.\"}\nnot json\n{\"type\":\"speak\",\"text\":\"Bye.\"}\n", lines: 3, protocol: true, wantInErr: "line 2"},
		{name: "no final newline", body: "{\"type\":\"speak\",\"text\":\"Hi.\"}", lines: 1, protocol: true, wantInErr: "no newline"},
		{name: "connection dropped", body: "{\"type\":\"speak\",\"text\":\"Hi.\"}\n", abort: true, lines: 1, wantInErr: "after 1 lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
				_, _ = io.WriteString(w, tt.body)
				if tt.abort {
					_ = http.NewResponseController(w).Flush()
					panic(http.ErrAbortHandler) // drop the connection mid-stream
				}
			}))
			t.Cleanup(srv.Close)
			c := &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret}

			res, err := c.Say(t.Context(), "call", "line", "hello")

			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantInErr)
			if tt.protocol {
				assert.ErrorIs(t, err, saperly.ErrProtocol)
			}
			require.NotNil(t, res, "the lines that arrived are kept")
			assert.Len(t, res.Lines, tt.lines)
		})
	}
}

func TestNewUUID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		id := saperly.NewUUID()
		require.Regexp(t, uuidV4, id)
		seen[id] = true
	}
	assert.Len(t, seen, 100)
}

func TestDevSecretMatchesTheServer(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "callbrain-dev-secret-not-for-production", saperly.DevSecret)
}
