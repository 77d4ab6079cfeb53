package transport

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/session"
)

const (
	salpreKey     = "sk-salpre-current-0123456789abcdef"
	salpreKeyNext = "sk-salpre-next-0123456789abcdef0123"
	itellicoKey   = "whsec_itellico_0123456789abcdef0123456789"
	speakNodeKey  = "speaknode-secret-0123456789abcdef0123456789"
)

func readHook(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "hooks", name))
	require.NoError(t, err)
	return bytes.TrimSpace(raw)
}

type hookFixture struct {
	s    *Server
	recs *session.MemoryRecords
}

func newHookFixture(t testing.TB, store agent.CallRecords, edit func(*Hooks)) *hookFixture {
	t.Helper()
	h := Hooks{
		Salpre: &SalpreConfig{Headers: []Header{{"X-Api-Key", salpreKey}, {"X-Api-Key", salpreKeyNext}, {"Authorization", "Bearer " + salpreKey}}},
		Itellico: &HMACConfig{Secrets: []string{itellicoKey}, SignatureHeader: DefaultItellicoSignatureHeader,
			TimestampHeader: DefaultItellicoTimestampHeader, Encoding: EncodingHex},
		SpeakNode: &HMACConfig{Secrets: []string{speakNodeKey}, SignatureHeader: DefaultSpeakNodeHeader, Encoding: EncodingHex},
	}
	if edit != nil {
		edit(&h)
	}
	f := &hookFixture{}
	if store == nil {
		f.recs = session.NewMemoryRecords()
		store = f.recs
	}
	f.s = New(Config{
		Secrets: testSecrets, Now: func() time.Time { return testNow },
		Hooks: h, HookReceiver: agent.NewReceiver(store, time.Hour),
	}, &scripted{}, &mapCache{}, nil)
	return f
}

func (f *hookFixture) post(t testing.TB, path string, body []byte, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	f.s.ServeHTTP(rec, req)
	return rec
}

func itellicoHeaders(body []byte, at time.Time, secret string) map[string]string {
	ts := strconv.FormatInt(at.Unix(), 10)
	return map[string]string{
		DefaultItellicoTimestampHeader: ts,
		DefaultItellicoSignatureHeader: SignHMAC(secret, append(append(append([]byte{}, body...), '.'), ts...), EncodingHex),
	}
}

func speakNodeHeaders(body []byte, secret string) map[string]string {
	return map[string]string{DefaultSpeakNodeHeader: SignHMAC(secret, body, EncodingHex)}
}

func errorOf(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var out struct{ Error string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), "body %s", rec.Body)
	return out.Error
}

