package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/redistest"
	"github.com/callbrain/callbrain/test/saperly"
)

const line = "5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f"

// floorUnderTest is the floor's handler on loopback, with the Redis of TEST_REDIS_URL and the
// in-process stand-in model.
type floorUnderTest struct {
	client *saperly.Client
	mock   *mockllm.Server
	rdb    *redis.Client
}

func startFloor(t *testing.T) *floorUnderTest {
	t.Helper()
	rdb := redistest.Client(t)

	mock := mockllm.New(mockllm.Options{})
	model := httptest.NewServer(mock)
	t.Cleanup(model.Close)
	s := newServer(config{modelURL: model.URL + "/v1", modelKey: "test", model: "gpt-4o-mini", secrets: []string{devSecret, ""}}, rdb)
	srv := httptest.NewServer(s.routes())
	t.Cleanup(srv.Close)
	return &floorUnderTest{client: &saperly.Client{URL: srv.URL, Secret: saperly.DevSecret}, mock: mock, rdb: rdb}
}

// newCall returns a fresh call id whose keys are deleted when the test ends.
func (f *floorUnderTest) newCall(t *testing.T) string {
	t.Helper()
	id := saperly.NewUUID()
	t.Cleanup(func() {
		assert.NoError(t, f.rdb.Del(context.Background(), "floor:history:"+id, "floor:call:"+id).Err())
	})
	return id
}

func speech(res *saperly.Result) string {
	var parts []string
	for _, l := range res.Lines {
		parts = append(parts, l.Text)
	}
	return strings.Join(parts, " ")
}

// A signed message is answered with the model's words as speak lines, cut into phrases, and
// the next message of the call sends the model the history the first one saved.
func TestFloorMessage(t *testing.T) {
	f := startFloor(t)
	call := f.newCall(t)
	ctx := t.Context()
	res, err := f.client.StartCall(ctx, call, line, "+14155551234", "+14155550123")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.Status)
	assert.JSONEq(t, `{}`, string(res.Body))

	const reply = "Sure, I can help with that. We have openings on Tuesday afternoon, and on Wednesday at ten. Which works better?"
	f.mock.Push(mockllm.Behavior{Reply: reply})
	res, err = f.client.Say(ctx, call, line, "I'd like to book a cleaning.")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status)
	assert.Equal(t, "application/x-ndjson", res.ContentType)
	var got []string
	for _, l := range res.Lines {
		assert.Equal(t, "speak", l.Type, l.Raw)
		got = append(got, l.Text)
	}
	assert.Equal(t, []string{
		"Sure, I can help with that.", // a short clause is not cut at its comma
		"We have openings on Tuesday afternoon,",
		"and on Wednesday at ten.",
		"Which works better?",
	}, got)
	first := speech(res)

	res, err = f.client.Say(ctx, call, line, "Tuesday, please.")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status)
	require.NotEmpty(t, res.Lines)
	reqs := f.mock.Requests()
	require.Len(t, reqs, 2)
	msgs := reqs[1].Messages
	require.Len(t, msgs, 4, "system, the first exchange, the new words")
	assert.Equal(t, mockllm.Message{Role: "user", Content: "I'd like to book a cleaning."}, msgs[1])
	assert.Equal(t, mockllm.Message{Role: "assistant", Content: first}, msgs[2])
	assert.Equal(t, mockllm.Message{Role: "user", Content: "Tuesday, please."}, msgs[3])
	assert.Equal(t, 450, reqs[1].MaxTokens)
}

// A model that fails before speaking still gets the caller an answer: an apology, not silence.
func TestFloorModelFailure(t *testing.T) {
	f := startFloor(t)
	call := f.newCall(t)
	f.mock.Push(mockllm.Behavior{Status: http.StatusInternalServerError})
	res, err := f.client.Say(t.Context(), call, line, "Hello?")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, res.Status)
	require.Len(t, res.Lines, 1)
	assert.Equal(t, apology, res.Lines[0].Text)
}

