package e2e

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/orderdesk"
	"github.com/callbrain/callbrain/test/saperly"
)

var callsimOnce struct {
	sync.Once
	bin string
	err error
}

// callsimBinary builds cmd/callsim once per run, next to the other binaries.
func callsimBinary(t *testing.T) string {
	t.Helper()
	binaries(t)
	callsimOnce.Do(func() {
		callsimOnce.bin = filepath.Join(built.dir, "callsim")
		cmd := exec.Command("go", "build", "-o", callsimOnce.bin, "./cmd/callsim")
		cmd.Dir = built.root
		if out, err := cmd.CombinedOutput(); err != nil {
			callsimOnce.err = fmt.Errorf("go build ./cmd/callsim: %w\n%s", err, out)
		}
	})
	require.NoError(t, callsimOnce.err)
	return callsimOnce.bin
}

// callsim runs the callsim binary and returns its output and exit status.
func callsim(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), callsimBinary(t), args...)
	cmd.Env = childEnv(env)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("callsim %v: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

type junitReport struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Cases    []struct {
			Name    string `xml:"name,attr"`
			Line    int    `xml:"line,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
		SystemOut string `xml:"system-out"`
	} `xml:"testsuite"`
}

// TestPlay: callsim play against the built brain (with the stand-in model) passes a script
// whose expectations hold and exits 0; a script with an expectation that the answer breaks
// makes it exit 1, naming the check in its output and in the JUnit report; a broken script
// exits 2 with file:line and plays nothing.
func TestPlay(t *testing.T) {
	t.Parallel()
	m := startMock(t)
	b := startBrain(t, brainConfig{Model: m.URL + "/v1"})
	env := map[string]string{"BRAIN_URL": b.URL, "SAPERLY_WEBHOOK_SECRET": b.Secret}
	dir := t.TempDir()
	pass := writeFile(t, dir, "hours.yaml", `name: hours
turns:
  - status: {event: call_incoming}
  - start: {}
  - say: What are your hours?
    think: 10ms
    expect:
      contains: [monday, saturday]
      not_contains: [sunday]
      matches: "9 a\\.m\\."
      first_line_within: 1m
      no_apology: true
    answer:
      lines:
        - {text: "We're open Monday to Friday from 9 a.m. to 5 p.m.,", at: 300ms}
        - {text: "and on Sundays too.", at: 500ms}
  - say: Thanks, bye
    barge_in: {after_lines: 1}
  - say: Hello?
    retry: {when: after}
  - say: Hello again
    duplicate: true
  - sms: Running late
  - hangup: {}
`)
	fail := writeFile(t, dir, "sunday.yaml", `name: sunday
turns:
  - start: {}
  - say: Are you open on Sunday?
    expect:
      contains: [sunday hours]
`)

	out, errOut, code := callsim(t, env, "play", "--junit", filepath.Join(dir, "pass.xml"), pass)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "== hours ("+pass+") call ")
	assert.Contains(t, out, "> What are your hours?   (after 10ms)")
	assert.Regexp(t, `\+\s*\d+ms  We're open Monday to Friday`, out, "each line with its arrival time")
	assert.Contains(t, out, `✓ contains "monday"`)
	assert.Contains(t, out, "~ differs from the recorded answer (recorded: first line 300ms):")
	assert.Contains(t, out, "    - and on Sundays too.")
	assert.Contains(t, out, "(caller talks over the answer after 1 line;")
	assert.Contains(t, out, "✓ retry same words")
	assert.Contains(t, out, "duplicate delivery -> 409")
	assert.Contains(t, out, "PASS hours:")
	assert.Contains(t, out, "1 script: 1 passed, 0 failed")

	var rep junitReport
	raw, err := os.ReadFile(filepath.Join(dir, "pass.xml"))
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(raw, &rep))
	assert.Equal(t, 0, rep.Failures)
	require.Len(t, rep.Suites, 1)
	assert.Equal(t, "hours", rep.Suites[0].Name)
	assert.Positive(t, rep.Tests)

	junit := filepath.Join(dir, "both.xml")
	out, errOut, code = callsim(t, env, "play", "--junit", junit, "--time-scale", "0", pass, fail)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "PASS hours:")
	assert.Contains(t, out, `✗ contains "sunday hours": heard "`)
	assert.Contains(t, out, "FAIL sunday: 3 checks, 1 failed")
	assert.Contains(t, out, "2 scripts: 1 passed, 1 failed")
	assert.Contains(t, errOut, "callsim: 1 of 2 scripts: expectations failed")

	rep = junitReport{}
	raw, err = os.ReadFile(junit)
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(raw, &rep), "%s", raw)
	assert.Equal(t, 1, rep.Failures)
	require.Len(t, rep.Suites, 2)
	sunday := rep.Suites[1]
	assert.Equal(t, "sunday", sunday.Name)
	assert.Equal(t, 1, sunday.Failures)
	var failures []string
	for _, c := range sunday.Cases {
		if c.Failure != nil {
			failures = append(failures, c.Name+" | "+c.Failure.Message+" | "+c.Failure.Text)
			assert.Equal(t, 4, c.Line, "the failing turn's line in its file")
		}
	}
	require.Len(t, failures, 1)
	assert.Contains(t, failures[0], `turn 2 say "Are you open on Sunday?": contains "sunday hours" | contains "sunday hours": heard "`)
	assert.Contains(t, failures[0], fail+":4: heard")
	assert.Contains(t, sunday.SystemOut, "> Are you open on Sunday?", "the transcript goes with the report")

	broken := writeFile(t, dir, "broken.yaml", "turns:\n  - say: hi\n    think: 2\n  - hangup: {}\n  - say: late\n")
	out, errOut, code = callsim(t, env, "play", broken, pass)
	assert.Equal(t, 2, code, "stdout:\n%s", out)
	assert.Empty(t, out, "nothing is played when a script is broken")
	assert.Contains(t, errOut, broken+`:3: think: "2" is not a duration`)
	assert.Contains(t, errOut, broken+":4: hangup must be the last turn")

	// The wrong secret: every delivery is refused, and play says so and fails.
	out, _, code = callsim(t, map[string]string{"BRAIN_URL": b.URL, "SAPERLY_WEBHOOK_SECRET": "wrong"}, "play", fail)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "non-200: status 401")
}

