package callscript

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a script file, so a wrong path (a log, a dump) is refused quickly.
const MaxFileSize = 8 << 20

// Problem is one mistake in a script file, at a line (0 when the file as a whole is wrong).
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) Error() string {
	switch {
	case p.File == "" && p.Line == 0:
		return p.Msg
	case p.Line == 0:
		return p.File + ": " + p.Msg
	default:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
}

// ParseError is every mistake found in one script, in file order. Each line of its Error is
// "file:line: problem".
type ParseError struct {
	Problems []Problem
}

func (e *ParseError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "\n")
}

// ParseFile reads and parses one script file (YAML or JSON).
func ParseFile(path string) (*Script, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read script: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read script %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &ParseError{Problems: []Problem{{File: path, Msg: fmt.Sprintf("larger than %d bytes: not a call script", MaxFileSize)}}}
	}
	return Parse(path, data)
}

// Load reads scripts from files and directories (every *.yaml, *.yml and *.json directly
// inside, in name order). It reads every file and returns the problems of all of them
// together, so one run shows every broken script.
func Load(paths ...string) ([]*Script, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read scripts: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("read scripts: %w", err)
		}
		n := len(files)
		for _, e := range entries {
			if !e.IsDir() && IsScriptFile(e.Name()) {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		if len(files) == n {
			return nil, fmt.Errorf("read scripts: no *.yaml, *.yml or *.json file in %s", p)
		}
	}
	var scripts []*Script
	var errs []error
	for _, f := range files {
		s, err := ParseFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		scripts = append(scripts, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return scripts, nil
}

// IsScriptFile reports whether a file name has a script's extension.
func IsScriptFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Parse parses one script. file names it in errors and becomes Script.File. The error is a
// *ParseError listing every mistake found.
func Parse(file string, data []byte) (*Script, error) {
	p := &parser{file: file}
	s := p.script(data)
	if len(p.problems) > 0 {
		sort.SliceStable(p.problems, func(i, j int) bool { return p.problems[i].Line < p.problems[j].Line })
		return nil, &ParseError{Problems: p.problems}
	}
	s.File = file
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	return s, nil
}

type parser struct {
	file     string
	problems []Problem
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) script(data []byte) *Script {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "empty file: a script needs turns")
			return nil
		}
		p.syntax(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(&extra, "a second YAML document: one file holds one script")
	} else if !errors.Is(err, io.EOF) {
		p.syntax(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "a script is a mapping with name, line_id, from, to, recorded and turns; got %s", describe(root))
		return nil
	}
	s := &Script{}
	var turns *yaml.Node
	p.fields(root, "script", func(key string, k, v *yaml.Node) bool {
		switch key {
		case "name":
			s.Name = p.str(v, key)
		case "line_id":
			s.LineID = p.str(v, key)
		case "from":
			s.From = p.str(v, key)
		case "to":
			s.To = p.str(v, key)
		case "direction":
			s.Direction = p.str(v, key)
			if s.Direction != "" && s.Direction != "inbound" && s.Direction != "outbound" {
				p.errorf(v, "direction %q: want inbound or outbound", s.Direction)
			}
		case "recorded":
			s.Recorded = p.recorded(v)
		case "turns":
			turns = v
		default:
			return false
		}
		return true
	}, "name, line_id, from, to, direction, recorded, turns")
	if turns == nil {
		p.errorf(root, "no turns: a script needs a turns list")
		return s
	}
	if turns.Kind != yaml.SequenceNode {
		p.errorf(turns, "turns: want a list of turns, got %s", describe(turns))
		return s
	}
	if len(turns.Content) == 0 {
		p.errorf(turns, "turns: the list is empty")
	}
	callTurns := 0 // turns before this one that belong to the call (all but status callbacks)
	for i, n := range turns.Content {
		t, ok := p.turn(n)
		if !ok {
			continue
		}
		switch {
		case t.Kind == KindStart && callTurns > 0:
			p.errorf(n, "start must come before the call's other turns (only status callbacks may precede it)")
		case t.Kind == KindHangup && i < len(turns.Content)-1:
			p.errorf(n, "hangup must be the last turn")
		}
		if t.Kind != KindStatus {
			callTurns++
		}
		s.Turns = append(s.Turns, t)
	}
	return s
}

// syntax turns a YAML syntax error into a problem at its line.
func (p *parser) syntax(err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			p.addYAML(msg)
		}
		return
	}
	p.addYAML(err.Error())
}

func (p *parser) addYAML(msg string) {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.problems = append(p.problems, Problem{File: p.file, Line: line, Msg: "not valid YAML or JSON: " + m[2]})
		return
	}
	p.problems = append(p.problems, Problem{File: p.file, Msg: "not valid YAML or JSON: " + strings.TrimPrefix(msg, "yaml: ")})
}

