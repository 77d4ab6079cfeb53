package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/callbrain/callbrain/agent"
	"github.com/callbrain/callbrain/prompts"
	"github.com/callbrain/callbrain/session"
)

// waitFor bounds waits for something that should happen at once: a deadlock guard, not a
// performance limit.
const waitFor = 5 * time.Second

// rounds is a scripted model that answers its n-th request with the n-th script, whatever the
// model name: a tool call, then an answer with the tool's result.
type rounds struct {
	*scripted
	order [][]step
}

func newRounds(order ...[]step) *rounds { return &rounds{scripted: newScripted(nil), order: order} }

func (r *rounds) Stream(ctx context.Context, req agent.Request) (agent.TokenStream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	n := len(r.reqs) - 1
	if n >= len(r.order) {
		return nil, fmt.Errorf("unscripted request %d", n+1)
	}
	r.open++
	return &scriptStream{ctx: ctx, steps: r.order[n], owner: r.scripted}, nil
}

// toolServer is a real HTTP tool endpoint that records what it was sent. It serves over
// in-memory connections (client is the agent's Deps.HTTP), so a test runs on the fake clock
// of its synctest bubble: a tool's delay, timeouts and the hang-up wait take no real time.
type toolServer struct {
	URL    string
	client *http.Client
	mu     sync.Mutex
	calls  []toolRequest
	status int
	delay  time.Duration
}

type toolRequest struct {
	key, auth, method string
	traceparent       string
	body              map[string]any
}

func newToolServer(t *testing.T) *toolServer {
	t.Helper()
	ts := &toolServer{status: http.StatusOK, URL: "http://tools.test"}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		ts.mu.Lock()
		ts.calls = append(ts.calls, toolRequest{key: r.Header.Get("Idempotency-Key"), auth: r.Header.Get("Authorization"), method: r.Method, body: body,
			traceparent: r.Header.Get("traceparent")})
		status, delay := ts.status, ts.delay
		ts.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status == http.StatusOK {
			fmt.Fprintf(w, `{"order_id":%q,"status":"shipped","eta":"Thursday"}`, body["order_id"])
			return
		}
		fmt.Fprint(w, `{"error":"backend down"}`)
	})
	l := newPipeListener()
	srv := &http.Server{Handler: handler}
	go func() { _ = srv.Serve(l) }()
	tr := &http.Transport{DialContext: l.dial}
	ts.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		_ = srv.Close()
	})
	return ts
}

// pipeListener is a net.Listener of in-memory connections (net.Pipe): what dial connects,
// Accept returns.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func (ts *toolServer) requests() []toolRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]toolRequest(nil), ts.calls...)
}

// hangups is a stand-in for the carrier's call control: it records the calls it ended.
type hangups struct {
	mu    sync.Mutex
	calls []string
}

func (h *hangups) HangUp(_ context.Context, callID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, callID)
	return nil
}

func (h *hangups) ended() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

const ordersAgent = `---
holding_phrases: ["Let me look that up."]
end_call: true
tools:
  - name: get_order_status
    description: Look up an order.
    parameters:
      type: object
      properties:
        order_id: {type: string}
      required: [order_id]
    url: %s/orders/status
    headers:
      Authorization: ORDERS_TOKEN
    timeout: %s
---
You answer questions about orders.
`

type toolHarness struct {
	*harness
	tool    *toolServer
	hangups *hangups
}

func newToolHarness(t *testing.T, llm agent.LLM, toolTimeout string) *toolHarness {
	t.Helper()
	tool := newToolServer(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "default.md"), fmt.Appendf(nil, ordersAgent, tool.URL, toolTimeout), 0o644))
	lib, err := prompts.NewLive(dir, zap.NewNop())
	require.NoError(t, err)
	h := &toolHarness{harness: &harness{t: t, store: session.NewMemoryStore(session.Options{})}, tool: tool, hangups: &hangups{}}
	cfg := agent.Config{
		Model:       "primary",
		EndCallHold: 5 * time.Second, // the goodbyes below take about 2 s to say
		Getenv: func(name string) string {
			if name == "ORDERS_TOKEN" {
				return "Bearer s3cret"
			}
			return ""
		},
		OnTurn: func(s agent.TurnStats) {
			h.mu.Lock()
			h.stats = append(h.stats, s)
			h.mu.Unlock()
		},
	}
	h.agent = agent.New(cfg, agent.Deps{Primary: llm, Store: h.store, Prompts: lib, Control: h.hangups, HTTP: tool.client})
	return h
}

