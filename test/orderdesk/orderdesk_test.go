package orderdesk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/orderdesk"
)

// reply is one answer of the desk.
type reply struct {
	status   int
	body     string
	replayed bool
}

// desk serves h over real HTTP and returns a function that posts a status request.
func desk(t *testing.T, h http.Handler) (url string, ask func(ctx context.Context, body, key, auth string) (reply, error)) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	// ask may run outside the test's goroutine, so it reports every failure as an error.
	ask = func(ctx context.Context, body, key, auth string) (reply, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/orders/status", strings.NewReader(body))
		if err != nil {
			return reply{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return reply{}, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return reply{status: res.StatusCode, body: string(b), replayed: res.Header.Get("Idempotent-Replayed") == "true"}, err
	}
	return srv.URL, ask
}

func TestOrderStatus(t *testing.T) {
	t.Parallel()
	_, ask := desk(t, orderdesk.New(orderdesk.Config{}))
	tests := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{name: "shipped", body: `{"order_id":"12345"}`, status: 200, want: `{"order_id":"12345","status":"shipped","carrier":"UPS","eta":"Thursday"}`},
		{name: "fields left out when empty", body: `{"order_id":"45678"}`, status: 200, want: `{"order_id":"45678","status":"cancelled"}`},
		{name: "an integer id", body: `{"order_id":23456}`, status: 200, want: `{"order_id":"23456","status":"processing","eta":"Monday"}`},
		{name: "spaces around the id", body: `{"order_id":" 34567 ","note":"extra fields are ignored"}`, status: 200, want: `{"order_id":"34567","status":"delivered","carrier":"FedEx"}`},
		{name: "unknown order", body: `{"order_id":"99999"}`, status: 404, want: `{"error":"order not found"}`},
		{name: "not JSON", body: `order 12345`, status: 400, want: `{"error":"malformed request: the body must be a JSON object"}`},
		{name: "an array", body: `["12345"]`, status: 400, want: `{"error":"malformed request: the body must be a JSON object"}`},
		{name: "no id", body: `{}`, status: 400, want: `{"error":"malformed request: order_id is required"}`},
		{name: "empty id", body: `{"order_id":"  "}`, status: 400, want: `{"error":"malformed request: order_id is required"}`},
		{name: "a fractional id", body: `{"order_id":1.5}`, status: 400, want: `{"error":"malformed request: order_id must be a string"}`},
		{name: "an object id", body: `{"order_id":{"id":"12345"}}`, status: 400, want: `{"error":"malformed request: order_id must be a string"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ask(t.Context(), tt.body, "", "")

			require.NoError(t, err)
			assert.Equal(t, tt.status, got.status)
			assert.JSONEq(t, tt.want, got.body)
			assert.False(t, got.replayed)
		})
	}
}

func TestCustomTable(t *testing.T) {
	t.Parallel()
	orders := map[string]orderdesk.Order{"1": {ID: "1", Status: "lost"}}
	_, ask := desk(t, orderdesk.New(orderdesk.Config{Orders: orders}))
	orders["2"] = orderdesk.Order{ID: "2", Status: "added later"}

	one, err := ask(t.Context(), `{"order_id":"1"}`, "", "")
	require.NoError(t, err)
	two, err := ask(t.Context(), `{"order_id":"2"}`, "", "")
	require.NoError(t, err)
	builtin, err := ask(t.Context(), `{"order_id":"12345"}`, "", "")
	require.NoError(t, err)

	assert.JSONEq(t, `{"order_id":"1","status":"lost"}`, one.body)
	assert.Equal(t, http.StatusNotFound, two.status, "the table is copied")
	assert.Equal(t, http.StatusNotFound, builtin.status)
}

func TestToken(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	tests := []struct {
		name   string
		token  string // the desk's
		auth   string
		status int
	}{
		{name: "right token", token: token, auth: "Bearer " + token, status: 200},
		{name: "scheme in any case", token: token, auth: "BEARER " + token, status: 200},
		{name: "wrong token", token: token, auth: "Bearer s3cret", status: 401},
		{name: "no header", token: token, auth: "", status: 401},
		{name: "other scheme", token: token, auth: "Basic " + token, status: 401},
		{name: "no token configured", token: "", auth: "", status: 200},
		{name: "no token configured ignores a header", token: "", auth: "Bearer whatever", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := orderdesk.New(orderdesk.Config{Token: tt.token})
			url, ask := desk(t, d)

			got, err := ask(t.Context(), `{"order_id":"12345"}`, "k1", tt.auth)
			require.NoError(t, err)

			assert.Equal(t, tt.status, got.status, got.body)
			stats := getStats(t, url, tt.auth)
			assert.Equal(t, tt.status, stats.status, "/stats needs the token too")
			if tt.status == http.StatusUnauthorized {
				assert.JSONEq(t, `{"error":"unauthorized"}`, got.body)
				assert.Equal(t, orderdesk.Stats{}, d.Stats(), "nothing was done")
			}
		})
	}
}

type statsReply struct {
	status int
	stats  orderdesk.Stats
}

func getStats(t *testing.T, url, auth string) statsReply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/stats", nil)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	out := statsReply{status: res.StatusCode}
	if res.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(res.Body).Decode(&out.stats))
	}
	return out
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	type step struct {
		body, key string
		status    int
		replayed  bool
	}
	tests := []struct {
		name  string
		steps []step
		want  orderdesk.Stats
	}{
		{
			name: "a repeated key is answered from memory",
			steps: []step{
				{body: `{"order_id":"12345"}`, key: "k1", status: 200},
				{body: `{"order_id":"12345"}`, key: "k1", status: 200, replayed: true},
				{body: `{"order_id":12345}`, key: "k1", status: 200, replayed: true},
			},
			want: orderdesk.Stats{Requests: 3, SideEffects: 1},
		},
		{
			name: "a not-found answer is stored too",
			steps: []step{
				{body: `{"order_id":"99999"}`, key: "k1", status: 404},
				{body: `{"order_id":"99999"}`, key: "k1", status: 404, replayed: true},
			},
			want: orderdesk.Stats{Requests: 2, SideEffects: 1},
		},
		{
			name: "distinct keys do the work each",
			steps: []step{
				{body: `{"order_id":"12345"}`, key: "k1", status: 200},
				{body: `{"order_id":"12345"}`, key: "k2", status: 200},
			},
			want: orderdesk.Stats{Requests: 2, SideEffects: 2},
		},
		{
			name: "without a key every request does the work",
			steps: []step{
				{body: `{"order_id":"12345"}`, status: 200},
				{body: `{"order_id":"12345"}`, status: 200},
			},
			want: orderdesk.Stats{Requests: 2, SideEffects: 2},
		},
		{
			name: "a key reused for another order is refused",
			steps: []step{
				{body: `{"order_id":"12345"}`, key: "k1", status: 200},
				{body: `{"order_id":"23456"}`, key: "k1", status: 422},
			},
			want: orderdesk.Stats{Requests: 2, SideEffects: 1},
		},
		{
			name: "a malformed request stores nothing",
			steps: []step{
				{body: `{`, key: "k1", status: 400},
				{body: `{"order_id":"12345"}`, key: "k1", status: 200},
			},
			want: orderdesk.Stats{Requests: 2, SideEffects: 1},
		},
		{
			name: "an overlong key is refused",
			steps: []step{
				{body: `{"order_id":"12345"}`, key: strings.Repeat("k", 256), status: 400},
			},
			want: orderdesk.Stats{Requests: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := orderdesk.New(orderdesk.Config{})
			url, ask := desk(t, d)

			var first string
			for i, s := range tt.steps {
				got, err := ask(t.Context(), s.body, s.key, "")
				require.NoError(t, err)
				assert.Equal(t, s.status, got.status, "step %d: %s", i, got.body)
				assert.Equal(t, s.replayed, got.replayed, "step %d", i)
				if s.replayed {
					assert.Equal(t, first, got.body, "step %d: the stored answer, byte for byte", i)
				}
				if i == 0 {
					first = got.body
				}
			}

			assert.Equal(t, tt.want, d.Stats())
			assert.Equal(t, statsReply{status: 200, stats: tt.want}, getStats(t, url, ""))
		})
	}
}

// Requests repeating a key while the first is still slow all get its answer; the work is
// done once, whatever the order in which they arrive.
func TestConcurrentRepeatsDoTheWorkOnce(t *testing.T) {
	t.Parallel()
	d := orderdesk.New(orderdesk.Config{Delay: 50 * time.Millisecond})
	_, ask := desk(t, d)

	const n = 8
	var wg sync.WaitGroup
	replies := make([]reply, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { replies[i], errs[i] = ask(t.Context(), `{"order_id":"12345"}`, "same-key", "") })
	}
	wg.Wait()

	replayed := 0
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, http.StatusOK, replies[i].status)
		assert.Equal(t, replies[0].body, replies[i].body)
		if replies[i].replayed {
			replayed++
		}
	}
	assert.Equal(t, n-1, replayed, "one did the work")
	assert.Equal(t, orderdesk.Stats{Requests: n, SideEffects: 1}, d.Stats())
}

// watch tells when a request reached the desk and when its handler returned.
type watch struct {
	next           http.Handler
	arrived, ended chan struct{}
}

func (w watch) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.arrived <- struct{}{}
	defer func() { w.ended <- struct{}{} }()
	w.next.ServeHTTP(rw, r)
}

// When the client of the first try leaves during the work, the work is abandoned: nothing is
// done, and the key is free for a retry, even one that was already waiting on the first try.
func TestAbandonedWork(t *testing.T) {
	t.Parallel()
	t.Run("nothing is done", func(t *testing.T) {
		t.Parallel()
		d := orderdesk.New(orderdesk.Config{Delay: time.Hour})
		h := watch{next: d, arrived: make(chan struct{}, 1), ended: make(chan struct{}, 1)}
		_, ask := desk(t, h)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()

		errc := make(chan error, 1)
		go func() {
			_, err := ask(ctx, `{"order_id":"12345"}`, "k1", "")
			errc <- err
		}()
		receive(t, h.arrived)
		cancel()

		assert.ErrorIs(t, receive(t, errc), context.Canceled)
		receive(t, h.ended) // the handler returned: no timer is left waiting
		assert.Equal(t, orderdesk.Stats{Requests: 1}, d.Stats())
	})
	t.Run("the retry does the work", func(t *testing.T) {
		t.Parallel()
		// The delay only has to outlast the few steps between the first try's arrival and
		// its cancellation; the retry then takes it once more.
		d := orderdesk.New(orderdesk.Config{Delay: time.Second})
		h := watch{next: d, arrived: make(chan struct{}, 2), ended: make(chan struct{}, 2)}
		_, ask := desk(t, h)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()

		first := make(chan error, 1)
		go func() {
			_, err := ask(ctx, `{"order_id":"12345"}`, "k1", "")
			first <- err
		}()
		receive(t, h.arrived)
		type result struct {
			r   reply
			err error
		}
		retry := make(chan result, 1)
		go func() {
			r, err := ask(t.Context(), `{"order_id":"12345"}`, "k1", "")
			retry <- result{r, err}
		}()
		receive(t, h.arrived)
		cancel()

		assert.ErrorIs(t, receive(t, first), context.Canceled)
		got := receive(t, retry)
		require.NoError(t, got.err)
		assert.Equal(t, http.StatusOK, got.r.status)
		assert.False(t, got.r.replayed, "nothing was stored to replay")
		assert.Equal(t, orderdesk.Stats{Requests: 2, SideEffects: 1}, d.Stats())
	})
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	url, _ := desk(t, orderdesk.New(orderdesk.Config{}))
	tests := []struct {
		name, method, path string
		status             int
	}{
		{name: "unknown path", method: http.MethodPost, path: "/orders/cancel", status: http.StatusNotFound},
		{name: "status is POST", method: http.MethodGet, path: "/orders/status", status: http.StatusMethodNotAllowed},
		{name: "stats is GET", method: http.MethodPost, path: "/stats", status: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, url+tt.path, nil)
			require.NoError(t, err)
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			require.NoError(t, res.Body.Close())
			assert.Equal(t, tt.status, res.StatusCode)
		})
	}
}

func receive[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, fmt.Sprintf("timed out waiting for %T", *new(T)))
		var zero T
		return zero
	}
}
