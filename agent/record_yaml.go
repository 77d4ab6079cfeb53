package agent

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// encode writes the script as YAML in the call-script format (docs/scripts.md).
func (sc *recScript) encode() ([]byte, error) {
	doc := mapping()
	put(doc, "name", scalar(sc.Name))
	if sc.LineID != "" {
		put(doc, "line_id", scalar(sc.LineID))
	}
	if sc.From != "" {
		put(doc, "from", scalar(sc.From))
	}
	if sc.To != "" {
		put(doc, "to", scalar(sc.To))
	}
	if sc.Direction != "" {
		put(doc, "direction", scalar(sc.Direction))
	}
	rec := mapping()
	put(rec, "at", scalar(sc.At.UTC().Format(time.RFC3339Nano)))
	if sc.Agent != "" {
		put(rec, "agent", scalar(sc.Agent))
	}
	if sc.Version != "" {
		put(rec, "prompt_version", scalar(sc.Version))
	}
	put(doc, "recorded", rec)
	turns := &yaml.Node{Kind: yaml.SequenceNode}
	for _, t := range sc.Turns {
		turns.Content = append(turns.Content, t.node())
	}
	put(doc, "turns", turns)

	doc.HeadComment = sc.comment()
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode script of call %s: %w", sc.callID, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode script of call %s: %w", sc.callID, err)
	}
	return []byte(b.String()), nil
}

// comment says where the script came from and what it may lack.
func (sc *recScript) comment() string {
	lines := []string{"Recorded by callbrain from call " + sc.callID + "."}
	if !sc.ended {
		lines = append(lines, "No call_ended was received: written when the call went idle or the brain stopped.")
	}
	if sc.dropped > 0 {
		lines = append(lines, fmt.Sprintf("Incomplete: %d captures were dropped (the recording queue was full).", sc.dropped))
	}
	lines = append(lines, sc.notes...)
	return strings.Join(lines, "\n")
}

func (t recTurn) node() *yaml.Node {
	n := mapping()
	switch t.Kind {
	case "say", "sms":
		put(n, t.Kind, scalar(t.Text))
	case "status", "send":
		f := fieldsNode(t.Fields)
		f.Content = append([]*yaml.Node{scalar("event"), scalar(t.Event)}, f.Content...)
		put(n, t.Kind, f)
	default: // start, hangup
		put(n, t.Kind, fieldsNode(t.Fields))
	}
	if t.Think > 0 {
		put(n, "think", duration(t.Think))
	}
	if b := t.BargeIn; b != nil {
		m := mapping()
		if b.After > 0 {
			put(m, "after", duration(b.After))
		} else {
			put(m, "after_lines", integer(b.AfterLines))
		}
		put(m, "heard", scalar(b.Heard))
		if b.Late > 0 {
			put(m, "late", duration(b.Late))
		}
		put(n, "barge_in", m)
	}
	if r := t.Retry; r != nil {
		m := mapping()
		put(m, "when", scalar(r.When))
		put(m, "after", duration(r.After))
		put(n, "retry", m)
	}
	if t.Duplicate {
		put(n, "duplicate", yes())
	}
	if a := t.Answer; a != nil {
		m := mapping()
		lines := &yaml.Node{Kind: yaml.SequenceNode}
		for _, l := range a.Lines {
			ln := mapping()
			put(ln, "text", scalar(l.Text))
			put(ln, "at", duration(l.At))
			if l.Hold {
				put(ln, "hold", yes())
			}
			ln.Style = yaml.FlowStyle
			lines.Content = append(lines.Content, ln)
		}
		put(m, "lines", lines)
		if len(a.Tools) > 0 {
			tools := &yaml.Node{Kind: yaml.SequenceNode}
			for _, tc := range a.Tools {
				tn := mapping()
				put(tn, "name", scalar(tc.Name))
				if tc.Args != "" {
					put(tn, "args", scalar(tc.Args))
				}
				tools.Content = append(tools.Content, tn)
			}
			put(m, "tools", tools)
		}
		if a.EndedCall {
			put(m, "ended_call", yes())
		}
		put(n, "answer", m)
	}
	return n
}

func fieldsNode(f map[string]any) *yaml.Node {
	m := mapping()
	m.Style = yaml.FlowStyle
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var v yaml.Node
		_ = v.Encode(f[k]) // strings and numbers only: cannot fail
		put(m, k, &v)
	}
	return m
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func put(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, scalar(key), v)
}

// scalar is a string, quoted when YAML would read it as something else ("true", "12").
func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func yes() *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"} }

func integer(n int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(n)}
}

// duration writes d in Go's notation, to the millisecond: 1.2s, 850ms.
func duration(d time.Duration) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: d.Round(time.Millisecond).String()}
}