func call(id, name, args string) step {
	return step{call: &agent.ToolCall{ID: id, Name: name, Args: args}}
}

func TestToolCallFeedsResultBackAndKeepsItInHistory(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"12345"}`)},
			say("Your order 12345 has shipped and arrives Thursday.", 0, 0),
			say("You're welcome.", 0, 0),
		)
		h := newToolHarness(t, llm, "2s")

		heard := texts(h.respond(t.Context(), message("c1", "e1", "Where is order 12345?")))
		assert.Equal(t, "Let me look that up.", heard[0], "a holding phrase while the tool runs")
		assert.Contains(t, strings.Join(heard, " "), "has shipped and arrives Thursday.")

		calls := h.tool.requests()
		require.Len(t, calls, 1, "the tool ran once")
		assert.Equal(t, "c1:e1:0", calls[0].key, "idempotency key: call, event, index")
		assert.Equal(t, "Bearer s3cret", calls[0].auth, "header from the named variable")
		assert.Equal(t, http.MethodPost, calls[0].method)
		assert.Equal(t, "12345", calls[0].body["order_id"])

		reqs := llm.requests()
		require.Len(t, reqs, 2)
		names := func(r agent.Request) (out []string) {
			for _, d := range r.Tools {
				out = append(out, d.Name)
			}
			return out
		}
		assert.Equal(t, []string{"get_order_status", agent.EndCallTool}, names(reqs[0]))
		second := reqs[1].Messages
		require.GreaterOrEqual(t, len(second), 3)
		assert.Equal(t, "assistant", second[len(second)-2].Role)
		assert.Equal(t, []agent.ToolCall{{ID: "call_a", Name: "get_order_status", Args: `{"order_id":"12345"}`}}, second[len(second)-2].ToolCalls)
		assert.Equal(t, "tool", second[len(second)-1].Role)
		assert.Equal(t, "call_a", second[len(second)-1].ToolCallID)
		assert.Contains(t, second[len(second)-1].Text, `"status":"shipped"`)
		assert.Equal(t, 1, h.lastStats().ToolCalls)
		require.Len(t, h.lastStats().Tools, 1)
		assert.False(t, h.lastStats().Tools[0].Failed, "a 200 with a JSON answer is a success")

		hist := history(t, h.store, "c1")
		require.Len(t, hist, 3)
		assert.Equal(t, session.EntryTool, hist[1].Kind)
		assert.Equal(t, "call_a", hist[1].ToolCall)

		// The next turn shows the model the call and its result, in the order they happened.
		h.respond(t.Context(), message("c1", "e2", "Thanks."))
		reqs = llm.requests()
		roles := []string{}
		for _, m := range reqs[2].Messages {
			roles = append(roles, m.Role)
		}
		assert.Equal(t, []string{"system", "user", "assistant", "tool", "assistant", "user"}, roles)
		assert.Len(t, h.tool.requests(), 1, "history replays the result; the tool is not called again")
	})
}

func TestFailingToolBecomesSpokenSentence(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		delay  time.Duration
		want   string
	}{
		{name: "error status", status: http.StatusBadGateway, want: "HTTP 502"},
		{name: "too slow", status: http.StatusOK, delay: 2 * time.Second, want: "did not answer within 200ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				llm := newRounds(
					[]step{call("call_a", "get_order_status", `{"order_id":"1"}`)},
					say("Sorry, I can't reach the order system right now.", 0, 0),
				)
				h := newToolHarness(t, llm, "200ms")
				h.tool.status, h.tool.delay = tc.status, tc.delay
				heard := texts(h.respond(t.Context(), message("c1", "e1", "Where is order 1?")))
				assert.Contains(t, strings.Join(heard, " "), "can't reach the order system", "the model puts the failure into words")
				reqs := llm.requests()
				require.Len(t, reqs, 2)
				last := reqs[1].Messages[len(reqs[1].Messages)-1]
				assert.Equal(t, "tool", last.Role)
				assert.Contains(t, last.Text, tc.want)
				require.Len(t, h.lastStats().Tools, 1)
				assert.True(t, h.lastStats().Tools[0].Failed, "counted as a failed tool call")
			})
		})
	}
}

func TestBargeInDuringToolKeepsItsResultOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"12345"}`)},
			say("It has shipped.", 0, 0),
			say("As I said, it has shipped.", 0, 0),
		)
		h := newToolHarness(t, llm, "2s")
		h.tool.delay = 300 * time.Millisecond

		// Saperly closes the connection as soon as the holding phrase is out.
		ctx, hangUp := context.WithCancel(t.Context())
		heard := h.respondUntil(ctx, message("c1", "e1", "Where is order 12345?"), func(string) { hangUp() })
		assert.Equal(t, []string{"Let me look that up."}, heard)

		hist := history(t, h.store, "c1")
		require.Len(t, hist, 3, "user, the tool call that completed, what was heard")
		assert.Equal(t, session.EntryTool, hist[1].Kind)
		assert.Contains(t, hist[1].Text, "shipped")
		assert.True(t, hist[2].Cut)
		assert.Len(t, llm.requests(), 1, "no model round after the caller left")

		h.respond(t.Context(), message("c1", "e2", "So where is it?"))
		assert.Len(t, h.tool.requests(), 1, "the side effect happened once")
		reqs := llm.requests()
		require.Len(t, reqs, 2)
		var toolMsgs int
		for _, m := range reqs[1].Messages {
			if m.Role == "tool" {
				toolMsgs++
			}
		}
		assert.Equal(t, 1, toolMsgs, "the next turn sees the recorded result")
	})
}

