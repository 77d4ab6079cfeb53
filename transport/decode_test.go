package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callbrain/callbrain/agent"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want agent.Event
	}{
		{
			name: "message, protocol vector",
			body: protocolVectors[0].body,
			want: agent.Event{Kind: agent.EventMessage, ID: "0b9e2c1d-4f3a-4e5b-8c7d-6a5b4c3d2e1f", LineID: testLine, CallID: testCall, Text: "I would like to book an appointment."},
		},
		{
			name: "message with caller metadata",
			body: `{"event":"message","line_id":"l","call_id":"c","text":"hi","from_number":"+14155551234","to_number":"+14155550123","direction":"inbound","timestamp":1767225612345}`,
			want: agent.Event{Kind: "message", LineID: "l", CallID: "c", Text: "hi", From: "+14155551234", To: "+14155550123", Direction: "inbound", Timestamp: 1767225612345},
		},
		{
			name: "words under transcript",
			body: `{"event":"message","call_id":"c","transcript":"What are your hours?"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "What are your hours?"},
		},
		{
			name: "words under message",
			body: `{"event":"message","call_id":"c","message":"How much is it?"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "How much is it?"},
		},
		{
			name: "text wins over transcript and message",
			body: `{"event":"message","call_id":"c","message":"third","transcript":"second","text":"first"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "first"},
		},
		{
			name: "empty text falls back",
			body: `{"event":"message","call_id":"c","text":"  ","transcript":"second"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "second"},
		},
		{
			name: "history arrays are ignored",
			body: `{"event":"message","call_id":"c","transcript":[{"role":"user","text":"old"}],"history":[{"role":"assistant","text":"x"}],"context":[],"conversation":[{"role":"user","text":"y"}],"message":"now"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "now"},
		},
		{
			name: "history only: no words, still a message",
			body: `{"event":"message","call_id":"c","transcript":[{"role":"user","text":"old"}]}`,
			want: agent.Event{Kind: "message", CallID: "c"},
		},
		{
			name: "unknown fields are ignored",
			body: `{"event":"message","call_id":"c","text":"hi","endpointing_ms":700,"nested":{"a":[1,2,{"b":null}]},"flag":true}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "hi"},
		},
		{
			name: "ids given as numbers",
			body: `{"event":"message","event_id":42,"line_id":7,"call_id":9007199254740993,"text":"Yes.","from_number":14155551234}`,
			want: agent.Event{Kind: "message", ID: "42", LineID: "7", CallID: "9007199254740993", Text: "Yes.", From: "14155551234"},
		},
		{
			name: "id given as an integral float",
			body: `{"event":"call_started","call_id":1.2e3}`,
			want: agent.Event{Kind: "call_started", CallID: "1200"},
		},
		{
			name: "timestamp as a numeric string",
			body: `{"event":"interrupted","call_id":"c","timestamp":"1767225620500","partial_response_text":"Sure, we"}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", Timestamp: 1767225620500, PartialText: "Sure, we"},
		},
		{
			name: "interrupted naming its message",
			body: `{"event":"interrupted","call_id":"c","interrupted_event_id":"m1","partial_response_text":"Sure"}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", PartialText: "Sure", Interrupts: "m1"},
		},
		{
			name: "interrupted naming its message, other spellings",
			body: `{"event":"interrupted","call_id":"c","message_event_id":" m2 ","in_reply_to":"m3"}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", Interrupts: "m2"},
		},
		{
			name: "interrupted with a blank reference and a later spelling",
			body: `{"event":"interrupted","call_id":"c","reply_to_event_id":"","response_to_event_id":"m4"}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", Interrupts: "m4"},
		},
		{
			name: "only interrupted reads the reference",
			body: `{"event":"message","call_id":"c","text":"hi","in_reply_to":"m1"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "hi"},
		},
		{
			name: "timestamp in seconds is scaled",
			body: `{"event":"interrupted","call_id":"c","timestamp":1767225620}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", Timestamp: 1767225620000},
		},
		{
			name: "timestamp as RFC 3339",
			body: `{"event":"interrupted","call_id":"c","timestamp":"2026-01-01T00:00:20.5Z"}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", Timestamp: 1767225620500},
		},
		{
			name: "unreadable timestamp is absent",
			body: `{"event":"interrupted","call_id":"c","timestamp":"soon"}`,
			want: agent.Event{Kind: "interrupted", CallID: "c"},
		},
		{
			name: "negative timestamp is absent",
			body: `{"event":"interrupted","call_id":"c","timestamp":-5}`,
			want: agent.Event{Kind: "interrupted", CallID: "c"},
		},
		{
			name: "interrupted with nothing heard",
			body: `{"event":"interrupted","call_id":"c","timestamp":1767225630000,"partial_response_text":""}`,
			want: agent.Event{Kind: "interrupted", CallID: "c", Timestamp: 1767225630000},
		},
		{
			name: "call_ended with duration_seconds",
			body: `{"event":"call_ended","call_id":"c","status":"completed","duration_seconds":184}`,
			want: agent.Event{Kind: "call_ended", CallID: "c", Status: "completed", Duration: 184},
		},
		{
			name: "duration as a string",
			body: `{"event":"call_outgoing","call_id":"c","duration":"62.5","status":"completed"}`,
			want: agent.Event{Kind: "call_outgoing", CallID: "c", Status: "completed", Duration: 62.5},
		},
		{
			name: "duration wins over duration_seconds",
			body: `{"event":"call_ended","call_id":"c","duration":3,"duration_seconds":4}`,
			want: agent.Event{Kind: "call_ended", CallID: "c", Duration: 3},
		},
		{
			name: "status as a number",
			body: `{"event":"call_incoming","status":200}`,
			want: agent.Event{Kind: "call_incoming", Status: "200"},
		},
		{
			name: "sms_received, protocol example",
			body: `{"event":"sms_received","line_id":"l","from_number":"+14155551234","to_number":"+14155550123","message":"Hello…","message_sid":"SM123","timestamp":1711900000000}`,
			want: agent.Event{Kind: "sms_received", LineID: "l", From: "+14155551234", To: "+14155550123", Text: "Hello…", MessageID: "SM123", Timestamp: 1711900000000},
		},
		{
			name: "sms_received without call_id or text",
			body: protocolVectors[1].body,
			want: agent.Event{Kind: "sms_received", LineID: "00000000-0000-0000-0000-000000000001", From: "+15551234567"},
		},
		{
			name: "test needs no call",
			body: `{"event":"test","line_id":"l"}`,
			want: agent.Event{Kind: "test", LineID: "l"},
		},
		{
			name: "unknown kind decodes, no call_id needed",
			body: `{"event":"voicemail_left","line_id":"l","recording":{"url":"x"}}`,
			want: agent.Event{Kind: "voicemail_left", LineID: "l"},
		},
		{
			name: "optional field of the wrong type is left empty",
			body: `{"event":"message","call_id":"c","text":"hi","line_id":{"id":"l"},"event_id":[1],"direction":5,"partial_response_text":false}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "hi"},
		},
		{
			name: "null fields are absent",
			body: `{"event":"message","call_id":"c","text":null,"transcript":"t","line_id":null}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: "t"},
		},
		{
			name: "leading white space and byte order mark",
			body: "\ufeff \n" + `{"event":"call_started","call_id":"c"}`,
			want: agent.Event{Kind: "call_started", CallID: "c"},
		},
		{
			name: "escapes and non-ASCII text",
			body: `{"event":"message","call_id":"c","text":"\u00bfHola? \"quoted\" <b>&amp;</b> 👋"}`,
			want: agent.Event{Kind: "message", CallID: "c", Text: `¿Hola? "quoted" <b>&amp;</b> 👋`},
		},
		{
			name: "ids are trimmed",
			body: `{"event":" call_ended ","call_id":" c "}`,
			want: agent.Event{Kind: "call_ended", CallID: "c"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeEvent([]byte(c.body))
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
			assert.Equal(t, c.want.LineID, peekLineID([]byte(c.body)))
		})
	}
}

func TestDecodeEventErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		msg  string
	}{
		{name: "empty body", body: ``, msg: "body is not valid JSON"},
		{name: "white space", body: " \n", msg: "body is not valid JSON"},
		{name: "not JSON", body: `event=message`, msg: "body is not valid JSON"},
		{name: "truncated object", body: `{"event":"message","call_id":"c"`, msg: "body is not valid JSON"},
		{name: "trailing garbage", body: `{"event":"call_ended","call_id":"c"} x`, msg: "body is not valid JSON"},
		{name: "array", body: `[{"event":"message"}]`, msg: "body is not a JSON object"},
		{name: "string", body: `"message"`, msg: "body is not a JSON object"},
		{name: "null", body: `null`, msg: "body is not a JSON object"},
		{name: "missing event", body: `{"call_id":"c","text":"hi"}`, msg: "missing event"},
		{name: "empty event", body: `{"event":"","call_id":"c"}`, msg: "missing event"},
		{name: "blank event", body: `{"event":"  ","call_id":"c"}`, msg: "missing event"},
		{name: "null event", body: `{"event":null,"call_id":"c"}`, msg: "missing event"},
		{name: "event is a number", body: `{"event":1,"call_id":"c"}`, msg: "event is not a string"},
		{name: "event is an object", body: `{"event":{"type":"message"},"call_id":"c"}`, msg: "event is not a string"},
		{name: "message without call_id", body: protocolVectors[2].body, msg: "missing call_id, required for message"},
		{name: "call_started without call_id", body: `{"event":"call_started","line_id":"l"}`, msg: "missing call_id, required for call_started"},
		{name: "interrupted without call_id", body: `{"event":"interrupted","timestamp":1}`, msg: "missing call_id, required for interrupted"},
		{name: "call_ended with empty call_id", body: `{"event":"call_ended","call_id":""}`, msg: "missing call_id, required for call_ended"},
		{name: "message with null call_id", body: `{"event":"message","call_id":null,"text":"hi"}`, msg: "missing call_id, required for message"},
		{name: "call_id is an object", body: `{"event":"message","call_id":{"id":"c"},"text":"hi"}`, msg: "call_id is not a string"},
		{name: "call_id is a bool", body: `{"event":"call_ended","call_id":true}`, msg: "call_id is not a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeEvent([]byte(c.body))
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, c.msg, de.Msg)
			assert.NotContains(t, de.Msg, `"`, "the client message never quotes the body")
		})
	}
}

