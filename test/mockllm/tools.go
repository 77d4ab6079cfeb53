package mockllm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// GoodbyeReply is what the unscripted mock says before it calls end_call (see the package
// documentation).
const GoodbyeReply = "Thanks for calling, goodbye!"

// endCallTool is the brain's built-in tool that hangs up after the goodbye.
const endCallTool = "end_call"

// ToolCall is one function call: scripted in Behavior.ToolCalls, or recorded on an assistant
// message of a request.
//
// In JSON it is {"id","name","arguments"}, "arguments" being the JSON text of the arguments as
// OpenAI sends it. When reading, any other JSON value (usually an object) is accepted in its
// place and kept as its compact text, so a script may write
// {"name":"check_order","arguments":{"order_id":"12345"}}.
type ToolCall struct {
	// ID is the call's id. A scripted call may leave it empty: each answer then gets a fresh
	// "call_…" id, as a real model does.
	ID string
	// Name is the function's name. A script may name a tool the request did not offer, as a
	// confused model does.
	Name string
	// Arguments is the JSON text of the arguments. It is sent as written, even when it is not
	// valid JSON (models sometimes produce that too); "" is sent as "{}".
	Arguments string
}

type toolCallJSON struct {
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// MarshalJSON writes {"id","name","arguments"} with arguments as a JSON string.
func (c ToolCall) MarshalJSON() ([]byte, error) {
	w := toolCallJSON{ID: c.ID, Name: c.Name}
	if c.Arguments != "" {
		s, err := json.Marshal(c.Arguments)
		if err != nil {
			return nil, fmt.Errorf("encode arguments of %s: %w", c.Name, err)
		}
		w.Arguments = s
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads {"id","name","arguments"}; arguments may be a JSON string or any other
// JSON value. Unknown keys are rejected, as in Behavior.
func (c *ToolCall) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w toolCallJSON
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("decode tool call: %w", err)
	}
	args, err := jsonText(w.Arguments)
	if err != nil {
		return fmt.Errorf("decode arguments of %s: %w", w.Name, err)
	}
	*c = ToolCall{ID: w.ID, Name: w.Name, Arguments: args}
	return nil
}

// jsonText returns a JSON string's value, or any other JSON value as its compact text; ""
// for null or nothing.
func jsonText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0, string(raw) == "null":
		return "", nil
	case raw[0] == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// Tool is one function tool a request offered the model.
type Tool struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Parameters is the JSON schema of the arguments, as sent; nil when none was.
	Parameters json.RawMessage `json:"parameters,omitempty"`
}

// hasParam reports whether the tool's parameter schema has this top-level property.
func (t Tool) hasParam(name string) bool {
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if json.Unmarshal(t.Parameters, &schema) != nil {
		return false
	}
	_, ok := schema.Properties[name]
	return ok
}

// autoAnswer is what the mock says when no behaviour scripts the words or the calls: the rules
// of the package documentation, in that order.
func autoAnswer(rec Request) (string, []ToolCall) {
	if text, ok := toolResultReply(rec.Messages); ok {
		return text, nil
	}
	last := lastUserText(rec.Messages)
	if digits := orderNumber(last); digits != "" {
		for _, t := range rec.ToolDefs {
			if t.hasParam("order_id") {
				args, err := json.Marshal(map[string]string{"order_id": digits})
				if err != nil {
					break // a map of strings always encodes
				}
				return "", []ToolCall{{Name: t.Name, Arguments: string(args)}}
			}
		}
	}
	if saysGoodbye(last) {
		for _, t := range rec.ToolDefs {
			if t.Name != endCallTool {
				continue
			}
			args := "{}"
			if t.hasParam("reason") {
				args = `{"reason":"caller said goodbye"}`
			}
			return GoodbyeReply, []ToolCall{{Name: endCallTool, Arguments: args}}
		}
	}
	return demoReply(rec.Messages), nil
}

