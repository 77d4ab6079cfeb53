package callscript_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/test/callscript"
)

func TestParseFull(t *testing.T) {
	t.Parallel()
	s, err := callscript.ParseFile("testdata/full.yaml")
	require.NoError(t, err)
	assert.Equal(t, "full", s.Name)
	assert.Equal(t, "5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f", s.LineID)
	assert.Equal(t, "+15555550100", s.From)
	require.NotNil(t, s.Recorded)
	assert.Equal(t, time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), s.Recorded.At)
	assert.Equal(t, "3f2a9c", s.Recorded.PromptVersion)
	require.Len(t, s.Turns, 12)

	kinds := make([]callscript.Kind, len(s.Turns))
	for i, tn := range s.Turns {
		kinds[i] = tn.Kind
	}
	assert.Equal(t, []callscript.Kind{"status", "start", "say", "say", "say", "say", "say", "say", "sms", "send", "say", "hangup"}, kinds)
	assert.Equal(t, callscript.KindStatus, s.Turns[0].Kind)
	assert.Equal(t, "call_incoming", s.Turns[0].Event)
	assert.Equal(t, map[string]any{"status": "completed", "duration": float64(74)}, s.Turns[11].Fields)
	assert.Equal(t, map[string]any{"status": "ringing"}, s.Turns[0].Fields)
	assert.Equal(t, 12, s.Turns[0].Line)

	say := s.Turns[2]
	assert.Equal(t, "Hi, I'd like to book a cleaning.", say.Text)
	assert.Equal(t, 1200*time.Millisecond, say.Think)
	require.NotNil(t, say.Expect)
	assert.Equal(t, []string{"book"}, say.Expect.Contains)
	assert.Equal(t, 2*time.Second, say.Expect.FirstLineWithin)
	assert.True(t, say.Expect.NoHold)
	require.NotNil(t, say.Answer)
	assert.Equal(t, []callscript.AnswerLine{
		{Text: "Sure, I can help you book that.", At: 412 * time.Millisecond},
		{Text: "We have openings on Tuesday.", At: 980 * time.Millisecond},
	}, say.Answer.Lines)
	assert.Equal(t, "Sure, I can help you book that. We have openings on Tuesday.", say.Answer.Text())

	assert.Equal(t, &callscript.BargeIn{AfterLines: 1, Late: 300 * time.Millisecond}, s.Turns[3].BargeIn)
	heard := "Sure"
	assert.Equal(t, &callscript.BargeIn{After: 800 * time.Millisecond, Heard: &heard}, s.Turns[4].BargeIn)
	assert.Equal(t, &callscript.Retry{When: callscript.RetryWhileStreaming, After: 200 * time.Millisecond}, s.Turns[5].Retry)
	assert.Equal(t, &callscript.Retry{When: callscript.RetryAfterAnswer}, s.Turns[6].Retry)
	assert.True(t, s.Turns[7].Duplicate)
	assert.Equal(t, callscript.Turn{Kind: callscript.KindSMS, Line: 38, Text: "Running late", Think: 2 * time.Second}, s.Turns[8])
	assert.Equal(t, "test", s.Turns[9].Event)
	orders := s.Turns[10]
	assert.Equal(t, []string{"get_order_status"}, orders.Expect.ToolCalled)
	require.NotNil(t, orders.Expect.EndsCall)
	assert.False(t, *orders.Expect.EndsCall)
	assert.Equal(t, []callscript.ToolCall{{Name: "get_order_status", Args: `{"order_id":"12345"}`}}, orders.Answer.Tools)
	assert.True(t, orders.Answer.Lines[0].Hold)
	assert.Equal(t, time.Second, s.Turns[11].Think)
}

func TestParseJSON(t *testing.T) {
	t.Parallel()
	s, err := callscript.ParseFile("testdata/full.json")
	require.NoError(t, err)
	assert.Equal(t, "json", s.Name)
	require.Len(t, s.Turns, 3)
	assert.Equal(t, callscript.KindStart, s.Turns[0].Kind)
	assert.Equal(t, "Hello", s.Turns[1].Text)
	assert.Equal(t, 500*time.Millisecond, s.Turns[1].Think)
	assert.Equal(t, callscript.KindHangup, s.Turns[2].Kind)
	assert.Equal(t, 5, s.Turns[1].Line)
}