// fields walks a mapping; each key not handled by fn (returning false) is reported as
// unknown, with the keys that are known. Duplicate keys are reported too.
func (p *parser) fields(m *yaml.Node, what string, fn func(key string, k, v *yaml.Node) bool, known string) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, "%s: a key must be a plain word, got %s", what, describe(k))
			continue
		}
		key := k.Value
		if seen[key] {
			p.errorf(k, "%s: key %q given twice", what, key)
			continue
		}
		seen[key] = true
		if !fn(key, k, v) {
			p.errorf(k, "%s: unknown key %q (known: %s)", what, key, known)
		}
	}
}

func (p *parser) recorded(n *yaml.Node) *Recorded {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "recorded: want a mapping with at, agent, prompt_version, got %s", describe(n))
		return nil
	}
	r := &Recorded{}
	p.fields(n, "recorded", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "at":
			s := p.str(v, "recorded.at")
			if s == "" {
				break
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				p.errorf(v, "recorded.at %q: want an RFC 3339 time such as 2026-11-30T12:00:00Z", s)
				break
			}
			r.At = t
		case "agent":
			r.Agent = p.str(v, "recorded.agent")
		case "prompt_version":
			r.PromptVersion = p.str(v, "recorded.prompt_version")
		default:
			return false
		}
		return true
	}, "at, agent, prompt_version")
	return r
}

// turnKeys are the keys each kind of turn accepts besides its own.
var turnKeys = map[Kind][]string{
	KindStart:  {"think"},
	KindSay:    {"think", "barge_in", "retry", "duplicate", "expect", "answer"},
	KindStatus: {"think"},
	KindSMS:    {"think"},
	KindSend:   {"think"},
	KindHangup: {"think"},
}

func (p *parser) turn(n *yaml.Node) (Turn, bool) {
	t := Turn{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "a turn is a mapping with one of %s, got %s", kindList(), describe(n))
		return t, false
	}
	// Find the turn's kind first, so the other keys can be checked against it.
	var kindKey, kindVal *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if slices.Contains(Kinds, Kind(k.Value)) {
			if kindKey != nil {
				p.errorf(k, "a turn has one kind, got both %s and %s (start a new list item with -)", kindKey.Value, k.Value)
				return t, false
			}
			kindKey, kindVal = k, n.Content[i+1]
		}
	}
	if kindKey == nil {
		p.errorf(n, "a turn needs one of %s", kindList())
		return t, false
	}
	t.Kind = Kind(kindKey.Value)
	t.Line = kindKey.Line
	switch t.Kind {
	case KindSay, KindSMS:
		t.Text = p.str(kindVal, string(t.Kind))
		if kindVal.Kind == yaml.ScalarNode && strings.TrimSpace(t.Text) == "" && t.Kind == KindSay {
			p.errorf(kindVal, "say: the caller's words are empty")
		}
	case KindStart, KindHangup:
		t.Fields = p.body(kindVal, string(t.Kind), false)
	case KindStatus, KindSend:
		t.Fields = p.body(kindVal, string(t.Kind), true)
		if ev, ok := t.Fields["event"]; ok {
			t.Event, _ = ev.(string)
			delete(t.Fields, "event")
			if len(t.Fields) == 0 {
				t.Fields = nil
			}
		}
	}
	allowed := turnKeys[t.Kind]
	known := strings.Join(append([]string{string(t.Kind)}, allowed...), ", ")
	p.fields(n, string(t.Kind)+" turn", func(key string, k, v *yaml.Node) bool {
		if k == kindKey {
			return true
		}
		if !slices.Contains(allowed, key) {
			return false
		}
		switch key {
		case "think":
			t.Think = p.duration(v, "think")
		case "barge_in":
			t.BargeIn = p.bargeIn(v)
		case "retry":
			t.Retry = p.retry(v)
		case "duplicate":
			t.Duplicate = p.boolean(v, "duplicate")
		case "expect":
			t.Expect = p.expect(v)
		case "answer":
			t.Answer = p.answer(v)
		}
		return true
	}, known)
	faults := 0
	for _, set := range []bool{t.BargeIn != nil, t.Retry != nil, t.Duplicate} {
		if set {
			faults++
		}
	}
	if faults > 1 {
		p.errorf(kindKey, "say: use at most one of barge_in, retry and duplicate per turn")
	}
	return t, true
}

