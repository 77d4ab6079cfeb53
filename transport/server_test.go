package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/callbrain/callbrain/agent"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func speakLines(t *testing.T, body string) []agent.Chunk {
	t.Helper()
	require.True(t, strings.HasSuffix(body, "\n"), "every line ends in a newline: %q", body)
	var out []agent.Chunk
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		var c agent.Chunk
		require.NoError(t, json.Unmarshal([]byte(line), &c), "line %q", line)
		out = append(out, c)
	}
	return out
}

func assertJSON(t *testing.T, rec *httptest.ResponseRecorder, code int, body string) {
	t.Helper()
	assert.Equal(t, code, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.JSONEq(t, body, rec.Body.String())
}

// oneEvent returns the single "event" log line and fails unless there is exactly one.
func oneEvent(t *testing.T, f *fixture) observer.LoggedEntry {
	t.Helper()
	lines := f.eventLines()
	require.Len(t, lines, 1, "exactly one log line per delivery")
	return lines[0]
}

func TestWebhookMessageStreams(t *testing.T) {
	t.Parallel()
	resp := &scripted{lines: []string{"Sure, I can help with that.", "Tuesday at 3 <or> Wednesday & 10?", "Which works better?"}}
	f := newFixture(t, resp, nil)
	body := msgBody("I'd like to book a cleaning.")
	id := nextDeliveryID()

	rec := f.send(t, deliveryReq{body: body, id: id, attempt: "2"})

	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/x-ndjson", rec.Header().Get("Content-Type"))
	assert.NotContains(t, rec.Body.String(), `\u003c`, "no HTML escaping")
	assert.Equal(t, []agent.Chunk{
		agent.Speak("Sure, I can help with that."),
		agent.Speak("Tuesday at 3 <or> Wednesday & 10?"),
		agent.Speak("Which works better?"),
	}, speakLines(t, rec.Body.String()))

	got := resp.Responded()
	require.Len(t, got, 1)
	assert.Empty(t, resp.Recorded())
	ev := got[0]
	assert.Equal(t, agent.EventMessage, ev.Kind)
	assert.Equal(t, testCall, ev.CallID)
	assert.Equal(t, testLine, ev.LineID)
	assert.Equal(t, "I'd like to book a cleaning.", ev.Text)
	assert.Equal(t, id, ev.Delivery.ID)
	assert.Equal(t, 2, ev.Delivery.Attempt)
	assert.Equal(t, testNow, ev.Delivery.ReceivedAt)
	assert.False(t, ev.Delivery.Callback)
	assert.Positive(t, ev.Delivery.Verify)

	assert.Equal(t, []time.Duration{2 * DefaultClockSkew}, f.cache.ttls,
		"the replay window covers the whole signature validity (2 x skew)")

	entry := oneEvent(t, f)
	assert.Equal(t, zapcore.InfoLevel, entry.Level)
	assert.Equal(t, "transport", entry.LoggerName)
	fields := entry.ContextMap()
	assert.Equal(t, "message", fields["event_type"])
	assert.Equal(t, testCall, fields["call_id"])
	assert.Equal(t, testLine, fields["line_id"])
	assert.Equal(t, id, fields["delivery_id"])
	assert.NotEmpty(t, fields["event_id"])
	assert.EqualValues(t, 2, fields["attempt"])
	assert.Equal(t, "ok", fields["verify"])
	assert.EqualValues(t, 200, fields["status"])
	assert.EqualValues(t, 3, fields["lines"])
	assert.Contains(t, fields, "first_line_ms")
	assert.Contains(t, fields, "elapsed_ms")
	assert.Equal(t, "answered", fields["outcome"])
	assert.Equal(t, "+141******34", fields["from"], "numbers are masked")
	assert.NotContains(t, fields, "text", "caller text is personal data, off by default")
	assert.EqualValues(t, len("I'd like to book a cleaning."), fields["text_len"])
}

func TestWebhookFallback(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		resp  *scripted
		level zapcore.Level
	}{
		{name: "responder says nothing", resp: &scripted{}, level: zapcore.WarnLevel},
		{name: "responder fails before speaking", resp: &scripted{err: agent.ErrModel}, level: zapcore.WarnLevel},
		{name: "responder emits only blank lines", resp: &scripted{lines: []string{"", "  "}}, level: zapcore.WarnLevel},
		{name: "responder panics", resp: &scripted{respond: func(context.Context, agent.Event, func(agent.Chunk) error) error {
			panic("boom")
		}}, level: zapcore.ErrorLevel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, c.resp, nil)
			rec := f.send(t, deliveryReq{body: msgBody("Hello?")})
			require.Equal(t, http.StatusOK, rec.Code, "never a non-200 on a message")
			assert.Equal(t, "application/x-ndjson", rec.Header().Get("Content-Type"))
			assert.Equal(t, []agent.Chunk{agent.Speak(DefaultFallbackLine)}, speakLines(t, rec.Body.String()))
			entry := oneEvent(t, f)
			assert.Equal(t, c.level, entry.Level)
			assert.EqualValues(t, 1, entry.ContextMap()["lines"])
		})
	}
}

func TestWebhookRefusesAnotherLinesCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{err: fmt.Errorf("respond: %w", agent.ErrWrongLine)}, nil)
	rec := f.send(t, deliveryReq{body: msgBody("Hello?")})
	assert.Equal(t, http.StatusForbidden, rec.Code)
	assert.JSONEq(t, `{"error":"wrong_line"}`, rec.Body.String())
	assert.Equal(t, outcomeRejected, oneEvent(t, f).ContextMap()["outcome"])
}

func TestWebhookCustomFallbackLine(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{}, func(c *Config) { c.FallbackLine = "One moment, please." })
	rec := f.send(t, deliveryReq{body: msgBody("Hello?")})
	assert.Equal(t, []agent.Chunk{agent.Speak("One moment, please.")}, speakLines(t, rec.Body.String()))
}

func TestWebhookErrorAfterStreamStarted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{lines: []string{"Let me check."}, err: agent.ErrModel}, nil)
	rec := f.send(t, deliveryReq{body: msgBody("Am I booked?")})
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []agent.Chunk{agent.Speak("Let me check.")}, speakLines(t, rec.Body.String()),
		"the stream ends cleanly: no fallback, no error line")
	entry := oneEvent(t, f)
	assert.Equal(t, zapcore.WarnLevel, entry.Level)
	assert.Contains(t, entry.ContextMap()["error"], "model error")
}

func TestWebhookRefusesUnknownChunkType(t *testing.T) {
	t.Parallel()
	var emitErr error
	f := newFixture(t, &scripted{respond: func(_ context.Context, _ agent.Event, emit func(agent.Chunk) error) error {
		emitErr = emit(agent.Chunk{Type: "hangup"})
		return emit(agent.Chunk{Text: "Goodbye."}) // no type: speak
	}}, nil)
	rec := f.send(t, deliveryReq{body: msgBody("Bye.")})
	require.ErrorIs(t, emitErr, ErrChunkType)
	assert.Equal(t, []agent.Chunk{agent.Speak("Goodbye.")}, speakLines(t, rec.Body.String()))
}

func TestWebhookEmitAfterRespondReturns(t *testing.T) {
	t.Parallel()
	var late func(agent.Chunk) error
	f := newFixture(t, &scripted{respond: func(_ context.Context, _ agent.Event, emit func(agent.Chunk) error) error {
		late = emit
		return emit(agent.Speak("Done."))
	}}, nil)
	rec := f.send(t, deliveryReq{body: msgBody("Hi.")})
	require.NotNil(t, late)
	assert.ErrorIs(t, late(agent.Speak("Too late.")), errEmitClosed)
	assert.Equal(t, []agent.Chunk{agent.Speak("Done.")}, speakLines(t, rec.Body.String()))
}

func TestWebhookRecordsOtherEvents(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file string
		kind string
	}{
		{file: "call_started.json", kind: agent.EventCallStarted},
		{file: "interrupted.json", kind: agent.EventInterrupted},
		{file: "interrupted_empty_partial.json", kind: agent.EventInterrupted},
		{file: "call_ended.json", kind: agent.EventCallEnded},
		{file: "sms_received.json", kind: agent.EventSMSReceived},
		{file: "test.json", kind: agent.EventTest},
		{file: "unknown_kind.json", kind: "voicemail_left"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			resp := &scripted{lines: []string{"must never be spoken"}}
			f := newFixture(t, resp, nil)
			rec := f.send(t, deliveryReq{body: readEvent(t, c.file)})
			assertJSON(t, rec, http.StatusOK, `{}`)
			assert.Empty(t, resp.Responded())
			got := resp.Recorded()
			require.Len(t, got, 1)
			assert.Equal(t, c.kind, got[0].Kind)
			assert.False(t, got[0].Delivery.Callback)
			entry := oneEvent(t, f)
			assert.Equal(t, zapcore.InfoLevel, entry.Level)
			assert.Equal(t, "recorded", entry.ContextMap()["outcome"])
		})
	}
}

