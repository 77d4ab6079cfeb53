package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/callscript"
	"github.com/callbrain/callbrain/test/mockllm"
	"github.com/callbrain/callbrain/test/saperly"
)

func scriptFile(t *testing.T, name, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(src), 0o600))
	return path
}

// TestPlayCommandLine: every mistake on the command line or in a script is a usage error
// (exit 2) and nothing is sent.
func TestPlayCommandLine(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)
	good := scriptFile(t, "good.yaml", "turns: [{say: hi}]\n")
	broken := scriptFile(t, "broken.yaml", "turns: [{say: hi, think: soon}]\n")
	lines := scriptFile(t, "lines.yaml", "L1: {secret_env: S}\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no script", []string{"play"}, "play: no script given"},
		{"secret and lines", []string{"play", "--secret", "x", "--lines", lines, good}, "give --secret or --lines, not both"},
		{"negative time scale", []string{"play", "--time-scale", "-1", good}, "--time-scale -1 is negative"},
		{"broken script", []string{"play", good, broken}, broken + `:1: think: "soon" is not a duration`},
		{"missing script", []string{"play", filepath.Join(t.TempDir(), "nope.yaml")}, "no such file"},
		{"bad lines file", []string{"play", "--lines", good + ".missing", good}, "read lines"},
		{"bad flag", []string{"play", "--tempo", "2", good}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := callsim(t, env("BRAIN_URL", b.srv.URL), tt.args...)
			var ue usageError
			require.ErrorAs(t, err, &ue)
			assert.ErrorContains(t, err, tt.want)
		})
	}
	assert.Empty(t, b.received(), "nothing was sent")
}

// TestPlayLineSecrets: with --lines, each script is signed with its line's secret (read from
// the variable lines.yaml names); a line not listed uses the global secret.
func TestPlayLineSecrets(t *testing.T) {
	t.Parallel()
	b := newBrain(t, "line-secret")
	lines := scriptFile(t, "lines.yaml", "L1:\n  agent: receptionist\n  secret_env: RECEPTION_SECRET\n")
	listed := scriptFile(t, "listed.yaml", "line_id: L1\nturns: [{start: {}}, {say: hi, expect: {contains: book}}]\n")
	other := scriptFile(t, "other.yaml", "line_id: L2\nturns: [{start: {}}]\n")

	out, err := callsim(t, env("BRAIN_URL", b.srv.URL, "RECEPTION_SECRET", "line-secret", "SAPERLY_WEBHOOK_SECRET", "global"),
		"play", "--lines", lines, "--time-scale", "0", listed, other)
	require.ErrorIs(t, err, errFailed)
	assert.Contains(t, out, "PASS listed:")
	assert.Contains(t, out, "FAIL other:")
	assert.Contains(t, out, `non-200: status 401: {"error":"signature_mismatch"}`)
	assert.Equal(t, []string{"call_started", "message"}, b.kinds(), "only the listed line's deliveries verified")
}

// TestPlayObserver: --api sees the brain's hang-ups and --model the tool calls the stand-in
// model made after the caller's words, since the message was sent.
func TestPlayObserver(t *testing.T) {
	t.Parallel()
	model := mockllm.New(mockllm.Options{})
	msrv := httptest.NewServer(model)
	t.Cleanup(msrv.Close)
	api := saperly.NewAPI("")
	asrv := httptest.NewServer(api)
	t.Cleanup(asrv.Close)
	o := &observer{api: api, model: msrv.URL}

	sent := time.Now()
	// What a brain sends the model after it ran a tool for "Where is order 12345?".
	chat := `{"model":"m","messages":[{"role":"user","content":"Earlier words"},` +
		`{"role":"user","content":"Where is order 12345?"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_order_status","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"{\"status\":\"shipped\"}"}]}`
	res, err := http.Post(msrv.URL+"/v1/chat/completions", "application/json", strings.NewReader(chat))
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())

	obs, err := o.Observe(t.Context(), callscript.Query{CallID: "c1", Text: "where is order 12345", Sent: sent, NeedTools: true, NeedHangup: true})
	require.NoError(t, err)
	assert.Equal(t, callscript.Observation{Tools: []string{"get_order_status"}, ToolsSeen: true, HangSeen: true}, obs)

	obs, err = o.Observe(t.Context(), callscript.Query{CallID: "c1", Text: "Earlier words", Sent: sent, NeedTools: true})
	require.NoError(t, err)
	assert.Empty(t, obs.Tools, "a tool called after other words is not this turn's")
	obs, err = o.Observe(t.Context(), callscript.Query{Text: "Where is order 12345?", Sent: time.Now().Add(time.Minute), NeedTools: true})
	require.NoError(t, err)
	assert.Empty(t, obs.Tools, "requests from before the message are not this turn's")

	req, err := http.NewRequest(http.MethodPost, asrv.URL+saperly.APIBasePath+"/calls/c2/hangup", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer any")
	hang, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, hang.Body.Close())
	obs, err = o.Observe(t.Context(), callscript.Query{CallID: "c2", NeedHangup: true, WantHangup: true})
	require.NoError(t, err)
	assert.True(t, obs.HungUp)

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // a hang-up that never comes: the wait ends with the context
	obs, err = o.Observe(ctx, callscript.Query{CallID: "c3", NeedHangup: true, WantHangup: true})
	require.NoError(t, err)
	assert.False(t, obs.HungUp)
	assert.True(t, obs.HangSeen)

	down := &observer{model: "http://127.0.0.1:1"}
	_, err = down.Observe(t.Context(), callscript.Query{NeedTools: true})
	require.Error(t, err)
	assert.False(t, errors.Is(err, context.Canceled))
}

func TestDiffLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b []string
		want string
	}{
		{"same", []string{"a", "b"}, []string{"a", "b"}, " a  b"},
		{"changed", []string{"a", "b", "c"}, []string{"a", "x", "c"}, " a -b +x  c"},
		{"added", nil, []string{"x"}, "+x"},
		{"removed", []string{"a", "b"}, []string{"b"}, "-a  b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, op := range diffLines(tt.a, tt.b) {
				got = append(got, string(op.kind)+op.text)
			}
			assert.Equal(t, tt.want, strings.Join(got, " "))
		})
	}
}

func TestPlayNothingListening(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	script := scriptFile(t, "s.yaml", "turns: [{start: {}}]\n")
	out, err := callsim(t, env("BRAIN_URL", url), "play", script)
	require.ErrorIs(t, err, errFailed)
	assert.Contains(t, out, "connection-refused")
	assert.Contains(t, out, "nothing accepted a connection at "+url+": is the brain running there")
}

func TestPrintDiff(t *testing.T) {
	t.Parallel()
	rec := &callscript.Answer{Lines: []callscript.AnswerLine{{Text: "You're welcome. Goodbye!", At: 450 * time.Millisecond}}}
	tests := []struct {
		name  string
		lines []string
		cut   bool
		want  string
	}{
		{"same", []string{"You're welcome. Goodbye!"}, false, "  = same words as recorded (recorded: first line 450ms)\n"},
		{"split", []string{"You're welcome.", "Goodbye!"}, false, "  = same words as recorded, in 2 lines instead of 1 (recorded: first line 450ms)\n"},
		{"cut", []string{"You're welcome."}, true, "  = the start of the recorded answer, then cut (recorded: first line 450ms)\n"},
		{"differs", []string{"You're welcome."}, false, "  ~ differs from the recorded answer (recorded: first line 450ms):\n    - You're welcome. Goodbye!\n    + You're welcome.\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &callscript.Delivery{Cut: tt.cut}
			for _, l := range tt.lines {
				d.Lines = append(d.Lines, callscript.Line{Text: l})
			}
			var out strings.Builder
			printDiff(&out, rec, d)
			assert.Equal(t, tt.want, out.String())
		})
	}
}

// TestPlayPhraseLists: --holds and --apologies add to the phrases a line is compared with.
func TestPlayPhraseLists(t *testing.T) {
	t.Parallel()
	b := newBrain(t, saperly.DevSecret)
	script := scriptFile(t, "s.yaml", "turns: [{say: hi, expect: {no_hold: true, no_apology: true}}]\n")
	out, err := callsim(t, env("BRAIN_URL", b.srv.URL), "play", script)
	require.NoError(t, err, out)

	out, err = callsim(t, env("BRAIN_URL", b.srv.URL), "play", "--holds", "Let me check the book.|which day works better", "--apologies", "sure, I", script)
	require.ErrorIs(t, err, errFailed)
	assert.Contains(t, out, "Which day works better?   (holding phrase)")
	assert.Contains(t, out, `✗ no holding phrase: heard "Which day works better?" at `)
	assert.Contains(t, out, `✗ no apology: heard "Sure, I can help you book that." at `)
}
