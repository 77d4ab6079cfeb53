package callscript

import (
	"bytes"
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

// Marshal writes a script as YAML, in the form Parse reads: Parse(Marshal(s)) gives s back
// (but for File, which is not written, and Name, which Parse defaults from the file name
// when empty).
func Marshal(s *Script) ([]byte, error) {
	out := scriptOut{
		Name: s.Name, LineID: s.LineID, From: s.From, To: s.To, Direction: s.Direction,
	}
	if r := s.Recorded; r != nil {
		ro := &recordedOut{Agent: r.Agent, PromptVersion: r.PromptVersion}
		if !r.At.IsZero() {
			ro.At = r.At.Format(time.RFC3339Nano)
		}
		out.Recorded = ro
	}
	for i, t := range s.Turns {
		to, err := turnToOut(t)
		if err != nil {
			return nil, fmt.Errorf("marshal script %s: turn %d: %w", s.Name, i+1, err)
		}
		out.Turns = append(out.Turns, to)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("marshal script %s: %w", s.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal script %s: %w", s.Name, err)
	}
	return buf.Bytes(), nil
}

type scriptOut struct {
	Name      string       `yaml:"name,omitempty"`
	LineID    string       `yaml:"line_id,omitempty"`
	From      string       `yaml:"from,omitempty"`
	To        string       `yaml:"to,omitempty"`
	Direction string       `yaml:"direction,omitempty"`
	Recorded  *recordedOut `yaml:"recorded,omitempty"`
	Turns     []turnOut    `yaml:"turns"`
}

type recordedOut struct {
	At            string `yaml:"at,omitempty"`
	Agent         string `yaml:"agent,omitempty"`
	PromptVersion string `yaml:"prompt_version,omitempty"`
}

type turnOut struct {
	Start     *map[string]any `yaml:"start,omitempty"`
	Say       *string         `yaml:"say,omitempty"`
	Status    map[string]any  `yaml:"status,omitempty"`
	SMS       *string         `yaml:"sms,omitempty"`
	Send      map[string]any  `yaml:"send,omitempty"`
	Hangup    *map[string]any `yaml:"hangup,omitempty"`
	Think     dur             `yaml:"think,omitempty"`
	BargeIn   *bargeInOut     `yaml:"barge_in,omitempty"`
	Retry     *retryOut       `yaml:"retry,omitempty"`
	Duplicate bool            `yaml:"duplicate,omitempty"`
	Expect    *expectOut      `yaml:"expect,omitempty"`
	Answer    *answerOut      `yaml:"answer,omitempty"`
}

type bargeInOut struct {
	AfterLines *int    `yaml:"after_lines,omitempty"`
	After      dur     `yaml:"after,omitempty"`
	Heard      *string `yaml:"heard,omitempty"`
	Late       dur     `yaml:"late,omitempty"`
}

type retryOut struct {
	When  RetryWhen `yaml:"when"`
	After dur       `yaml:"after,omitempty"`
}

type expectOut struct {
	Contains        []string `yaml:"contains,omitempty,flow"`
	NotContains     []string `yaml:"not_contains,omitempty,flow"`
	Matches         string   `yaml:"matches,omitempty"`
	FirstLineWithin dur      `yaml:"first_line_within,omitempty"`
	NoHold          bool     `yaml:"no_hold,omitempty"`
	NoApology       bool     `yaml:"no_apology,omitempty"`
	ToolCalled      []string `yaml:"tool_called,omitempty,flow"`
	ToolNotCalled   []string `yaml:"tool_not_called,omitempty,flow"`
	EndsCall        *bool    `yaml:"ends_call,omitempty"`
}

type answerOut struct {
	Lines     []answerLineOut `yaml:"lines,omitempty"`
	Tools     []toolCallOut   `yaml:"tools,omitempty"`
	EndedCall bool            `yaml:"ended_call,omitempty"`
}

type answerLineOut struct {
	Text string `yaml:"text"`
	At   dur    `yaml:"at"`
	Hold bool   `yaml:"hold,omitempty"`
}

type toolCallOut struct {
	Name string `yaml:"name"`
	Args string `yaml:"args,omitempty"`
}

// dur writes a duration as Go writes it ("1.2s"), which Parse reads back.
type dur time.Duration

func (d dur) MarshalYAML() (any, error) {
	if d == 0 {
		return "0", nil
	}
	return time.Duration(d).String(), nil
}

func turnToOut(t Turn) (turnOut, error) {
	o := turnOut{Think: dur(t.Think)}
	fields := func() map[string]any {
		m := make(map[string]any, len(t.Fields)+1)
		for k, v := range t.Fields {
			m[k] = v
		}
		return m
	}
	switch t.Kind {
	case KindStart:
		m := fields()
		o.Start = &m
	case KindHangup:
		m := fields()
		o.Hangup = &m
	case KindSay:
		text := t.Text
		o.Say = &text
	case KindSMS:
		text := t.Text
		o.SMS = &text
	case KindStatus, KindSend:
		if t.Event == "" {
			return o, fmt.Errorf("%s turn without an event kind", t.Kind)
		}
		m := fields()
		m["event"] = t.Event
		if t.Kind == KindStatus {
			o.Status = m
		} else {
			o.Send = m
		}
	default:
		return o, fmt.Errorf("unknown turn kind %q", t.Kind)
	}
	if b := t.BargeIn; b != nil {
		bo := &bargeInOut{After: dur(b.After), Heard: b.Heard, Late: dur(b.Late)}
		if b.After == 0 {
			n := b.AfterLines
			bo.AfterLines = &n
		}
		o.BargeIn = bo
	}
	if r := t.Retry; r != nil {
		o.Retry = &retryOut{When: r.When, After: dur(r.After)}
	}
	o.Duplicate = t.Duplicate
	if e := t.Expect; e != nil {
		o.Expect = &expectOut{
			Contains: e.Contains, NotContains: e.NotContains, Matches: e.Matches,
			FirstLineWithin: dur(e.FirstLineWithin), NoHold: e.NoHold, NoApology: e.NoApology,
			ToolCalled: e.ToolCalled, ToolNotCalled: e.ToolNotCalled, EndsCall: e.EndsCall,
		}
	}
	if a := t.Answer; a != nil {
		ao := &answerOut{EndedCall: a.EndedCall}
		for _, l := range a.Lines {
			ao.Lines = append(ao.Lines, answerLineOut{Text: l.Text, At: dur(l.At), Hold: l.Hold})
		}
		for _, c := range a.Tools {
			ao.Tools = append(ao.Tools, toolCallOut(c))
		}
		o.Answer = ao
	}
	return o, nil
}
