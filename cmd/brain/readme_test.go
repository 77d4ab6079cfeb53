package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readmeConfig reads README's configuration table: each variable named in a row's first cell
// (rows naming none, such as the variables named in lines.yaml, are skipped) with the row's
// default, backticks removed and "unset" as "".
func readmeConfig(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(raw), "\n## Configuration\n")
	require.True(t, ok, "README has a Configuration section")
	section, _, _ = strings.Cut(section, "\n## ")
	cell := regexp.MustCompile(`(?:\\\||[^|])*`)
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	out := map[string]string{}
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| variable") {
			continue
		}
		var cells []string
		for _, m := range cell.FindAllString(strings.Trim(l, "|"), -1) {
			cells = append(cells, strings.TrimSpace(m))
		}
		require.GreaterOrEqual(t, len(cells), 3, "row %q", l)
		def := strings.ReplaceAll(strings.ReplaceAll(cells[1], "`", ""), `\|`, "|")
		if def == "unset" {
			def = ""
		}
		for _, m := range name.FindAllStringSubmatch(cells[0], -1) {
			_, dup := out[m[1]]
			require.False(t, dup, "%s appears twice in README's table", m[1])
			out[m[1]] = def
		}
	}
	return out
}

// TestReadmeConfigTable: README's configuration table lists exactly the variables of settings,
// each with the default the code uses.
func TestReadmeConfigTable(t *testing.T) {
	t.Parallel()
	readme := readmeConfig(t)
	code := map[string]string{}
	for _, s := range settings {
		assert.NotEmpty(t, s.doc, "%s has no one-line doc", s.name)
		code[s.name] = s.def
	}
	assert.Equal(t, code, readme)
}

// TestSettingsDefaultsAreTheCodes: with nothing set, every setting holds the default it shows.
func TestSettingsDefaultsAreTheCodes(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(env(nil))
	require.NoError(t, err)
	d := agentDefaults
	assert.Equal(t, d.MaxTokens, c.Agent.MaxTokens)
	assert.Equal(t, d.MaxChars, c.Agent.MaxChars)
	assert.Equal(t, d.HistoryLimit, c.Agent.HistoryLimit)
	assert.Equal(t, d.HoldAfter, c.Agent.HoldAfter)
	assert.Equal(t, d.FirstCut, c.Agent.FirstCut)
	assert.Equal(t, d.StallAfter, c.Agent.StallAfter)
	assert.Equal(t, d.TurnBudget, c.Agent.TurnBudget)
	assert.Equal(t, d.StoreTimeout, c.Agent.StoreTimeout)
	assert.Equal(t, d.TurnLease, c.Agent.TurnLease)
	assert.Equal(t, d.RecoveryLine, c.Agent.RecoveryLine)
	assert.Empty(t, c.Agent.HoldingPhrases, "unset: the agent's own defaults apply")
	assert.Equal(t, "info", c.LogLevel)
	assert.Equal(t, "gpt-4o-mini", c.Model)
	assert.Equal(t, "", c.SaperlyAPIBase, "unset: the agent's default API base applies")
}
