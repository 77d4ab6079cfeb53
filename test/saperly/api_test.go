package saperly_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/saperly"
)

const apiKey = "sk_test_saperly"

// newAPI serves a stand-in API over real HTTP and returns it with its base URL (…/api/v1).
func newAPI(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + saperly.APIBasePath
}

// apiCall is one answer of the API.
type apiCall struct {
	status int
	body   string
}

// post sends one request; it may run outside the test's goroutine, so it reports every
// failure as an error.
func post(ctx context.Context, url, auth, body string) (apiCall, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return apiCall{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return apiCall{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return apiCall{status: res.StatusCode, body: string(b)}, err
}

func hangUp(t *testing.T, base, auth, callID string) apiCall {
	t.Helper()
	got, err := post(t.Context(), base+"/calls/"+callID+"/hangup", auth, "")
	require.NoError(t, err)
	return got
}

func TestAPIHangupNeedsTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		key    string // the API's key
		auth   string
		status int
	}{
		{name: "right key", key: apiKey, auth: "Bearer " + apiKey, status: http.StatusOK},
		{name: "scheme in any case", key: apiKey, auth: "bearer " + apiKey, status: http.StatusOK},
		{name: "wrong key", key: apiKey, auth: "Bearer sk_test_other", status: http.StatusUnauthorized},
		{name: "key prefix", key: apiKey, auth: "Bearer sk_test", status: http.StatusUnauthorized},
		{name: "no header", key: apiKey, auth: "", status: http.StatusUnauthorized},
		{name: "other scheme", key: apiKey, auth: "Basic " + apiKey, status: http.StatusUnauthorized},
		{name: "empty token", key: apiKey, auth: "Bearer ", status: http.StatusUnauthorized},
		{name: "no key configured accepts any token", key: "", auth: "Bearer anything", status: http.StatusOK},
		{name: "no key configured still needs one", key: "", auth: "", status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := saperly.NewAPI(tt.key)
			base := newAPI(t, api)
			before := time.Now()

			got := hangUp(t, base, tt.auth, "call-1")

			require.Equal(t, tt.status, got.status, got.body)
			if tt.status != http.StatusOK {
				assert.JSONEq(t, `{"error":"invalid_api_key"}`, got.body)
				assert.Empty(t, api.Hangups(), "a rejected request is not recorded")
				assert.Zero(t, api.Count("call-1"))
				return
			}
			assert.JSONEq(t, `{"call_id":"call-1","status":"hanging_up"}`, got.body)
			hs := api.Hangups()
			require.Len(t, hs, 1)
			assert.Equal(t, "call-1", hs[0].CallID)
			assert.Equal(t, http.StatusOK, hs[0].Status)
			assert.False(t, hs[0].At.Before(before))
			assert.Equal(t, 1, api.Count("call-1"))
		})
	}
}

func TestAPICountsHangupsPerCall(t *testing.T) {
	t.Parallel()
	api := saperly.NewAPI(apiKey)
	base := newAPI(t, api)

	for _, id := range []string{"a", "b", "a"} {
		require.Equal(t, http.StatusOK, hangUp(t, base, "Bearer "+apiKey, id).status)
	}

	assert.Equal(t, 2, api.Count("a"), "a repeated hang-up is answered and counted")
	assert.Equal(t, 1, api.Count("b"))
	assert.Zero(t, api.Count("c"))
	hs := api.Hangups()
	require.Len(t, hs, 3)
	assert.Equal(t, []string{"a", "b", "a"}, []string{hs[0].CallID, hs[1].CallID, hs[2].CallID})
	hs[0].CallID = "changed"
	assert.Equal(t, "a", api.Hangups()[0].CallID, "Hangups returns a copy")
}

func TestAPIFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault saperly.Fault
		want  []int // statuses of four hang-ups in a row
	}{
		{name: "every request", fault: saperly.Fault{Status: http.StatusServiceUnavailable}, want: []int{503, 503, 503, 503}},
		{name: "the next two", fault: saperly.Fault{Status: http.StatusInternalServerError, Times: 2}, want: []int{500, 500, 200, 200}},
		{name: "rate limited once", fault: saperly.Fault{Status: http.StatusTooManyRequests, Times: 1}, want: []int{429, 200, 200, 200}},
		{name: "none", fault: saperly.Fault{}, want: []int{200, 200, 200, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := saperly.NewAPI(apiKey)
			base := newAPI(t, api)
			api.SetFault(tt.fault)

			var got []int
			for range tt.want {
				res := hangUp(t, base, "Bearer "+apiKey, "call-1")
				got = append(got, res.status)
				if res.status != http.StatusOK {
					assert.Contains(t, res.body, `"error"`)
				}
			}

			assert.Equal(t, tt.want, got)
			hs := api.Hangups()
			require.Len(t, hs, len(tt.want), "failed attempts are recorded too")
			ok := 0
			for i, h := range hs {
				assert.Equal(t, tt.want[i], h.Status)
				if h.Status == http.StatusOK {
					ok++
				}
			}
			assert.Equal(t, ok, api.Count("call-1"), "Count counts only hang-ups that happened")
		})
	}
	t.Run("healed", func(t *testing.T) {
		t.Parallel()
		api := saperly.NewAPI(apiKey)
		base := newAPI(t, api)
		api.SetFault(saperly.Fault{Status: http.StatusBadGateway})
		require.Equal(t, http.StatusBadGateway, hangUp(t, base, "Bearer "+apiKey, "c").status)

		api.SetFault(saperly.Fault{})

		assert.Equal(t, http.StatusOK, hangUp(t, base, "Bearer "+apiKey, "c").status)
	})
}