// TestExampleScripts plays the committed scripts of the example agents (prompts/examples/
// scripts) with callsim play against the built brain serving prompts/examples, the stand-in
// model answering from those scripts' recorded answers (mockllm -scripts), the example order
// desk behind the orders agent's tool, and callsim's stand-in for Saperly's API seeing the
// hang-up: every expectation holds, tool calls and the hang-up included.
func TestExampleScripts(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	scripts := filepath.Join(root, "prompts", "examples", "scripts")

	// The example agents, with the orders tool pointed at this test's order desk.
	token := "od-" + saperly.NewUUID()
	desk := httptest.NewServer(orderdesk.New(orderdesk.Config{Token: token}))
	t.Cleanup(desk.Close)
	prompts := t.TempDir()
	for _, name := range []string{"receptionist.md", "orders.md", "lines.yaml"} {
		raw, err := os.ReadFile(filepath.Join(root, "prompts", "examples", name))
		require.NoError(t, err)
		content := strings.ReplaceAll(string(raw), "http://127.0.0.1:8090", desk.URL)
		writePrompt(t, prompts, name, content)
	}

	m := startMock(t, "-scripts", scripts)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := startBrain(t, brainConfig{Model: m.URL + "/v1", Env: map[string]string{
		"PROMPTS_DIR":      prompts,
		"ORDERDESK_TOKEN":  "Bearer " + token,
		"SAPERLY_API_BASE": "http://" + apiAddr + saperly.APIBasePath,
		"SAPERLY_API_KEY":  "sk-play",
	}})

	junit := filepath.Join(t.TempDir(), "examples.xml")
	out, errOut, code := callsim(t, map[string]string{"BRAIN_URL": b.URL, "SAPERLY_WEBHOOK_SECRET": b.Secret},
		"play", "--time-scale", "0.1", "--api", apiAddr, "--api-key", "sk-play", "--model", m.URL, "--junit", junit, scripts)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Contains(t, out, "PASS receptionist-booking:")
	assert.Contains(t, out, "PASS orders-status:")
	assert.Contains(t, out, "✓ tool called get_order_status")
	assert.Contains(t, out, "✓ tool not called get_order_status")
	assert.Contains(t, out, "✓ ends call")
	assert.Contains(t, out, "✓ retry same words")
	assert.Contains(t, out, "(caller talks over the answer after 1 line;")
	assert.Contains(t, out, "One moment.   (holding phrase)", "the brain holds while the tool runs")
	assert.Contains(t, out, "2 scripts: 2 passed, 0 failed")
	assert.NotContains(t, m.out.String(), "no recorded answer", "every utterance was answered as recorded")

	var rep junitReport
	raw, err := os.ReadFile(junit)
	require.NoError(t, err)
	require.NoError(t, xml.Unmarshal(raw, &rep))
	assert.Equal(t, 0, rep.Failures)
	assert.Len(t, rep.Suites, 2)
}