// A delivery whose signature or timestamp does not verify is refused with 401 and its reason,
// and never reaches the model.
func TestFloorRejectsBadSignatures(t *testing.T) {
	f := startFloor(t)
	call := f.newCall(t)
	for _, tc := range []struct {
		name   string
		opts   []saperly.Option
		reason string
	}{
		{"wrong secret", []saperly.Option{saperly.WithSecret("not-the-secret")}, "signature_mismatch"},
		{"stale timestamp", []saperly.Option{saperly.WithTimestamp(time.Now().Add(-10 * time.Minute))}, "stale_timestamp"},
		{"no signature", []saperly.Option{saperly.WithHeader("X-Saperly-Signature", "")}, "missing_signature"},
		{"other version", []saperly.Option{saperly.WithHeader("X-Saperly-Signature", "v2="+strings.Repeat("a", 64))}, "unknown_version"},
		{"short digest", []saperly.Option{saperly.WithHeader("X-Saperly-Signature", "v1=abcd")}, "malformed_signature"},
		{"malformed timestamp", []saperly.Option{saperly.WithHeader("X-Saperly-Timestamp", "+1767225600")}, "malformed_timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.client.Say(t.Context(), call, line, "Hello?", tc.opts...)
			require.NoError(t, err)
			assert.Equal(t, http.StatusUnauthorized, res.Status)
			assert.JSONEq(t, `{"error":"`+tc.reason+`"}`, string(res.Body))
		})
	}
	assert.Empty(t, f.mock.Requests(), "a rejected delivery never reaches the model")
}

// A delivery id seen before is refused with 409: the replayed message does not call the model
// again nor add to the history.
func TestFloorRejectsReplays(t *testing.T) {
	f := startFloor(t)
	call := f.newCall(t)
	ctx := t.Context()
	id := saperly.NewUUID()
	t.Cleanup(func() { assert.NoError(t, f.rdb.Del(context.Background(), "floor:seen:"+id).Err()) })
	res, err := f.client.Say(ctx, call, line, "Hello?", saperly.WithDeliveryID(id))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.Status)
	require.NotEmpty(t, res.Lines)

	res, err = f.client.Say(ctx, call, line, "Hello?", saperly.WithDeliveryID(id))
	require.NoError(t, err)
	assert.Equal(t, http.StatusConflict, res.Status)
	assert.JSONEq(t, `{"error":"replayed_delivery"}`, string(res.Body))
	assert.Len(t, f.mock.Requests(), 1, "the model is called once")
	n, err := f.rdb.LLen(ctx, "floor:history:"+call).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 2, n, "one exchange in the history")
}

// A signed body the floor cannot use is refused with a clear error and never reaches the model.
func TestFloorRejectsBadBodies(t *testing.T) {
	f := startFloor(t)
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"not JSON", []byte(`{"event":`), http.StatusBadRequest, `{"error":"malformed_body"}`},
		{"message without a call", []byte(`{"event":"message","text":"Hello?"}`), http.StatusBadRequest, `{"error":"missing_call_id"}`},
		{"too large", []byte(`{"event":"message","text":"` + strings.Repeat("a", maxBody) + `"}`), http.StatusRequestEntityTooLarge, `{"error":"body_too_large"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.client.Send(t.Context(), saperly.WebhookPath, tc.body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, res.Status)
			assert.JSONEq(t, tc.want, string(res.Body))
		})
	}
	assert.Empty(t, f.mock.Requests())
}

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the first phrase, "" for none yet
	}{
		{"Sure", ""},
		{"Sure.", ""}, // the next token may continue it ("3.30")
		{"Sure. I", "Sure."},
		{"Really? Yes", "Really?"},
		{"Sure, I can", ""}, // a lone "Sure," is not a line
		{"We have openings on Tuesday, and", "We have openings on Tuesday,"},
		{"At 3:30 p.m. and", "At 3:30 p.m."},
	} {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.in[:cut([]byte(tc.in))])
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"no redis", map[string]string{"REDIS_URL": ""}, "REDIS_URL is required"},
		{"dev secret off loopback", map[string]string{"REDIS_URL": "redis://x", "BRAIN_ADDR": ":8080"}, "SAPERLY_WEBHOOK_SECRET is required off loopback"},
		{"dev secret on loopback", map[string]string{"REDIS_URL": "redis://x", "BRAIN_ADDR": "127.0.0.1:0"}, ""},
		{"a secret anywhere", map[string]string{"REDIS_URL": "redis://x", "BRAIN_ADDR": ":8080", "SAPERLY_WEBHOOK_SECRET": "s"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"REDIS_URL", "BRAIN_ADDR", "SAPERLY_WEBHOOK_SECRET", "SAPERLY_WEBHOOK_SECRET_NEXT"} {
				t.Setenv(k, tc.env[k])
			}
			_, err := configFromEnv()
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.EqualError(t, err, tc.wantErr)
			}
		})
	}
}
