package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPromptsCheck(t *testing.T) {
	t.Parallel()
	good := map[string]string{
		"default.md": "---\nvars: {shop: Our Shop}\n---\nYou answer for {{.Vars.shop}}. It is {{.Weekday}}.\n",
		"sales.md":   "---\nmodel: gpt-4o\nend_call: true\n---\nSell {{.Vars.item}}.\n",
		"lines.yaml": "L1:\n  agent: sales\n  secret_env: SECRET_L1\n  vars: {item: hats}\n",
	}
	bad := map[string]string{
		"default.md": "---\nmodel: gpt-4o\ngreeting: hi\n---\nYou answer.\n",
		"sales.md":   "Sell {{.Vars.item}}.\n",
		"lines.yaml": "L1: {agent: sales}\nL2: {agent: support}\n",
	}
	tests := []struct {
		name  string
		files map[string]string // written to a temp dir, passed as the argument
		args  []string          // after "check"; "$DIR" is the temp dir
		env   map[string]string
		code  int
		// wantOut and wantErr are fragments of stdout and stderr ("$DIR" is the temp dir).
		wantOut, wantErr []string
		notOut, notErr   []string
	}{
		{
			name:  "good dir prints every rendering",
			files: good,
			args:  []string{"$DIR"},
			wantOut: []string{
				"==> default ($DIR/default.md, version ", ") for lines not in lines.yaml\n\nYou answer for Our Shop. It is Monday.\n",
				"==> sales ($DIR/sales.md, version ", ") for line L1\n    model gpt-4o; tools end_call\n\nSell hats.\n",
				"$DIR: 2 agents, 1 line: all good\n",
			},
		},
		{
			name:    "quiet prints one line per rendering",
			files:   good,
			args:    []string{"-q", "$DIR"},
			wantOut: []string{"ok  default  $DIR/default.md", "for lines not in lines.yaml\n", "ok  sales    $DIR/sales.md", "for line L1\n", "all good"},
			notOut:  []string{"You answer for", "Sell hats."},
		},
		{
			name:    "flags after the dir",
			files:   good,
			args:    []string{"$DIR", "-q"},
			wantOut: []string{"ok  default", "all good"},
		},
		{
			name:    "dir from PROMPTS_DIR",
			files:   good,
			env:     map[string]string{"PROMPTS_DIR": "$DIR"},
			args:    []string{"-q"},
			wantOut: []string{"$DIR: 2 agents, 1 line: all good"},
		},
		{
			name:  "every problem as file:line",
			files: bad,
			args:  []string{"$DIR"},
			code:  1,
			wantErr: []string{
				`$DIR/default.md:3: unknown front matter key "greeting"`,
				`$DIR/lines.yaml:2: line L2: unknown agent "support"`,
				"$DIR/sales.md:1: .Vars.item is not set when rendered for line L1 of lines.yaml",
				"$DIR: 3 problems\n",
			},
		},
		{
			// Issue 8 §4: a hex secret starting with a letter passed as a variable name.
			name: "a secret in lines.yaml is refused and never printed",
			files: map[string]string{
				"default.md": "You answer.\n",
				"lines.yaml": "L1:\n  secret_env: f3a9c1e7b5d24f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a\n",
			},
			args:    []string{"$DIR"},
			code:    1,
			wantErr: []string{"$DIR/lines.yaml:2: line L1: secret_env looks like a secret (a string of 64 hex characters)"},
			notErr:  []string{"f3a9c1e7"},
		},
		{
			// Issue 8 §4: an unclosed [ on line 4 was reported on line 3.
			name: "a YAML syntax error names its own line",
			files: map[string]string{
				"default.md": "You answer.\n",
				"lines.yaml": "L1:\n  agent: default\nL2:\n  vars: [a, b\nL3:\n  agent: default\n",
			},
			args:    []string{"$DIR"},
			code:    1,
			wantErr: []string{"$DIR/lines.yaml:4: did not find expected ',' or ']'"},
		},
		{
			name:    "empty dir uses the built-in default",
			files:   map[string]string{},
			args:    []string{"-q", "$DIR"},
			wantOut: []string{"ok  default  embedded", "1 agent, 0 lines: all good (no default.md: the built-in default agent answers"},
		},
		{
			name:    "unused agent shows its line variables as placeholders",
			files:   map[string]string{"spare.md": "Welcome to {{.Vars.shop}}.\n"},
			args:    []string{"$DIR"},
			wantOut: []string{"==> spare ($DIR/spare.md, version ", "(no line uses it; line variables shown as <name>)\n\nWelcome to <shop>.\n"},
		},
		{
			name:    "missing dir",
			args:    []string{"$DIR/nope"},
			code:    1,
			wantErr: []string{"$DIR/nope: not a readable directory"},
		},
		{
			name:    "default dir is ./prompts",
			args:    []string{},
			code:    1,
			wantErr: []string{"./prompts: not a readable directory"}, // the test runs in cmd/brain
		},
		{
			name:    "no subcommand",
			code:    2,
			wantErr: []string{"usage: brain prompts check [-q] [dir]"},
		},
		{
			name:    "two dirs",
			args:    []string{"a", "b"},
			code:    2,
			wantErr: []string{"usage: brain prompts check"},
		},
		{
			name:    "unknown flag",
			args:    []string{"-x"},
			code:    2,
			wantErr: []string{"flag provided but not defined: -x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, content := range tt.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
			}
			subst := func(s string) string { return strings.ReplaceAll(s, "$DIR", dir) }
			var args []string
			if tt.name != "no subcommand" {
				args = append(args, "check")
			}
			for _, a := range tt.args {
				args = append(args, subst(a))
			}
			getenv := func(k string) string { return subst(tt.env[k]) }
			var stdout, stderr bytes.Buffer
			code := promptsCommand(args, getenv, &stdout, &stderr)
			assert.Equal(t, tt.code, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			for _, w := range tt.wantOut {
				assert.Contains(t, stdout.String(), subst(w))
			}
			for _, w := range tt.notOut {
				assert.NotContains(t, stdout.String(), subst(w))
			}
			for _, w := range tt.wantErr {
				assert.Contains(t, stderr.String(), subst(w))
			}
			for _, w := range tt.notErr {
				assert.NotContains(t, stdout.String()+stderr.String(), w)
			}
			if tt.code == 0 {
				assert.Empty(t, stderr.String())
			}
		})
	}
}