// Timing is checked only from below: a loaded machine may be slower, never faster.
func TestAPIDelay(t *testing.T) {
	t.Parallel()
	const delay = 60 * time.Millisecond
	api := saperly.NewAPI(apiKey)
	base := newAPI(t, api)
	api.SetFault(saperly.Fault{Delay: delay, Times: 1})

	start := time.Now()
	slow := hangUp(t, base, "Bearer "+apiKey, "c")
	slowTook := time.Since(start)

	assert.Equal(t, http.StatusOK, slow.status, "a delay alone still succeeds")
	assert.GreaterOrEqual(t, slowTook, delay)
	assert.Equal(t, 1, api.Count("c"))
}

// watch tells when a request reached the API and when its handler returned.
type watch struct {
	next           http.Handler
	arrived, ended chan struct{}
}

func (w watch) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.arrived <- struct{}{}
	defer func() { w.ended <- struct{}{} }()
	w.next.ServeHTTP(rw, r)
}

func TestAPIClientGivesUpDuringDelay(t *testing.T) {
	t.Parallel()
	api := saperly.NewAPI(apiKey)
	h := watch{next: api, arrived: make(chan struct{}, 1), ended: make(chan struct{}, 1)}
	base := newAPI(t, h)
	api.SetFault(saperly.Fault{Delay: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	errc := make(chan error, 1)
	go func() {
		_, err := post(ctx, base+"/calls/c/hangup", "Bearer "+apiKey, "")
		errc <- err
	}()
	receive(t, h.arrived)
	cancel()

	assert.ErrorIs(t, receive(t, errc), context.Canceled)
	receive(t, h.ended) // the handler returned: no timer is left waiting
	hs := api.Hangups()
	require.Len(t, hs, 1)
	assert.Zero(t, hs[0].Status, "the client left before the answer")
	assert.Zero(t, api.Count("c"))
}

func TestAPIWaitHangup(t *testing.T) {
	t.Parallel()
	api := saperly.NewAPI(apiKey)
	base := newAPI(t, api)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	api.SetFault(saperly.Fault{Status: http.StatusInternalServerError, Times: 1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, id := range []string{"other", "c", "c"} { // the first "c" fails
			_, err := post(ctx, base+"/calls/"+id+"/hangup", "Bearer "+apiKey, "")
			assert.NoError(t, err)
		}
	}()

	h, err := api.WaitHangup(ctx, "c")

	require.NoError(t, err)
	assert.Equal(t, "c", h.CallID)
	assert.Equal(t, http.StatusOK, h.Status, "only a hang-up that happened ends the wait")
	receive(t, done)

	t.Run("gives up with the context", func(t *testing.T) {
		t.Parallel()
		errStop := errors.New("test over")
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(errStop)

		_, err := api.WaitHangup(ctx, "never")

		assert.ErrorIs(t, err, errStop)
	})
}

func TestAPIMessages(t *testing.T) {
	t.Parallel()
	api := saperly.NewAPI(apiKey)
	base := newAPI(t, api)
	auth := "Bearer " + apiKey

	tests := []struct {
		name   string
		auth   string
		body   string
		status int
	}{
		{name: "sent", auth: auth, body: `{"line_id":"l1","to":"+14155551234","text":"See you Tuesday."}`, status: http.StatusOK},
		{name: "missing text", auth: auth, body: `{"line_id":"l1","to":"+14155551234"}`, status: http.StatusBadRequest},
		{name: "not JSON", auth: auth, body: `{`, status: http.StatusBadRequest},
		{name: "wrong key", auth: "Bearer nope", body: `{"line_id":"l1","to":"+1","text":"x"}`, status: http.StatusUnauthorized},
	}
	for _, tt := range tests { // in order, on one API: not parallel
		t.Run(tt.name, func(t *testing.T) {
			got, err := post(t.Context(), base+"/messages", tt.auth, tt.body)
			require.NoError(t, err)
			assert.Equal(t, tt.status, got.status, got.body)
			if tt.status == http.StatusOK {
				assert.Regexp(t, `^\{"message_sid":"SM[0-9a-f]{32}","status":"queued"\}\n$`, got.body)
			}
		})
	}

	ms := api.Messages()
	require.Len(t, ms, 1, "only valid, authenticated requests are recorded")
	assert.Equal(t, "l1", ms[0].LineID)
	assert.Equal(t, "+14155551234", ms[0].To)
	assert.Equal(t, "See you Tuesday.", ms[0].Text)
	assert.Equal(t, http.StatusOK, ms[0].Status)
	assert.Regexp(t, `^SM[0-9a-f]{32}$`, ms[0].SID)
	assert.Empty(t, api.Hangups())
}

func TestAPIRoutes(t *testing.T) {
	t.Parallel()
	base := newAPI(t, saperly.NewAPI(apiKey))

	tests := []struct {
		name, method, path string
		status             int
	}{
		{name: "unknown path", method: http.MethodPost, path: "/calls/c/transfer", status: http.StatusNotFound},
		{name: "wrong method", method: http.MethodGet, path: "/calls/c/hangup", status: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, base+tt.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+apiKey)
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			require.NoError(t, res.Body.Close())
			assert.Equal(t, tt.status, res.StatusCode)
		})
	}
}