// TestParseErrors: each mistake is refused with file:line and a message that says what is
// wrong; nothing is returned.
func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string // every line of the error, in order
	}{
		{"empty file", "", []string{"s.yaml: empty file: a script needs turns"}},
		{"not yaml", "turns: [\n  - say: hi\n", []string{"s.yaml:1: not valid YAML or JSON:"}},
		{"not a mapping", "- say: hi\n", []string{"s.yaml:1: a script is a mapping"}},
		{"no turns", "name: x\n", []string{"s.yaml:1: no turns: a script needs a turns list"}},
		{"empty turns", "turns: []\n", []string{"s.yaml:1: turns: the list is empty"}},
		{"turns not a list", "turns: hello\n", []string{`s.yaml:1: turns: want a list of turns, got "hello"`}},
		{"unknown top key", "name: x\ntunrs: []\n", []string{
			`s.yaml:1: no turns`,
			`s.yaml:2: script: unknown key "tunrs" (known: name, line_id, from, to, direction, recorded, turns)`}},
		{"duplicate key", "name: x\nname: y\nturns: [{say: hi}]\n", []string{`s.yaml:2: script: key "name" given twice`}},
		{"bad direction", "direction: sideways\nturns: [{say: hi}]\n", []string{`s.yaml:1: direction "sideways": want inbound or outbound`}},
		{"bad recorded at", "recorded: {at: yesterday}\nturns: [{say: hi}]\n", []string{`s.yaml:1: recorded.at "yesterday": want an RFC 3339 time`}},
		{"turn without kind", "turns:\n  - think: 1s\n", []string{"s.yaml:2: a turn needs one of start, say, status, sms, send, hangup"}},
		{"turn with two kinds", "turns:\n  - say: hi\n    sms: yo\n", []string{"s.yaml:3: a turn has one kind, got both say and sms"}},
		{"turn not a mapping", "turns:\n  - hello\n", []string{`s.yaml:2: a turn is a mapping with one of start, say, status, sms, send, hangup, got "hello"`}},
		{"empty say", "turns:\n  - say: \"  \"\n", []string{"s.yaml:2: say: the caller's words are empty"}},
		{"say is a list", "turns:\n  - say: [a, b]\n", []string{"s.yaml:2: say: want text, got a list"}},
		{"unknown turn key", "turns:\n  - say: hi\n    expcet: {contains: [x]}\n", []string{
			`s.yaml:3: say turn: unknown key "expcet" (known: say, think, barge_in, retry, duplicate, expect, answer)`}},
		{"option on wrong kind", "turns:\n  - sms: hi\n    expect: {contains: x}\n", []string{`s.yaml:3: sms turn: unknown key "expect" (known: sms, think)`}},
		{"think without unit", "turns:\n  - say: hi\n    think: 2\n", []string{`s.yaml:3: think: "2" is not a duration: write it with a unit`}},
		{"negative think", "turns:\n  - say: hi\n    think: -1s\n", []string{`s.yaml:3: think: -1s is negative`}},
		{"huge think", "turns:\n  - say: hi\n    think: 3h\n", []string{`s.yaml:3: think: 3h is longer than 1h0m0s`}},
		{"start after status is fine", "turns:\n  - status: {event: call_incoming}\n  - start: {}\n  - say: hi\n    think: x\n", []string{`s.yaml:5: think: "x" is not`}},
		{"start not first", "turns:\n  - say: hi\n  - start: {}\n", []string{"s.yaml:3: start must come before the call's other turns"}},
		{"hangup not last", "turns:\n  - hangup: {}\n  - say: hi\n", []string{"s.yaml:2: hangup must be the last turn"}},
		{"start with event", "turns:\n  - start: {event: x}\n", []string{"s.yaml:2: start: the event kind is fixed (call_started); use send for another event"}},
		{"fields not JSON", "turns:\n  - start: {a: {[1]: x}}\n", []string{"s.yaml:2: start: body fields must be plain JSON values"}},
		{"start sets call_id", "turns:\n  - start: {call_id: x}\n", []string{"s.yaml:2: start: call_id is set by the player"}},
		{"status without event", "turns:\n  - status: {status: ringing}\n", []string{"s.yaml:2: status: event is missing"}},
		{"status null", "turns:\n  - status:\n", []string{"s.yaml:2: status: want a mapping with at least event"}},
		{"send event not text", "turns:\n  - send: {event: [a]}\n", []string{"s.yaml:2: send: event must be a non-empty string"}},
		{"barge-in both", "turns:\n  - say: hi\n    barge_in: {after_lines: 1, after: 1s}\n", []string{"s.yaml:3: barge_in: give exactly one of after_lines and after"}},
		{"barge-in neither", "turns:\n  - say: hi\n    barge_in: {heard: x}\n", []string{"s.yaml:3: barge_in: give exactly one of after_lines and after"}},
		{"barge-in negative lines", "turns:\n  - say: hi\n    barge_in: {after_lines: -1}\n", []string{"s.yaml:3: barge_in.after_lines: want 0 or more lines"}},
		{"barge-in lines not a number", "turns:\n  - say: hi\n    barge_in: {after_lines: two}\n", []string{`s.yaml:3: barge_in.after_lines: want a whole number, got "two"`}},
		{"barge-in zero after", "turns:\n  - say: hi\n    barge_in: {after: 0}\n", []string{"s.yaml:3: barge_in.after: want a time after the message was sent"}},
		{"retry bad when", "turns:\n  - say: hi\n    retry: {when: later}\n", []string{`s.yaml:3: retry.when "later": want after (the answer ended) or streaming`}},
		{"retry no when", "turns:\n  - say: hi\n    retry: {after: 1s}\n", []string{"s.yaml:3: retry: when is missing"}},
		{"two faults", "turns:\n  - say: hi\n    duplicate: true\n    retry: {when: after}\n", []string{"s.yaml:2: say: use at most one of barge_in, retry and duplicate per turn"}},
		{"duplicate not bool", "turns:\n  - say: hi\n    duplicate: yes please\n", []string{`s.yaml:3: duplicate: want true or false, got "yes please"`}},
		{"bad regexp", "turns:\n  - say: hi\n    expect: {matches: \"(\"}\n", []string{"s.yaml:3: expect.matches: error parsing regexp"}},
		{"empty contains", "turns:\n  - say: hi\n    expect: {contains: [\"\"]}\n", []string{"s.yaml:3: expect.contains: an empty entry matches everything"}},
		{"zero first line bound", "turns:\n  - say: hi\n    expect: {first_line_within: 0}\n", []string{"s.yaml:3: expect.first_line_within: want a bound above 0"}},
		{"unknown expect key", "turns:\n  - say: hi\n    expect: {no_holds: true}\n", []string{`s.yaml:3: expect: unknown key "no_holds"`}},
		{"answer line not mapping", "turns:\n  - say: hi\n    answer: {lines: [hello]}\n", []string{`s.yaml:3: answer line: want {text, at}, got "hello"`}},
		{"tool without name", "turns:\n  - say: hi\n    answer: {tools: [{args: x}]}\n", []string{"s.yaml:3: tool: name is missing"}},
		{"second document", "turns: [{say: hi}]\n---\nturns: [{say: yo}]\n", []string{"s.yaml:2: a second YAML document"}},
		{"several problems in order", "turns:\n  - say: hi\n    think: soon\n  - sms: x\n    barge_in: {}\n", []string{
			`s.yaml:3: think: "soon" is not a duration`,
			`s.yaml:5: sms turn: unknown key "barge_in"`}},
		{"json syntax", "{\"turns\": [{\"say\": \"hi\"}\n", []string{"s.yaml:1: not valid YAML or JSON"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := callscript.Parse("s.yaml", []byte(tt.src))
			require.Error(t, err)
			assert.Nil(t, s)
			var pe *callscript.ParseError
			require.ErrorAs(t, err, &pe)
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tt.want), "error: %s", err)
			for i, want := range tt.want {
				assert.True(t, strings.HasPrefix(lines[i], want), "line %d:\n got %s\nwant %s…", i, lines[i], want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"testdata/full.yaml", "testdata/full.json"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			s, err := callscript.ParseFile(file)
			require.NoError(t, err)
			out, err := callscript.Marshal(s)
			require.NoError(t, err)
			back, err := callscript.Parse(file, out)
			require.NoError(t, err, "marshalled:\n%s", out)
			clearLines(s)
			clearLines(back)
			assert.Equal(t, s, back, "marshalled:\n%s", out)
		})
	}
}