func TestStatusCallbackNeverSpeaks(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"call_incoming.json", "call_outgoing.json", "message.json", "vector1_message.json"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			resp := &scripted{lines: []string{"must never be spoken"}}
			f := newFixture(t, resp, nil)
			rec := f.send(t, deliveryReq{path: "/status", body: readEvent(t, file)})
			assertJSON(t, rec, http.StatusOK, `{}`)
			assert.Empty(t, resp.Responded())
			got := resp.Recorded()
			require.Len(t, got, 1)
			assert.True(t, got[0].Delivery.Callback)
			assert.Equal(t, "/status", oneEvent(t, f).ContextMap()["route"])
		})
	}
}

func TestStatusCallbackIsVerified(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	rec := f.send(t, deliveryReq{path: "/status", body: readEvent(t, "call_incoming.json"), secret: "forged"})
	assertJSON(t, rec, http.StatusUnauthorized, `{"error":"signature_mismatch"}`)
	assert.Empty(t, f.resp.Recorded())
}

func TestRecordFailureIs503(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{recordErr: errStore}, nil)
	rec := f.send(t, deliveryReq{body: readEvent(t, "call_ended.json")})
	assertJSON(t, rec, http.StatusServiceUnavailable, `{"error":"store_unavailable"}`)
	entry := oneEvent(t, f)
	assert.Equal(t, zapcore.WarnLevel, entry.Level)
	assert.Contains(t, entry.ContextMap()["error"], "store down", "the log gets the chain")
	assert.NotContains(t, rec.Body.String(), "store down", "the client does not")
}

func TestSignatureRejected(t *testing.T) {
	t.Parallel()
	body := msgBody("Let me in.")
	ts := strconv.FormatInt(testNow.Unix(), 10)
	cases := []struct {
		name   string
		req    deliveryReq
		reason string
	}{
		{name: "missing timestamp", req: deliveryReq{edit: func(h http.Header) { h.Del(HeaderTimestamp) }}, reason: ReasonMissingTimestamp},
		{name: "missing delivery id", req: deliveryReq{edit: func(h http.Header) { h.Del(HeaderDeliveryID) }}, reason: ReasonMissingDeliveryID},
		{name: "missing signature", req: deliveryReq{edit: func(h http.Header) { h.Del(HeaderSignature) }}, reason: ReasonMissingSignature},
		{name: "malformed timestamp", req: deliveryReq{edit: func(h http.Header) { h.Set(HeaderTimestamp, "yesterday") }}, reason: ReasonMalformedTimestamp},
		{name: "malformed signature", req: deliveryReq{edit: func(h http.Header) { h.Set(HeaderSignature, "v1=xyz") }}, reason: ReasonMalformedSignature},
		{name: "unknown version", req: deliveryReq{edit: func(h http.Header) {
			h.Set(HeaderSignature, strings.Replace(h.Get(HeaderSignature), "v1=", "v2=", 1))
		}}, reason: ReasonUnknownVersion},
		{name: "wrong secret", req: deliveryReq{secret: "guess"}, reason: ReasonSignatureMismatch},
		{name: "another line's secret", req: deliveryReq{secret: oldSecret}, reason: ReasonSignatureMismatch},
		{name: "stale: signed 301 s ago", req: deliveryReq{ts: strconv.FormatInt(testNow.Unix()-301, 10)}, reason: ReasonStaleTimestamp},
		{name: "stale: signed 301 s ahead", req: deliveryReq{ts: strconv.FormatInt(testNow.Unix()+301, 10)}, reason: ReasonStaleTimestamp},
		{name: "replayed with a new timestamp", req: deliveryReq{edit: func(h http.Header) { h.Set(HeaderTimestamp, ts+"0") }}, reason: ReasonSignatureMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, &scripted{lines: []string{"no"}}, nil)
			c.req.body = body
			rec := f.send(t, c.req)
			assertJSON(t, rec, http.StatusUnauthorized, fmt.Sprintf(`{"error":%q}`, c.reason))
			assert.Empty(t, f.resp.Responded())
			assert.Zero(t, f.cache.Calls(), "a rejected delivery is not remembered")
			entry := oneEvent(t, f)
			assert.Equal(t, zapcore.WarnLevel, entry.Level)
			assert.Equal(t, c.reason, entry.ContextMap()["verify"])
			assert.Equal(t, testLine, entry.ContextMap()["line_id"])
		})
	}
}

