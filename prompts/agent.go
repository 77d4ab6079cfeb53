package prompts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
)

// Settings are an agent's tunables from its front matter; zero values mean "use the brain's
// global default".
type Settings struct {
	Model          string
	Temperature    *float32
	MaxTokens      int
	TimeZone       string // IANA name, "" = UTC
	HoldingPhrases []string
	ApologyLine    string
	RecoveryLine   string
	StallLine      string
	FallbackModel  string
	Vars           map[string]string // default template variables; a line's vars override them
	Tools          []Tool
	EndCall        bool // the agent may end calls: the model is offered the built-in end_call tool
	Speech         Speech
}

// Speech is how an agent's answers are shaped for its voice (docs/speech.md); the zero value
// is the default: lists and symbols shaped, English, no ordinals, links left as written.
type Speech struct {
	Languages  []string // codes from SpeechLanguages; the first speaks
	NoLists    bool     // lists: false
	NoSymbols  bool     // symbols: false
	Ordinals   bool
	SpellLinks bool
	Breath     int // runes; 0 = the brain's default
}

// SpeechLanguages are the codes speech.languages accepts.
var SpeechLanguages = []string{"de", "en", "es", "fr"}

// Breath limits: a phrase shorter than a few words would chop every sentence; one longer than
// Saperly's line would never be split.
const (
	MinBreath = 40
	MaxBreath = 400
)

// EndCallTool is the name of the built-in tool offered to agents with end_call: true. No tool
// in a front matter may take it.
const EndCallTool = "end_call"

// Tool is an HTTP tool the model may call (function calling).
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage // JSON Schema object, validated as a JSON object with "type":"object" at load
	URL         string
	Method      string            // GET or POST (the default)
	Headers     map[string]string // header name -> NAME of the environment variable holding its value
	Timeout     time.Duration     // yaml like "3s"; default 5s; must be <= 10s
}

// Tool limits. A tool answers inside a turn the caller is waiting on, and Saperly allows 15 s
// between spoken lines, so a tool may never take longer than MaxToolTimeout.
const (
	DefaultToolTimeout = 5 * time.Second
	MaxToolTimeout     = 10 * time.Second
)

// Agent is one loaded agent file version. Immutable: it is shared by every call that uses it,
// so never modify its maps or slices.
type Agent struct {
	Name     string
	Source   string // the file it came from, or "embedded"
	Version  string // 12 hex digits of the SHA-256 of the whole file, logged on every turn
	Settings Settings
	Location *time.Location // parsed Settings.TimeZone

	tmpl *template.Template
	raw  []byte // the file, as read: what Version hashes
	// refs are the .Vars the prompt reads where the dot is the call (checked against the
	// vars each line provides); names adds the ones read anywhere else, sorted.
	refs  []varRef
	names []string
}

type varRef struct {
	name string
	line int
}

// CallData is what a system prompt is rendered with.
type CallData struct {
	CallID, LineID, Caller, Called, Direction string
	// Channel is "voice" (a call; the default when empty) or "sms" (a text conversation).
	Channel   string
	Returning bool              // this caller has called this line before
	Vars      map[string]string // the line's vars; they override the agent's
	Now       time.Time         // when the call is; zero means time.Now()
}

// renderData is the dot of a system prompt template. Every exported field is documented for
// operators in docs/agents.md.
type renderData struct {
	Caller, Called, Direction, LineID, CallID string
	Channel                                   string
	Returning                                 bool
	Vars                                      map[string]string
	Now                                       time.Time
	Date, Time, Weekday, TimeZone             string
}