func TestMarshalBuiltInCode(t *testing.T) {
	t.Parallel()
	yes := true
	s := &callscript.Script{Name: "built", Turns: []callscript.Turn{
		{Kind: callscript.KindStart},
		{Kind: callscript.KindSay, Text: "Hello", Think: 1500 * time.Millisecond,
			BargeIn: &callscript.BargeIn{AfterLines: 0},
			Expect:  &callscript.Expect{Contains: []string{"hi"}, EndsCall: &yes},
			Answer:  &callscript.Answer{Lines: []callscript.AnswerLine{{Text: "Hi there.", At: 300 * time.Millisecond}}}},
		{Kind: callscript.KindHangup},
	}}
	out, err := callscript.Marshal(s)
	require.NoError(t, err)
	assert.Equal(t, `name: built
turns:
  - start: {}
  - say: Hello
    think: 1.5s
    barge_in:
      after_lines: 0
    expect:
      contains: [hi]
      ends_call: true
    answer:
      lines:
        - text: Hi there.
          at: 300ms
  - hangup: {}
`, string(out))
	back, err := callscript.Parse("built.yaml", out)
	require.NoError(t, err)
	clearLines(back)
	back.File = ""
	assert.Equal(t, s, back)

	_, err = callscript.Marshal(&callscript.Script{Turns: []callscript.Turn{{Kind: "shout"}}})
	require.ErrorContains(t, err, `unknown turn kind "shout"`)
	_, err = callscript.Marshal(&callscript.Script{Turns: []callscript.Turn{{Kind: callscript.KindStatus}}})
	require.ErrorContains(t, err, "status turn without an event kind")
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, src string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600))
	}
	write("b.yaml", "turns: [{say: hi}]\n")
	write("a.json", `{"turns": [{"say": "yo"}]}`)
	write("notes.txt", "not a script")
	scripts, err := callscript.Load(dir)
	require.NoError(t, err)
	require.Len(t, scripts, 2)
	assert.Equal(t, "a", scripts[0].Name)
	assert.Equal(t, "b", scripts[1].Name)

	write("c.yml", "turns: [{say: hi, think: x}]\n")
	write("d.yaml", "turns: 3\n")
	_, err = callscript.Load(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "c.yml")+`:1: think: "x" is not a duration`)
	assert.Contains(t, err.Error(), filepath.Join(dir, "d.yaml")+`:1: turns: want a list`)

	_, err = callscript.Load(filepath.Join(dir, "missing.yaml"))
	require.ErrorContains(t, err, "no such file")
	_, err = callscript.Load(t.TempDir())
	require.ErrorContains(t, err, "no *.yaml, *.yml or *.json file")
}