func TestSignatureClockSkewEdges(t *testing.T) {
	t.Parallel()
	for _, off := range []int64{-300, 300} {
		t.Run(strconv.FormatInt(off, 10), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil)
			rec := f.send(t, deliveryReq{body: readEvent(t, "call_started.json"), ts: strconv.FormatInt(testNow.Unix()+off, 10)})
			assertJSON(t, rec, http.StatusOK, `{}`)
		})
	}
}

func TestSignatureRotation(t *testing.T) {
	t.Parallel()
	body := []byte(`{"event":"call_started","line_id":"` + rotatingLine + `","call_id":"c1"}`)
	for _, c := range []struct {
		secret string
		code   int
	}{{oldSecret, 200}, {newSecret, 200}, {testSecret, 401}} {
		t.Run(c.secret[:10], func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, nil)
			rec := f.send(t, deliveryReq{body: body, secret: c.secret})
			assert.Equal(t, c.code, rec.Code)
		})
	}
}

func TestSecretsPickedByLine(t *testing.T) {
	t.Parallel()
	var asked []string
	var mu sync.Mutex
	f := newFixture(t, nil, func(c *Config) {
		c.Secrets = func(line string) []string {
			mu.Lock()
			asked = append(asked, line)
			mu.Unlock()
			if line == "" {
				return []string{"k"} // the third vector has no line_id
			}
			return testSecrets(line)
		}
	})
	v := protocolVectors[2]
	rec := f.send(t, deliveryReq{body: []byte(v.body), secret: v.secret, ts: v.ts, id: v.id})
	// Verified with the vector's secret, then refused by the decoder: a message needs a call.
	assertJSON(t, rec, http.StatusBadRequest, `{"error":"missing call_id, required for message"}`)
	f.send(t, deliveryReq{body: readEvent(t, "call_started.json")})
	f.send(t, deliveryReq{body: []byte("not json")})
	assert.Equal(t, []string{"", testLine, ""}, asked)
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	body := msgBody(strings.Repeat("a", 300))
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, func(c *Config) { c.MaxBody = 256 })
			req := deliveryReq{body: body}.request(t)
			if chunked {
				req.ContentLength = -1
			}
			rec := f.do(t, req)
			assertJSON(t, rec, http.StatusRequestEntityTooLarge, `{"error":"body_too_large"}`)
			assert.Empty(t, f.resp.Responded())
			assert.Equal(t, "skipped", oneEvent(t, f).ContextMap()["verify"])
		})
	}
	t.Run("exactly the limit", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, func(c *Config) { c.MaxBody = int64(len(body)) })
		rec := f.send(t, deliveryReq{body: body})
		assert.Equal(t, http.StatusOK, rec.Code)
	})
}

func TestDuplicateDelivery(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{lines: []string{"Once."}}, nil)
	d := deliveryReq{body: msgBody("Hello."), id: nextDeliveryID()}
	first := f.send(t, d)
	require.Equal(t, http.StatusOK, first.Code)
	again := f.send(t, d)
	assertJSON(t, again, http.StatusConflict, `{"error":"duplicate_delivery"}`)
	assert.Len(t, f.resp.Responded(), 1)
	lines := f.eventLines()
	require.Len(t, lines, 2)
	assert.Equal(t, zapcore.WarnLevel, lines[1].Level)
	assert.Equal(t, testCall, lines[1].ContextMap()["call_id"], "the duplicate's line names its call, with or without a delivery hook")
}

func TestCacheErrorFailsOpen(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{lines: []string{"Still here."}}, nil)
	f.cache.err = errStore
	rec := f.send(t, deliveryReq{body: msgBody("Hello.")})
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, []agent.Chunk{agent.Speak("Still here.")}, speakLines(t, rec.Body.String()))
	entry := oneEvent(t, f)
	assert.Equal(t, zapcore.WarnLevel, entry.Level)
	assert.Contains(t, entry.ContextMap()["cache_error"], "store down")
}

