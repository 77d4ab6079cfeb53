package transport

import (
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// protocolVectors are PROTOCOL §1.2's test vectors, byte for byte.
var protocolVectors = []struct {
	name, secret, ts, id, body, header string
	size                               int
}{
	{
		name:   "message",
		secret: "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a",
		ts:     "1767225600",
		id:     "7d3f1e2a-9b4c-4d8e-a1f0-5c6b7e8d9f01",
		body:   `{"event":"message","event_id":"0b9e2c1d-4f3a-4e5b-8c7d-6a5b4c3d2e1f","line_id":"5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f","call_id":"a1b2c3d4-e5f6-7890-abcd-ef1234567890","text":"I would like to book an appointment."}`,
		header: "v1=11e847f7a5c0eaee1327ef7acb844ae79301c0be6478b7b7a95faf88066aa12b",
		size:   213,
	},
	{
		name:   "sms",
		secret: "test-secret-shhh",
		ts:     "1700000000",
		id:     "00000000-0000-4000-8000-000000000000",
		body:   `{"event":"sms_received","line_id":"00000000-0000-0000-0000-000000000001","from_number":"+15551234567"}`,
		header: "v1=7d8bd5ea270566bd2d0f17ba0de49aebbb27a9373549e86688107ba21ba6ed32",
		size:   102,
	},
	{
		name:   "utf-8",
		secret: "k",
		ts:     "1767225600",
		id:     "11111111-1111-4111-8111-111111111111",
		body:   `{"event":"message","text":"¿Hola? שלום 👋"}`,
		header: "v1=af40ebc96ce512cc0c8604b9013d9453fe6a5f4aeb2eff992e519611b9b8336c",
		size:   50,
	},
}

func headers(ts, id, sig string) http.Header {
	h := http.Header{}
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	if id != "" {
		h.Set(HeaderDeliveryID, id)
	}
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	return h
}

func unix(t *testing.T, ts string) time.Time {
	t.Helper()
	sec, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	return time.Unix(sec, 0)
}

func TestProtocolVectors(t *testing.T) {
	t.Parallel()
	for _, v := range protocolVectors {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			require.Len(t, []byte(v.body), v.size, "vector body must be the exact bytes")
			assert.Equal(t, v.header, Sign(v.secret, v.ts, v.id, []byte(v.body)))
			err := Verify(headers(v.ts, v.id, v.header), []byte(v.body), []string{v.secret}, unix(t, v.ts), DefaultClockSkew)
			assert.NoError(t, err)
		})
	}
}