// Render renders the system prompt for a call at d.Now (converted to a.Location); line vars in
// d.Vars override Settings.Vars. Loading renders every agent with sample values for each line
// that uses it, so Render fails only on a nil Agent or on line vars the loader did not see
// (an old version, pinned by a call, rendered with a lines.yaml that has changed since).
func (a *Agent) Render(d CallData) (string, error) {
	if a == nil || a.tmpl == nil {
		return "", errors.New("render prompt: no agent")
	}
	if d.Now.IsZero() {
		d.Now = time.Now()
	}
	if d.Channel == "" {
		d.Channel = "voice"
	}
	now := d.Now.In(a.Location)
	data := renderData{
		Caller: d.Caller, Called: d.Called, Direction: d.Direction, LineID: d.LineID, CallID: d.CallID,
		Returning: d.Returning, Channel: d.Channel,
		Vars:     mergeVars(a.Settings.Vars, d.Vars),
		Now:      now,
		Date:     now.Format("Monday, 2 January 2006"),
		Time:     now.Format("3:04 PM"),
		Weekday:  now.Weekday().String(),
		TimeZone: a.Location.String(),
	}
	var b strings.Builder
	if err := a.tmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render agent %s version %s: %w", a.Name, a.Version, err)
	}
	return strings.TrimSpace(b.String()), nil
}

// VarNames lists the template variables (.Vars.<name>) the system prompt uses, sorted.
func (a *Agent) VarNames() []string { return slices.Clone(a.names) }

func mergeVars(agent, line map[string]string) map[string]string {
	m := make(map[string]string, len(agent)+len(line))
	maps.Copy(m, agent)
	maps.Copy(m, line)
	return m
}

// frontMatter is the YAML between the "---" lines. Its yaml tags are the only keys allowed.
type frontMatter struct {
	Model          string            `yaml:"model"`
	Temperature    *float32          `yaml:"temperature"`
	MaxTokens      int               `yaml:"max_tokens"`
	TimeZone       string            `yaml:"timezone"`
	HoldingPhrases []string          `yaml:"holding_phrases"`
	ApologyLine    string            `yaml:"apology_line"`
	RecoveryLine   string            `yaml:"recovery_line"`
	StallLine      string            `yaml:"stall_line"`
	FallbackModel  string            `yaml:"fallback_model"`
	Vars           map[string]string `yaml:"vars"`
	Tools          []toolSpec        `yaml:"tools"`
	EndCall        bool              `yaml:"end_call"`
	Speech         speechSpec        `yaml:"speech"`
}

type speechSpec struct {
	Languages  []string `yaml:"languages"`
	Lists      *bool    `yaml:"lists"`
	Symbols    *bool    `yaml:"symbols"`
	Ordinals   bool     `yaml:"ordinals"`
	SpellLinks bool     `yaml:"spell_links"`
	Breath     int      `yaml:"breath"`
}

type toolSpec struct {
	Name        string            `yaml:"name"`
	Description string            `yaml:"description"`
	Parameters  yaml.Node         `yaml:"parameters"`
	URL         string            `yaml:"url"`
	Method      string            `yaml:"method"`
	Headers     map[string]string `yaml:"headers"`
	Timeout     string            `yaml:"timeout"`
}

var (
	frontMatterKeys = yamlKeys(frontMatter{})
	toolKeys        = yamlKeys(toolSpec{})
	speechKeys      = yamlKeys(speechSpec{})

	// identRe is what a template can reach as .Vars.<name>.
	identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// envRe is a portable environment variable name.
	envRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// toolNameRe is what OpenAI-compatible APIs accept as a function name.
	toolNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// headerRe is an HTTP header name (RFC 9110 token).
	headerRe = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
)

// version is the content hash logged on every turn: 12 hex digits of the SHA-256 of the file.
func version(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])[:12]
}