// body reads the mapping of a start, hangup, status or send turn: extra body fields. With
// needEvent, the mapping must name its event kind.
func (p *parser) body(n *yaml.Node, what string, needEvent bool) map[string]any {
	if isNull(n) {
		if needEvent {
			p.errorf(n, "%s: want a mapping with at least event (e.g. {event: call_incoming})", what)
		}
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: want a mapping of body fields, got %s", what, describe(n))
		return nil
	}
	var fields map[string]any
	if err := n.Decode(&fields); err != nil {
		p.errorf(n, "%s: body fields must be plain JSON values (text keys): %s", what, strings.TrimPrefix(err.Error(), "yaml: "))
		return nil
	}
	// The fields go into a JSON body: keep only what JSON can say, in the types
	// encoding/json reads back, so a script means the same after Marshal.
	raw, err := json.Marshal(fields)
	if err == nil {
		fields = nil
		err = json.Unmarshal(raw, &fields)
	}
	if err != nil {
		p.errorf(n, "%s: body fields must be plain JSON values (text keys): %v", what, err)
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "event" && !needEvent:
			p.errorf(k, "%s: the event kind is fixed (%s); use send for another event", what, map[string]string{"start": "call_started", "hangup": "call_ended"}[what])
		case k.Value == "event" && (v.Kind != yaml.ScalarNode || v.Tag != "!!str" || v.Value == ""):
			p.errorf(v, "%s: event must be a non-empty string", what)
		case k.Value == "call_id" || k.Value == "line_id":
			p.errorf(k, "%s: %s is set by the player (use the script's line_id)", what, k.Value)
		}
	}
	if _, ok := fields["event"]; needEvent && !ok {
		p.errorf(n, "%s: event is missing (e.g. {event: call_incoming})", what)
	}
	if len(fields) == 0 {
		return nil
	}
	return fields
}

func (p *parser) bargeIn(n *yaml.Node) *BargeIn {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "barge_in: want a mapping with after_lines or after, got %s", describe(n))
		return nil
	}
	b := &BargeIn{}
	var lines, after bool
	p.fields(n, "barge_in", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "after_lines":
			lines = true
			b.AfterLines = p.integer(v, "barge_in.after_lines")
			if b.AfterLines < 0 {
				p.errorf(v, "barge_in.after_lines: want 0 or more lines")
			}
		case "after":
			after = true
			b.After = p.duration(v, "barge_in.after")
			if b.After == 0 {
				p.errorf(v, "barge_in.after: want a time after the message was sent, more than 0 (or use after_lines: 0)")
			}
		case "heard":
			s := p.str(v, "barge_in.heard")
			if s != "auto" {
				b.Heard = &s
			}
		case "late":
			b.Late = p.duration(v, "barge_in.late")
		default:
			return false
		}
		return true
	}, "after_lines, after, heard, late")
	if lines == after {
		p.errorf(n, "barge_in: give exactly one of after_lines and after")
	}
	return b
}

func (p *parser) retry(n *yaml.Node) *Retry {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "retry: want a mapping with when (after or streaming) and after, got %s", describe(n))
		return nil
	}
	r := &Retry{}
	p.fields(n, "retry", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "when":
			r.When = RetryWhen(p.str(v, "retry.when"))
			if r.When != RetryAfterAnswer && r.When != RetryWhileStreaming {
				p.errorf(v, "retry.when %q: want after (the answer ended) or streaming (while it streams)", r.When)
			}
		case "after":
			r.After = p.duration(v, "retry.after")
		default:
			return false
		}
		return true
	}, "when, after")
	if r.When == "" {
		p.errorf(n, "retry: when is missing (after or streaming)")
	}
	return r
}

func (p *parser) expect(n *yaml.Node) *Expect {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "expect: want a mapping, got %s", describe(n))
		return nil
	}
	e := &Expect{}
	p.fields(n, "expect", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "contains":
			e.Contains = p.strings(v, "expect.contains")
		case "not_contains":
			e.NotContains = p.strings(v, "expect.not_contains")
		case "matches":
			e.Matches = p.str(v, "expect.matches")
			if _, err := regexp.Compile(e.Matches); err != nil {
				p.errorf(v, "expect.matches: %v", err)
			}
		case "first_line_within":
			e.FirstLineWithin = p.duration(v, "expect.first_line_within")
			if e.FirstLineWithin == 0 {
				p.errorf(v, "expect.first_line_within: want a bound above 0")
			}
		case "no_hold":
			e.NoHold = p.boolean(v, "expect.no_hold")
		case "no_apology":
			e.NoApology = p.boolean(v, "expect.no_apology")
		case "tool_called":
			e.ToolCalled = p.strings(v, "expect.tool_called")
		case "tool_not_called":
			e.ToolNotCalled = p.strings(v, "expect.tool_not_called")
		case "ends_call":
			b := p.boolean(v, "expect.ends_call")
			e.EndsCall = &b
		default:
			return false
		}
		return true
	}, "contains, not_contains, matches, first_line_within, no_hold, no_apology, tool_called, tool_not_called, ends_call")
	return e
}