func TestVerifyFailures(t *testing.T) {
	t.Parallel()
	v := protocolVectors[0]
	body := []byte(v.body)
	now := unix(t, v.ts)
	digest := strings.TrimPrefix(v.header, "v1=")
	cases := []struct {
		name    string
		h       http.Header
		body    []byte
		secrets []string
		now     time.Time
		reason  string
	}{
		{name: "missing timestamp", h: headers("", v.id, v.header), reason: ReasonMissingTimestamp},
		{name: "missing delivery id", h: headers(v.ts, "", v.header), reason: ReasonMissingDeliveryID},
		{name: "missing signature", h: headers(v.ts, v.id, ""), reason: ReasonMissingSignature},
		{name: "nothing at all", h: http.Header{}, reason: ReasonMissingTimestamp},
		{name: "timestamp not a number", h: headers("soon", v.id, v.header), reason: ReasonMalformedTimestamp},
		{name: "timestamp signed", h: headers("+"+v.ts, v.id, v.header), reason: ReasonMalformedTimestamp},
		{name: "timestamp negative", h: headers("-1", v.id, v.header), reason: ReasonMalformedTimestamp},
		{name: "timestamp fraction", h: headers(v.ts+".5", v.id, v.header), reason: ReasonMalformedTimestamp},
		{name: "timestamp in ms", h: headers(v.ts+"000", v.id, v.header), reason: ReasonSignatureMismatch},
		{name: "timestamp overflow", h: headers(strings.Repeat("9", 30), v.id, v.header), reason: ReasonMalformedTimestamp},
		{name: "no equals sign", h: headers(v.ts, v.id, digest), reason: ReasonMalformedSignature},
		{name: "empty digest", h: headers(v.ts, v.id, "v1="), reason: ReasonMalformedSignature},
		{name: "digest not hex", h: headers(v.ts, v.id, "v1="+strings.Repeat("zz", 32)), reason: ReasonMalformedSignature},
		{name: "digest too short", h: headers(v.ts, v.id, v.header[:len(v.header)-2]), reason: ReasonMalformedSignature},
		{name: "digest too long", h: headers(v.ts, v.id, v.header+"00"), reason: ReasonMalformedSignature},
		{name: "digest upper case", h: headers(v.ts, v.id, "v1="+strings.ToUpper(digest)), reason: ReasonMalformedSignature},
		{name: "two signatures", h: headers(v.ts, v.id, v.header+","+v.header), reason: ReasonMalformedSignature},
		{name: "version v0", h: headers(v.ts, v.id, "v0="+digest), reason: ReasonUnknownVersion},
		{name: "version V1", h: headers(v.ts, v.id, "V1="+digest), reason: ReasonUnknownVersion},
		{name: "version v2 before empty digest", h: headers(v.ts, v.id, "v2="), reason: ReasonUnknownVersion},
		{name: "wrong secret", h: headers(v.ts, v.id, v.header), secrets: []string{"not-the-secret"}, reason: ReasonSignatureMismatch},
		{name: "hex-decoded secret", h: headers(v.ts, v.id, Sign(string(mustHex(t, v.secret)), v.ts, v.id, body)), reason: ReasonSignatureMismatch},
		{name: "no secrets", h: headers(v.ts, v.id, v.header), secrets: []string{}, reason: ReasonSignatureMismatch},
		{name: "empty secret never keys", h: headers(v.ts, v.id, Sign("", v.ts, v.id, body)), secrets: []string{""}, reason: ReasonSignatureMismatch},
		{name: "body changed", h: headers(v.ts, v.id, v.header), body: append([]byte(v.body), ' '), reason: ReasonSignatureMismatch},
		{name: "delivery id changed", h: headers(v.ts, "7d3f1e2a-9b4c-4d8e-a1f0-5c6b7e8d9f02", v.header), reason: ReasonSignatureMismatch},
		{name: "timestamp changed within skew", h: headers("1767225601", v.id, v.header), reason: ReasonSignatureMismatch},
		{name: "stale: too old", h: headers(v.ts, v.id, v.header), now: now.Add(301 * time.Second), reason: ReasonStaleTimestamp},
		{name: "stale: from the future", h: headers(v.ts, v.id, v.header), now: now.Add(-301 * time.Second), reason: ReasonStaleTimestamp},
		{name: "mac checked before clock", h: headers(v.ts, v.id, v.header), secrets: []string{"nope"}, now: now.Add(time.Hour), reason: ReasonSignatureMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := body
			if c.body != nil {
				b = c.body
			}
			secrets := []string{v.secret}
			if c.secrets != nil {
				secrets = c.secrets
			}
			at := now
			if !c.now.IsZero() {
				at = c.now
			}
			err := Verify(c.h, b, secrets, at, DefaultClockSkew)
			ve, ok := errors.AsType[*VerifyError](err)
			require.True(t, ok, "want a *VerifyError, got %v", err)
			assert.Equal(t, c.reason, ve.Reason)
			assert.Equal(t, "signature: "+c.reason, err.Error())
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		n, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		require.NoError(t, err)
		b[i] = byte(n)
	}
	return b
}

func TestVerifyClockSkew(t *testing.T) {
	t.Parallel()
	v := protocolVectors[0]
	at := unix(t, v.ts)
	cases := []struct {
		name  string
		now   time.Time
		stale bool
	}{
		{name: "on time", now: at},
		{name: "300 s late, at the limit", now: at.Add(300 * time.Second)},
		{name: "300 s early, at the limit", now: at.Add(-300 * time.Second)},
		{name: "just past the limit late", now: at.Add(300*time.Second + time.Millisecond), stale: true},
		{name: "just past the limit early", now: at.Add(-300*time.Second - time.Millisecond), stale: true},
		{name: "a day late", now: at.Add(24 * time.Hour), stale: true},
		{name: "a day early", now: at.Add(-24 * time.Hour), stale: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(headers(v.ts, v.id, v.header), []byte(v.body), []string{v.secret}, c.now, DefaultClockSkew)
			if !c.stale {
				assert.NoError(t, err)
				return
			}
			ve, ok := errors.AsType[*VerifyError](err)
			require.True(t, ok, "want a *VerifyError, got %v", err)
			assert.Equal(t, ReasonStaleTimestamp, ve.Reason)
		})
	}
}