// parseAgent reads one agent file. Every problem found is returned, each naming path and line;
// the template is only parsed here, and rendered by checkRender once the lines are known.
func parseAgent(name, path string, raw []byte) (*Agent, []*FileError) {
	a := &Agent{Name: name, Source: path, Version: version(raw), Location: time.UTC, raw: raw}
	text := strings.TrimPrefix(string(raw), "\ufeff")
	fm, body, bodyLine, err := splitFrontMatter(path, text)
	if err != nil {
		return nil, []*FileError{err}
	}
	var errs []*FileError
	if fm != "" {
		errs = a.parseSettings(path, fm)
	}
	if strings.TrimSpace(body) == "" {
		errs = append(errs, fileErr(path, bodyLine, "the system prompt is empty: it is the text of the file, below the front matter if any"))
		return nil, errs
	}
	// The body is parsed behind as many newlines as precede it, so template errors carry
	// file line numbers.
	t, perr := template.New(templateName).Option("missingkey=error").Parse(strings.Repeat("\n", bodyLine-1) + body)
	if perr != nil {
		line, msg := splitTemplateError(perr.Error())
		errs = append(errs, fileErr(path, line, "template: %s", msg))
	} else {
		a.tmpl = t
		var problems []*FileError
		a.refs, a.names, problems = inspect(path, t)
		errs = append(errs, problems...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return a, nil
}

// splitFrontMatter separates the YAML front matter from the prompt. A file whose first line is
// not "---" has no front matter. bodyLine is the file line the prompt starts on.
func splitFrontMatter(path, text string) (fm, body string, bodyLine int, err *FileError) {
	lines := strings.SplitAfter(text, "\n")
	if strings.TrimSpace(lines[0]) != "---" {
		return "", text, 1, nil
	}
	for i := 1; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == "---" {
			return strings.Join(lines[1:i], ""), strings.Join(lines[i+1:], ""), i + 2, nil
		}
	}
	return "", "", 0, fileErr(path, 1, "front matter is not closed: end it with a line holding only ---")
}

// parseSettings decodes and checks the front matter (which starts on file line 2).
func (a *Agent) parseSettings(path, fm string) []*FileError {
	const offset = 1 // front matter line n is file line n+1
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(fm), &doc); err != nil {
		line, msg := yamlSyntaxError([]byte(fm), err, offset)
		return []*FileError{fileErr(path, line, "front matter: %s", msg)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // only comments
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return []*FileError{fileErr(path, root.Line+offset, "front matter: must be key: value settings")}
	}
	keys, errs := checkKeys(path, root, frontMatterKeys, "front matter key", offset)
	if toolsNode := valueOf(root, "tools"); toolsNode != nil && toolsNode.Kind == yaml.SequenceNode {
		for _, item := range toolsNode.Content {
			if item.Kind == yaml.MappingNode {
				_, kerrs := checkKeys(path, item, toolKeys, "tool key", offset)
				errs = append(errs, kerrs...)
			}
		}
	}
	if sp := valueOf(root, "speech"); sp != nil {
		if sp.Kind != yaml.MappingNode {
			errs = append(errs, fileErr(path, sp.Line+offset, "speech: must be key: value settings (languages, lists, symbols, ordinals, spell_links, breath)"))
		} else {
			_, kerrs := checkKeys(path, sp, speechKeys, "speech key", offset)
			errs = append(errs, kerrs...)
		}
	}
	var fmv frontMatter
	if err := root.Decode(&fmv); err != nil {
		errs = append(errs, decodeErrors(path, err, offset)...)
	}
	if len(errs) > 0 {
		return errs
	}
	at := func(key string) int { return keys[key] }

	s := Settings{
		Model: strings.TrimSpace(fmv.Model), Temperature: fmv.Temperature, MaxTokens: fmv.MaxTokens,
		TimeZone: fmv.TimeZone, HoldingPhrases: fmv.HoldingPhrases,
		ApologyLine: fmv.ApologyLine, RecoveryLine: fmv.RecoveryLine, StallLine: fmv.StallLine,
		FallbackModel: strings.TrimSpace(fmv.FallbackModel), Vars: fmv.Vars, EndCall: fmv.EndCall,
	}
	if t := s.Temperature; t != nil && (*t < 0 || *t > 2) {
		errs = append(errs, fileErr(path, at("temperature"), "temperature %g: must be between 0 and 2", *t))
	}
	if s.MaxTokens < 0 {
		errs = append(errs, fileErr(path, at("max_tokens"), "max_tokens %d: must be positive (or left out for the brain's default)", s.MaxTokens))
	}
	if s.TimeZone != "" {
		loc, err := loadLocation(s.TimeZone)
		if err != nil {
			errs = append(errs, fileErr(path, at("timezone"), "timezone %q: %v", s.TimeZone, err))
		} else {
			a.Location = loc
		}
	}
	for i, p := range s.HoldingPhrases {
		if strings.TrimSpace(p) == "" {
			errs = append(errs, fileErr(path, lineOfItem(root, "holding_phrases", i, offset), "holding_phrases: entry %d is empty", i+1))
		}
	}
	s.Speech, errs = parseSpeech(path, root, fmv.Speech, offset, errs)
	errs = append(errs, checkVarNames(path, valueOf(root, "vars"), offset)...)
	tools, terrs := parseTools(path, valueOf(root, "tools"), fmv.Tools, offset)
	errs = append(errs, terrs...)
	s.Tools = tools
	a.Settings = s
	return errs
}

// parseSpeech checks the speech settings.
func parseSpeech(path string, root *yaml.Node, sp speechSpec, offset int, errs []*FileError) (Speech, []*FileError) {
	s := Speech{Ordinals: sp.Ordinals, SpellLinks: sp.SpellLinks, Breath: sp.Breath}
	s.NoLists = sp.Lists != nil && !*sp.Lists
	s.NoSymbols = sp.Symbols != nil && !*sp.Symbols
	node := valueOf(root, "speech")
	at := func(key string) int {
		if node != nil {
			if l, ok := keyLines(node, offset)[key]; ok {
				return l
			}
			return node.Line + offset
		}
		return 0
	}
	for i, l := range sp.Languages {
		code := strings.ToLower(strings.TrimSpace(l))
		if !slices.Contains(SpeechLanguages, code) {
			line := at("languages")
			if n := valueOf(node, "languages"); n != nil && i < len(n.Content) {
				line = n.Content[i].Line + offset
			}
			errs = append(errs, fileErr(path, line, "speech.languages: %q is not a known language (known: %s)", l, strings.Join(SpeechLanguages, ", ")))
			continue
		}
		s.Languages = append(s.Languages, code)
	}
	if s.Breath != 0 && (s.Breath < MinBreath || s.Breath > MaxBreath) {
		errs = append(errs, fileErr(path, at("breath"), "speech.breath %d: must be between %d and %d characters (or left out for the default)", s.Breath, MinBreath, MaxBreath))
	}
	return s, errs
}

// loadLocation accepts IANA names only: "Local" would make a prompt depend on the host.
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, errors.New("use an IANA name such as Europe/Paris or America/New_York")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, errors.New("unknown time zone: use an IANA name such as Europe/Paris or America/New_York")
	}
	return loc, nil
}