func TestHookAuth(t *testing.T) {
	t.Parallel()
	salpre := readHook(t, "salpre_call_initiated.json")
	itellico := readHook(t, "itellico_conversation_started.json")
	speak := readHook(t, "speaknode_session_started.json")
	tampered := func(b []byte) []byte { return bytes.Replace(b, []byte("+14155551234"), []byte("+14155559999"), 1) }
	tamperedSN := bytes.Replace(speak, []byte("Support line"), []byte("Support lime"), 1)
	cases := []struct {
		name    string
		path    string
		body    []byte
		headers map[string]string
		status  int
		reason  string
	}{
		{"salpre current key", RouteSalpre, salpre, map[string]string{"X-Api-Key": salpreKey}, 200, ""},
		{"salpre next key (rotation)", RouteSalpre, salpre, map[string]string{"X-Api-Key": salpreKeyNext}, 200, ""},
		{"salpre bearer header", RouteSalpre, salpre, map[string]string{"Authorization": "Bearer " + salpreKey}, 200, ""},
		{"salpre wrong key", RouteSalpre, salpre, map[string]string{"X-Api-Key": salpreKey + "x"}, 401, "invalid_credentials"},
		{"salpre no header", RouteSalpre, salpre, nil, 401, "missing_credentials"},
		{"itellico signed", RouteItellico, itellico, itellicoHeaders(itellico, testNow, itellicoKey), 200, ""},
		{"itellico tampered body", RouteItellico, tampered(itellico), itellicoHeaders(itellico, testNow, itellicoKey), 401, ReasonSignatureMismatch},
		{"itellico wrong secret", RouteItellico, itellico, itellicoHeaders(itellico, testNow, "nope"), 401, ReasonSignatureMismatch},
		{"itellico stale (replayed) delivery", RouteItellico, itellico, itellicoHeaders(itellico, testNow.Add(-10*time.Minute), itellicoKey), 401, ReasonStaleTimestamp},
		{"itellico future timestamp", RouteItellico, itellico, itellicoHeaders(itellico, testNow.Add(10*time.Minute), itellicoKey), 401, ReasonStaleTimestamp},
		{"itellico missing timestamp", RouteItellico, itellico, map[string]string{DefaultItellicoSignatureHeader: "00"}, 401, ReasonMissingTimestamp},
		{"itellico missing signature", RouteItellico, itellico, map[string]string{DefaultItellicoTimestampHeader: "1767225600"}, 401, ReasonMissingSignature},
		{"itellico garbage signature", RouteItellico, itellico, map[string]string{DefaultItellicoTimestampHeader: "1767225600", DefaultItellicoSignatureHeader: "zz"}, 401, ReasonMalformedSignature},
		{"itellico timestamp moved (signed with another)", RouteItellico, itellico, func() map[string]string {
			h := itellicoHeaders(itellico, testNow, itellicoKey)
			h[DefaultItellicoTimestampHeader] = strconv.FormatInt(testNow.Unix()+1, 10)
			return h
		}(), 401, ReasonSignatureMismatch},
		{"speaknode signed", RouteSpeakNode, speak, speakNodeHeaders(speak, speakNodeKey), 200, ""},
		{"speaknode sha256= prefix", RouteSpeakNode, speak, map[string]string{DefaultSpeakNodeHeader: "sha256=" + SignHMAC(speakNodeKey, speak, EncodingHex)}, 200, ""},
		{"speaknode tampered", RouteSpeakNode, tamperedSN, speakNodeHeaders(speak, speakNodeKey), 401, ReasonSignatureMismatch},
		{"speaknode missing signature", RouteSpeakNode, speak, nil, 401, ReasonMissingSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newHookFixture(t, nil, nil)
			rec := f.post(t, tc.path, tc.body, tc.headers)
			require.Equal(t, tc.status, rec.Code, "body %s", rec.Body)
			if tc.reason != "" {
				assert.Equal(t, tc.reason, errorOf(t, rec))
			}
		})
	}
}

func TestHookBase64AndCustomHeaders(t *testing.T) {
	t.Parallel()
	f := newHookFixture(t, nil, func(h *Hooks) {
		h.Itellico = &HMACConfig{Secrets: []string{"old-one", itellicoKey}, SignatureHeader: "X-Sig", TimestampHeader: "X-Ts", Encoding: EncodingBase64}
	})
	body := readHook(t, "itellico_conversation_started.json")
	ts := strconv.FormatInt(testNow.Unix(), 10)
	sig := SignHMAC(itellicoKey, append(append(append([]byte{}, body...), '.'), ts...), EncodingBase64)
	rec := f.post(t, RouteItellico, body, map[string]string{"X-Sig": sig, "X-Ts": ts})
	assert.Equal(t, 200, rec.Code, "the second (rotated) secret, base64, custom headers: %s", rec.Body)
	rec = f.post(t, RouteItellico, body, map[string]string{"X-Sig": SignHMAC(itellicoKey, body, EncodingHex), "X-Ts": ts})
	assert.Equal(t, 401, rec.Code, "a hex digest where base64 is configured")
}

func TestHooksOffUntilConfigured(t *testing.T) {
	t.Parallel()
	s := New(Config{Secrets: testSecrets}, &scripted{}, &mapCache{}, nil)
	for _, p := range []string{RouteSalpre, RouteItellico, RouteSpeakNode} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p, bytes.NewReader([]byte("{}"))))
		assert.Equal(t, http.StatusNotFound, rec.Code, p)
	}
}