// TestDecodeTestdata decodes every sample: bad_* fail, the rest decode to their kind.
func TestDecodeTestdata(t *testing.T) {
	t.Parallel()
	for _, name := range eventFiles(t) {
		base := filepath.Base(name)
		t.Run(base, func(t *testing.T) {
			t.Parallel()
			body, err := os.ReadFile(name)
			require.NoError(t, err)
			ev, err := DecodeEvent(body)
			if strings.HasPrefix(base, "bad_") {
				var de *DecodeError
				assert.ErrorAs(t, err, &de)
				return
			}
			require.NoError(t, err)
			assert.NotEmpty(t, ev.Kind)
			assert.NotEmpty(t, ev.LineID, "every sample names its line")
			if isCallEvent(ev.Kind) {
				assert.NotEmpty(t, ev.CallID)
			}
			if ev.Kind == agent.EventMessage || ev.Kind == agent.EventSMSReceived && ev.MessageID != "" {
				assert.NotEmpty(t, ev.Text, "the caller's words")
			}
		})
	}
}

// FuzzDecodeEvent checks that decoding never panics, that an accepted event has a kind and,
// for a call event, a call id, and that the line the signature check picked is the line
// decoded.
func FuzzDecodeEvent(f *testing.F) {
	for _, name := range eventFiles(f) {
		body, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, v := range protocolVectors {
		f.Add([]byte(v.body))
	}
	f.Add([]byte(`{"event":"message","call_id":"c","line_id":"a","LINE_ID":"b"}`))
	f.Add([]byte(`{"event":"message","call_id":1e400}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeEvent(body)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error is not a *DecodeError: %v", err)
			}
			return
		}
		if ev.Kind == "" {
			t.Fatal("accepted an event without a kind")
		}
		if isCallEvent(ev.Kind) && ev.CallID == "" {
			t.Fatalf("accepted a %s event without a call id", ev.Kind)
		}
		if got := peekLineID(body); got != ev.LineID {
			t.Fatalf("peeked line %q, decoded line %q", got, ev.LineID)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	body := readEvent(b, "message_with_history.json")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeEvent(body); err != nil {
			b.Fatal(err)
		}
	}
}