func TestMalformedBody(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		msg  string
	}{
		{name: "not JSON", body: `{"event":"message",`, msg: "body is not valid JSON"},
		{name: "not an object", body: `[1,2,3]`, msg: "body is not a JSON object"},
		{name: "missing event", body: `{"line_id":"` + testLine + `","call_id":"c"}`, msg: "missing event"},
		{name: "event not a string", body: `{"event":7,"line_id":"` + testLine + `","call_id":"c"}`, msg: "event is not a string"},
		{name: "message without call_id", body: `{"event":"message","line_id":"` + testLine + `","text":"hi"}`, msg: "missing call_id, required for message"},
		{name: "call_ended without call_id", body: `{"event":"call_ended","line_id":"` + testLine + `"}`, msg: "missing call_id, required for call_ended"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, &scripted{lines: []string{"no"}}, func(cfg *Config) {
				cfg.Secrets = func(string) []string { return []string{testSecret} }
			})
			rec := f.send(t, deliveryReq{body: []byte(c.body)})
			assertJSON(t, rec, http.StatusBadRequest, fmt.Sprintf(`{"error":%q}`, c.msg))
			assert.Empty(t, f.resp.Responded())
			assert.Empty(t, f.resp.Recorded())
			assert.Equal(t, zapcore.WarnLevel, oneEvent(t, f).Level)
		})
	}
}

func TestUnknownRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, nil)
	cases := []struct {
		method, path string
		code         int
		msg          string
	}{
		{http.MethodGet, "/nope", 404, "not_found"},
		{http.MethodPost, "/webhooks", 404, "not_found"},
		{http.MethodGet, "/webhook", 405, "method_not_allowed"},
		{http.MethodPut, "/status", 405, "method_not_allowed"},
		{http.MethodPost, "/healthz", 405, "method_not_allowed"},
	}
	for _, c := range cases {
		rec := f.do(t, httptest.NewRequest(c.method, c.path, nil))
		assertJSON(t, rec, c.code, fmt.Sprintf(`{"error":%q}`, c.msg))
	}
	assert.Empty(t, f.eventLines(), "not deliveries")
}

func TestHealth(t *testing.T) {
	t.Parallel()
	t.Run("healthz", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, func(c *Config) { c.Ready = func(context.Context) error { return errStore } })
		assertJSON(t, f.do(t, httptest.NewRequest(http.MethodGet, "/healthz", nil)), 200, `{"status":"ok"}`)
	})
	t.Run("ready without a check", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, nil)
		assertJSON(t, f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil)), 200, `{"status":"ready"}`)
	})
	t.Run("ready", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, func(c *Config) { c.Ready = func(context.Context) error { return nil } })
		assertJSON(t, f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil)), 200, `{"status":"ready"}`)
	})
	t.Run("unready", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil, func(c *Config) {
			c.Ready = func(context.Context) error { return fmt.Errorf("ping redis://:hunter2@10.0.0.5:6379: %w", errStore) }
		})
		rec := f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		assertJSON(t, rec, 503, `{"status":"unready","error":"dependency_unavailable"}`)
		assert.NotContains(t, rec.Body.String(), "hunter2")
	})
	t.Run("check times out after a second", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t, nil, func(c *Config) {
				c.Ready = func(ctx context.Context) error {
					<-ctx.Done()
					return ctx.Err()
				}
			})
			start := time.Now()
			rec := f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			assertJSON(t, rec, 503, `{"status":"unready","error":"timeout"}`)
			assert.Equal(t, time.Second, time.Since(start))
		})
	})
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{record: func(context.Context, agent.Event) error { panic("nil map") }}, nil)
	rec := f.send(t, deliveryReq{body: readEvent(t, "call_started.json")})
	assertJSON(t, rec, http.StatusInternalServerError, `{"error":"internal_error"}`)
	entry := oneEvent(t, f)
	assert.Equal(t, zapcore.ErrorLevel, entry.Level)
	assert.Contains(t, entry.ContextMap()["error"], "nil map")
	assert.Contains(t, entry.ContextMap(), "stack")
}