// TestPromptsCheckShipped keeps the prompts shipped in the repository passing the check, as an
// operator's CI would run it.
func TestPromptsCheckShipped(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"../../prompts", "../../prompts/examples"} {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := promptsCommand([]string{"check", dir}, func(string) string { return "" }, &stdout, &stderr)
			require.Equal(t, 0, code, stderr.String())
			assert.Contains(t, stdout.String(), "all good")
		})
	}
}

// TestPromptsCheckSources: brain prompts check validates sources.yaml beside lines.yaml.
func TestPromptsCheckSources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	write("default.md", "You answer.\n")
	write("sources.yaml", "speaknode:\n  secret_env: SPEAKNODE_SECRET\n")
	var out, errOut bytes.Buffer
	require.Equal(t, 0, promptsCommand([]string{"check", "-q", dir}, func(string) string { return "" }, &out, &errOut), errOut.String())

	write("sources.yaml", "speaknode:\n  encoding: base32\n")
	out.Reset()
	errOut.Reset()
	require.Equal(t, 1, promptsCommand([]string{"check", "-q", dir}, func(string) string { return "" }, &out, &errOut))
	assert.Contains(t, errOut.String(), "sources.yaml: speaknode.secret_env is required")
	assert.Contains(t, errOut.String(), `speaknode.encoding "base32": want hex or base64`)
	assert.Contains(t, errOut.String(), "2 problems")
}