func (p *parser) answer(n *yaml.Node) *Answer {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "answer: want a mapping with lines, tools, ended_call, got %s", describe(n))
		return nil
	}
	a := &Answer{}
	p.fields(n, "answer", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "lines":
			if isNull(v) {
				break
			}
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "answer.lines: want a list of {text, at}, got %s", describe(v))
				break
			}
			for _, ln := range v.Content {
				a.Lines = append(a.Lines, p.answerLine(ln))
			}
		case "tools":
			if isNull(v) {
				break
			}
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "answer.tools: want a list of {name, args}, got %s", describe(v))
				break
			}
			for _, tn := range v.Content {
				a.Tools = append(a.Tools, p.toolCall(tn))
			}
		case "ended_call":
			a.EndedCall = p.boolean(v, "answer.ended_call")
		default:
			return false
		}
		return true
	}, "lines, tools, ended_call")
	return a
}

func (p *parser) answerLine(n *yaml.Node) AnswerLine {
	var l AnswerLine
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "answer line: want {text, at}, got %s", describe(n))
		return l
	}
	p.fields(n, "answer line", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "text":
			l.Text = p.str(v, "answer line text")
		case "at":
			l.At = p.duration(v, "answer line at")
		case "hold":
			l.Hold = p.boolean(v, "answer line hold")
		default:
			return false
		}
		return true
	}, "text, at, hold")
	return l
}

func (p *parser) toolCall(n *yaml.Node) ToolCall {
	var c ToolCall
	if n.Kind == yaml.ScalarNode {
		c.Name = p.str(n, "tool")
		return c
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "tool: want a name or {name, args}, got %s", describe(n))
		return c
	}
	p.fields(n, "tool", func(key string, _, v *yaml.Node) bool {
		switch key {
		case "name":
			c.Name = p.str(v, "tool name")
		case "args":
			c.Args = p.str(v, "tool args")
		default:
			return false
		}
		return true
	}, "name, args")
	if c.Name == "" {
		p.errorf(n, "tool: name is missing")
	}
	return c
}

// str reads a scalar as a string. Numbers and booleans are taken as written ("12345"), so
// an unquoted order number is not an error; null is "".
func (p *parser) str(n *yaml.Node, what string) string {
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s: want text, got %s", what, describe(n))
		return ""
	}
	return n.Value
}

// strings reads a list of strings; one string is a list of one.
func (p *parser) strings(n *yaml.Node, what string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{p.nonEmpty(n, what)}
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s: want a list of text, got %s", what, describe(n))
		return nil
	}
	var out []string // nil for an empty list, as Marshal leaves it out
	for _, c := range n.Content {
		out = append(out, p.nonEmpty(c, what))
	}
	return out
}

func (p *parser) nonEmpty(n *yaml.Node, what string) string {
	s := p.str(n, what)
	if n.Kind == yaml.ScalarNode && s == "" {
		p.errorf(n, "%s: an empty entry matches everything", what)
	}
	return s
}

func (p *parser) boolean(n *yaml.Node, what string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errorf(n, "%s: want true or false, got %s", what, describe(n))
		return false
	}
	b, _ := strconv.ParseBool(n.Value)
	return b
}

func (p *parser) integer(n *yaml.Node, what string) int {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		p.errorf(n, "%s: want a whole number, got %s", what, describe(n))
		return 0
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		p.errorf(n, "%s: want a whole number, got %q", what, n.Value)
	}
	return v
}

// maxDuration bounds every duration in a script: no call waits an hour.
const maxDuration = time.Hour

// duration reads a Go duration ("1.2s", "800ms"). A bare 0 is accepted; other bare numbers
// are refused, since "think: 2" could mean seconds or milliseconds.
func (p *parser) duration(n *yaml.Node, what string) time.Duration {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.errorf(n, "%s: want a duration such as 1.2s or 800ms, got %s", what, describe(n))
		return 0
	}
	if n.Value == "0" {
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		p.errorf(n, "%s: %q is not a duration: write it with a unit, such as 1.2s or 800ms", what, n.Value)
		return 0
	}
	if d < 0 {
		p.errorf(n, "%s: %s is negative", what, n.Value)
		return 0
	}
	if d > maxDuration {
		p.errorf(n, "%s: %s is longer than %s", what, n.Value, maxDuration)
		return 0
	}
	return d
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	}
	return "an unknown node"
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