func TestParseFileTooLarge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.yaml")
	require.NoError(t, os.WriteFile(path, make([]byte, callscript.MaxFileSize+1), 0o600))
	_, err := callscript.ParseFile(path)
	require.ErrorContains(t, err, "big.yaml: larger than")
}

// FuzzParse: no input makes Parse panic, and every script it accepts survives Marshal and
// Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"testdata/full.yaml", "testdata/full.json"} {
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte("turns: [{say: hi, barge_in: {after: 1s}}]"))
	f.Add([]byte("turns: [{status: {event: x, a: [1, {b: c}]}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := callscript.Parse("f.yaml", data)
		if err != nil {
			return
		}
		require.NotEmpty(t, s.Turns)
		out, err := callscript.Marshal(s)
		require.NoError(t, err)
		back, err := callscript.Parse("f.yaml", out)
		require.NoError(t, err, "marshalled:\n%s", out)
		clearLines(s)
		clearLines(back)
		require.Equal(t, s, back)
	})
}

// clearLines forgets where turns were in their file, which a round trip changes.
func clearLines(s *callscript.Script) {
	for i := range s.Turns {
		s.Turns[i].Line = 0
	}
}

// TestDocsExamples: every whole script in docs/scripts.md (a yaml or json block that starts
// a script) parses, so the reference cannot drift from the parser.
func TestDocsExamples(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docs/scripts.md")
	require.NoError(t, err)
	blocks := strings.Split(string(raw), "```")
	n := 0
	for i := 1; i < len(blocks); i += 2 {
		lang, body, _ := strings.Cut(blocks[i], "\n")
		if lang != "yaml" && lang != "json" {
			continue
		}
		if !strings.HasPrefix(body, "name:") && !strings.HasPrefix(body, "turns:") && !strings.HasPrefix(body, "{") {
			continue // a fragment of a script
		}
		n++
		_, err := callscript.Parse(fmt.Sprintf("docs/scripts.md block %d", n), []byte(body))
		assert.NoError(t, err, "%s", body)
	}
	assert.GreaterOrEqual(t, n, 3)
}