func parseTools(path string, seq *yaml.Node, specs []toolSpec, offset int) ([]Tool, []*FileError) {
	var (
		tools []Tool
		errs  []*FileError
		seen  = make(map[string]int)
	)
	for i, sp := range specs {
		item := seq.Content[i]
		keys := keyLines(item, offset)
		at := func(key string) int {
			if l, ok := keys[key]; ok {
				return l
			}
			return item.Line + offset
		}
		bad := func(key, format string, args ...any) {
			label := sp.Name
			if label == "" {
				label = fmt.Sprintf("#%d", i+1)
			}
			errs = append(errs, fileErr(path, at(key), "tool %s: %s", label, fmt.Sprintf(format, args...)))
		}
		t := Tool{
			Name: sp.Name, Description: strings.TrimSpace(sp.Description), URL: sp.URL,
			Method: strings.ToUpper(strings.TrimSpace(sp.Method)), Headers: sp.Headers, Timeout: DefaultToolTimeout,
		}
		switch {
		case t.Name == "":
			bad("name", "name is required")
		case !toolNameRe.MatchString(t.Name):
			bad("name", "name: use 1 to 64 letters, digits, '_' or '-'")
		case t.Name == EndCallTool:
			bad("name", "the name %s is the built-in tool (set end_call: true to offer it)", EndCallTool)
		case seen[t.Name] > 0:
			bad("name", "duplicate tool name (first defined on line %d)", seen[t.Name])
		default:
			seen[t.Name] = at("name")
		}
		if t.Description == "" {
			bad("description", "description is required: the model decides when to call the tool from it")
		}
		params, err := toolParameters(&sp.Parameters)
		if err != nil {
			bad("parameters", "parameters: %v", err)
		}
		t.Parameters = params
		if u, err := url.Parse(t.URL); t.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url", "url %q: must be an absolute http:// or https:// URL", t.URL)
		}
		switch t.Method {
		case "":
			t.Method = "POST"
		case "GET", "POST":
		default:
			bad("method", "method %q: must be GET or POST", sp.Method)
		}
		for _, h := range slices.Sorted(maps.Keys(t.Headers)) {
			if !headerRe.MatchString(h) {
				bad("headers", "header %q: not a valid header name", h)
			}
			// Never echo the value: it may be the token itself, and this error is logged.
			if why, secret := looksLikeSecret(t.Headers[h]); secret {
				bad("headers", "header %s "+secretValueError, h, why)
			} else if !envRe.MatchString(t.Headers[h]) {
				bad("headers", "header %s must be the NAME of the environment variable holding its value (letters, digits, _), never the value itself", h)
			}
		}
		if sp.Timeout != "" {
			d, err := time.ParseDuration(sp.Timeout)
			switch {
			case err != nil:
				bad("timeout", "timeout %q: use a duration such as 3s or 1500ms", sp.Timeout)
			case d <= 0 || d > MaxToolTimeout:
				bad("timeout", "timeout %s: must be more than 0 and at most %s (the caller is waiting)", d, MaxToolTimeout)
			default:
				t.Timeout = d
			}
		}
		tools = append(tools, t)
	}
	return tools, errs
}