// toolResultReply answers the tool results that end the conversation, if it ends with any:
// one sentence per result, none for end_call (its goodbye was said before the call).
func toolResultReply(msgs []Message) (string, bool) {
	start := len(msgs)
	for start > 0 && msgs[start-1].Role == "tool" {
		start--
	}
	if start == len(msgs) {
		return "", false
	}
	names := map[string]string{}
	for _, m := range msgs[:start] {
		for _, c := range m.ToolCalls {
			names[c.ID] = c.Name
		}
	}
	var sentences []string
	for _, m := range msgs[start:] {
		name := names[m.ToolCallID]
		if name == "" {
			name = m.Name
		}
		if name == endCallTool {
			continue
		}
		sentences = append(sentences, describeResult(m.Content))
	}
	return strings.Join(sentences, " "), true
}

// describeResult turns a tool result into a sentence a caller can hear. A JSON object reads as
// its string and number fields ("status shipped, eta Thursday"), leaving out ids, which only
// echo the question; an "error" field reads as an apology; anything else is read as it is.
func describeResult(content string) string {
	const checked = "I checked that for you"
	fields, ok := objectFields(content)
	if !ok {
		s, err := jsonText(json.RawMessage(content))
		if err != nil {
			s = content // not JSON: plain text
		}
		if s = strings.TrimRight(strings.TrimSpace(s), ".!? "); s == "" {
			return checked + "."
		}
		return checked + ": " + s + "."
	}
	var parts []string
	for _, f := range fields {
		if f.key == "error" {
			return "I'm sorry, I couldn't check that: " + strings.TrimRight(f.value, ".!? ") + "."
		}
		if f.key == "id" || strings.HasSuffix(f.key, "_id") {
			continue
		}
		parts = append(parts, strings.ReplaceAll(f.key, "_", " ")+" "+f.value)
	}
	if len(parts) == 0 {
		return checked + "."
	}
	return checked + ": " + strings.Join(parts, ", ") + "."
}

type field struct{ key, value string }

// objectFields returns the non-empty string and number fields of a JSON object, in the
// object's order; ok is false when s is not a JSON object.
func objectFields(s string) (fields []field, ok bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		switch v := v.(type) {
		case string:
			if v = strings.TrimSpace(v); v != "" {
				fields = append(fields, field{key, v})
			}
		case json.Number:
			fields = append(fields, field{key, v.String()})
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	return fields, true
}

func lastUserText(msgs []Message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].Content
		}
	}
	return ""
}

// numberRE finds 3 or more digits, which a transcript may group with single spaces or hyphens
// ("12345", "123 45", "123-45").
var numberRE = regexp.MustCompile(`[0-9](?:[ -]?[0-9]){2,}`)

// orderNumber returns the first number of 3 or more digits in text, separators removed, or "".
func orderNumber(text string) string {
	m := numberRE.FindString(text)
	return strings.NewReplacer(" ", "", "-", "").Replace(m)
}

// saysGoodbye reports whether the caller is ending the call: "bye", "goodbye", "that's all".
func saysGoodbye(text string) bool {
	l := strings.ToLower(strings.ReplaceAll(text, "’", "'"))
	words := strings.FieldsFunc(l, func(r rune) bool { return !unicode.IsLetter(r) && r != '\'' })
	for i, w := range words {
		switch {
		case w == "bye", w == "goodbye", w == "byebye":
			return true
		case w == "all" && i >= 1 && (words[i-1] == "that's" || words[i-1] == "thats"),
			w == "all" && i >= 2 && words[i-2] == "that" && words[i-1] == "is":
			return true
		}
	}
	return false
}

// argFragment is how many characters of arguments go in one streamed delta; OpenAI sends a
// token or two per delta, so a small call still arrives in several pieces.
const argFragment = 4

// fragments splits s into pieces of at most argFragment runes, never inside a rune.
func fragments(s string) []string {
	var out []string
	for s != "" {
		n, cut := 0, len(s)
		for i := range s {
			if n == argFragment {
				cut = i
				break
			}
			n++
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	return out
}