// TestSalpreCallRecord replays a whole Salpre call from its documented envelopes: live
// transcript lines append, call_ended replaces them with the final transcript and closes the
// call, a duplicate changes nothing.
func TestSalpreCallRecord(t *testing.T) {
	t.Parallel()
	f := newHookFixture(t, nil, nil)
	auth := map[string]string{"X-Api-Key": salpreKey}
	for _, name := range []string{"salpre_call_initiated.json", "salpre_call_answered.json", "salpre_transcript.json"} {
		rec := f.post(t, RouteSalpre, readHook(t, name), auth)
		require.Equal(t, 200, rec.Code, "%s: %s", name, rec.Body)
		assert.JSONEq(t, `{}`, rec.Body.String())
	}
	rec := f.post(t, RouteSalpre, readHook(t, "salpre_transcript.json"), auth)
	require.Equal(t, 200, rec.Code)
	assert.JSONEq(t, `{"duplicate":true}`, rec.Body.String(), "the same transcript line again")

	live, err := f.recs.Call(t.Context(), agent.PlatformSalpre, "1")
	require.NoError(t, err)
	assert.Equal(t, []session.RecordTurn{{Role: "caller", Text: "Hello, how are you?", At: time.Unix(1760084622, 0).UTC()}}, live.Turns)
	assert.Equal(t, "answered", live.Status)
	assert.Equal(t, 3, live.Events)

	require.Equal(t, 200, f.post(t, RouteSalpre, readHook(t, "salpre_call_ended.json"), auth).Code)
	got, err := f.recs.Call(t.Context(), agent.PlatformSalpre, "1")
	require.NoError(t, err)
	assert.Equal(t, "+905555555555", got.From)
	assert.Equal(t, "outbound", got.Direction)
	assert.Equal(t, "salprebox:SALPRE_AABBCCDD", got.Source)
	assert.True(t, got.Test)
	assert.True(t, got.Closed)
	assert.Equal(t, time.Unix(1760084505, 0).UTC(), got.StartedAt)
	assert.Equal(t, time.Unix(1760084597, 0).UTC(), got.EndedAt)
	require.Len(t, got.Turns, 3)
	assert.Equal(t, session.RecordTurn{Role: "agent", Text: "Greeting message"}, got.Turns[0])
	assert.Equal(t, "caller", got.Turns[1].Role)
}

func TestDecodeSalpre(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		body   string
		callID string
		err    string
	}{
		{"integer call_id", `{"event_type":"call_ringing","timestamp_utc":1760084555,"payload":{"call_id":1}}`, "1", ""},
		{"string call_id", `{"event_type":"call_ringing","timestamp_utc":1760084555,"payload":{"call_id":"c-77"}}`, "c-77", ""},
		{"nested integer id", `{"event_type":"error","timestamp_utc":1760084555,"payload":{"call":{"id":12},"error_message":"x"}}`, "12", ""},
		{"nested string id", `{"event_type":"transcript","timestamp_utc":1760084555,"payload":{"call":{"id":"ab"},"type":"ai","transcript":"hi"}}`, "ab", ""},
		{"big integer id kept exact", `{"event_type":"call_ringing","timestamp_utc":1,"payload":{"call_id":12345678901234567890}}`, "12345678901234567890", ""},
		{"unknown event type accepted", `{"event_type":"call_parked","timestamp_utc":1760084555,"payload":{"call_id":3}}`, "3", ""},
		{"no call id", `{"event_type":"call_ringing","timestamp_utc":1760084555,"payload":{}}`, "", "missing call id (payload.call_id or payload.call.id)"},
		{"no event_type", `{"timestamp_utc":1760084555,"payload":{"call_id":1}}`, "", "missing event_type"},
		{"no payload", `{"event_type":"call_ringing"}`, "", "missing payload"},
		{"call_id an object", `{"event_type":"call_ringing","payload":{"call_id":{}}}`, "", "payload is not an object of the documented shape"},
		{"not JSON", `{"event_type":`, "", "invalid JSON envelope"},
		{"transcript list in a transcript event", `{"event_type":"transcript","payload":{"call":{"id":1},"transcript":[1]}}`, "", "transcript must be a string in a transcript event"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := DecodeSalpre([]byte(tc.body), testNow)
			if tc.err != "" {
				de, ok := err.(*DecodeError)
				require.True(t, ok, "want a DecodeError, got %v", err)
				assert.Equal(t, tc.err, de.Msg)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.callID, ev.CallID)
			assert.NotEmpty(t, ev.DedupeKey)
		})
	}
}