func TestVerifyRotation(t *testing.T) {
	t.Parallel()
	body := []byte(`{"event":"call_started","line_id":"l","call_id":"c"}`)
	ts, id := "1767225600", "22222222-2222-4222-8222-222222222222"
	now := time.Unix(1767225600, 0)
	both := []string{oldSecret, newSecret}
	cases := []struct {
		name    string
		signer  string
		secrets []string
		ok      bool
	}{
		{name: "current secret", signer: oldSecret, secrets: both, ok: true},
		{name: "staged next secret", signer: newSecret, secrets: both, ok: true},
		{name: "next listed first", signer: oldSecret, secrets: []string{newSecret, oldSecret}, ok: true},
		{name: "after promotion the old one is refused", signer: oldSecret, secrets: []string{newSecret}},
		{name: "neither", signer: "someone-else", secrets: both},
		{name: "empty next secret is skipped", signer: oldSecret, secrets: []string{oldSecret, ""}, ok: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := Verify(headers(ts, id, Sign(c.signer, ts, id, body)), body, c.secrets, now, DefaultClockSkew)
			if c.ok {
				assert.NoError(t, err)
				return
			}
			var ve *VerifyError
			require.ErrorAs(t, err, &ve)
			assert.Equal(t, ReasonSignatureMismatch, ve.Reason)
		})
	}
}

func TestVerifyHeaderNamesAnyCase(t *testing.T) {
	t.Parallel()
	v := protocolVectors[1]
	h := http.Header{}
	h.Set("x-saperly-timestamp", v.ts)
	h.Set("X-SAPERLY-DELIVERY-ID", v.id)
	h.Set("x-Saperly-Signature", v.header)
	assert.NoError(t, Verify(h, []byte(v.body), []string{v.secret}, unix(t, v.ts), DefaultClockSkew))
}

// FuzzVerify checks that Verify never panics and accepts a header only when it is exactly what
// Sign produces for that secret, timestamp, delivery id and body; and that what Sign produces
// is accepted.
func FuzzVerify(f *testing.F) {
	for _, v := range protocolVectors {
		f.Add([]byte(v.body), v.secret, v.ts, v.id, v.header)
	}
	for i, name := range eventFiles(f) {
		body, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		ts := strconv.Itoa(1767225600 + i)
		id := "33333333-3333-4333-8333-" + strconv.FormatInt(int64(100000000000+i), 10)
		f.Add(body, testSecret, ts, id, Sign(testSecret, ts, id, body))
		f.Add(body, testSecret, ts, id, Sign("other", ts, id, body))
		f.Add(body, "", ts, id, "v1=")
	}
	now := time.Unix(1767225600, 0)
	f.Fuzz(func(t *testing.T, body []byte, secret, ts, id, sig string) {
		h := http.Header{}
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderDeliveryID, id)
		h.Set(HeaderSignature, sig)
		err := Verify(h, body, []string{secret}, now, DefaultClockSkew)
		if err == nil {
			if secret == "" || sig != Sign(secret, ts, id, body) {
				t.Fatalf("accepted a signature Sign did not produce: secret %q ts %q id %q sig %q", secret, ts, id, sig)
			}
		} else if _, ok := errors.AsType[*VerifyError](err); !ok {
			t.Fatalf("rejection is not a *VerifyError: %v", err)
		}

		// What Sign produces verifies, whenever the headers are well formed and on time.
		sec, perr := strconv.ParseInt(ts, 10, 64)
		if secret == "" || id == "" || perr != nil || !isDigits(ts) || sec < now.Unix()-300 || sec > now.Unix()+300 {
			return
		}
		h.Set(HeaderSignature, Sign(secret, ts, id, body))
		if h.Get(HeaderTimestamp) != ts || h.Get(HeaderDeliveryID) != id {
			return // values the header map does not keep verbatim
		}
		if err := Verify(h, body, []string{"unrelated", secret}, now, DefaultClockSkew); err != nil {
			t.Fatalf("Sign's own header rejected: %v", err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	v := protocolVectors[0]
	h := headers(v.ts, v.id, v.header)
	body := []byte(v.body)
	now := time.Unix(1767225600, 0)
	secrets := []string{"staged-next-secret", v.secret}
	b.ReportAllocs()
	for b.Loop() {
		if err := Verify(h, body, secrets, now, DefaultClockSkew); err != nil {
			b.Fatal(err)
		}
	}
}
