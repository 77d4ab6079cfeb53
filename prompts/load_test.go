package prompts_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callbrain/callbrain/prompts"
)

// writeDir writes files (name -> content) into a fresh temp dir and returns it.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

const plainDefault = "You are a helpful phone assistant.\n"

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		// wantErrs are fragments of the error, each "file:line: message" with the temp dir
		// left out; none means Load must succeed.
		wantErrs []string
		// neverShown must not appear in the error (a secret).
		neverShown []string
		check      func(t *testing.T, lib *prompts.Library)
	}{
		{
			name:  "plain prompt without front matter",
			files: map[string]string{"default.md": plainDefault},
			check: func(t *testing.T, lib *prompts.Library) {
				def := lib.Default()
				assert.False(t, lib.Embedded())
				assert.Equal(t, prompts.Settings{}, def.Settings)
				assert.Equal(t, time.UTC, def.Location)
				assert.Len(t, def.Version, 12)
				got, err := def.Render(prompts.Sample("", nil))
				require.NoError(t, err)
				assert.Equal(t, "You are a helpful phone assistant.", got)
			},
		},
		{
			name:  "empty dir gets the embedded default",
			files: map[string]string{},
			check: func(t *testing.T, lib *prompts.Library) {
				assert.True(t, lib.Embedded())
				assert.Equal(t, []string{prompts.DefaultName}, lib.Names())
				assert.Empty(t, lib.Lines())
			},
		},
		{
			name: "every setting",
			files: map[string]string{
				"default.md": plainDefault,
				"full.md": `---
model: gpt-4o
temperature: 0.3
max_tokens: 200
timezone: Europe/Paris
holding_phrases: [One moment., Let me look.]
apology_line: Sorry about that.
recovery_line: Where was I?
stall_line: This is slow today.
fallback_model: gpt-4o-mini
end_call: true
vars:
  shop: Chez Nous
  floor: 2
tools:
  - name: lookup
    description: Look something up.
    parameters:
      type: object
      properties:
        q: {type: string}
      required: [q]
    url: https://example.com/lookup
    method: get
    headers:
      Authorization: LOOKUP_TOKEN
    timeout: 1500ms
  - name: ping
    description: Check the service is up.
    url: http://127.0.0.1:9/ping
---
Welcome to {{.Vars.shop}} on floor {{.Vars.floor}}.
`,
			},
			check: func(t *testing.T, lib *prompts.Library) {
				a, ok := lib.Agent("full")
				require.True(t, ok)
				s := a.Settings
				assert.Equal(t, "gpt-4o", s.Model)
				require.NotNil(t, s.Temperature)
				assert.InDelta(t, 0.3, *s.Temperature, 1e-6)
				assert.Equal(t, 200, s.MaxTokens)
				assert.Equal(t, "Europe/Paris", s.TimeZone)
				assert.Equal(t, "Europe/Paris", a.Location.String())
				assert.Equal(t, []string{"One moment.", "Let me look."}, s.HoldingPhrases)
				assert.Equal(t, "Sorry about that.", s.ApologyLine)
				assert.Equal(t, "Where was I?", s.RecoveryLine)
				assert.Equal(t, "This is slow today.", s.StallLine)
				assert.Equal(t, "gpt-4o-mini", s.FallbackModel)
				assert.True(t, s.EndCall)
				assert.Equal(t, map[string]string{"shop": "Chez Nous", "floor": "2"}, s.Vars)
				require.Len(t, s.Tools, 2)
				lookup := s.Tools[0]
				assert.Equal(t, "lookup", lookup.Name)
				assert.Equal(t, "Look something up.", lookup.Description)
				assert.JSONEq(t, `{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`, string(lookup.Parameters))
				assert.Equal(t, "https://example.com/lookup", lookup.URL)
				assert.Equal(t, "GET", lookup.Method)
				assert.Equal(t, map[string]string{"Authorization": "LOOKUP_TOKEN"}, lookup.Headers)
				assert.Equal(t, 1500*time.Millisecond, lookup.Timeout)
				ping := s.Tools[1]
				assert.Equal(t, "POST", ping.Method)
				assert.Equal(t, prompts.DefaultToolTimeout, ping.Timeout)
				assert.True(t, json.Valid(ping.Parameters))
				assert.JSONEq(t, `{"type":"object","properties":{}}`, string(ping.Parameters))
			},
		},
		{
			name: "lines map line ids to agents and vars",
			files: map[string]string{
				"default.md": plainDefault,
				"shop.md":    "---\nvars: {shop: Ours, city: Paris}\n---\n{{.Vars.shop}} in {{.Vars.city}}\n",
				"lines.yaml": "L1:\n  agent: shop\n  secret_env: SECRET_L1\n  secret_next_env: SECRET_L1_NEXT\n  vars: {shop: Theirs}\nL2:\n",
			},
			check: func(t *testing.T, lib *prompts.Library) {
				a, ln := lib.ForLine("L1")
				assert.Equal(t, "shop", a.Name)
				assert.Equal(t, prompts.Line{ID: "L1", Agent: "shop", SecretEnv: "SECRET_L1", SecretNextEnv: "SECRET_L1_NEXT",
					Vars: map[string]string{"shop": "Theirs"}}, ln)
				got, err := a.Render(prompts.Sample(ln.ID, ln.Vars))
				require.NoError(t, err)
				assert.Equal(t, "Theirs in Paris", got, "line vars override the agent's")

				a, ln = lib.ForLine("L2")
				assert.Equal(t, prompts.DefaultName, a.Name)
				assert.Equal(t, prompts.Line{ID: "L2", Agent: prompts.DefaultName}, ln)

				a, ln = lib.ForLine("unlisted")
				assert.Equal(t, prompts.DefaultName, a.Name)
				assert.Equal(t, prompts.Line{ID: "unlisted"}, ln)
				_, ok := lib.Line("unlisted")
				assert.False(t, ok)

				lines := lib.Lines()
				require.Len(t, lines, 2)
				assert.Equal(t, "L1", lines[0].ID)
				assert.Equal(t, "L2", lines[1].ID)
				assert.Equal(t, []string{"default", "shop"}, lib.Names())
			},
		},
		{
			name: "an agent no line uses may rely on line vars",
			files: map[string]string{
				"default.md": plainDefault,
				"spare.md":   "Welcome to {{.Vars.shop}}.\n",
			},
			check: func(t *testing.T, lib *prompts.Library) {
				a, ok := lib.Agent("spare")
				require.True(t, ok)
				assert.Equal(t, []string{"shop"}, a.VarNames())
			},
		},
		{
			name:     "bad YAML names its line",
			files:    map[string]string{"bad.md": "---\nmodel: gpt-4o\n  temperature: 0.2\n---\nHi.\n"},
			wantErrs: []string{"bad.md:3: front matter: mapping values are not allowed in this context"},
		},
		{
			name:     "unclosed YAML list",
			files:    map[string]string{"bad.md": "---\nmodel: gpt-4o\nholding_phrases: [One moment.\n---\nHi.\n"},
			wantErrs: []string{"bad.md:3: front matter: did not find expected ',' or ']'"}, // the list's own line (issue 8 §4)
		},
		{
			name:     "unclosed YAML list on the front matter's first line",
			files:    map[string]string{"bad.md": "---\nholding_phrases: [One moment.\nmodel: gpt-4o\n---\nHi.\n"},
			wantErrs: []string{"bad.md:2: front matter: did not find expected ',' or ']'"},
		},
		{
			// Issue 8 §4: an unclosed [ on line 4 was reported on line 3.
			name: "lines.yaml with an unclosed list",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  agent: default\nL2:\n  vars: [a, b\nL3:\n  agent: default\n",
			},
			wantErrs: []string{"lines.yaml:4: did not find expected ',' or ']'"},
		},
		{
			name: "lines.yaml with a scanner error keeps its line",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  agent: default\n  bad: x: y\n",
			},
			wantErrs: []string{"lines.yaml:3: mapping values are not allowed in this context"},
		},
		{
			name:     "unknown front matter key",
			files:    map[string]string{"bad.md": "---\nmodel: gpt-4o\ngreeting: Hello\n---\nHi.\n"},
			wantErrs: []string{`bad.md:3: unknown front matter key "greeting" (known: model, temperature,`},
		},
		{
			name: "speech settings",
			files: map[string]string{
				"default.md": plainDefault,
				"es.md":      "---\nspeech:\n  languages: [es, EN]\n  lists: false\n  symbols: false\n  ordinals: true\n  spell_links: true\n  breath: 90\n---\nHola.\n",
			},
			check: func(t *testing.T, lib *prompts.Library) {
				a, ok := lib.Agent("es")
				require.True(t, ok)
				assert.Equal(t, prompts.Speech{
					Languages: []string{"es", "en"}, NoLists: true, NoSymbols: true, Ordinals: true, SpellLinks: true, Breath: 90,
				}, a.Settings.Speech)
				assert.Equal(t, prompts.Speech{}, lib.Default().Settings.Speech, "left out: the defaults")
			},
		},
		{
			name:  "bad speech settings",
			files: map[string]string{"bad.md": "---\nspeech:\n  languages:\n    - en\n    - klingon\n  breath: 10\n  voice: loud\n---\nHi.\n"},
			wantErrs: []string{
				`bad.md:7: unknown speech key "voice" (known: languages, lists, symbols, ordinals, spell_links, breath)`,
			},
		},
		{
			name:  "bad speech values",
			files: map[string]string{"bad.md": "---\nspeech:\n  languages:\n    - en\n    - klingon\n  breath: 10\n---\nHi.\n"},
			wantErrs: []string{
				`bad.md:5: speech.languages: "klingon" is not a known language (known: de, en, es, fr)`,
				`bad.md:6: speech.breath 10: must be between 40 and 400 characters`,
			},
		},
		{
			name:     "speech is a mapping",
			files:    map[string]string{"bad.md": "---\nspeech: yes\n---\nHi.\n"},
			wantErrs: []string{`bad.md:2: speech: must be key: value settings`},
		},
		{
			name:     "wrong type",
			files:    map[string]string{"bad.md": "---\ntemperature: warm\n---\nHi.\n"},
			wantErrs: []string{"bad.md:2: cannot unmarshal !!str `warm` into float32"},
		},
		{
			name:     "front matter not closed",
			files:    map[string]string{"bad.md": "---\nmodel: gpt-4o\nHi.\n"},
			wantErrs: []string{"bad.md:1: front matter is not closed"},
		},
		{
			name:     "empty prompt",
			files:    map[string]string{"bad.md": "---\nmodel: gpt-4o\n---\n\n"},
			wantErrs: []string{"bad.md:4: the system prompt is empty"},
		},
		{
			name:     "template syntax error",
			files:    map[string]string{"bad.md": "---\nmodel: gpt-4o\n---\nHello.\n\nIt is {{.Time}.\n"},
			wantErrs: []string{"bad.md:6: template: bad character U+007D '}'"},
		},
		{
			name:     "missing var",
			files:    map[string]string{"default.md": "---\nvars: {shop: Ours}\n---\nWelcome to {{.Vars.shop}}.\nWe open at {{.Vars.hours}}.\n"},
			wantErrs: []string{"default.md:5: .Vars.hours is not set: give it a default under vars in the front matter"},
		},
		{
			name:     "missing var in a branch the sample does not take",
			files:    map[string]string{"default.md": "Hello.\n{{if eq .Weekday \"Sunday\"}}\nWe open at {{.Vars.sunday_hours}}.\n{{end}}\n"},
			wantErrs: []string{"default.md:3: .Vars.sunday_hours is not set"},
		},
		{
			name:     "missing var in an else branch",
			files:    map[string]string{"default.md": "{{with .Vars.shop}}Welcome to {{.}}.{{else}}\nWelcome, {{$.Vars.nobody}}.{{end}}\n"},
			wantErrs: []string{"default.md:1: .Vars.shop is not set", "default.md:2: .Vars.nobody is not set"},
		},
		{
			name:     "missing var read with index",
			files:    map[string]string{"default.md": "---\nvars: {a: x}\n---\nA {{index .Vars \"a\"}}.\nB {{index $.Vars \"b\"}}.\n"},
			wantErrs: []string{"default.md:5: .Vars.b is not set"},
		},
		{
			name:     "unknown field",
			files:    map[string]string{"default.md": "Hello.\n\nThe caller is {{.CallerName}}.\n"},
			wantErrs: []string{"default.md:3: unknown field .CallerName (a call has .Caller, .Called,"},
		},
		{
			name:     "unknown field through $ inside range",
			files:    map[string]string{"default.md": "---\nvars: {a: x}\n---\n{{range $k, $v := .Vars}}{{$k}}={{$v}} {{$.Nope}}{{end}}\n"},
			wantErrs: []string{"default.md:4: unknown field .Nope"},
		},
		{
			name:     "field of a string",
			files:    map[string]string{"default.md": "Today is {{.Date.Day}}.\n"},
			wantErrs: []string{`default.md:1: template: at <.Date.Day>: can't evaluate field Day in type string`},
		},
		{
			name:     "bad timezone",
			files:    map[string]string{"bad.md": "---\nmodel: m\ntimezone: Europe/Atlantis\n---\nHi.\n"},
			wantErrs: []string{`bad.md:3: timezone "Europe/Atlantis": unknown time zone`},
		},
		{
			name:     "Local is not a timezone",
			files:    map[string]string{"bad.md": "---\ntimezone: Local\n---\nHi.\n"},
			wantErrs: []string{`bad.md:2: timezone "Local": use an IANA name`},
		},
		{
			name:     "temperature out of range",
			files:    map[string]string{"bad.md": "---\ntemperature: 3\n---\nHi.\n"},
			wantErrs: []string{"bad.md:2: temperature 3: must be between 0 and 2"},
		},
		{
			name:     "var name a template cannot reach",
			files:    map[string]string{"bad.md": "---\nvars:\n  business-name: x\n---\nHi.\n"},
			wantErrs: []string{`bad.md:3: vars: "business-name" is not a usable name`},
		},
		{
			name:     "tool schema is not an object schema",
			files:    map[string]string{"bad.md": tool("parameters: {type: string}")},
			wantErrs: []string{"bad.md:7: tool t: parameters: must have type: object"},
		},
		{
			name:     "tool schema is a list",
			files:    map[string]string{"bad.md": tool("parameters: [order_id]")},
			wantErrs: []string{"bad.md:7: tool t: parameters: must be a JSON Schema object"},
		},
		{
			name:     "tool schema requires a property it does not define",
			files:    map[string]string{"bad.md": tool("parameters: {type: object, properties: {a: {type: string}}, required: [b]}")},
			wantErrs: []string{"bad.md:7: tool t: parameters: required property b is not under properties"},
		},
		{
			name:     "tool timeout too long",
			files:    map[string]string{"bad.md": tool("timeout: 30s")},
			wantErrs: []string{"bad.md:7: tool t: timeout 30s: must be more than 0 and at most 10s"},
		},
		{
			name:     "tool timeout not a duration",
			files:    map[string]string{"bad.md": tool("timeout: 3")},
			wantErrs: []string{`bad.md:7: tool t: timeout "3": use a duration such as 3s`},
		},
		{
			name:       "tool header holds a value, not a variable name",
			files:      map[string]string{"bad.md": tool("headers: {Authorization: Bearer abc123}")},
			wantErrs:   []string{`bad.md:7: tool t: header Authorization must be the NAME of the environment variable`},
			neverShown: []string{"abc123"},
		},
		{
			name:       "tool header holds a token that is a valid variable name",
			files:      map[string]string{"bad.md": tool("headers: {Authorization: ghp_16C7e42F292c6912E7710c838347Ae178B4a}")},
			wantErrs:   []string{`bad.md:7: tool t: header Authorization looks like a secret (a long random-looking token)`},
			neverShown: []string{"ghp_16C7e42F292c6912E7710c838347Ae178B4a"},
		},
		{
			name:     "tool url and method",
			files:    map[string]string{"bad.md": "---\ntools:\n  - name: t\n    description: d\n    url: /relative\n    method: DELETE\n---\nHi.\n"},
			wantErrs: []string{`bad.md:5: tool t: url "/relative": must be an absolute http:// or https:// URL`, `bad.md:6: tool t: method "DELETE": must be GET or POST`},
		},
		{
			name:     "unknown tool key",
			files:    map[string]string{"bad.md": tool("retries: 2")},
			wantErrs: []string{`bad.md:7: unknown tool key "retries" (known: name, description, parameters, url, method, headers, timeout)`},
		},
		{
			name: "duplicate tool names",
			files: map[string]string{"bad.md": "---\ntools:\n" +
				"  - {name: look, description: d, url: 'http://x/a'}\n" +
				"  - {name: look, description: d, url: 'http://x/b'}\n---\nHi.\n"},
			wantErrs: []string{"bad.md:4: tool look: duplicate tool name (first defined on line 3)"},
		},
		{
			name:     "tool named end_call clashes with the built-in",
			files:    map[string]string{"bad.md": "---\nend_call: true\ntools:\n  - {name: end_call, description: d, url: 'http://x/a'}\n---\nHi.\n"},
			wantErrs: []string{"bad.md:4: tool end_call: the name end_call is the built-in tool"},
		},
		{
			name:     "tool without name or description",
			files:    map[string]string{"bad.md": "---\ntools:\n  - url: http://x/a\n---\nHi.\n"},
			wantErrs: []string{"bad.md:3: tool #1: name is required", "bad.md:3: tool #1: description is required"},
		},
		{
			name: "lines.yaml with an unknown agent",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "# lines\nL1:\n  agent: sales\n",
			},
			wantErrs: []string{`lines.yaml:2: line L1: unknown agent "sales" (agents: default)`},
		},
		{
			name: "lines.yaml with invalid syntax",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  agent: default\n   vars: x\n",
			},
			wantErrs: []string{"lines.yaml:3: mapping values are not allowed in this context"},
		},
		{
			name: "lines.yaml with an unknown key",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  agent: default\n  secret: abc\n",
			},
			wantErrs: []string{`lines.yaml:3: unknown key of line L1 "secret" (known: agent, secret_env, secret_next_env, vars)`},
		},
		{
			name: "lines.yaml with a secret instead of its variable's name",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  secret_env: 3f9a1c7e-5b2d\n",
			},
			wantErrs:   []string{`lines.yaml:2: line L1: secret_env must be the NAME of an environment variable`},
			neverShown: []string{"3f9a1c7e"},
		},
		{
			// Issue 8 §4: a hex secret that starts with a letter is a valid variable name.
			name: "lines.yaml with a real secret as secret_env",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  secret_env: f3a9c1e7b5d24f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a\n",
			},
			wantErrs:   []string{`lines.yaml:2: line L1: secret_env looks like a secret (a string of 64 hex characters)`},
			neverShown: []string{"f3a9c1e7"},
		},
		{
			name: "lines.yaml with secrets as secret_next_env and in vars",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  secret_env: LINE_SECRET\n  secret_next_env: aZ9bY8cX7dW6eV5fU4gT3hS2iR1jQ0kP\n  vars:\n    business_name: Northwind Goods, 12 Harbour Street\n    api_key: sk-proj-Ab3dEf9HiJkLmN0pQrStUvWxYz12\n    booking: https://example.com/booking/reception-page\n",
			},
			wantErrs: []string{
				`lines.yaml:3: line L1: secret_next_env looks like a secret (a long random-looking token)`,
				`lines.yaml:6: line L1: vars.api_key looks like a secret (a long random-looking token)`,
			},
			neverShown: []string{"aZ9bY8cX", "sk-proj"},
		},
		{
			name: "lines.yaml with a next secret but no current one",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1:\n  secret_next_env: NEXT\n",
			},
			wantErrs: []string{"lines.yaml:2: line L1: secret_next_env needs secret_env"},
		},
		{
			name: "lines.yaml lists a line twice",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "L1: {agent: default}\nL1: {agent: default}\n",
			},
			wantErrs: []string{"lines.yaml:2: line L1 is listed twice (first on line 1)"},
		},
		{
			name: "lines.yaml is not a mapping",
			files: map[string]string{
				"default.md": plainDefault,
				"lines.yaml": "- L1\n- L2\n",
			},
			wantErrs: []string{"lines.yaml:1: must map each line_id to its settings"},
		},
		{
			name: "a line lacks a var its agent needs",
			files: map[string]string{
				"default.md": plainDefault,
				"shop.md":    "---\nvars: {shop: Ours}\n---\nWelcome to {{.Vars.shop}}.\nWe open at {{.Vars.hours}}.\n",
				"lines.yaml": "L1:\n  agent: shop\n  vars: {hours: 9 to 5}\nL2:\n  agent: shop\n",
			},
			wantErrs: []string{"shop.md:5: .Vars.hours is not set when rendered for line L2 of lines.yaml: add it to that line's vars"},
		},
		{
			name: "lines naming a broken agent say so",
			files: map[string]string{
				"default.md": plainDefault,
				"shop.md":    "---\ncolour: red\n---\nHi.\n",
				"lines.yaml": "L1: {agent: shop}\n",
			},
			wantErrs: []string{`lines.yaml:1: line L1: agent "shop" did not load: fix shop.md`, `shop.md:2: unknown front matter key "colour"`},
		},
		{
			name:     "lines.yml is not read",
			files:    map[string]string{"lines.yml": "L1: {}\n"},
			wantErrs: []string{"lines.yml: rename it to lines.yaml"},
		},
		{
			name:     "file name that cannot name an agent",
			files:    map[string]string{"my agent.md": "Hi.\n"},
			wantErrs: []string{`my agent.md: agent name "my agent": name the file with letters`},
		},
		{
			name: "every problem is reported, in file and line order",
			files: map[string]string{
				"b.md": "---\nfoo: 1\nbar: 2\n---\nHi.\n",
				"a.md": "{{.Nope}}\n",
			},
			wantErrs: []string{"a.md:1: unknown field .Nope", `b.md:2: unknown front matter key "foo"`, `b.md:3: unknown front matter key "bar"`},
		},
		{
			name: "editor files and other files are ignored",
			files: map[string]string{
				"default.md":     plainDefault,
				".#default.md":   "{{broken",
				"default.md~":    "{{broken",
				"README.txt":     "{{broken",
				"notes.markdown": "{{broken",
			},
			check: func(t *testing.T, lib *prompts.Library) {
				assert.Equal(t, []string{"default"}, lib.Names())
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeDir(t, tt.files)
			lib, err := prompts.Load(dir)
			if len(tt.wantErrs) == 0 {
				require.NoError(t, err)
				tt.check(t, lib)
				return
			}
			require.Error(t, err)
			assert.Nil(t, lib)
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			for _, secret := range tt.neverShown {
				assert.NotContains(t, msg, secret, "a secret is never repeated in an error")
			}
			last := -1
			for _, want := range tt.wantErrs {
				i := strings.Index(msg, want)
				if assert.GreaterOrEqual(t, i, 0, "want %q in:\n%s", want, msg) {
					assert.Greater(t, i, last, "problems out of order:\n%s", msg)
					last = i
				}
			}
			var fe *prompts.FileError
			require.ErrorAs(t, err, &fe, "each problem is a *FileError")
			assert.True(t, strings.HasPrefix(fe.File, dir), "errors name the file by its path")
		})
	}
}