func TestPanicOutsideDeliveries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, func(c *Config) { c.Ready = func(context.Context) error { panic("ready check") } })
	rec := f.do(t, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	assertJSON(t, rec, http.StatusInternalServerError, `{"error":"internal_error"}`)
	entries := f.logs.FilterMessage("request failed").AllUntimed()
	require.Len(t, entries, 1)
	assert.Equal(t, zapcore.ErrorLevel, entries[0].Level)
}

func TestLogging(t *testing.T) {
	t.Parallel()
	t.Run("text only when switched on", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, &scripted{lines: []string{"Ok."}}, func(c *Config) { c.LogText = true })
		f.send(t, deliveryReq{body: msgBody("My card number is 4111.")})
		assert.Equal(t, "My card number is 4111.", oneEvent(t, f).ContextMap()["text"])
	})
	t.Run("no secrets, signatures or raw numbers", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, &scripted{lines: []string{"Ok."}}, nil)
		var sigs []string
		for _, d := range []deliveryReq{
			{body: msgBody("Hello.")},
			{body: msgBody("Hello."), secret: "forged"},
			{body: readEvent(t, "sms_received.json")},
			{path: "/status", body: readEvent(t, "call_outgoing.json")},
		} {
			req := d.request(t)
			sigs = append(sigs, strings.TrimPrefix(req.Header.Get(HeaderSignature), "v1="))
			f.do(t, req)
		}
		require.Len(t, f.eventLines(), 4)
		all := fmt.Sprint(f.logs.AllUntimed())
		assert.NotContains(t, all, testSecret)
		for _, s := range sigs {
			assert.NotContains(t, all, s)
		}
		assert.NotContains(t, all, "+14155551234")
		assert.NotContains(t, all, "+442071838750")
		assert.NotContains(t, all, "Hello.")
		assert.NotContains(t, all, "move my appointment")
	})
}

// TestServeStreamsAndShutsDown runs the real http.Server: lines reach the client one by one
// as they are flushed, Saperly closing the connection cancels the responder, and Shutdown is
// graceful.
func TestServeStreamsAndShutsDown(t *testing.T) {
	t.Parallel()
	next := make(chan string)
	cancelled := make(chan error, 1)
	resp := &scripted{respond: func(ctx context.Context, _ agent.Event, emit func(agent.Chunk) error) error {
		if err := emit(agent.Speak("First line.")); err != nil {
			return err
		}
		for {
			select {
			case line := <-next:
				if err := emit(agent.Speak(line)); err != nil {
					cancelled <- err
					return err
				}
			case <-ctx.Done():
				cancelled <- ctx.Err()
				return ctx.Err()
			}
		}
	}}
	f := newFixture(t, resp, func(c *Config) { c.Now = time.Now })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- f.s.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	res, err := http.Get(base + "/healthz")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	assert.Equal(t, http.StatusOK, res.StatusCode)

	ctx, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	req := deliveryReq{body: msgBody("Hello?"), ts: strconv.FormatInt(time.Now().Unix(), 10)}.request(t)
	req = req.WithContext(ctx)
	req.RequestURI = ""
	req.URL.Scheme, req.URL.Host = "http", ln.Addr().String()
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, "application/x-ndjson", res.Header.Get("Content-Type"))
	lines := bufio.NewReader(res.Body)
	got, err := lines.ReadString('\n')
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"speak","text":"First line."}`, got)
	next <- "Second line."
	got, err = lines.ReadString('\n')
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"speak","text":"Second line."}`, got)

	hangUp() // Saperly closes the connection (the caller interrupted)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	select {
	case err := <-cancelled:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("the responder's context was not cancelled when the client left")
	}

	sctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.s.Shutdown(sctx))
	require.NoError(t, <-served)
	require.Eventually(t, func() bool { return len(f.eventLines()) == 1 }, 10*time.Second, time.Millisecond)
	entry := f.eventLines()[0]
	assert.Equal(t, zapcore.InfoLevel, entry.Level, "a caller cutting in is not a fault")
	assert.Equal(t, "client_gone", entry.ContextMap()["outcome"])
	assert.EqualValues(t, 2, entry.ContextMap()["lines"])
}

func TestNewRequiresWiring(t *testing.T) {
	t.Parallel()
	assert.Panics(t, func() { New(Config{}, &scripted{}, &mapCache{}, nil) })
	assert.Panics(t, func() { New(Config{Secrets: testSecrets}, nil, &mapCache{}, nil) })
	assert.Panics(t, func() { New(Config{Secrets: testSecrets}, &scripted{}, nil, nil) })
	assert.NotPanics(t, func() { New(Config{Secrets: testSecrets}, &scripted{}, &mapCache{}, nil) })
}