// toolParameters turns the YAML parameters into a JSON Schema object. Left out, the tool takes
// no arguments.
func toolParameters(n *yaml.Node) (json.RawMessage, error) {
	if n.Kind == 0 {
		return json.RawMessage(`{"type":"object","properties":{}}`), nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, errors.New(`must be a JSON Schema object, e.g. {type: object, properties: {…}}`)
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not expressible as JSON: %w", err)
	}
	var schema struct {
		Type       string                     `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		return nil, fmt.Errorf("not a JSON Schema object: %w", err)
	}
	if schema.Type != "object" {
		return nil, errors.New(`must have type: object`)
	}
	for name, p := range schema.Properties {
		var prop map[string]any
		if err := json.Unmarshal(p, &prop); err != nil || prop == nil {
			return nil, fmt.Errorf("property %s: must be a schema object such as {type: string}", name)
		}
	}
	for _, r := range schema.Required {
		if _, ok := schema.Properties[r]; !ok {
			return nil, fmt.Errorf("required property %s is not under properties", r)
		}
	}
	return raw, nil
}

// checkVarNames requires names a template can reach as .Vars.<name>.
func checkVarNames(path string, vars *yaml.Node, offset int) []*FileError {
	if vars == nil || vars.Kind != yaml.MappingNode {
		return nil
	}
	var errs []*FileError
	for i := 0; i+1 < len(vars.Content); i += 2 {
		k := vars.Content[i]
		if !identRe.MatchString(k.Value) {
			errs = append(errs, fileErr(path, k.Line+offset, "vars: %q is not a usable name: use letters, digits and _ (it is read as .Vars.%s)", k.Value, k.Value))
		}
	}
	return errs
}

// checkKeys reports every key of a mapping that is not allowed, and returns each key's line.
func checkKeys(path string, m *yaml.Node, allowed []string, what string, offset int) (map[string]int, []*FileError) {
	var errs []*FileError
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if !slices.Contains(allowed, k.Value) {
			errs = append(errs, fileErr(path, k.Line+offset, "unknown %s %q (known: %s)", what, k.Value, strings.Join(allowed, ", ")))
		}
	}
	return keyLines(m, offset), errs
}

func keyLines(m *yaml.Node, offset int) map[string]int {
	lines := make(map[string]int, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		if _, dup := lines[m.Content[i].Value]; !dup {
			lines[m.Content[i].Value] = m.Content[i].Line + offset
		}
	}
	return lines
}

func valueOf(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func lineOfItem(m *yaml.Node, key string, i, offset int) int {
	if seq := valueOf(m, key); seq != nil && i < len(seq.Content) {
		return seq.Content[i].Line + offset
	}
	return 0
}

// decodeErrors splits a yaml.v3 decoding error into one problem per line.
func decodeErrors(path string, err error, offset int) []*FileError {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		line, msg := splitYAMLError(yamlSyntaxRe, err.Error(), offset)
		return []*FileError{fileErr(path, line, "%s", msg)}
	}
	errs := make([]*FileError, 0, len(te.Errors))
	for _, e := range te.Errors {
		line, msg := splitYAMLError(yamlTypeRe, e, offset)
		errs = append(errs, fileErr(path, line, "%s", msg))
	}
	return errs
}