func TestRetryDuringToolReplaysWithoutCallingAgain(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"12345"}`)},
			say("It has shipped and arrives Thursday.", 0, 0),
		)
		h := newToolHarness(t, llm, "2s")
		h.tool.delay = 200 * time.Millisecond

		first := make(chan []string, 1)
		go func() { first <- texts(h.respond(t.Context(), message("c1", "e1", "Where is order 12345?"))) }()
		require.Eventually(t, func() bool { return len(h.tool.requests()) == 1 }, waitFor, time.Millisecond)
		retry := texts(h.respond(t.Context(), message("c1", "e1", "Where is order 12345?")))
		assert.Equal(t, <-first, retry, "the retry hears the same lines")
		assert.Len(t, h.tool.requests(), 1, "the tool ran once")
		assert.Len(t, llm.requests(), 2, "one model turn: call and answer")
	})
}

func TestEndCallHangsUpAfterTheGoodbye(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds([]step{
			{tok: "Thanks for calling, goodbye!"},
			call("call_e", agent.EndCallTool, `{}`),
		})
		h := newToolHarness(t, llm, "2s")
		heard := texts(h.respond(t.Context(), message("c1", "e1", "That's all, bye.")))
		assert.Equal(t, "Thanks for calling, goodbye!", strings.Join(heard, " "))
		assert.Equal(t, []string{"c1"}, h.hangups.ended())
		st := h.lastStats()
		assert.True(t, st.EndCall)
		assert.Equal(t, "sent", st.HangUp)
	})
}

func TestEndCallWaitsForTheGoodbyeToBeSaid(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		goodbye := "Thanks for calling, goodbye!"
		llm := newRounds([]step{{tok: goodbye}, call("call_e", agent.EndCallTool, `{}`)})
		h := newToolHarness(t, llm, "2s")
		start := time.Now()
		h.respond(t.Context(), message("c1", "e1", "Bye."))
		require.Equal(t, []string{"c1"}, h.hangups.ended())
		// Saperly needs about len/15 s to say it: hanging up sooner would cut it off.
		assert.GreaterOrEqual(t, time.Since(start), time.Duration(len(goodbye))*time.Second/15)
	})
}

func TestEndCallDoesNotCutALongGoodbye(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		long := strings.Repeat("Thank you so much for calling us today, it was a real pleasure. ", 4) + "Goodbye!"
		llm := newRounds([]step{{tok: long}, call("call_e", agent.EndCallTool, `{}`)})
		h := newToolHarness(t, llm, "2s")
		h.respond(t.Context(), message("c1", "e1", "Bye."))
		assert.Empty(t, h.hangups.ended(), "longer than the hold: the caller hangs up after it, not us mid-sentence")
		assert.Equal(t, "too_long", h.lastStats().HangUp)
	})
}

func TestEndCallNextToAnotherToolRunsTheToolFirst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{call("call_a", "get_order_status", `{"order_id":"12345"}`), call("call_e", agent.EndCallTool, `{}`)},
			[]step{{tok: "It has shipped. Goodbye!"}, call("call_f", agent.EndCallTool, `{}`)},
		)
		h := newToolHarness(t, llm, "2s")
		h.respond(t.Context(), message("c1", "e1", "Where is 12345? Then bye."))
		assert.Len(t, h.tool.requests(), 1, "the other tool ran")
		reqs := llm.requests()
		require.Len(t, reqs, 2)
		last := reqs[1].Messages[len(reqs[1].Messages)-1]
		assert.Equal(t, "call_e", last.ToolCallID)
		assert.Contains(t, last.Text, "must be called alone", "the model is told to end the call on its own")
		assert.Equal(t, []string{"c1"}, h.hangups.ended(), "then it ended the call")
	})
}

func TestEndCallWithoutGoodbyeSaysOne(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds([]step{call("call_e", agent.EndCallTool, `{}`)})
		h := newToolHarness(t, llm, "2s")
		heard := texts(h.respond(t.Context(), message("c1", "e1", "Bye.")))
		assert.Equal(t, []string{agent.DefaultGoodbyeLine}, heard, "never hang up on silence")
		assert.Equal(t, []string{"c1"}, h.hangups.ended())
	})
}

func TestCallerTalksOverGoodbyeKeepsCallUp(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds(
			[]step{{tok: "Thanks for calling, goodbye!"}, call("call_e", agent.EndCallTool, `{}`)},
			[]step{{tok: "Of course. Anything else, or shall I hang up?"}},
		)
		h := newToolHarness(t, llm, "2s")

		// Saperly closes the connection once the goodbye's last line is out (the caller spoke).
		ctx, hangUp := context.WithCancel(t.Context())
		h.respondUntil(ctx, message("c1", "e1", "That's all."), func(line string) {
			if strings.HasSuffix(line, "goodbye!") {
				hangUp()
			}
		})
		assert.Empty(t, h.hangups.ended(), "the caller talked over the goodbye: the call stays up")
		assert.Equal(t, "skipped", h.lastStats().HangUp)

		st, err := h.store.Load(t.Context(), "c1")
		require.NoError(t, err)
		assert.True(t, st.EndPending(), "the intention stays on the call")

		h.respond(t.Context(), message("c1", "e2", "Wait, one more thing."))
		reqs := llm.requests()
		require.Len(t, reqs, 2)
		assert.Contains(t, reqs[1].Messages[0].Text, "meant to end the call", "the next turn is told, so it can confirm")
	})
}

// respondUntil runs a turn, calling onLine with each line as Saperly receives it.
func (h *harness) respondUntil(ctx context.Context, ev agent.Event, onLine func(string)) []string {
	var out []string
	_ = h.agent.Respond(ctx, ev, func(c agent.Chunk) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		out = append(out, c.Text)
		onLine(c.Text)
		return nil
	})
	return out
}

func TestTurnEndingDuringToolsStartsNoMoreCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		llm := newRounds([]step{
			call("call_a", "get_order_status", `{"order_id":"1"}`),
			call("call_b", "get_order_status", `{"order_id":"2"}`),
		})
		h := newToolHarness(t, llm, "2s")
		h.tool.delay = 300 * time.Millisecond
		ctx, hangUp := context.WithCancel(t.Context())
		h.respondUntil(ctx, message("c1", "e1", "Orders 1 and 2?"), func(string) { hangUp() })

		assert.Len(t, h.tool.requests(), 1, "the call the caller heard us start runs; the next is not started")
		hist := history(t, h.store, "c1")
		require.Len(t, hist, 4)
		assert.Contains(t, hist[1].Text, "shipped")
		assert.Contains(t, hist[2].Text, "not run", "recorded as not run, so the next turn knows")
	})
}