// alwaysFirst is a DeliveryCache that never sees a repeat, so a benchmark can resend one
// signed request.
type alwaysFirst struct{}

func (alwaysFirst) FirstDelivery(context.Context, string, time.Duration) (bool, error) {
	return true, nil
}

func BenchmarkWebhookMessage(b *testing.B) {
	resp := &scripted{lines: []string{
		"Sure, I can help you book that.",
		"We have openings on Tuesday at 3:30 p.m. and Wednesday at 10 a.m.",
		"Which works better for you?",
	}}
	// A real JSON logger, writing nowhere, so logging costs are counted.
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	s := New(Config{Secrets: testSecrets, Now: func() time.Time { return testNow }}, resp, alwaysFirst{}, log)
	v := protocolVectors[0]
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(v.body))
		req.Header.Set(HeaderTimestamp, v.ts)
		req.Header.Set(HeaderDeliveryID, v.id)
		req.Header.Set(HeaderSignature, v.header)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		resp.responded = resp.responded[:0]
	}
}

// TestDeliveryCarriesItsSigningScope checks that the scope whose secrets verified a delivery
// reaches the agent, and that a refusal for another scope's call is 403 wrong_line for every
// event kind on both URLs (issue 8 §1).
func TestDeliveryCarriesItsSigningScope(t *testing.T) {
	t.Parallel()
	const globalSecret = "global-secret-0123456789abcdef0123456789abcdef0123456789abcdef01"
	scoped := func(c *Config) {
		c.Signers = func(lineID string) (string, []string) {
			if lineID == testLine {
				return testLine, []string{testSecret}
			}
			return OwnerGlobal, []string{globalSecret}
		}
	}
	body := func(kind, line string) []byte {
		m := map[string]string{"event": kind, "event_id": nextDeliveryID(), "call_id": testCall, "text": "hi"}
		if line != "" {
			m["line_id"] = line
		}
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	t.Run("owner", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, &scripted{lines: []string{"Hi."}}, scoped)
		require.Equal(t, http.StatusOK, f.send(t, deliveryReq{body: body(agent.EventCallEnded, testLine)}).Code)
		require.Equal(t, http.StatusOK, f.send(t, deliveryReq{body: body(agent.EventCallEnded, ""), secret: globalSecret}).Code)
		require.Equal(t, http.StatusOK, f.send(t, deliveryReq{body: body(agent.EventCallEnded, "unlisted-line"), secret: globalSecret}).Code)
		require.Equal(t, http.StatusOK, f.send(t, deliveryReq{body: body(agent.EventMessage, ""), secret: globalSecret}).Code)
		rec := f.resp.Recorded()
		require.Len(t, rec, 3)
		assert.Equal(t, testLine, rec[0].Delivery.Owner)
		assert.Equal(t, OwnerGlobal, rec[1].Delivery.Owner)
		assert.Equal(t, OwnerGlobal, rec[2].Delivery.Owner)
		require.Len(t, f.resp.Responded(), 1)
		assert.Equal(t, OwnerGlobal, f.resp.Responded()[0].Delivery.Owner)
	})
	refuse := func(context.Context, agent.Event) error { return fmt.Errorf("record: %w", agent.ErrWrongLine) }
	for _, path := range []string{"/webhook", "/status"} {
		for _, kind := range []string{agent.EventCallStarted, agent.EventCallEnded, agent.EventInterrupted, agent.EventCallIncoming, agent.EventMessage} {
			t.Run(path+"/"+kind, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, &scripted{record: refuse, err: fmt.Errorf("respond: %w", agent.ErrWrongLine)}, scoped)
				rec := f.send(t, deliveryReq{path: path, body: body(kind, testLine)})
				assertJSON(t, rec, http.StatusForbidden, `{"error":"wrong_line"}`)
				assert.Equal(t, outcomeRejected, oneEvent(t, f).ContextMap()["outcome"])
			})
		}
	}
}