func TestHookBadInput(t *testing.T) {
	t.Parallel()
	f := newHookFixture(t, nil, nil)
	auth := map[string]string{"X-Api-Key": salpreKey}
	rec := f.post(t, RouteSalpre, []byte(`{"event_type":"call_ringing","payload":{}}`), auth)
	assert.Equal(t, 400, rec.Code)
	assert.Equal(t, "missing call id (payload.call_id or payload.call.id)", errorOf(t, rec))

	body := []byte(`{"event_id":"e1","event_type":"conversation.ended","data":{}}`)
	rec = f.post(t, RouteItellico, body, itellicoHeaders(body, testNow, itellicoKey))
	assert.Equal(t, 400, rec.Code)
	assert.Equal(t, "missing data.conversation_uuid", errorOf(t, rec))

	body = []byte(`{"event":"ConversationComplete","data":{"history":[]}}`)
	rec = f.post(t, RouteSpeakNode, body, speakNodeHeaders(body, speakNodeKey))
	assert.Equal(t, 400, rec.Code)
	assert.Equal(t, "missing data.session_id", errorOf(t, rec))

	long := []byte(`{"event":"SessionStarted","data":{"session_id":"` + string(bytes.Repeat([]byte("x"), 300)) + `"}}`)
	rec = f.post(t, RouteSpeakNode, long, speakNodeHeaders(long, speakNodeKey))
	assert.Equal(t, 400, rec.Code)
	assert.Contains(t, errorOf(t, rec), "call id is longer than")
	huge := bytes.Repeat([]byte(" "), DefaultMaxBody+1)
	rec = f.post(t, RouteSalpre, huge, auth)
	assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	assert.Equal(t, "body_too_large", errorOf(t, rec))

	rec = f.post(t, RouteItellico, []byte("not json"), itellicoHeaders([]byte("not json"), testNow, itellicoKey))
	assert.Equal(t, 400, rec.Code)
	assert.Equal(t, "invalid JSON envelope", errorOf(t, rec), "signed, but not an envelope")

	_, err := f.recs.Call(t.Context(), agent.PlatformSpeakNode, "")
	assert.ErrorIs(t, err, session.ErrNotFound, "nothing recorded for refused input")
}

func TestItellicoAndSpeakNodeRecords(t *testing.T) {
	t.Parallel()
	f := newHookFixture(t, nil, nil)
	for _, name := range []string{"itellico_conversation_started.json", "itellico_conversation_ended.json", "itellico_analysis_completed.json"} {
		body := readHook(t, name)
		rec := f.post(t, RouteItellico, body, itellicoHeaders(body, testNow, itellicoKey))
		require.Equal(t, 200, rec.Code, "%s: %s", name, rec.Body)
	}
	// A retry of ended: same event_id, freshly signed. Not applied again.
	body := readHook(t, "itellico_conversation_ended.json")
	rec := f.post(t, RouteItellico, body, itellicoHeaders(body, testNow.Add(time.Second), itellicoKey))
	assert.JSONEq(t, `{"duplicate":true}`, rec.Body.String())
	got, err := f.recs.Call(t.Context(), agent.PlatformItellico, "c0a8f2e4-1d3b-4a5c-9e7f-0b2d4f6a8c1e")
	require.NoError(t, err)
	assert.Equal(t, "completed", got.Status)
	assert.InDelta(t, 185, got.Duration, 0.001)
	assert.Equal(t, 3, got.Events)
	assert.Equal(t, []session.RecordTurn{{Role: "agent", Text: "Acme Dental, how can I help?"}, {Role: "caller", Text: "I'd like to book a cleaning."}}, got.Turns)
	assert.Contains(t, string(got.Analysis), `"summary":"Caller booked a cleaning."`)

	for _, name := range []string{"speaknode_session_started.json", "speaknode_conversation_complete.json", "speaknode_conversation_complete.json"} {
		body := readHook(t, name)
		rec := f.post(t, RouteSpeakNode, body, speakNodeHeaders(body, speakNodeKey))
		require.Equal(t, 200, rec.Code, "%s: %s", name, rec.Body)
	}
	assert.JSONEq(t, `{"duplicate":true}`, rec.Body.String())
	sn, err := f.recs.Call(t.Context(), agent.PlatformSpeakNode, "sess_01HZX4K7Q2")
	require.NoError(t, err)
	assert.Equal(t, 2, sn.Events, "the replayed ConversationComplete is not applied")
	assert.Len(t, sn.Turns, 2)
	assert.Equal(t, "Support line", sn.Agent)
	assert.True(t, sn.Closed)
}

// TestHookStoreOutage: with the store down the platform gets 503 (it retries), and the event
// is processed by the retry once the store is back.
func TestHookStoreOutage(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	f := newHookFixture(t, session.NewRedisRecords(dead, "", time.Hour), nil)
	body := readHook(t, "speaknode_conversation_complete.json")
	rec := f.post(t, RouteSpeakNode, body, speakNodeHeaders(body, speakNodeKey))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "store_unavailable", errorOf(t, rec))
}