// tool is an agent file with one valid tool plus extra (a line of its settings, on line 7).
func tool(extra string) string {
	return "---\ntools:\n  - name: t\n    description: d\n    url: http://127.0.0.1:9/t\n    method: POST\n    " + extra + "\n---\nHi.\n"
}

func TestLoadMissingDir(t *testing.T) {
	t.Parallel()
	lib, err := prompts.Load(filepath.Join(t.TempDir(), "nope"))
	require.NoError(t, err)
	assert.True(t, lib.Embedded())
	assert.Equal(t, "embedded", lib.Default().Source)
}

func TestLoadNotADir(t *testing.T) {
	t.Parallel()
	dir := writeDir(t, map[string]string{"file": "x"})
	_, err := prompts.Load(filepath.Join(dir, "file"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "read prompts dir")
}

// TestEmbeddedDefault keeps the built-in default agent valid on its own: the brain falls back on
// it with no line vars at all.
func TestEmbeddedDefault(t *testing.T) {
	t.Parallel()
	lib, err := prompts.Load(t.TempDir())
	require.NoError(t, err)
	def := lib.Default()
	raw, err := os.ReadFile("default.md")
	require.NoError(t, err)
	fromFile, err := prompts.Load(".")
	require.NoError(t, err)
	assert.Equal(t, fromFile.Default().Version, def.Version, "the embedded default is default.md")
	assert.NotEmpty(t, raw)
	assert.Equal(t, "a small dental practice", def.Settings.Vars["business_name"])
	got, err := def.Render(prompts.Sample("", nil))
	require.NoError(t, err)
	assert.Contains(t, got, "front desk of a small dental practice")
}

// TestExamples keeps the shipped example agents loadable, as an operator would copy them.
func TestExamples(t *testing.T) {
	t.Parallel()
	lib, err := prompts.Load("examples")
	require.NoError(t, err)
	assert.Equal(t, []string{"default", "orders", "receptionist"}, lib.Names())

	rec, ln := lib.ForLine("5f0c8e2a-1b3d-4c5e-9f7a-2d4b6c8e0a1f")
	assert.Equal(t, "receptionist", rec.Name)
	assert.Equal(t, "SAPERLY_SECRET_RECEPTION", ln.SecretEnv)
	assert.Equal(t, "SAPERLY_SECRET_RECEPTION_NEXT", ln.SecretNextEnv)
	assert.True(t, rec.Settings.EndCall)
	assert.Subset(t, rec.VarNames(), []string{"address", "business_name", "hours"})

	orders, ln := lib.ForLine("9d1e7b3c-2a4f-4e6d-8b0c-5f7a9e1d3c2b")
	assert.Equal(t, "orders", orders.Name)
	assert.Equal(t, "SAPERLY_SECRET_ORDERS", ln.SecretEnv)
	assert.True(t, orders.Settings.EndCall)
	require.Len(t, orders.Settings.Tools, 1)
	tl := orders.Settings.Tools[0]
	assert.Equal(t, "get_order_status", tl.Name)
	assert.Equal(t, "http://127.0.0.1:8090/orders/status", tl.URL)
	assert.Equal(t, "POST", tl.Method)
	assert.Equal(t, map[string]string{"Authorization": "ORDERDESK_TOKEN"}, tl.Headers)
	assert.Equal(t, 3*time.Second, tl.Timeout)
	assert.JSONEq(t, `{"type":"object","properties":{"order_id":{"type":"string","description":"The order number as the caller gave it, digits and letters only."}},"required":["order_id"]}`,
		string(tl.Parameters))
}

func TestFileError(t *testing.T) {
	t.Parallel()
	inner := errors.New("what is wrong")
	tests := []struct {
		name string
		err  *prompts.FileError
		want string
	}{
		{name: "with a line", err: &prompts.FileError{File: "p/a.md", Line: 3, Err: inner}, want: "p/a.md:3: what is wrong"},
		{name: "without a line", err: &prompts.FileError{File: "p/a.md", Err: inner}, want: "p/a.md: what is wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, tt.err.Error())
			assert.ErrorIs(t, tt.err, inner)
		})
	}
}