// TestOversizedIDsRefusedBeforeTheStore reproduces issue 8 §4: 100 KB ids became Redis keys.
// Each id is capped; a longer one gets 400 with the reason, and the store is never asked.
func TestOversizedIDsRefusedBeforeTheStore(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100<<10)
	withID := func(key, v string) []byte {
		m := map[string]string{"event": "message", "event_id": "e-1", "line_id": testLine, "call_id": testCall, "text": "hi"}
		m[key] = v
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	cases := []struct {
		name, reason string
		req          deliveryReq
	}{
		{name: "delivery id", reason: "delivery id is longer than 128 bytes", req: deliveryReq{body: msgBody("hi"), id: long}},
		{name: "call_id", reason: "call_id is longer than 128 bytes", req: deliveryReq{body: withID("call_id", long)}},
		{name: "event_id", reason: "event_id is longer than 128 bytes", req: deliveryReq{body: withID("event_id", long)}},
		{name: "call_id one past the cap", reason: "call_id is longer than 128 bytes", req: deliveryReq{body: withID("call_id", long[:129])}},
		{name: "from_number", reason: "from_number is longer than 128 bytes", req: deliveryReq{body: withID("from_number", long)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, &scripted{lines: []string{"Hi."}}, nil)
			rec := f.send(t, tc.req)
			assertJSON(t, rec, http.StatusBadRequest, fmt.Sprintf(`{"error":%q}`, tc.reason))
			assert.Zero(t, f.cache.Calls(), "the delivery cache is never asked")
			assert.Empty(t, f.resp.Responded())
			assert.Empty(t, f.resp.Recorded())
		})
	}
	t.Run("at the cap", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, &scripted{lines: []string{"Hi."}}, nil)
		rec := f.send(t, deliveryReq{body: withID("call_id", long[:128])})
		assert.Equal(t, http.StatusOK, rec.Code)
	})
}

// TestConnectionFloodKeepsAnswering reproduces issue 8 §4: 20 000 idle connections made the
// brain stop accepting. Open connections stay under the cap, idle ones are shed first (an
// answer streaming meanwhile goes on), and a message arriving after the flood is answered.
func TestConnectionFloodKeepsAnswering(t *testing.T) {
	t.Parallel()
	const maxConns, flood = 32, 1000
	next := make(chan string)
	resp := &scripted{respond: func(ctx context.Context, ev agent.Event, emit func(agent.Chunk) error) error {
		if ev.Text != "Stream please." {
			return emit(agent.Speak("Answered."))
		}
		if err := emit(agent.Speak("First line.")); err != nil {
			return err
		}
		select {
		case line := <-next:
			return emit(agent.Speak(line))
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	f := newFixture(t, resp, func(c *Config) { c.Now = time.Now; c.MaxConns = maxConns })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- f.s.Serve(ln) }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post := func(text string) *http.Response {
		req := deliveryReq{body: msgBody(text), ts: strconv.FormatInt(time.Now().Unix(), 10)}.request(t)
		req.RequestURI = ""
		req.URL.Scheme, req.URL.Host = "http", ln.Addr().String()
		res, err := client.Do(req)
		require.NoError(t, err)
		return res
	}

	streaming := post("Stream please.")
	lines := bufio.NewReader(streaming.Body)
	got, err := lines.ReadString('\n')
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"speak","text":"First line."}`, got)

	idle := make([]net.Conn, 0, flood)
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	for range flood {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		idle = append(idle, c)
	}

	res := post("Hello after the flood?")
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.JSONEq(t, `{"type":"speak","text":"Answered."}`, strings.TrimSpace(string(body)))

	next <- "Second line."
	got, err = lines.ReadString('\n')
	require.NoError(t, err, "a connection serving a request is never shed")
	assert.JSONEq(t, `{"type":"speak","text":"Second line."}`, got)
	require.NoError(t, streaming.Body.Close())
	assert.LessOrEqual(t, f.s.conns.open(), maxConns)

	for _, c := range idle {
		_ = c.Close()
	}
	sctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.s.Shutdown(sctx))
	require.NoError(t, <-served)
}

func TestWebhookRefusesAnUnknownCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, &scripted{err: fmt.Errorf("respond: %w", agent.ErrUnknownCall)}, nil)
	rec := f.send(t, deliveryReq{body: msgBody("Hello?")})
	assertJSON(t, rec, http.StatusForbidden, `{"error":"unknown_call"}`)
	assert.Equal(t, outcomeRejected, oneEvent(t, f).ContextMap()["outcome"])
}
